"""Concurrency limiters: validation, the update rules on hand-fed samples, thread safety, and
convergence against a simulated downstream with a knee (tests/sim_downstream.py: a FakeClock
discrete-event simulation, no wall-clock timing)."""

from __future__ import annotations

import random
import threading

import pytest
from sim_downstream import simulate

from fastq.pipeline.concurrency import (
    AdaptiveConcurrency,
    FixedConcurrency,
    Limiter,
    as_limiter,
)

ALGORITHMS = ("aimd", "gradient")


def feed_round(
    limiter: AdaptiveConcurrency,
    latency: float,
    *,
    inflight: int | None = None,
    error: bool = False,
    rounds: int = 1,
) -> None:
    """Feed whole rounds of identical samples (a round is max(16, limit) samples here)."""
    for _ in range(rounds):
        start = limiter.statistics().rounds
        while limiter.statistics().rounds == start:
            n = limiter.limit if inflight is None else inflight
            limiter.on_sample(latency, inflight=n, error=error)


# -- construction -------------------------------------------------------------------------------


def test_defaults() -> None:
    limiter = AdaptiveConcurrency()
    assert (limiter.min, limiter.max, limiter.limit, limiter.algorithm) == (1, 64, 1, "gradient")
    assert AdaptiveConcurrency(2, 10, initial=5).limit == 5
    stats = limiter.statistics()
    assert (stats.algorithm, stats.limit, stats.samples, stats.noload_rtt) == (
        "gradient",
        1,
        0,
        None,
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, 4), {}, ValueError, "min must be >= 1, got 0"),
        ((8, 4), {}, ValueError, "min must be <= max, got min=8 > max=4"),
        ((1, True), {}, TypeError, "max must be an int"),
        ((1.0, 4), {}, TypeError, "min must be an int"),
        ((), {"algorithm": "vegas"}, ValueError, "algorithm must be one of aimd, gradient"),
        ((1, 8), {"initial": 9}, ValueError, r"initial must be in \[min, max\]"),
        ((), {"backoff_ratio": 0.3}, ValueError, "backoff_ratio must be in"),
        ((), {"backoff_ratio": 1.5}, ValueError, "backoff_ratio must be in"),
        ((), {"tolerance": 0.9}, ValueError, "tolerance must be in"),
        ((), {"smoothing": 0}, ValueError, "smoothing must be in"),
        ((), {"queue_size": -1}, ValueError, "queue_size must be in"),
        ((), {"timeout": 0}, ValueError, "timeout must be in"),
        ((), {"timeout": float("nan")}, ValueError, "timeout must be in"),
        ((), {"round_samples": 0}, ValueError, "round_samples must be >= 1"),
        ((), {"probe_interval": 0}, ValueError, "probe_interval must be >= 1"),
    ],
)
def test_bad_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AdaptiveConcurrency(*args, **kwargs)  # type: ignore[arg-type]


def test_as_limiter() -> None:
    fixed = as_limiter(8)
    assert isinstance(fixed, FixedConcurrency)
    assert (fixed.limit, fixed.min, fixed.max) == (8, 8, 8)
    adaptive = AdaptiveConcurrency()
    assert as_limiter(adaptive) is adaptive
    assert isinstance(adaptive, Limiter)
    assert isinstance(AdaptiveConcurrency.fixed(3), FixedConcurrency)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        as_limiter(0)
    with pytest.raises(TypeError, match="concurrency must be an int or a limiter"):
        as_limiter(True)
    with pytest.raises(TypeError, match="concurrency must be an int or a limiter"):
        as_limiter(2.5)


def test_fixed_concurrency_counts_samples() -> None:
    fixed = FixedConcurrency(4)
    fixed.on_sample(0.5, inflight=4)
    fixed.on_sample(0.7, inflight=4, error=True)
    fixed.on_cpu(1.0)
    stats = fixed.statistics()
    assert (stats.algorithm, stats.limit, stats.samples, stats.errors) == ("fixed", 4, 2, 1)
    assert stats.last_rtt == 0.7
    assert fixed.limit == 4


