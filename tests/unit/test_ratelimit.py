"""fastq.TokenBucket: accrual, burst, waiting, rate changes, bad input, threads."""

from __future__ import annotations

import math
import threading

import pytest

from fastq import FakeClock
from fastq._core import TokenBucket


def drain(b: TokenBucket) -> int:
    n = 0
    while b.try_acquire():
        n += 1
    return n


def test_starts_full_and_holds_at_most_burst() -> None:
    clock = FakeClock()
    b = TokenBucket(10.0, 5, clock=clock)
    assert b.tokens == 5.0
    assert drain(b) == 5
    clock.advance(100.0)
    assert b.tokens == 5.0  # never more than burst, however long it waited
    assert drain(b) == 5


@pytest.mark.parametrize(
    ("rate", "burst", "seconds"), [(10.0, 1, 3.0), (1000.0, 50, 2.5), (0.5, 2, 40)]
)
def test_accrues_rate_tokens_per_second(rate: float, burst: int, seconds: float) -> None:
    clock = FakeClock()
    b = TokenBucket(rate, burst, clock=clock)
    taken = drain(b)
    steps = 1000
    for _ in range(steps):
        clock.advance(seconds / steps)
        taken += drain(b)
    # burst at the start, then rate * seconds (the last fraction of a token may be pending)
    assert burst + rate * seconds - 1 <= taken <= burst + rate * seconds


def test_default_burst_is_one_second_of_rate_at_least_one() -> None:
    assert TokenBucket(250.0).burst == 250.0
    assert TokenBucket(0.2).burst == 1.0
    assert TokenBucket(math.inf).burst == 1.0


def test_unlimited_rate_never_refuses() -> None:
    b = TokenBucket(math.inf)
    assert all(b.try_acquire() for _ in range(10_000))
    assert b.wait_time() == 0.0


def test_wait_time_says_when_tokens_will_be_there() -> None:
    clock = FakeClock()
    b = TokenBucket(4.0, 2, clock=clock)
    assert b.wait_time(2) == 0.0
    assert b.try_acquire(2)
    assert b.wait_time(1) == pytest.approx(0.25)
    assert b.wait_time(2) == pytest.approx(0.5)
    assert b.wait_time(3) == math.inf  # more than burst never fits
    clock.advance(0.25)
    assert b.try_acquire(1)
    assert not b.try_acquire(1)


def test_fractional_tokens() -> None:
    clock = FakeClock()
    b = TokenBucket(1.0, 1, clock=clock)
    assert b.try_acquire(0.5)
    assert b.try_acquire(0.5)
    assert not b.try_acquire(0.5)
    clock.advance(0.5)
    assert b.try_acquire(0.5)


def test_rate_change_keeps_what_accrued() -> None:
    clock = FakeClock()
    b = TokenBucket(10.0, 10, clock=clock)
    drain(b)
    clock.advance(0.5)  # 5 tokens at the old rate
    b.rate = 1.0
    assert b.rate == 1.0
    assert b.tokens == pytest.approx(5.0)
    clock.advance(1.0)  # +1 at the new rate
    assert drain(b) == 6


def test_acquire_with_a_fake_clock_never_sleeps() -> None:
    clock = FakeClock()
    b = TokenBucket(1.0, 1, clock=clock)
    assert b.acquire()
    assert b.acquire(timeout=1000.0) is False  # would need real sleeping on a fake clock
    clock.advance(1.0)
    assert b.acquire(timeout=0)


def test_acquire_sleeps_until_tokens_come() -> None:
    b = TokenBucket(2000.0, 10)
    drain(b)
    assert b.acquire(5, timeout=30.0)  # ~2.5 ms of accrual; the bound is only liveness
    drain(b)
    assert b.acquire(1, timeout=0) is False


def test_acquire_timeout_shorter_than_the_wait_returns_false() -> None:
    b = TokenBucket(0.001, 1)  # one token per 1000 s
    assert b.acquire()
    assert b.acquire(timeout=0.01) is False


def test_threads_take_exactly_what_accrued() -> None:
    clock = FakeClock()
    b = TokenBucket(1000.0, 1000, clock=clock)
    taken = [0] * 4
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait()
        for _ in range(2000):
            if b.try_acquire():
                taken[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 1000


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "text"),
    [
        ((0,), {}, ValueError, "rate must be"),
        ((-1.5,), {}, ValueError, "rate must be"),
        ((math.nan,), {}, ValueError, "rate must be"),
        (("10",), {}, TypeError, "rate must be a number"),
        ((True,), {}, TypeError, "rate must be a number"),
        ((10.0, 0.5), {}, ValueError, "burst must be >= 1"),
        ((10.0, math.inf), {}, ValueError, "burst must be a finite"),
        ((10.0, -3), {}, ValueError, "burst"),
        ((10.0,), {"clock": 5}, TypeError, "clock must be callable"),
    ],
)
def test_bad_construction(args: tuple, kwargs: dict, exc: type[Exception], text: str) -> None:
    with pytest.raises(exc, match=text):
        TokenBucket(*args, **kwargs)


def test_bad_calls_name_the_argument() -> None:
    b = TokenBucket(10.0, 5)
    with pytest.raises(ValueError, match="n must be"):
        b.try_acquire(0)
    with pytest.raises(ValueError, match="n must be"):
        b.wait_time(-1)
    with pytest.raises(TypeError, match="n must be a number"):
        b.try_acquire("1")
    with pytest.raises(ValueError, match="more than the bucket holds"):
        b.acquire(6)
    with pytest.raises(ValueError, match="timeout"):
        b.acquire(1, timeout=-1)
    with pytest.raises(ValueError, match="rate must be"):
        b.rate = 0
    with pytest.raises(TypeError, match="clock"):
        TokenBucket(1.0, clock=lambda: "x")  # type: ignore[arg-type,return-value]
