"""RetryPolicy: backoff formulas, jitter bounds, classification, validation, thread safety."""

from __future__ import annotations

import copy
import pickle
import random
import statistics
import threading

import pytest

from fastq.errors import Permanent
from fastq.pipeline.retry import RetryPolicy


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
        ("linear", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        ("constant", [0.1] * 6),
    ],
)
def test_exact_delays_without_jitter(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, jitter="none")  # type: ignore[arg-type]
    assert [policy.delay(n) for n in range(1, 7)] == pytest.approx(expected)


def test_multiplier_and_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter="none", multiplier=3.0)
    assert [policy.delay(n) for n in range(1, 5)] == [1.0, 3.0, 9.0, 10.0]
    linear = RetryPolicy(backoff="linear", base=2.0, cap=5.0, jitter="none")
    assert [linear.delay(n) for n in (1, 2, 3, 100)] == [2.0, 4.0, 5.0, 5.0]


def test_huge_attempts_stay_at_cap() -> None:
    policy = RetryPolicy(jitter="none")
    assert policy.delay(10_000) == 900.0
    assert policy.delay(2**62) == 900.0
    assert RetryPolicy(jitter="none", multiplier=1.0).delay(10**9) == pytest.approx(0.1)


def test_full_jitter_bounds_and_mean(rng: random.Random) -> None:
    seed = rng.randrange(2**32)
    policy = RetryPolicy(seed=seed)
    for attempt in (1, 3, 8, 20):
        d = policy.backoff_delay(attempt)
        samples = [policy.delay(attempt) for _ in range(4000)]
        assert all(0.0 <= x <= d for x in samples), (rng, seed, attempt)
        # uniform(0, d): mean d/2, sd of the mean d/sqrt(12*4000) ~ 0.0046 d; allow ~6 sd
        assert statistics.fmean(samples) == pytest.approx(d / 2, rel=0.06), (rng, seed, attempt)
        assert min(samples) < 0.05 * d
        assert max(samples) > 0.95 * d


def test_equal_jitter_bounds(rng: random.Random) -> None:
    seed = rng.randrange(2**32)
    policy = RetryPolicy(jitter="equal", seed=seed)
    for attempt in (1, 5, 30):
        d = policy.backoff_delay(attempt)
        samples = [policy.delay(attempt) for _ in range(4000)]
        assert all(d / 2 <= x <= d for x in samples), (rng, seed, attempt)
        assert statistics.fmean(samples) == pytest.approx(0.75 * d, rel=0.03), (rng, seed, attempt)


def test_seeded_policies_are_reproducible() -> None:
    a = RetryPolicy(seed=42)
    b = RetryPolicy(seed=42)
    c = RetryPolicy(seed=43)
    seq_a = [a.delay(n % 7 + 1) for n in range(50)]
    assert seq_a == [b.delay(n % 7 + 1) for n in range(50)]
    assert seq_a != [c.delay(n % 7 + 1) for n in range(50)]


class Transient(Exception):
    pass


class Fatal(Transient):
    """A subclass of a retryable type that dead_letter_on names: dead_letter_on wins."""


def _is_teapot(exc: BaseException) -> bool:
    return "teapot" in str(exc)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (Transient("x"), "retry"),
        (Fatal("x"), "dead_letter"),  # dead_letter_on wins over retry_on
        (KeyError("k"), "dead_letter"),  # not in retry_on: not retryable
        (Permanent("bad record"), "dead_letter"),
        (TimeoutError(), "retry"),  # matched by a retry_on type
        (RuntimeError("I'm a teapot"), "dead_letter"),  # dead_letter_on predicate
        (RuntimeError("503"), "retry"),  # retry_on predicate
        (KeyboardInterrupt(), "dead_letter"),  # not an Exception: never retried
    ],
)
def test_classification_table(exc: BaseException, expected: str) -> None:
    policy = RetryPolicy(
        retry_on=(Transient, TimeoutError, lambda e: "503" in str(e)),
        dead_letter_on=(Fatal, _is_teapot),
    )
    assert policy.classify(exc) == expected