def test_on_sample_rejects_nonsense_latency() -> None:
    with pytest.raises(ValueError, match="latency must be >= 0"):
        AdaptiveConcurrency().on_sample(float("nan"), inflight=1)
    with pytest.raises(ValueError, match="latency must be >= 0"):
        AdaptiveConcurrency().on_sample(-1.0, inflight=1)


# -- the update rules on hand-fed samples -------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_slow_start_doubles_while_latency_is_flat(algorithm: str) -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm)  # type: ignore[arg-type]
    seen = [limiter.limit]
    for _ in range(7):
        feed_round(limiter, 0.010)
        seen.append(limiter.limit)
    assert seen[:7] == [1, 2, 4, 8, 16, 32, 64]
    assert limiter.limit == 64  # capped at max
    assert limiter.statistics().noload_rtt == pytest.approx(0.010)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_app_limited_does_not_grow(algorithm: str) -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm, initial=16)  # type: ignore[arg-type]
    feed_round(limiter, 0.010, inflight=3, rounds=5)  # never more than 3 of 16 in use
    assert limiter.limit == 16


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rising_latency_shrinks_the_limit(algorithm: str) -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm, initial=32)  # type: ignore[arg-type]
    feed_round(limiter, 0.010)  # learns the no-load latency at 32
    before = limiter.limit
    feed_round(limiter, 0.030, rounds=10)  # 3x the no-load latency
    assert limiter.limit < before
    if algorithm == "aimd":
        assert limiter.limit <= int(before * 0.9**10) + 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_errors_multiply_by_backoff_ratio(algorithm: str) -> None:
    limiter = AdaptiveConcurrency(
        1,
        100,
        algorithm=algorithm,
        initial=50,
        backoff_ratio=0.5,  # type: ignore[arg-type]
    )
    feed_round(limiter, 0.010, error=True)
    assert limiter.limit == 25
    feed_round(limiter, 0.010, error=True)
    assert limiter.limit == 12
    assert limiter.statistics().errors >= 16


def test_aimd_timeout_counts_as_congestion() -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm="aimd", initial=20, timeout=0.005)
    feed_round(limiter, 0.010, rounds=2)  # flat latency, but above the timeout
    assert limiter.limit < 20


def test_aimd_additive_increase_after_slow_start() -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm="aimd", initial=20)
    feed_round(limiter, 0.010)
    assert limiter.limit == 40  # slow start: doubles while latency is flat
    feed_round(limiter, 0.020)  # congestion: ends slow start, x0.9
    assert limiter.limit == 36
    feed_round(limiter, 0.010, rounds=3)
    assert limiter.limit == 39  # +1 per round


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hot_cpu_stops_growth_and_shrinks_with_latency(algorithm: str) -> None:
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm, initial=8)  # type: ignore[arg-type]
    limiter.on_cpu(0.95)
    feed_round(limiter, 0.010, rounds=5)
    assert limiter.limit == 8  # flat latency but no CPU headroom: no growth
    feed_round(limiter, 0.013, rounds=3)  # latency also rising
    assert limiter.limit < 8
    limiter.on_cpu(0.2)
    assert limiter.statistics().cpu == 0.2
    with pytest.raises(ValueError, match="utilization must be >= 0"):
        limiter.on_cpu(float("nan"))
    with pytest.raises(TypeError, match="utilization must be a number"):
        limiter.on_cpu(None)  # type: ignore[arg-type]
    limiter.on_cpu(3.0)
    assert limiter.statistics().cpu == 1.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_limit_always_within_bounds(algorithm: str, rng: random.Random) -> None:
    limiter = AdaptiveConcurrency(3, 17, algorithm=algorithm)  # type: ignore[arg-type]
    for _ in range(20_000):
        limiter.on_sample(
            rng.expovariate(100.0) * rng.choice((1, 1, 5)),
            inflight=rng.randint(1, 20),
            error=rng.random() < 0.02,
        )
        assert 3 <= limiter.limit <= 17, rng


