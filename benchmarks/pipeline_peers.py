"""The pipelines of bench_pipeline.py (issue 6): fastq's (Producer -> Router -> 4 lanes ->
ConsumerPool per lane -> ack) and the same pipeline written by hand on the standard library,
in threads and in asyncio, plus the downstream with a concurrency knee of the ``adaptive``
scenario.

Each pipeline class is built for one benchmark round: ``__init__`` (the round's setup,
untimed) makes the lanes and starts the consumers, ``run(work)`` (timed) sends every message
one at a time and returns once all of them were handled and acknowledged, ``close()``
(teardown, untimed) stops the consumers and checks the work: every message handled exactly
once, nothing left in a lane.

The handler is the same for every implementation: it marks the message's payload (a distinct
int) in a ``bytearray`` and counts it with ``next(itertools.count())`` (one C call, atomic
under the GIL); the call that reaches N sets an Event. That is the "no-op" handler: a few
hundred nanoseconds of bookkeeping that the exactly-once check needs.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fastq

try:  # the names the lead re-exports from fastq once issue 6 lands; the modules until then
    from fastq import AdaptiveConcurrency as AdaptiveConcurrency  # re-exported
    from fastq import ConsumerPool, Producer, RetryPolicy, Router
except ImportError:  # pragma: no cover - before fastq/__init__.py exports them
    from fastq.pipeline.concurrency import AdaptiveConcurrency as AdaptiveConcurrency
    from fastq.pipeline.pool import ConsumerPool
    from fastq.pipeline.producer import Producer
    from fastq.pipeline.retry import RetryPolicy
    from fastq.pipeline.router import Router

#: the lanes, in the order the router's rules name them (the last is the default)
LANES = ("critical", "long", "compute", "standard")
#: (type, priority) of the messages, cycled: one quarter to each lane
KINDS: tuple[tuple[str, str], ...] = (
    ("order.created", "normal"),  # -> standard (default)
    ("report.daily", "normal"),  # -> long      (route_type("report.*"))
    ("image.resize", "high"),  # -> compute   (route_type("image.*"))
    ("order.paid", "critical"),  # -> critical  (route_priority("critical"))
)
#: where KINDS go (the hand-written router must agree: checked before the timing)
EXPECTED_LANE = {"order.created": "standard", "report.daily": "long", "image.resize": "compute"}
#: seconds a round may take before it is declared hung
ROUND_TIMEOUT = 300.0
#: hand-written retry: attempts, then the message is dropped to a dead list
ATTEMPTS = 5
BACKOFF_BASE = 0.1
BACKOFF_CAP = 900.0

Work = list[tuple[int, str, str]]


def workload(n: int) -> Work:
    """n messages: (payload, type, priority), payloads 0..n-1 (distinct), kinds cycled."""
    return [(i, *KINDS[i % len(KINDS)]) for i in range(n)]


def lane_of(kind: str, priority: str) -> str:
    return "critical" if priority == "critical" else EXPECTED_LANE[kind]


class Tally:
    """What every handler does: mark payload i, count, set ``done`` at n. Thread-safe enough:
    a payload is marked by the one consumer that got it; ``next(count)`` is atomic."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = bytearray(n)
        self.count = itertools.count(1)
        self.done = threading.Event()

    def check(self, what: str) -> None:
        handled = sum(self.seen)
        if handled != self.n or self.seen.count(1) != self.n:
            twice = sum(1 for v in self.seen if v > 1)
            never = self.seen.count(0)
            raise AssertionError(
                f"{what}: {handled} handler calls for {self.n} messages "
                f"({never} never handled, {twice} handled more than once)"
            )

    def wait(self, what: str) -> None:
        if not self.done.wait(ROUND_TIMEOUT):
            raise AssertionError(f"{what}: not every message was handled in {ROUND_TIMEOUT} s")


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff, as users write it (AWS's recipe)."""
    return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt))


def _router(lanes: dict[str, Any]) -> Any:
    r = Router(lanes, "standard")
    r.route_priority("critical", "critical")
    r.route_type("report.*", "long")
    r.route_type("image.*", "compute")
    return r


def _settled(queues: dict[str, fastq.Queue], n: int, what: str) -> None:
    """Wait (polling, after the handlers finished) until the lanes acked n messages."""
    deadline = time.monotonic() + ROUND_TIMEOUT
    while True:
        acked = sum(q.statistics().acked_total for q in queues.values())
        if acked >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {acked} of {n} messages acked")
        time.sleep(0.0002)


def _check_lanes(queues: dict[str, fastq.Queue], work_n: int, what: str) -> None:
    put = acked = 0
    for name, q in queues.items():
        s = q.statistics()
        put += s.put_total
        acked += s.acked_total
        if s.ready or s.in_flight or s.delayed or s.dead_lettered or s.redelivered_total:
            raise AssertionError(f"{what}: lane {name} ended with {s}")
    if put != work_n or acked != work_n:
        raise AssertionError(f"{what}: {put} put, {acked} acked, expected {work_n} each")