def test_defaults_retry_every_exception_but_permanent() -> None:
    policy = RetryPolicy()
    assert policy.classify(ValueError("x")) == "retry"
    assert policy.classify(ConnectionError()) == "retry"
    assert policy.classify(Permanent("no")) == "dead_letter"
    # a Permanent subclass and a single type (not a tuple) for dead_letter_on
    assert RetryPolicy(dead_letter_on=KeyError).classify(KeyError()) == "dead_letter"


@pytest.mark.msgspec
def test_validation_errors_dead_letter() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"a": "x"}, type=dict[str, int])
    assert RetryPolicy().classify(info.value) == "dead_letter"


def test_should_retry_counts_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(1, ConnectionError())
    assert policy.should_retry(2, ConnectionError())
    assert not policy.should_retry(3, ConnectionError())
    assert not policy.should_retry(1, Permanent("x"))
    assert not RetryPolicy.none().should_retry(1, ConnectionError())
    assert RetryPolicy.none().max_attempts == 1


def test_immutable() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy._base = 2.0
    assert (policy.base, policy.cap, policy.jitter) == (0.1, 900.0, "full")
    assert "RetryPolicy(max_attempts=5" in repr(policy)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be >= 1, got 0"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an int"),
        ({"backoff": "fibonacci"}, ValueError, "backoff must be one of .*'fibonacci'"),
        ({"jitter": "decorrelated"}, ValueError, "jitter must be one of .*'decorrelated'"),
        ({"base": 0}, ValueError, "base must be > 0"),
        ({"base": -1.0}, ValueError, "base must be > 0, got -1.0"),
        ({"base": float("nan")}, ValueError, "base must be finite"),
        ({"base": "1"}, TypeError, "base must be a number"),
        ({"cap": 0.05}, ValueError, "cap must be >= base"),
        ({"cap": float("inf")}, ValueError, "cap must be finite"),
        ({"multiplier": 0.5}, ValueError, "multiplier must be >= 1"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on must be an exception type"),
        ({"retry_on": (int,)}, TypeError, "retry_on must hold exception types"),
        ({"dead_letter_on": (ValueError, 3)}, TypeError, "dead_letter_on must be"),
        ({"seed": 1.5}, TypeError, "seed must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", [0, -1])
def test_bad_attempt(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        RetryPolicy().delay(attempt)
    with pytest.raises(TypeError, match="attempt must be an int"):
        RetryPolicy().delay(True)


def test_thread_safety_smoke() -> None:
    """Many threads drawing delays: all in bounds, and the multiset of draws equals a
    single-threaded run with the same seed (the random stream is not corrupted)."""
    policy = RetryPolicy(seed=7, jitter="full")
    reference = RetryPolicy(seed=7, jitter="full")
    per_thread, threads = 2000, 8
    results: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        results[i].extend(policy.delay(4) for _ in range(per_thread))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    drawn = sorted(x for r in results for x in r)
    expected = sorted(reference.delay(4) for _ in range(per_thread * threads))
    assert drawn == expected


def test_copy_and_pickle_keep_the_configuration() -> None:
    def make() -> RetryPolicy:
        return RetryPolicy(
            max_attempts=3,
            backoff="linear",
            base=0.5,
            cap=4.0,
            jitter="equal",
            retry_on=(ConnectionError,),
            dead_letter_on=KeyError,
            multiplier=3.0,
            seed=9,
        )

    policy = make()
    twin = make()
    fresh = [twin.delay(2) for _ in range(5)]
    for clone in (copy.copy(policy), copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert repr(clone) == repr(policy)
        assert (clone.retry_on, clone.dead_letter_on) == ((ConnectionError,), (KeyError,))
        assert clone.classify(KeyError()) == "dead_letter"
        assert [clone.delay(2) for _ in range(5)] == fresh  # the stream restarts from the seed
