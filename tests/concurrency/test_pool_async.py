"""ConsumerPool in asyncio mode: tasks on the running loop handle every message once (coroutine,
sync and batch handlers), heartbeats keep long handlers' leases, astop finishes or releases
in-flight work (cancelling what outlives its timeout), a handler's KeyboardInterrupt /
SystemExit stops the pool and ``await_stopped`` re-raises it, topic sources keep per-key order.

Each test runs its own event loop (``asyncio.run``); waits poll a condition with a generous
liveness deadline, never a fixed time.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

import pytest
from threads import LIVENESS

from fastq.errors import Empty
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

FAST = RetryPolicy(max_attempts=5, backoff="constant", base=0.001, jitter="none")


async def until(predicate: Callable[[], bool], what: str, timeout: float = LIVENESS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.002)


def take_all(q: Queue) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            out.extend(q.get_many(1000, timeout=0))
        except Empty:
            return out


def check_accounting(q: Queue, n: int, handled: list[int]) -> None:
    """Each message is either acked exactly once (handled) or still in the queue, untried."""
    rest = take_all(q)
    left = [d.message.payload for d in rest]
    assert len(handled) == len(set(handled)), "a message was handled twice"
    assert set(handled).isdisjoint(left), "a handled message is still in the queue"
    assert sorted(handled + left) == list(range(n)), "a message was lost"
    assert all(d.attempt == 1 for d in rest), "a released message used an attempt"
    assert q.statistics().acked_total == len(handled)
    assert q.statistics().redelivered_total == 0
    for d in rest:
        d.release()


# ---- happy path ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_every_message_handled_once(kind: str) -> None:
    n = 20_000
    q = Queue("ahappy", maxsize=None)
    seen = collections.Counter[int]()

    async def ahandler(m: Any) -> None:
        seen[m.payload] += 1

    def shandler(m: Any) -> None:
        seen[m.payload] += 1

    async def main() -> ConsumerPool:
        q.put_many(range(n))
        pool = ConsumerPool(q, ahandler if kind == "coroutine" else shandler, mode="asyncio")
        async with pool:
            assert pool.state == "running"
            await until(lambda: q.statistics().acked_total == n, "all acked", timeout=60)
        assert pool.state == "stopped"
        return pool

    pool = asyncio.run(main())
    assert len(seen) == n
    assert set(seen.values()) == {1}
    s = q.statistics()
    assert (s.ready, s.in_flight, s.acked_total) == (0, 0, n)
    ps = pool.statistics()
    assert (ps.processed, ps.failed, ps.mode) == (n, 0, "asyncio")


def test_handlers_run_concurrently_on_the_loop() -> None:
    q = Queue("aconc")
    both = asyncio.Event
    peak = 0
    active = 0

    async def main() -> None:
        nonlocal peak
        overlap = both()

        async def handler(m: Any) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            if active >= 3:
                overlap.set()
            await asyncio.wait_for(overlap.wait(), LIVENESS)
            active -= 1

        q.put_many(range(30))
        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=3, prefetch=1)
        await pool.astart()
        await until(lambda: q.statistics().acked_total == 30, "all acked")
        assert await pool.astop(timeout=LIVENESS)

    asyncio.run(main())
    assert peak == 3


def test_batch_handler_gets_lists() -> None:
    n = 3000
    q = Queue("abatch", maxsize=None)
    sizes: list[int] = []
    got: list[int] = []

    async def handler(ms: Any) -> None:
        assert isinstance(ms, list)
        sizes.append(len(ms))
        got.extend(m.payload for m in ms)

    async def main() -> None:
        q.put_many(range(n))
        async with ConsumerPool(q, handler, mode="asyncio", batch_size=10, concurrency=2):
            await until(lambda: q.statistics().acked_total == n, "all acked", timeout=60)

    asyncio.run(main())
    assert sorted(got) == list(range(n))
    assert min(sizes) >= 1
    assert max(sizes) <= 10


def test_retries_in_asyncio_mode() -> None:
    q = Queue("aretry", max_deliveries=5)
    calls = collections.Counter[int]()

    async def handler(m: Any) -> None:
        calls[m.payload] += 1
        if calls[m.payload] == 1 and m.payload % 2:
            raise ConnectionError("first attempt of odd messages")

    async def main() -> ConsumerPool:
        q.put_many(range(20))
        pool = ConsumerPool(q, handler, mode="asyncio", retry=FAST)
        async with pool:
            await until(lambda: q.statistics().acked_total == 20, "all acked")
        return pool

    pool = asyncio.run(main())
    assert {k: v for k, v in calls.items() if v > 1} == dict.fromkeys(range(1, 20, 2), 2)
    assert pool.statistics().retried == 10


# ---- heartbeats ------------------------------------------------------------------------------


def test_heartbeats_keep_long_handlers_leases() -> None:
    q = Queue("ahb", visibility_timeout=0.3)
    calls = collections.Counter[int]()

    async def main() -> ConsumerPool:
        release = asyncio.Event()

        async def handler(m: Any) -> None:
            calls[m.payload] += 1
            await asyncio.wait_for(release.wait(), LIVENESS)

        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=8, prefetch=1)
        await pool.astart()
        await until(lambda: pool.statistics().workers == 8, "8 tasks")
        for i in range(7):
            q.put(i)
            await asyncio.sleep(0.04)  # spreads the start times over the supervisor period
        await until(lambda: q.statistics().in_flight == 7, "all 7 in flight")
        t0 = time.monotonic()
        await until(lambda: time.monotonic() - t0 > 1.0, "the handlers ran 1 s (3 leases)")
        release.set()
        await until(lambda: q.statistics().acked_total == 7, "all acked")
        assert await pool.astop(timeout=LIVENESS)
        return pool

    pool = asyncio.run(main())
    assert dict(calls) == dict.fromkeys(range(7), 1), "a lease ran out: handled twice"
    assert q.statistics().lease_expiries == 0
    assert pool.statistics().heartbeats > 0


# ---- stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize("graceful", [True, False])
def test_astop_with_handlers_in_flight(graceful: bool) -> None:
    n = 40
    q = Queue("astop")
    started: list[int] = []
    finished: list[int] = []

    async def main() -> ConsumerPool:
        gate = asyncio.Event()

        async def handler(m: Any) -> None:
            started.append(m.payload)
            await asyncio.wait_for(gate.wait(), LIVENESS)
            finished.append(m.payload)

        q.put_many(range(n))
        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=2, prefetch=5)
        await pool.astart()
        await until(lambda: len(started) == 2, "2 handlers in flight")
        stopping = asyncio.ensure_future(pool.astop(graceful=graceful, timeout=LIVENESS))
        await until(lambda: pool.state == "stopping", "stopping")
        assert q.statistics().in_flight == 10
        gate.set()
        assert await stopping is True
        return pool

    pool = asyncio.run(main())
    assert pool.state == "stopped"
    assert len(started) == 2
    assert sorted(finished) == sorted(started)
    assert q.statistics().released_total == 8
    assert pool.statistics().released == 8
    check_accounting(q, n, finished)


def test_astop_timeout_cancels_and_releases() -> None:
    n = 10
    q = Queue("astopt", max_deliveries=1)
    started: list[int] = []
    cancelled: list[int] = []

    async def handler(m: Any) -> None:
        started.append(m.payload)
        try:
            await asyncio.sleep(LIVENESS * 10)  # a handler that never finishes in time
        except asyncio.CancelledError:
            cancelled.append(m.payload)
            raise

    async def main() -> tuple[ConsumerPool, bool]:
        q.put_many(range(n))
        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=1, prefetch=3)
        await pool.astart()
        await until(lambda: len(started) == 1, "a handler in flight")
        ok = await pool.astop(timeout=0.2)
        return pool, ok

    pool, ok = asyncio.run(main())
    assert ok is False
    assert pool.state == "stopped"
    assert started == cancelled == [0]
    assert q.statistics().released_total == 3  # the cancelled message and the rest of the batch
    assert len(q.dead_letter) == 0  # type: ignore[arg-type]
    check_accounting(q, n, [])


def test_stops_by_itself_once_a_closed_queue_is_drained() -> None:
    q = Queue("adrain")
    handled: list[int] = []

    async def handler(m: Any) -> None:
        handled.append(m.payload)

    async def main() -> ConsumerPool:
        q.put_many(range(50))
        q.close()
        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=2)
        await pool.astart()
        await asyncio.wait_for(pool.await_stopped(), LIVENESS)
        await until(lambda: pool.state == "stopped", "stopped")
        assert await pool.astop() is True
        return pool

    pool = asyncio.run(main())
    assert sorted(handled) == list(range(50))
    assert pool.state == "stopped"
    assert pool.wait(0) is True


class StubLimiter:
    """A limiter the test moves by hand."""

    def __init__(self, limit: int) -> None:
        self.value = limit
        self.min = 1
        self.max = 8

    @property
    def limit(self) -> int:
        return self.value

    def on_sample(self, latency: float, *, inflight: int, error: bool = False) -> None:
        pass

    def on_cpu(self, utilization: float) -> None:
        pass

    def statistics(self) -> Any:
        raise NotImplementedError


def test_stops_by_itself_with_parked_tasks() -> None:
    """Tasks parked above a limit that fell must not keep a drained pool alive."""
    q = Queue("adrain2")
    limiter = StubLimiter(4)

    async def handler(m: Any) -> None:
        pass

    async def main() -> ConsumerPool:
        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=limiter)  # type: ignore[arg-type]
        await pool.astart()
        await until(lambda: pool.statistics().workers == 4, "4 tasks")
        limiter.value = 1  # tasks 1..3 park once their current poll (0.1 s) ends:
        await asyncio.sleep(0.5)  # no observable for "parked"; a bound, not a sync point
        q.put_many(range(10))
        q.close()
        await until(lambda: pool.state == "stopped", "the pool stops by itself")
        await pool.await_stopped()
        return pool

    pool = asyncio.run(main())
    assert q.statistics().acked_total == 10
    assert pool.state == "stopped"


# ---- BaseException ---------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_base_exception_stops_the_pool_and_keeps_the_message(
    exc_type: type[BaseException], kind: str
) -> None:
    n = 10
    q = Queue("ainterrupt", max_deliveries=1)
    handled: list[int] = []

    def body(m: Any) -> None:
        if m.payload == 2:
            raise exc_type()
        handled.append(m.payload)

    async def ahandler(m: Any) -> None:
        await asyncio.sleep(0)
        body(m)

    async def main() -> ConsumerPool:
        q.put_many(range(n))
        pool = ConsumerPool(
            q, ahandler if kind == "coroutine" else body, mode="asyncio", concurrency=1, prefetch=5
        )
        await pool.astart()
        await until(lambda: pool.state == "stopped", "the pool stops by itself")
        with pytest.raises(exc_type):
            await pool.await_stopped()  # in this task: wait_for's inner task would re-raise it
        return pool

    pool = asyncio.run(main())
    assert isinstance(pool.error, exc_type)
    assert handled == [0, 1]
    assert len(q.dead_letter) == 0  # type: ignore[arg-type]
    assert pool.statistics().released == 3
    check_accounting(q, n, handled)
    with pytest.raises(exc_type):
        pool.wait(0)


# ---- topic sources ---------------------------------------------------------------------------


def test_topic_order_per_key_in_asyncio_mode() -> None:
    keys = [f"k{i}" for i in range(8)]
    per_key = 100
    topic = Topic("aorders", partitions=4)
    for seq in range(per_key):
        for k in keys:
            topic.publish((k, seq), key=k)
    order: dict[str, list[int]] = collections.defaultdict(list)
    attempts = collections.Counter[tuple[str, int]]()

    async def handler(m: Any) -> None:
        k, seq = m.payload
        attempts[(k, seq)] += 1
        await asyncio.sleep(0)
        if seq % 9 == 4 and attempts[(k, seq)] == 1:
            raise ConnectionError("fails once: retried in place")
        order[k].append(seq)

    async def main() -> ConsumerPool:
        pool = ConsumerPool(topic, handler, mode="asyncio", concurrency=4, retry=FAST, group="g")
        async with pool:
            await until(
                lambda: sum(map(len, order.values())) == len(keys) * per_key,
                "all handled",
                timeout=60,
            )
        return pool

    pool = asyncio.run(main())
    for k in keys:
        assert order[k] == list(range(per_key)), f"key {k} out of order or repeated"
    assert topic.committed("g") == topic.end_offsets()
    assert pool.statistics().retried == sum(1 for v in attempts.values() if v > 1)
    assert pool.dead_letter is not None
    assert len(pool.dead_letter) == 0