# ---- fastq ---------------------------------------------------------------------------------


class FastqThreads:
    """Producer(router) -> Router over 4 fastq.Queue -> ConsumerPool(mode="threads") per lane.

    ``concurrency``: None for the pool's default (AdaptiveConcurrency(min=1, max=64)) or an
    int (a fixed pool); ``metrics``: the queues' and pools' latency histograms on (default) or
    off."""

    def __init__(
        self, n: int, concurrency: int | None, what: str, batch: int = 0, metrics: bool = True
    ) -> None:
        self.what = what
        self.batch = batch
        self.tally = tally = Tally(n)
        seen, count, done = tally.seen, tally.count, tally.done

        def handler(m: Any) -> None:
            seen[m.payload] += 1
            if next(count) == n:
                done.set()

        self.queues = {
            name: fastq.Queue(f"bench-{name}", maxsize=None, metrics=metrics) for name in LANES
        }
        self.router = _router(self.queues)
        self.producer = Producer(self.router)
        kw: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
        self.pools = [
            ConsumerPool(
                q, handler, mode="threads", retry=RetryPolicy(), metrics=metrics, **kw
            ).start()
            for q in self.queues.values()
        ]

    def run(self, work: Work) -> None:
        if self.batch:
            send_many = self.producer.send_many
            message = fastq.Message
            b = self.batch
            for start in range(0, len(work), b):
                send_many([message(p, type=k, priority=pr) for p, k, pr in work[start : start + b]])
        else:
            send = self.producer.send
            for payload, kind, priority in work:
                send(payload, type=kind, priority=priority)
        self.tally.wait(self.what)
        _settled(self.queues, len(work), self.what)

    def limits(self) -> list[int]:
        return [p.limit for p in self.pools]

    def close(self, check: bool = True) -> None:
        try:
            for p in self.pools:
                if not p.stop(timeout=30.0):
                    raise AssertionError(f"{self.what}: {p!r} did not stop in 30 s")
            if check:
                self.tally.check(self.what)
                _check_lanes(self.queues, self.tally.n, self.what)
        finally:
            for q in self.queues.values():
                q.close()


class FastqAsyncio:
    """The same with ConsumerPool(mode="asyncio") on one event loop and ``async def``
    handlers; the producer coroutine sends with ``await producer.asend(...)`` (``sync_send``:
    with ``producer.send(...)`` from the coroutine, never awaiting)."""

    def __init__(
        self,
        n: int,
        loop: asyncio.AbstractEventLoop,
        sync_send: bool,
        what: str,
        batch: int = 0,
    ) -> None:
        self.what = what
        self.loop = loop
        self.sync_send = sync_send
        self.batch = batch
        self.tally = tally = Tally(n)
        seen, count, done = tally.seen, tally.count, tally.done

        async def handler(m: Any) -> None:
            seen[m.payload] += 1
            if next(count) == n:
                done.set()

        self.queues = {name: fastq.Queue(f"bench-{name}", maxsize=None) for name in LANES}
        self.router = _router(self.queues)
        self.producer = Producer(self.router)
        self.pools = [
            ConsumerPool(q, handler, mode="asyncio", retry=RetryPolicy())
            for q in self.queues.values()
        ]

        async def start() -> None:
            for p in self.pools:
                await p.astart()

        loop.run_until_complete(start())

    async def _produce(self, work: Work) -> None:
        if self.batch:
            send_many = self.producer.send_many
            message = fastq.Message
            b = self.batch
            for start in range(0, len(work), b):
                send_many([message(p, type=k, priority=pr) for p, k, pr in work[start : start + b]])
                await asyncio.sleep(0)  # let the pools' tasks take what came
        elif self.sync_send:
            send = self.producer.send
            for payload, kind, priority in work:
                send(payload, type=kind, priority=priority)
        else:
            asend = self.producer.asend
            for payload, kind, priority in work:
                await asend(payload, type=kind, priority=priority)
        done = self.tally.done
        while not done.is_set():  # the handlers run on this loop: yield to them
            await asyncio.sleep(0.0005)
        deadline = time.monotonic() + ROUND_TIMEOUT
        while sum(q.statistics().acked_total for q in self.queues.values()) < len(work):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.what}: not every message was acked")
            await asyncio.sleep(0.0002)

    def run(self, work: Work) -> None:
        self.loop.run_until_complete(asyncio.wait_for(self._produce(work), ROUND_TIMEOUT))

    def close(self, check: bool = True) -> None:
        async def stop() -> None:
            for p in self.pools:
                await p.astop(timeout=30.0)

        try:
            self.loop.run_until_complete(stop())
            if check:
                self.tally.check(self.what)
                _check_lanes(self.queues, self.tally.n, self.what)
        finally:
            for q in self.queues.values():
                q.close()