def test_probe_halves_the_limit_for_one_round() -> None:
    limiter = AdaptiveConcurrency(1, 32, algorithm="gradient", initial=32, probe_interval=3)
    limits = []
    for _ in range(8):
        feed_round(limiter, 0.010)
        limits.append(limiter.limit)
    assert limits == [32, 32, 16, 32, 32, 32, 16, 32]
    # calls that started before the probe (more than 16 in flight) do not count in it
    feed_round(limiter, 0.010, rounds=3)
    assert limiter.limit == 16
    limiter.on_sample(1.0, inflight=32)  # a slow straggler from before the probe
    feed_round(limiter, 0.010)
    assert limiter.statistics().noload_rtt == pytest.approx(0.010)


def test_overshooting_inflight_does_not_freeze_the_limiter() -> None:
    """A caller that always reports more in flight than the (probe) limit still gets rounds
    evaluated: skipping stragglers is bounded."""
    limiter = AdaptiveConcurrency(1, 32, initial=32, probe_interval=1)
    feed_round(limiter, 0.010)
    assert limiter.limit == 16  # probing
    rounds = limiter.statistics().rounds
    for _ in range(1000):
        limiter.on_sample(0.010, inflight=32)
    assert limiter.statistics().rounds > rounds


def test_concurrent_samples_are_all_counted() -> None:
    limiter = AdaptiveConcurrency(1, 64)
    threads, per_thread = 8, 5000
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            limiter.on_sample(0.01 + 0.001 * (n % 5), inflight=limiter.limit, error=n % 97 == i)
            assert 1 <= limiter.limit <= 64

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats = limiter.statistics()
    assert stats.samples == threads * per_thread
    assert stats.errors == sum(1 for i in range(threads) for n in range(per_thread) if n % 97 == i)


# -- convergence against a simulated downstream with a knee -------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("knee", [4, 8, 16])
@pytest.mark.parametrize("base", [0.001, 0.010, 0.100])
def test_adaptive_concurrency_converges_to_the_knee(
    algorithm: str, knee: int, base: float, rng: random.Random
) -> None:
    """Latency is flat up to `knee` requests in flight and grows past it, while throughput
    plateaus: the best concurrency is the knee. Over the second half of the run the limit
    averages within 20% of it, throughput stays near the plateau, and p99 latency beats a
    fixed pool of 64."""
    seed = rng.randrange(2**32)
    seconds = 3000 * base  # ~3000 service times: scale-free, so every base gets the same work
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm)  # type: ignore[arg-type]
    result = simulate(limiter, knee, base, seconds, seed)
    fixed = simulate(FixedConcurrency(64), knee, base, seconds, seed)
    print(
        f"seed={seed} {algorithm} knee={knee} base={base}: mean limit {result.mean_limit_tail:.2f}"
        f" throughput {result.throughput * base / knee:.2f} of the plateau,"
        f" p99 {result.p99 / base:.2f} vs fixed-64 {fixed.p99 / base:.2f} (x base)"
    )
    assert abs(result.mean_limit_tail - knee) <= 0.2 * knee, (seed, result.mean_limit_tail)
    assert result.throughput >= 0.85 * knee / base, (seed, result.throughput)
    assert result.p99 < fixed.p99, (seed, result.p99, fixed.p99)
    assert fixed.throughput <= 1.05 * knee / base  # past the knee, concurrency buys nothing


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_adaptive_concurrency_follows_a_knee_that_moves(algorithm: str) -> None:
    """Run against knee 16, then hand the same limiter a downstream with knee 4: it comes
    down (the next probes re-learn the no-load latency)."""
    limiter = AdaptiveConcurrency(1, 64, algorithm=algorithm)  # type: ignore[arg-type]
    first = simulate(limiter, 16, 0.01, 30.0, 1)
    assert abs(first.mean_limit_tail - 16) <= 0.2 * 16
    second = simulate(limiter, 4, 0.01, 60.0, 2)
    assert abs(second.mean_limit_tail - 4) <= 0.2 * 4, second.mean_limit_tail
