"""Pipelines (issue 6): producer -> router -> 4 lanes -> consumer pools -> ack, fastq next to
the same pipeline written by hand on the standard library, and the adaptive consumer pool
against fixed pools in front of a downstream whose latency rises past a knee.

e2e_threads    N messages, sent one at a time from the main thread, handled by a no-op
               handler (marks and counts the message), acked; the round ends when all N are
               acked. Lanes: critical (priority "critical"), long ("report.*"), compute
               ("image.*"), standard (the rest); a quarter of the messages each.
    fastq          Producer(router).send(i, type=t, priority=p); Router over 4
                   fastq.Queue(maxsize=None); ConsumerPool(lane, handler, mode="threads") per
                   lane: the defaults (AdaptiveConcurrency(min=1, max=64), RetryPolicy())
    fastq fixed 2  the same with concurrency=2 per lane
    fastq send_many  the same pipeline fed in batches: the producer loop builds
                   fastq.Message(i, type=t, priority=p) objects and calls
                   producer.send_many(batch) per 1,000 (the router routes, stamps keys and
                   adds its headers in one native pass per lane, then one put_many per lane)
    hand-written   queue.Queue x 4, an if/elif router, a ThreadPoolExecutor per lane with
                   --bench-pipeline-workers worker loops (get; handler with up to 5 attempts
                   and backoff sleeps; task_done); the round ends when every lane's join()
                   returns
e2e_asyncio    the same on one event loop, ``async def`` handlers
    fastq          ConsumerPool(mode="asyncio") per lane; the producer coroutine
                   ``await producer.asend(...)`` per message
    fastq send     the same, the coroutine calling ``producer.send(...)`` (never awaits)
    fastq send_many  the coroutine building Messages and calling ``producer.send_many`` per
                   1,000, yielding to the loop between batches
    hand-written   asyncio.Queue x 4, --bench-pipeline-workers worker tasks per lane, manual
                   retry with ``await asyncio.sleep`` backoff, ``await q.put(...)`` per message
metrics        the e2e_threads "fastq" pipeline (one send per message) with the pools'
               statistics on (ConsumerPool(metrics=True), the default: every handler call
               and every message's put-to-ack time recorded in native histograms) and off
               (metrics=False); the counters every object keeps are in both
    metrics on / metrics off
adaptive       a backlog of --bench-pipeline-adaptive-items messages lands at once (put_many)
               on a fastq.Queue whose ConsumerPool (threads, started in setup) calls a
               downstream with a knee at 8 concurrent calls (a call finding k running sleeps
               2 ms * max(1, k / 8)); the round ends when all were handled and acked.
    fastq gradient / fastq aimd   AdaptiveConcurrency(min=1, max=64, algorithm=...)
    fixed 64 (max) / fixed 8 (knee)   concurrency=64 / concurrency=8 (8 is the best)
               Each round records the handlers' p50/p99 latency and, from a sampler thread
               (every 5 ms), the mean pool.limit and in-flight calls over the round's second
               half.

Every round builds a fresh pipeline in setup (untimed: lanes, router, producer, pools
started, worker threads up) and stops it in teardown (untimed), which checks that every
message was handled exactly once and acked, and that no lane holds anything. Before the
timing, the fastq router and the hand-written one are checked to send each kind of message to
the same lane. Each timed round also records the process's CPU time (all threads).

Select these with ``-k pipeline``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import Settings, measure
from pipeline_peers import (
    KINDS,
    LANES,
    AdaptiveConcurrency,
    AdaptiveRound,
    FastqAsyncio,
    FastqThreads,
    HandAsyncio,
    HandThreads,
    _router,
    hand_route,
    lane_of,
    workload,
)

import fastq

TABLE = "pipeline"
BATCH = 1_000  # messages per send_many in the "send_many" rows


def _check_routing() -> None:
    """fastq's router and the hand-written one agree on every kind of message."""
    queues = {name: fastq.Queue(f"check-{name}", maxsize=None) for name in LANES}
    router = _router(queues)
    for kind, priority in KINDS:
        want = lane_of(kind, priority)
        got = router.explain(0, type=kind, priority=priority).lane
        hand = hand_route({n: n for n in LANES}, kind, priority)
        if not got == hand == want:
            raise AssertionError(f"{kind}/{priority}: fastq -> {got}, hand -> {hand}, want {want}")
    for q in queues.values():
        q.close()


def _finish_info(benchmark: Any, per_round: dict[str, list[float]]) -> None:
    """Medians of what the rounds recorded, into extra_info (report.py reads them)."""
    for key, values in per_round.items():
        clean = [v for v in values if v == v]  # drop NaN
        if clean:
            benchmark.extra_info[key] = statistics.median(clean)