# ---- the same pipelines by hand ----------------------------------------------------------


def hand_route(lanes: dict[str, Any], kind: str, priority: str) -> Any:
    """The router users write: an if/elif chain on the message's fields."""
    if priority == "critical":
        return lanes["critical"]
    if kind.startswith("report."):
        return lanes["long"]
    if kind.startswith("image."):
        return lanes["compute"]
    return lanes["standard"]


class HandThreads:
    """queue.Queue x 4, an if/elif router, a ThreadPoolExecutor per lane whose ``workers``
    tasks loop: get, call the handler with manual retry (up to 5 attempts, full-jitter
    exponential backoff sleeps; a message that fails them all goes to a dead list),
    task_done. The producer puts one ``(payload, type, priority)`` tuple at a time; the round
    ends when every lane's ``join()`` returns (every message task_done)."""

    def __init__(self, n: int, workers: int, what: str) -> None:
        self.what = what
        self.tally = tally = Tally(n)
        seen, count, done = tally.seen, tally.count, tally.done
        self.dead: list[Any] = []
        dead = self.dead

        def handler(msg: tuple[int, str, str]) -> None:
            seen[msg[0]] += 1
            if next(count) == n:
                done.set()

        def consume(q: queue.Queue[Any]) -> None:
            get, task_done = q.get, q.task_done
            while True:
                msg = get()
                if msg is None:
                    task_done()
                    return
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        handler(msg)
                        break
                    except Exception:
                        if attempt == ATTEMPTS:
                            dead.append(msg)
                        else:
                            time.sleep(_backoff(attempt))
                task_done()

        self.workers = workers
        self.lanes: dict[str, queue.Queue[Any]] = {name: queue.Queue() for name in LANES}
        self.pools = [ThreadPoolExecutor(workers, thread_name_prefix=f"hand-{n}") for n in LANES]
        self.futures = [
            pool.submit(consume, q)
            for pool, q in zip(self.pools, self.lanes.values(), strict=True)
            for _ in range(workers)
        ]

    def run(self, work: Work) -> None:
        lanes = self.lanes
        for payload, kind, priority in work:
            hand_route(lanes, kind, priority).put((payload, kind, priority))
        for q in lanes.values():
            q.join()

    def close(self, check: bool = True) -> None:
        for q in self.lanes.values():
            for _ in range(self.workers):
                q.put(None)
        for pool in self.pools:
            pool.shutdown(wait=True)
        for f in self.futures:
            f.result(0)
        if check:
            self.tally.check(self.what)
            if self.dead:
                raise AssertionError(f"{self.what}: {len(self.dead)} messages dead")
            left = {name: q.qsize() for name, q in self.lanes.items() if q.qsize()}
            if left:
                raise AssertionError(f"{self.what}: messages left in lanes {left}")


class HandAsyncio:
    """asyncio.Queue x 4, an if/elif router, ``workers`` worker tasks per lane (get, the
    ``async def`` handler with manual retry and ``await asyncio.sleep`` backoff, task_done);
    the producer coroutine ``await q.put(...)`` one tuple at a time; the round ends when every
    lane's ``await q.join()`` returns."""

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop, workers: int, what: str) -> None:
        self.what = what
        self.loop = loop
        self.tally = tally = Tally(n)
        seen, count, done = tally.seen, tally.count, tally.done
        self.dead: list[Any] = []
        dead = self.dead

        async def handler(msg: tuple[int, str, str]) -> None:
            seen[msg[0]] += 1
            if next(count) == n:
                done.set()

        async def consume(q: asyncio.Queue[Any]) -> None:
            while True:
                msg = await q.get()
                if msg is None:
                    q.task_done()
                    return
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        await handler(msg)
                        break
                    except Exception:
                        if attempt == ATTEMPTS:
                            dead.append(msg)
                        else:
                            await asyncio.sleep(_backoff(attempt))
                q.task_done()

        async def start() -> list[asyncio.Task[None]]:
            self.lanes: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in LANES}
            return [
                asyncio.create_task(consume(q)) for q in self.lanes.values() for _ in range(workers)
            ]

        self.workers = workers
        self.tasks = loop.run_until_complete(start())

    async def _produce(self, work: Work) -> None:
        lanes = self.lanes
        for payload, kind, priority in work:
            await hand_route(lanes, kind, priority).put((payload, kind, priority))
        for q in lanes.values():
            await q.join()

    def run(self, work: Work) -> None:
        self.loop.run_until_complete(asyncio.wait_for(self._produce(work), ROUND_TIMEOUT))

    def close(self, check: bool = True) -> None:
        async def stop() -> None:
            for q in self.lanes.values():
                for _ in range(self.workers):
                    q.put_nowait(None)
            await asyncio.gather(*self.tasks)

        self.loop.run_until_complete(stop())
        if check:
            self.tally.check(self.what)
            if self.dead:
                raise AssertionError(f"{self.what}: {len(self.dead)} messages dead")


# ---- the adaptive-concurrency scenario ---------------------------------------------------

#: the downstream's knee (requests it serves at full speed at once) and its base latency
KNEE = 8
BASE_LATENCY = 0.002
#: how often the sampler thread reads the pool's limit and the downstream's in-flight count
SAMPLE_EVERY = 0.005


class Downstream:
    """A resource whose latency rises past a knee: a call that finds ``k`` calls running
    (itself included) sleeps ``base * max(1, k / knee)``. Throughput is ``k / base`` up to the
    knee and ``knee / base`` past it, so concurrency beyond ``knee`` only adds latency: the
    best concurrency is ``knee`` (tests/sim_downstream.py simulates the same curve as a
    ``knee``-server FIFO queue, with a fake clock). Thread-safe; records every call's
    latency (wall seconds, the handler's own view)."""

    def __init__(self, n: int, knee: int = KNEE, base: float = BASE_LATENCY) -> None:
        self.n = n
        self.knee = knee
        self.base = base
        self.inflight = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.count = itertools.count(1)
        self.done = threading.Event()
        self.seen = bytearray(n)

    def __call__(self, m: Any) -> None:
        lock = self.lock
        with lock:
            self.inflight += 1
            k = self.inflight
        t0 = time.perf_counter()
        time.sleep(self.base * max(1.0, k / self.knee))
        t1 = time.perf_counter()
        with lock:
            self.inflight -= 1
            self.latencies.append(t1 - t0)
        self.seen[m.payload] += 1
        if next(self.count) == self.n:
            self.done.set()

    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(q * len(s)))]


class Sampler(threading.Thread):
    """Reads ``limit()`` and ``inflight()`` every SAMPLE_EVERY seconds until stopped."""

    def __init__(self, limit: Callable[[], int], inflight: Callable[[], int]) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self._limit = limit
        self._inflight = inflight
        self._stop_event = threading.Event()
        self.samples: list[tuple[float, int, int]] = []

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY):
            self.samples.append((time.perf_counter(), self._limit(), self._inflight()))

    def finish(self) -> None:
        self._stop_event.set()
        self.join(10.0)

    def tail(self, start: float, end: float) -> tuple[float, float]:
        """Mean limit and mean in-flight calls over the second half of [start, end]."""
        half = start + (end - start) / 2
        late = [s for s in self.samples if half <= s[0] <= end]
        if not late:
            late = self.samples[-1:]
        if not late:
            return float("nan"), float("nan")
        return statistics.fmean(s[1] for s in late), statistics.fmean(s[2] for s in late)


class AdaptiveRound:
    """One round of ``adaptive``: a ConsumerPool (threads) over an empty fastq.Queue with the
    Downstream as handler, started in setup; the timed call puts the backlog of M messages
    with one ``put_many`` and waits until the M calls returned and were acked."""

    def __init__(self, n: int, concurrency: Any, what: str) -> None:
        self.what = what
        self.n = n
        self.down = Downstream(n)
        self.queue = fastq.Queue("bench-adaptive", maxsize=None)
        self.pool = ConsumerPool(self.queue, self.down, concurrency=concurrency)
        self.pool.start()
        self.start = self.end = 0.0
        self.sampler = Sampler(lambda: self.pool.limit, lambda: self.down.inflight)

    def run(self, backlog: list[int]) -> None:
        self.sampler.start()
        self.start = time.perf_counter()
        self.queue.put_many(backlog)
        if not self.down.done.wait(ROUND_TIMEOUT):
            raise AssertionError(f"{self.what}: backlog not drained in {ROUND_TIMEOUT} s")
        _settled({"adaptive": self.queue}, self.n, self.what)
        self.end = time.perf_counter()

    def close(self, check: bool = True) -> dict[str, float]:
        self.sampler.finish()
        try:
            if not self.pool.stop(timeout=30.0):
                raise AssertionError(f"{self.what}: the pool did not stop in 30 s")
            if check:
                if self.down.seen.count(1) != self.n:
                    raise AssertionError(f"{self.what}: not every message handled exactly once")
                _check_lanes({"adaptive": self.queue}, self.n, self.what)
        finally:
            self.queue.close()
        limit, inflight = self.sampler.tail(self.start, self.end)
        return {
            "p99_s": self.down.p99(),
            "p50_s": percentile(self.down.latencies, 0.5),
            "tail_limit": limit,
            "tail_inflight": inflight,
        }