def _e2e(
    benchmark: Any,
    settings: Settings,
    aio_loop: Any,
    *,
    scenario: str,
    impl: str,
    make: Callable[[int], Any],
) -> None:
    _check_routing()
    n = settings.pipeline_items
    work = workload(n)
    what = f"{scenario}/{impl}"
    per_round: dict[str, list[float]] = {"cpu_s": [], "limit": []}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (make(n),), {}

    def run(p: Any) -> None:
        c0 = time.process_time()
        p.run(work)
        per_round["cpu_s"].append(time.process_time() - c0)
        if hasattr(p, "limits"):
            per_round["limit"].append(statistics.fmean(p.limits()))

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=n,
        target=run,
        setup=setup,
        teardown=lambda p: p.close(),
        extra_info={"table": TABLE, "lanes": len(LANES), "what": what},
    )
    _finish_info(benchmark, per_round)


#: e2e implementations: impl -> factory(settings, loop) -> (n -> pipeline)
THREADS: dict[str, Callable[[Settings, Any], Callable[[int], Any]]] = {
    "fastq": lambda s, loop: lambda n: FastqThreads(n, None, "e2e_threads/fastq"),
    "fastq fixed 2": lambda s, loop: lambda n: FastqThreads(n, 2, "e2e_threads/fastq fixed 2"),
    "fastq send_many": lambda s, loop: (
        lambda n: FastqThreads(n, None, "e2e_threads/fastq send_many", batch=BATCH)
    ),
    "hand-written": lambda s, loop: (
        lambda n: HandThreads(n, s.pipeline_workers, "e2e_threads/hand-written")
    ),
}
METRICS: dict[str, Callable[[Settings, Any], Callable[[int], Any]]] = {
    "metrics on": lambda s, loop: lambda n: FastqThreads(n, None, "metrics/on", metrics=True),
    "metrics off": lambda s, loop: (
        lambda n: FastqThreads(n, None, "metrics/off", metrics=False)
    ),
}
ASYNCIO: dict[str, Callable[[Settings, Any], Callable[[int], Any]]] = {
    "fastq": lambda s, loop: lambda n: FastqAsyncio(n, loop, False, "e2e_asyncio/fastq"),
    "fastq send": lambda s, loop: lambda n: FastqAsyncio(n, loop, True, "e2e_asyncio/fastq send"),
    "fastq send_many": lambda s, loop: (
        lambda n: FastqAsyncio(n, loop, False, "e2e_asyncio/fastq send_many", batch=BATCH)
    ),
    "hand-written": lambda s, loop: (
        lambda n: HandAsyncio(n, loop, s.pipeline_workers, "e2e_asyncio/hand-written")
    ),
}
ADAPTIVE: dict[str, Callable[[], Any]] = {
    "fastq gradient": lambda: AdaptiveConcurrency(min=1, max=64, algorithm="gradient"),
    "fastq aimd": lambda: AdaptiveConcurrency(min=1, max=64, algorithm="aimd"),
    "fixed 64 (max)": lambda: 64,
    "fixed 8 (knee)": lambda: 8,
}


def _params() -> list[Any]:
    out = []
    for scenario, impls in (
        ("e2e_threads", THREADS),
        ("e2e_asyncio", ASYNCIO),
        ("metrics", METRICS),
    ):
        out += [
            pytest.param(scenario, impl, id=f"{scenario}-{impl.replace(' ', '-')}")
            for impl in impls
        ]
    out += [
        pytest.param("adaptive", impl, id=f"adaptive-{impl.split(' (')[0].replace(' ', '-')}")
        for impl in ADAPTIVE
    ]
    return out


def _adaptive(benchmark: Any, settings: Settings, impl: str) -> None:
    n = settings.pipeline_adaptive_items
    backlog = list(range(n))
    what = f"adaptive/{impl}"
    per_round: dict[str, list[float]] = {
        "cpu_s": [],
        "p99_s": [],
        "p50_s": [],
        "tail_limit": [],
        "tail_inflight": [],
    }

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (AdaptiveRound(n, ADAPTIVE[impl](), what),), {}

    def run(r: AdaptiveRound) -> None:
        c0 = time.process_time()
        r.run(backlog)
        per_round["cpu_s"].append(time.process_time() - c0)

    def teardown(r: AdaptiveRound) -> None:
        for key, value in r.close().items():
            per_round[key].append(value)

    measure(
        benchmark,
        settings,
        scenario="adaptive",
        impl=impl,
        items=n,
        target=run,
        setup=setup,
        teardown=teardown,
        extra_info={"table": TABLE, "knee": 8, "base_latency_s": 0.002, "what": what},
    )
    _finish_info(benchmark, per_round)


@pytest.mark.parametrize(("scenario", "impl"), _params())
def test_pipeline(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    scenario: str,
    impl: str,
) -> None:
    if scenario == "adaptive":
        _adaptive(benchmark, settings, impl)
        return
    table = {"e2e_threads": THREADS, "e2e_asyncio": ASYNCIO, "metrics": METRICS}[scenario]
    _e2e(
        benchmark,
        settings,
        aio_loop,
        scenario=scenario,
        impl=impl,
        make=table[impl](settings, aio_loop),
    )
