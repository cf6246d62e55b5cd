"""Consumer pools: run a handler over a queue or a topic with adaptive concurrency, retries,
a circuit breaker, an idempotency ledger, lease heartbeats and graceful shutdown.

Threads mode: up to ``concurrency.max`` worker threads, of which ``concurrency.limit`` take
work at a time. A worker takes a batch of deliveries (``get_many``: how many is adapted so a
batch takes about 2 ms of handler time; one at a time once handlers are slow, so slow work
spreads over the workers), runs the handler on each, acks the batch with one ``ack_many``
and reports the batch to the limiter. A supervisor thread extends the leases of long batches
(at a third of the visibility timeout), feeds the limiter the process's CPU use and starts
workers as the limit grows. asyncio mode does the same with tasks on the running loop.

Failures: ``RetryPolicy.classify`` decides. A transient error nacks with the policy's delay
(the queue counts the attempt; at ``max_deliveries`` it dead-letters); a permanent one, or the
policy's ``max_attempts`` reached first, rejects to the dead-letter queue at once. The entry's
``last_error`` carries the :class:`~fastq.semantics.failure.Failure` (type, message, traceback,
fingerprint, attempts, timings, consumer). A message the pool gives back untried (breaker
open, stopping) is *released*: no attempt is used.

Topic sources: each worker is a member of the consumer group; a member handles its records in
offset order, so each partition (and each key) has one message in flight, and partitions run
in parallel across members. A failing record is retried in place after the policy's delay
(the partition waits), then dead-lettered to the pool's dead-letter queue. Offsets are
committed after the records before them were handled (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import tracing as _tracing
from .._core import (
    ConsumerRecord,
    DedupWindow,
    Delivery,
    Histogram,
    Message,
    handle_each,
    record_ages,
)
from .._meter import RateMeter
from .._registry import track
from ..errors import Closed, Empty, FastqError, InvalidReceipt
from ..logs import MessageLoggerAdapter, logger
from ..semantics.dlq import DeadLetter, DeadLetterQueue
from ..semantics.failure import Failure
from ..semantics.queue import Queue
from ..semantics.topic import Consumer, Topic
from ..stats import HistogramSnapshot
from .breaker import CircuitBreaker
from .concurrency import AdaptiveConcurrency, as_limiter
from .retry import RetryPolicy

__all__ = ("ConsumerPool", "PoolStatistics")

Handler = Callable[[Any], Any]

_TARGET_BATCH_SECONDS = 0.002  # prefetch so that one batch is about this much handler time
_MAX_PREFETCH = 128
_POLL = 0.1  # real seconds a worker waits for work before re-checking its state
_ASYNC_POLL = 0.005  # asyncio topic members poll without blocking, this often when idle
_TICK = 0.25  # supervisor period (CPU sample, worker growth)
_BUDGET = 0.01  # seconds the native loop runs handlers before the worker looks at its state
_names = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool's counters (cheap: no I/O)."""

    name: str
    state: str
    """``new``, ``running``, ``stopping`` or ``stopped``."""
    mode: str
    limit: int
    """The concurrency limit now (workers allowed to take work)."""
    workers: int
    """Worker threads (or tasks) started."""
    busy: int
    """Workers running a batch now."""
    processed: int
    """Handler calls that returned (each message of a batch handler counts)."""
    failed: int
    """Handler calls that raised."""
    retried: int
    """Failed messages nacked for a later attempt."""
    dead_lettered: int
    """Messages this pool sent to the dead-letter queue (permanent or out of attempts)."""
    released: int
    """Messages given back untried (breaker open, stopping): no attempt used."""
    duplicates: int
    """Messages skipped and acked by the idempotency ledger."""
    lost_leases: int
    """Settlements refused because the lease had already run out (redelivered elsewhere)."""
    heartbeats: int
    """Lease extensions made for long-running handlers."""
    handler_seconds_ewma: float
    """Smoothed handler time per message."""
    breaker_state: str | None
    throughput: float = 0.0
    """Handler calls returned per second over about the last 10 s (from ``statistics()``)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Handler exceptions by type name, in total."""
    source: str = ""
    """The name of the queue or topic the pool consumes."""
    handler_latency: HistogramSnapshot | None = None
    """Handler call durations (a batch handler: one per call); None with ``metrics=False``."""
    end_to_end_latency: HistogramSnapshot | None = None
    """Per message, put/publish to ack (queues) or to offset committed (topics)."""


class ConsumerPool:
    """Run ``handler`` over ``source`` (a :class:`~fastq.Queue` or :class:`~fastq.Topic`).

    ``handler(message)`` may be a function or a coroutine function; with ``batch_size > 1`` it
    gets a list of up to that many messages (all succeed or all fail). ``concurrency``: an
    :class:`~fastq.AdaptiveConcurrency` (default ``AdaptiveConcurrency(min=1, max=64)``) or an
    int for a fixed pool. ``retry``: a :class:`~fastq.RetryPolicy` (default ``RetryPolicy()``).
    ``circuit_breaker``: a :class:`~fastq.CircuitBreaker`; while it is open the pool takes no
    work and gives back what it holds without using attempts. ``idempotent=True`` keeps a
    ledger of the ``idempotency_key`` of every message handled successfully (for
    ``idempotency_ttl`` seconds, at most a million keys) and acks repeats without calling the
    handler. ``router``: a :class:`~fastq.Router` whose cost estimates learn from this pool's
    handler times (``router.observe(message.type, seconds)``).

    Topic sources take ``group`` (default: the pool's name) and ``dead_letter`` (a
    :class:`~fastq.DeadLetterQueue`; default an in-memory one, ``pool.dead_letter``).

    ``metrics=True`` (the default) records every handler call's duration in
    ``pool.handler_latency`` (a :class:`~fastq.Histogram`, in ``statistics()``);
    ``pool.end_to_end_latency`` is a queue source's own ``latency`` (put to ack, recorded by
    the queue: ``Queue(metrics=False)`` turns it off) or, for a topic, each record's
    publish-to-commit time (off with ``metrics=False``).

    ``start()`` / ``stop(graceful=True, timeout=30.0)``, or ``with pool:``; in asyncio mode
    ``await pool.astart()`` / ``await pool.astop()`` or ``async with pool:``. A handler raising
    a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``)
    releases its message and stops the pool; :meth:`wait` re-raises it.
    """

    def __init__(
        self,
        source: Queue | Topic,
        handler: Handler,
        *,
        concurrency: AdaptiveConcurrency | int | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        idempotent: bool = False,
        mode: Literal["threads", "asyncio"] = "threads",
        batch_size: int = 1,
        router: Any = None,
        clock: Callable[[], float] | None = None,
        name: str | None = None,
        group: str | None = None,
        dead_letter: DeadLetterQueue | None = None,
        idempotency_ttl: float = 3600.0,
        prefetch: int | None = None,
        metrics: bool = True,
    ) -> None:
        if isinstance(source, Queue):
            self._kind = "queue"
        elif isinstance(source, Topic):
            self._kind = "topic"
        else:
            raise TypeError(
                f"source must be a fastq.Queue or fastq.Topic, got {type(source).__name__}"
            )
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if mode not in ("threads", "asyncio"):
            raise ValueError(f"mode must be 'threads' or 'asyncio', got {mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if prefetch is not None:
            if isinstance(prefetch, bool) or not isinstance(prefetch, int):
                raise TypeError(f"prefetch must be an int or None, got {type(prefetch).__name__}")
            if prefetch < 1:
                raise ValueError(f"prefetch must be >= 1 (or None: adaptive), got {prefetch!r}")
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a fastq.RetryPolicy, got {type(retry).__name__}")
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreaker):
            raise TypeError(
                "circuit_breaker must be a fastq.CircuitBreaker or None, "
                f"got {type(circuit_breaker).__name__}"
            )
        if router is not None and not callable(getattr(router, "observe", None)):
            raise TypeError(f"router must have an observe(type, seconds) method, got {router!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable (-> seconds) or None, got {clock!r}")
        if name is None:
            name = f"{source.name}.pool{next(_names)}"
        elif not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        if isinstance(idempotency_ttl, bool) or not isinstance(idempotency_ttl, (int, float)):
            raise TypeError(f"idempotency_ttl must be seconds, got {idempotency_ttl!r}")
        if not (idempotency_ttl > 0 and math.isfinite(idempotency_ttl)):
            raise ValueError(f"idempotency_ttl must be > 0 seconds, got {idempotency_ttl!r}")
        if self._kind == "queue":
            if group is not None:
                raise ValueError(f"group applies to topic sources; got {group!r} with a queue")
            if dead_letter is not None:
                raise ValueError(
                    "dead_letter applies to topic sources (a queue has its own: "
                    "Queue(dead_letter=...))"
                )
        else:
            if group is None:
                group = name
            elif not isinstance(group, str) or not group:
                raise TypeError(f"group must be a non-empty str, got {group!r}")
            if dead_letter is None:
                # a topic on a server keeps its pool's dead letters there too
                dead_letter = DeadLetterQueue(
                    f"{source.name}.{group}.dlq", backend=getattr(source, "backend", None)
                )
            elif not isinstance(dead_letter, DeadLetterQueue):
                raise TypeError(
                    f"dead_letter must be a fastq.DeadLetterQueue, got {type(dead_letter).__name__}"
                )
            dead_letter._bind_source(source)  # replay(to=None) publishes back to the topic
        self.source = source
        self.handler = handler
        self.name = name
        self.mode = mode
        self.batch_size = batch_size
        self.retry = retry
        self.circuit_breaker = circuit_breaker
        self.router = router
        self.group = group
        self.dead_letter: DeadLetterQueue | None = (
            source.dead_letter if isinstance(source, Queue) else dead_letter
        )
        if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 (or a limiter), got {concurrency!r}")
        self.limiter = as_limiter(AdaptiveConcurrency() if concurrency is None else concurrency)
        self._clock: Callable[[], float] = clock or time.perf_counter
        self._is_async_handler = _is_coroutine_callable(handler)
        self._ledger = (
            DedupWindow(float(idempotency_ttl), max_keys=1_000_000, exact=True, clock=clock)
            if idempotent
            else None
        )
        # nothing to do between two handler calls but call the next: the loop runs in C
        self._fast = (
            circuit_breaker is None
            and not idempotent
            and router is None
            and batch_size == 1
            and not self._is_async_handler
        )
        # a coroutine function with nothing else to do between calls: a plain await loop
        self._fast_async = (
            circuit_breaker is None
            and not idempotent
            and router is None
            and batch_size == 1
            and self._is_async_handler
        )
        self._fixed_prefetch = prefetch
        self._prefetch = prefetch or (batch_size if batch_size > 1 else 1)
        self._ewma = 0.0  # handler seconds per message
        self._busy_ewma = 0.0  # the same without the time acks took (the prefetch rule)
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)
        self._state = "new"
        self._stopping = False
        self._abort = False  # stop(graceful=False) or a BaseException: drop work now
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._slots: list[tuple[float, Sequence[Delivery]] | None] = []
        self._busy = 0
        self._live = 0  # workers not yet returned
        self._supervisor: threading.Thread | None = None
        self._sup_task: asyncio.Task[None] | None = None
        self._wakeup = threading.Event()  # wakes the supervisor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_gate: asyncio.Event | None = None  # the limit grew (or a stop)
        self._async_stop: asyncio.Event | None = None  # set once, by a stop
        # counters (each updated by one statement under the GIL or self._lock)
        self._processed = 0
        self._failed = 0
        self._retried = 0
        self._dead = 0
        self._released = 0
        self._dups = 0
        self._lost = 0
        self._heartbeats = 0
        self._errors: dict[str, int] = {}
        self._throughput = RateMeter()
        self._log = MessageLoggerAdapter(logger("pool"), source.name)
        self._traced: Callable[[Any], Any] = handler
        if not isinstance(metrics, bool):
            raise TypeError(f"metrics must be a bool, got {type(metrics).__name__}")
        #: every handler call's duration (None with metrics=False)
        self.handler_latency: Histogram | None = (
            Histogram(name=f"{self.name}.handler") if metrics else None
        )
        #: put -> ack (a queue source: the queue's own ``latency``, recorded at each ack by
        #: its engine) or publish -> offset committed (a topic source: recorded here)
        self.end_to_end_latency: Histogram | None = (
            source.latency
            if isinstance(source, Queue)
            else (Histogram(name=f"{self.name}.end_to_end") if metrics else None)
        )
        self._traced_for: object = None
        vt = getattr(source, "visibility_timeout", 30.0)
        self._vt = float(vt)
        self._beat = max(0.05, self._vt / 3.0)
        track(self)

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``new``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    @property
    def limit(self) -> int:
        """The current concurrency limit."""
        return int(self.limiter.limit)

    @property
    def error(self) -> BaseException | None:
        """The ``BaseException`` a handler raised that stopped the pool, if any."""
        return self._error

    def start(self) -> ConsumerPool:
        """Start the workers (threads mode). Returns the pool."""
        if self.mode != "threads":
            raise RuntimeError("an asyncio-mode pool starts with `await pool.astart()`")
        self._begin()
        self._grow()
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"{self.name}-supervisor", daemon=True
        )
        self._supervisor.start()
        return self

    def _begin(self) -> None:
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"pool {self.name!r} was already started ({self._state})")
            self._state = "running"

    def stop(self, graceful: bool = True, timeout: float | None = 30.0) -> bool:
        """Stop taking work. ``graceful``: messages being handled finish (up to ``timeout``
        seconds); the rest of their batches is released untried. ``graceful=False``: release
        everything not yet started at once. Topic offsets are committed. True if every worker
        finished within ``timeout`` (a handler still running past it keeps its lease until it
        returns; if it never does, the lease runs out and the message is redelivered)."""
        if self.mode != "threads":
            raise RuntimeError("an asyncio-mode pool stops with `await pool.astop()`")
        _check_timeout(timeout)
        if self._state == "new":
            self._state = "stopped"
            self._done.set()
            return True
        self._signal_stop(abort=not graceful)
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        inside = me in self._threads  # stop() from a handler: its own worker ends after it
        ok = True
        for t in [*self._threads, None if inside else self._supervisor]:
            if t is None or t is me or t.ident is None:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            ok = ok and not t.is_alive()
        if ok and not inside:
            self._finish()
        return ok

    def _signal_stop(self, *, abort: bool) -> None:
        with self._gate:
            if self._state in ("running", "stopping"):
                self._state = "stopping"
            self._stopping = True
            self._abort = self._abort or abort
            self._gate.notify_all()
        self._wakeup.set()
        if isinstance(self.source, Queue):
            self.source._kick()
        if self._async_gate is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._async_gate.set)
                if self._async_stop is not None:
                    self._loop.call_soon_threadsafe(self._async_stop.set)

    def _finish(self) -> None:
        with self._lock:
            self._state = "stopped"
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pool has stopped (stopped by :meth:`stop`, by a handler's
        ``KeyboardInterrupt``/``SystemExit`` (re-raised here), or because a closed queue was
        drained). True if stopped."""
        _check_timeout(timeout)
        stopped = self._done.wait(timeout)
        if stopped and self._error is not None:
            raise self._error
        return stopped

    def __enter__(self) -> ConsumerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def astart(self) -> ConsumerPool:
        """Start the worker tasks on the running event loop (asyncio mode)."""
        if self.mode != "asyncio":
            raise RuntimeError("a threads-mode pool starts with `pool.start()`")
        self._begin()
        self._loop = asyncio.get_running_loop()
        self._async_gate = asyncio.Event()
        self._async_stop = asyncio.Event()
        self._agrow()
        self._sup_task = self._loop.create_task(self._asupervise(), name=f"{self.name}-supervisor")
        return self

    async def astop(self, graceful: bool = True, timeout: float | None = 30.0) -> bool:
        """:meth:`stop` for asyncio mode: tasks still running after ``timeout`` are cancelled
        (their messages are released untried)."""
        if self.mode != "asyncio":
            raise RuntimeError("a threads-mode pool stops with `pool.stop()`")
        _check_timeout(timeout)
        if self._state == "new":
            self._state = "stopped"
            self._done.set()
            return True
        self._signal_stop(abort=not graceful)
        tasks = [t for t in [*self._tasks, self._sup_task] if t is not None]
        _done, pending = await asyncio.wait(tasks, timeout=timeout) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        self._finish()
        return not pending

    async def await_stopped(self) -> None:
        """asyncio mode: wait until the pool has stopped (re-raises a handler's
        ``BaseException`` as :meth:`wait` does)."""
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks)
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> ConsumerPool:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ---- statistics -----------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        br = self.circuit_breaker
        with self._lock:
            errors = dict(self._errors)
        return PoolStatistics(
            name=self.name,
            state=self._state,
            mode=self.mode,
            limit=self.limit,
            workers=len(self._threads) + len(self._tasks),
            busy=self._busy,
            processed=self._processed,
            failed=self._failed,
            retried=self._retried,
            dead_lettered=self._dead,
            released=self._released,
            duplicates=self._dups,
            lost_leases=self._lost,
            heartbeats=self._heartbeats,
            handler_seconds_ewma=self._ewma,
            breaker_state=None if br is None else br.state,
            throughput=self._throughput.rate(self._processed, time.monotonic()),
            errors=errors,
            source=self.source.name,
            handler_latency=(
                None if self.handler_latency is None else self.handler_latency.snapshot()
            ),
            end_to_end_latency=(
                None if self.end_to_end_latency is None else self.end_to_end_latency.snapshot()
            ),
        )

    def __repr__(self) -> str:
        return (
            f"ConsumerPool({self.name!r}, source={self.source.name!r}, mode={self.mode!r}, "
            f"state={self._state!r}, limit={self.limit})"
        )

    # ---- workers: growth, gating, supervision --------------------------------------------

    def _want(self) -> int:
        n = min(int(self.limiter.limit), int(self.limiter.max))
        if isinstance(self.source, Topic):
            n = min(n, len(self.source.end_offsets()))  # one member per partition at most
        return max(1, n)

    def _grow(self) -> None:
        """Start workers up to the limit (they are never stopped early, only parked)."""
        if self.mode == "asyncio":
            self._agrow()
            return
        with self._lock:
            if self._stopping:
                return
            while len(self._threads) < self._want():
                i = len(self._threads)
                self._slots.append(None)
                target = self._queue_worker if self._kind == "queue" else self._topic_worker
                t = threading.Thread(
                    target=self._run_worker, args=(target, i), name=f"{self.name}-w{i}", daemon=True
                )
                self._threads.append(t)
                self._live += 1
                t.start()
            self._gate.notify_all()

    def _run_worker(self, target: Callable[[int], None], i: int) -> None:
        loop = asyncio.new_event_loop() if self._is_async_handler else None
        _local.loop = loop
        try:
            target(i)
        except BaseException as exc:  # a fault in the pool itself: stop rather than hang
            self._stop_for(exc)
        finally:
            if loop is not None:
                loop.close()
            self._worker_done()

    def _worker_done(self) -> None:
        with self._lock:
            self._live -= 1
            last = self._live == 0
        if last:
            if not self._stopping:  # a closed queue was drained: nothing more will come
                self._signal_stop(abort=False)
            self._wakeup.set()

    def _parked(self, i: int) -> bool:
        """Wait while worker ``i`` is above the limit; False once the pool is stopping."""
        if i < self.limiter.limit:
            return not self._stopping
        with self._gate:
            while i >= self.limiter.limit and not self._stopping:
                self._gate.wait(1.0)
        return not self._stopping

    def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop wakes it."""
        with self._gate:
            if not self._stopping:
                self._gate.wait(max(seconds, 0.001))

    def _stop_for(self, exc: BaseException) -> None:
        """A handler raised KeyboardInterrupt/SystemExit (or the pool failed): stop now."""
        if self._error is None:
            self._error = exc
            self._log.error("%s: stopping: a handler raised %s", self.name,
                            type(exc).__qualname__, event="pool_stopped")
        self._signal_stop(abort=True)

    def _supervise(self) -> None:
        """Lease heartbeats, CPU samples for the limiter, worker growth; ends the pool once
        every worker has returned."""
        cpu0, wall0 = time.process_time(), time.monotonic()
        ncpu = os.cpu_count() or 1
        last_beat = wall0
        tick = min(_TICK, self._beat / 2)  # a batch is extended before 1/2 of its lease ran
        while self._live:
            self._wakeup.wait(tick)
            self._wakeup.clear()
            now = time.monotonic()
            if now - wall0 >= _TICK:
                cpu1 = time.process_time()
                self.limiter.on_cpu(min(1.0, max(0.0, (cpu1 - cpu0) / ((now - wall0) * ncpu))))
                cpu0, wall0 = cpu1, now
            if now - last_beat >= self._beat / 2:
                self._heartbeat()
                last_beat = now
            self._grow()
        self._finish()

    def _heartbeat(self) -> None:
        """Extend the leases of batches that have run for a third of the lease."""
        now = time.monotonic()
        beats = 0
        for slot in list(self._slots):
            if slot is None or now - slot[0] < self._beat:
                continue
            for d in slot[1]:
                try:
                    d.extend(self._vt)
                    beats += 1
                except (InvalidReceipt, Closed):
                    pass  # settled meanwhile (or the lease was already lost)
        if beats:
            with self._lock:
                self._heartbeats += beats

    def _enter(self) -> int:
        with self._lock:
            self._busy += 1
            return self._busy

    def _leave(self, t: list[int]) -> None:
        with self._lock:
            self._busy -= 1
            self._processed += t[_OK]
            self._failed += t[_FAILED]
            self._retried += t[_RETRIED]
            self._dead += t[_DEAD]
            self._released += t[_RELEASED]
            self._dups += t[_DUPS]
            self._lost += t[_LOST]

    def _sample(self, elapsed: float, n: int, inflight: int, t: list[int]) -> None:
        """Feed a finished batch to the prefetch estimate and the limiter."""
        if n <= 0:
            return
        per = elapsed / n
        e = self._ewma
        self._ewma = per if e == 0.0 else e + 0.2 * (per - e)
        # the prefetch follows the handlers' time alone: a settle round trip (a server's ack)
        # is a cost per batch, which a bigger batch spreads, not a reason to take fewer
        busy = max(0.0, elapsed - t[_SETTLE_NS] * 1e-9) / n
        b = self._busy_ewma
        self._busy_ewma = busy if b == 0.0 else b + 0.2 * (busy - b)
        if self._fixed_prefetch is None and self.batch_size == 1:
            b = self._busy_ewma
            want = int(_TARGET_BATCH_SECONDS / b) if b > 0 else _MAX_PREFETCH
            self._prefetch = max(1, min(_MAX_PREFETCH, want))
        before = self.limiter.limit
        # overload, not bad messages, shrinks the limit: transient failures, lost leases
        self.limiter.on_sample(per, inflight=inflight, error=t[_TRANSIENT] + t[_LOST] > 0)
        if self.limiter.limit > before:
            self._grow()

    # ---- what happens to each message: generators that the sync and async drivers run ----
    #
    # A step generator yields what the handler must be called with (a Message, or a list of
    # them with batch_size > 1), or a float: seconds to wait (retry backoff, breaker open);
    # the driver sends back None (returned / waited) or the exception the handler raised.

    def _fast_batch(self, batch: list[Delivery], t: list[int]) -> None:
        """The common case (a plain function; no breaker, ledger or router): the handler
        loop runs in C, in chunks of at most _BUDGET seconds between looks at the state."""
        k = 0
        n = len(batch)
        while k < n:
            if self._stopping:
                self._release(batch[k:], 0.0, t)
                return
            done, k, exc, seconds = handle_each(
                self._handler_now(), batch, k, _BUDGET, self.handler_latency
            )
            if done:
                t[_OK] += len(done)
                self._ack(done, t)
            if exc is None:
                continue
            if not isinstance(exc, Exception):
                self._release(batch[k:], 0.0, t)
                self._interrupted(exc)
                return
            t1 = self._clock()
            self._fail(batch[k], exc, t1 - seconds, t1, t, None)
            k += 1

    async def _afast_batch(self, batch: list[Delivery], t: list[int]) -> None:
        """asyncio mode, a coroutine handler and nothing between calls: await each in turn,
        ack the successes with one call."""
        handler = self._handler_now()
        clock = self._clock
        hh = self.handler_latency
        done: list[Delivery] = []
        try:
            for k, d in enumerate(batch):
                if self._stopping:
                    self._release(batch[k:], 0.0, t)
                    return
                t0 = clock()
                try:
                    await handler(d.message)
                except Exception as exc:
                    t1 = clock()
                    if hh is not None:
                        hh.record(t1 - t0)
                    self._fail(d, exc, t0, t1, t, None)
                except BaseException as exc:  # CancelledError included: give it back
                    self._release(batch[k:], 0.0, t)
                    self._interrupted(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return
                else:
                    if hh is not None:
                        hh.record(clock() - t0)
                    done.append(d)
        finally:
            if done:
                t[_OK] += len(done)
                self._ack(done, t)

    def _batch_steps(self, batch: list[Delivery], t: list[int]) -> _Steps:
        """A queue batch: handle each delivery, ack the successes with one call."""
        acks: list[Delivery] = []
        hh = self.handler_latency
        try:
            if self.batch_size > 1:
                yield from self._group_steps(batch, acks, t)
                return
            clock = self._clock
            ledger = self._ledger
            br = self.circuit_breaker
            router = self.router
            for k, d in enumerate(batch):
                if self._stopping:
                    self._release(batch[k:], 0.0, t)
                    return
                m = d.message
                key = m.idempotency_key
                if ledger is not None and key is not None and key in ledger:
                    acks.append(d)  # a duplicate needs no downstream: no permit
                    t[_DUPS] += 1
                    continue
                if br is not None and not br.allow():
                    self._release(batch[k:], br.retry_after(), t)
                    return
                t0 = clock()
                exc = yield m
                t1 = clock()
                if hh is not None:
                    hh.record(t1 - t0)
                if exc is None:
                    acks.append(d)
                    t[_OK] += 1
                    if ledger is not None and key is not None:
                        ledger.seen(key)
                    if br is not None:
                        br.record_success()
                    if router is not None:
                        router.observe(m.type, t1 - t0)
                elif isinstance(exc, Exception):
                    self._fail(d, exc, t0, t1, t, br)
                else:
                    if br is not None:
                        br.release_permit()
                    self._release(batch[k:], 0.0, t)
                    self._interrupted(exc)
                    return
        finally:
            if acks:
                self._ack(acks, t)

    def _group_steps(self, batch: list[Delivery], acks: list[Delivery], t: list[int]) -> _Steps:
        """batch_size > 1: one handler call for the batch; all succeed or all fail."""
        br = self.circuit_breaker
        if self._stopping:
            self._release(batch, 0.0, t)
            return
        todo = batch
        ledger = self._ledger
        if ledger is not None:
            todo = []
            for d in batch:
                key = d.message.idempotency_key
                if key is not None and key in ledger:
                    acks.append(d)
                    t[_DUPS] += 1
                else:
                    todo.append(d)
        if not todo:
            return
        if br is not None and not br.allow():
            self._release(todo, br.retry_after(), t)
            return
        t0 = self._clock()
        exc = yield [d.message for d in todo]
        t1 = self._clock()
        if self.handler_latency is not None:
            self.handler_latency.record(t1 - t0)  # one batch call
        if exc is None:
            t[_OK] += len(todo)
            per = (t1 - t0) / len(todo)
            for d in todo:
                acks.append(d)
                key = d.message.idempotency_key
                if ledger is not None and key is not None:
                    ledger.seen(key)
                if self.router is not None:
                    self.router.observe(d.message.type, per)
            if br is not None:
                br.record_success()
        elif isinstance(exc, Exception):
            if br is not None:
                br.record_failure(exc)
            for d in todo:
                self._fail(d, exc, t0, t1, t, None)
        else:
            if br is not None:
                br.release_permit()
            self._release(todo, 0.0, t)
            self._interrupted(exc)

    def _record_steps(self, records: list[ConsumerRecord], t: list[int], done: list[int]) -> _Steps:
        """Topic records in offset order, each retried in place (``batch_size > 1``: in
        groups of that many consecutive records, one handler call per group, all succeed or
        all fail); ``done[0]`` counts the records finished (handled or dead-lettered): the
        rest go back at the next poll."""
        clock = self._clock
        hh = self.handler_latency
        ledger = self._ledger
        br = self.circuit_breaker
        size = self.batch_size
        for at in range(0, len(records), size):
            if self._stopping:
                return  # a graceful stop: records not started go back (rewound)
            chunk = records[at : at + size]
            todo: list[ConsumerRecord] = []
            for r in chunk:
                key = r.message.idempotency_key
                if ledger is not None and key is not None and key in ledger:
                    t[_DUPS] += 1
                else:
                    todo.append(r)
            attempt = 1
            while todo:
                if self._abort or (self._stopping and attempt > 1):
                    return
                if br is not None and not br.allow():
                    if self._stopping:
                        return
                    yield min(max(br.retry_after(), 0.001), _POLL)
                    continue
                if size == 1:
                    if _tracing._active is not None:
                        _tracing.partition.set(todo[0].partition)  # for the process span
                    arg: Message | list[Message] = todo[0].message
                else:
                    arg = [r.message for r in todo]
                t0 = clock()
                exc = yield arg
                t1 = clock()
                if hh is not None:
                    hh.record(t1 - t0)
                if exc is None:
                    t[_OK] += len(todo)
                    per = (t1 - t0) / len(todo)
                    for r in todo:
                        key = r.message.idempotency_key
                        if ledger is not None and key is not None:
                            ledger.seen(key)
                        if self.router is not None:
                            self.router.observe(r.message.type, per)
                    if br is not None:
                        br.record_success()
                    break
                if not isinstance(exc, Exception):
                    if br is not None:
                        br.release_permit()
                    self._interrupted(exc)
                    return
                t[_FAILED] += len(todo)
                for _ in todo:
                    self._count_error(exc)
                if br is not None:
                    br.record_failure(exc)
                kind = self.retry.classify(exc)
                if kind == "retry":
                    t[_TRANSIENT] += 1
                if kind == "dead_letter" or attempt >= self.retry.max_attempts:
                    for r in todo:
                        self._dead_letter_record(r, exc, attempt, t0, t1, kind)
                    t[_DEAD] += len(todo)
                    break
                t[_RETRIED] += len(todo)
                delay = float(self.retry.delay(attempt))
                for r in todo:
                    self._log_retry(r, exc, attempt, delay)
                yield delay
                attempt += 1
            done[0] += len(chunk)

    def _interrupted(self, exc: BaseException) -> None:
        if not isinstance(exc, asyncio.CancelledError):  # a cancelled task: astop's doing
            self._stop_for(exc)

    def _drive(self, steps: _Steps) -> None:
        """Run a step generator in this thread."""
        handler = self._handler_now()
        loop = _local.loop if self._is_async_handler else None
        try:
            step = next(steps)
            while True:
                if type(step) is float:
                    self._sleep(step)
                    step = steps.send(None)
                    continue
                try:
                    if loop is not None:
                        loop.run_until_complete(handler(step))
                    else:
                        handler(step)
                except BaseException as exc:
                    step = steps.send(exc)
                else:
                    step = steps.send(None)
        except StopIteration:
            pass

    async def _adrive(self, steps: _Steps) -> None:
        """Run a step generator on the event loop (a cancelled task releases its message)."""
        handler = self._handler_now()
        cancelled: BaseException | None = None
        try:
            step = next(steps)
            while True:
                if type(step) is float:
                    try:
                        await asyncio.sleep(step)
                    except asyncio.CancelledError as exc:
                        cancelled = exc
                        steps.close()
                        break
                    step = steps.send(None)
                    continue
                try:
                    result = handler(step)
                    if inspect.isawaitable(result):
                        await result
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        cancelled = exc
                    step = steps.send(exc)
                else:
                    step = steps.send(None)
        except StopIteration:
            pass
        if cancelled is not None:
            raise cancelled

    # ---- settling -------------------------------------------------------------------------

    def _received(self, start_ns: int, count: int) -> None:
        otel = _tracing._active
        if otel is not None:
            _tracing.receive_span(otel, self.source.name, self.group, start_ns, count)

    def _handler_now(self) -> Callable[[Any], Any]:
        """The handler, inside a ``process`` span while fastq.tracing is instrumented."""
        otel = _tracing._active
        if otel is None:
            return self.handler
        if self._traced_for is not otel:
            self._traced = _tracing.wrap_handler(
                otel,
                self.handler,
                self.source.name,
                self.group,
                self.batch_size > 1,
            )
            self._traced_for = otel
        return self._traced

    def _ack(self, receipts: Sequence[Delivery], t: list[int]) -> None:
        otel = _tracing._active
        if otel is not None:
            with _tracing.settle_span(otel, self.source.name, self.group, len(receipts)):
                self._ack_now(receipts, t)
        else:
            self._ack_now(receipts, t)

    def _ack_now(self, receipts: Sequence[Delivery], t: list[int]) -> None:
        began = time.perf_counter_ns()
        try:
            self.source.ack_many(receipts)  # type: ignore[union-attr]
        except InvalidReceipt as exc:
            # leases that ran out while the batch ran: those copies went (or go) to another
            # consumer; the ledger (idempotent=True) keeps their handlers from running twice
            head = str(exc).split(" ", 1)[0]
            t[_LOST] += int(head) if head.isdigit() else 1
        finally:
            t[_SETTLE_NS] += time.perf_counter_ns() - began

    def _release(self, deliveries: Sequence[Delivery], delay: float, t: list[int]) -> None:
        for d in deliveries:
            try:
                d.release(delay if delay > 0 else None)
                t[_RELEASED] += 1
            except (InvalidReceipt, Closed):
                t[_LOST] += 1

    def _fail(
        self,
        d: Delivery,
        exc: Exception,
        t0: float,
        t1: float,
        t: list[int],
        br: CircuitBreaker | None,
    ) -> None:
        """A failed delivery: nack with the policy's delay, or dead-letter it now."""
        t[_FAILED] += 1
        self._count_error(exc)
        if br is not None:
            br.record_failure(exc)
        kind = self.retry.classify(exc)
        if kind == "retry":
            t[_TRANSIENT] += 1
        err = self._failure(exc, d.attempt, t0, t1, kind).encode()
        try:
            if kind == "dead_letter" or d.attempt >= self.retry.max_attempts:
                reason = "permanent" if kind == "dead_letter" else "max_attempts"
                d.reject(err, reason)
                t[_DEAD] += 1
                self._log_dead(d, exc, d.attempt, reason)
            else:
                delay = self.retry.delay(d.attempt)
                d.nack(delay, error=err)
                t[_RETRIED] += 1
                self._log_retry(d, exc, d.attempt, delay)
        except InvalidReceipt:
            t[_LOST] += 1
            self._log.warning("%s: lease ran out before the failure was settled; the message "
                              "is redelivered", self.name, message=d, event="lost_lease")

    def _log_retry(self, m: object, exc: BaseException, attempt: int, delay: float) -> None:
        self._log.info("%s: handler raised %s: %s; attempt %d of %d, retry in %.3f s",
                       self.name, type(exc).__qualname__, exc, attempt,
                       self.retry.max_attempts, delay, message=m, event="retry")

    def _log_dead(self, m: object, exc: BaseException, attempt: int, reason: str) -> None:
        self._log.warning("%s: handler raised %s: %s; dead-lettered (%s) after %d attempt(s)",
                          self.name, type(exc).__qualname__, exc, reason, attempt,
                          message=m, event="dead_letter")

    def _count_error(self, exc: BaseException) -> None:
        name = type(exc).__qualname__
        with self._lock:
            self._errors[name] = self._errors.get(name, 0) + 1

    def _failure(self, exc: Exception, attempts: int, t0: float, t1: float, kind: str) -> Failure:
        return Failure.from_exception(
            exc,
            consumer=self.name,
            attempts=attempts,
            started_at=time.time() - (t1 - t0),
            handler_seconds=t1 - t0,
            permanent=kind == "dead_letter",
        )

    def _dead_letter_record(
        self, r: ConsumerRecord, exc: Exception, attempt: int, t0: float, t1: float, kind: str
    ) -> None:
        now = time.time()
        assert self.dead_letter is not None
        self._log_dead(r, exc, attempt, "permanent" if kind == "dead_letter" else "max_attempts")
        self.dead_letter.add(
            DeadLetter(
                message=r.message,
                reason="permanent" if kind == "dead_letter" else "max_attempts",
                queue=f"{self.source.name}[{r.partition}]@{r.offset}",
                attempts=attempt,
                first_delivery=now - (t1 - t0),
                last_delivery=now - (t1 - t0),
                dead_lettered_at=now,
                last_error=self._failure(exc, attempt, t0, t1, kind).encode(),
            )
        )

    def _rewind(self, consumer: Consumer, records: list[ConsumerRecord], done: int) -> None:
        """Commit what was finished, then put the records not finished back (seek).

        The commit comes first: the member owns every polled partition until its next poll
        or seek (rebalancing is cooperative), and a seek may hand a partition over, after
        which this member could no longer commit the records it finished there."""
        offsets: dict[int, int] = {}
        for r in records[:done]:
            offsets[r.partition] = r.offset + 1
        first: dict[int, int] = {}
        for r in records[done:]:
            first.setdefault(r.partition, r.offset)
        offsets.update(first)  # a partition's first unfinished record comes after its done ones
        if offsets:
            consumer.commit(offsets)
            if done and self.end_to_end_latency is not None:
                record_ages(self.end_to_end_latency, records[:done], time.time_ns())
        for p, off in first.items():
            # handed over meanwhile (ValueError): the new owner starts at the commit
            with contextlib.suppress(FastqError, ValueError):
                consumer.seek(p, off)

    # ---- the workers ----------------------------------------------------------------------

    def _take_size(self) -> int | None:
        """How many to take now: None while the breaker is open (the worker waits)."""
        br = self.circuit_breaker
        if br is None:
            return self._prefetch
        state = br.state
        if state == "open":
            return None
        return self._prefetch if state == "closed" else 1

    def _queue_worker(self, i: int) -> None:
        q = self.source
        assert isinstance(q, Queue)
        while self._parked(i):
            n = self._take_size()
            if n is None:
                self._sleep(min(self.circuit_breaker.retry_after(), _POLL))  # type: ignore[union-attr]
                continue
            rs = time.time_ns() if _tracing._active is not None else 0
            try:
                batch = q.get_many(n, timeout=_POLL)
            except Empty:
                continue
            except Closed:  # closed and drained: nothing more will come, for any worker
                self._signal_stop(abort=False)
                return
            if rs:
                self._received(rs, len(batch))
            t = [0] * 9
            self._slots[i] = (time.monotonic(), batch)
            inflight = self._enter()
            t0 = self._clock()
            try:
                if self._fast:
                    self._fast_batch(batch, t)
                else:
                    self._drive(self._batch_steps(batch, t))
            finally:
                self._slots[i] = None
                self._leave(t)
            self._sample(self._clock() - t0, len(batch), inflight, t)

    def _topic_worker(self, i: int) -> None:
        topic = self.source
        assert isinstance(topic, Topic)
        assert self.group is not None
        consumer: Consumer | None = None
        try:
            while True:
                if i >= self.limiter.limit and consumer is not None:
                    consumer.close()  # leave the group: its partitions go to the others
                    consumer = None
                if not self._parked(i):
                    return
                if consumer is None:
                    consumer = topic.consumer(self.group, auto_commit=False)
                n = self._take_size()
                if n is None:
                    self._sleep(min(self.circuit_breaker.retry_after(), _POLL))  # type: ignore[union-attr]
                    continue
                rs = time.time_ns() if _tracing._active is not None else 0
                records = consumer.poll(max_records=n, timeout=_POLL)
                if not records:
                    continue
                if rs:
                    self._received(rs, len(records))
                t = [0] * 9
                done = [0]
                inflight = self._enter()
                t0 = self._clock()
                try:
                    self._drive(self._record_steps(records, t, done))
                finally:
                    self._leave(t)
                    self._rewind(consumer, records, done[0])
                self._sample(self._clock() - t0, done[0], inflight, t)
        except Closed:
            return
        finally:
            if consumer is not None:
                with contextlib.suppress(Closed):
                    consumer.close()  # leave the group (every batch was committed already)

    # ---- asyncio mode ---------------------------------------------------------------------

    def _agrow(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._stopping:
            return
        while len(self._tasks) < self._want():
            i = len(self._tasks)
            self._slots.append(None)
            coro = self._aqueue_worker(i) if self._kind == "queue" else self._atopic_worker(i)
            self._live += 1
            self._tasks.append(loop.create_task(coro, name=f"{self.name}-w{i}"))
        if self._async_gate is not None:
            self._async_gate.set()

    async def _aparked(self, i: int) -> bool:
        gate = self._async_gate
        assert gate is not None
        while i >= self.limiter.limit and not self._stopping:
            gate.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gate.wait(), 1.0)
        return not self._stopping

    async def _asleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop wakes it. Always yields to the loop (on 3.12+
        ``wait_for`` on an event already set returns without suspending)."""
        stop = self._async_stop
        assert stop is not None
        if self._stopping or stop.is_set():
            await asyncio.sleep(0)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(seconds, 0.001))

    async def _asupervise(self) -> None:
        last_beat = time.monotonic()
        try:
            tick = min(_TICK, self._beat / 2)
            while self._live:
                await asyncio.sleep(tick)
                now = time.monotonic()
                if now - last_beat >= self._beat / 2:
                    self._heartbeat()
                    last_beat = now
                self._agrow()
        finally:
            self._finish()

    async def _aqueue_worker(self, i: int) -> None:
        q = self.source
        assert isinstance(q, Queue)
        try:
            while await self._aparked(i):
                n = self._take_size()
                if n is None:
                    await self._asleep(min(self.circuit_breaker.retry_after(), _POLL))  # type: ignore[union-attr]
                    continue
                rs = time.time_ns() if _tracing._active is not None else 0
                try:
                    batch = await q.aget_many(n, timeout=_POLL)
                except Empty:
                    continue
                except Closed:
                    self._signal_stop(abort=False)
                    return
                if rs:
                    self._received(rs, len(batch))
                t = [0] * 9
                self._slots[i] = (time.monotonic(), batch)
                inflight = self._enter()
                t0 = self._clock()
                try:
                    if self._fast:
                        self._fast_batch(batch, t)  # a plain function blocks the loop anyway
                    elif self._fast_async:
                        await self._afast_batch(batch, t)
                    else:
                        await self._adrive(self._batch_steps(batch, t))
                finally:
                    self._slots[i] = None
                    self._leave(t)
                self._sample(self._clock() - t0, len(batch), inflight, t)
        finally:
            self._worker_done()

    async def _atopic_worker(self, i: int) -> None:
        topic = self.source
        assert isinstance(topic, Topic)
        assert self.group is not None
        remote = topic.backend is not None
        consumer: Consumer | None = None
        try:
            while True:
                if i >= self.limiter.limit and consumer is not None:
                    consumer.close()
                    consumer = None
                if not await self._aparked(i):
                    return
                if consumer is None:
                    consumer = topic.consumer(self.group, auto_commit=False)
                n = self._take_size()
                if n is None:
                    await self._asleep(min(self.circuit_breaker.retry_after(), _POLL))  # type: ignore[union-attr]
                    continue
                rs = time.time_ns() if _tracing._active is not None else 0
                if remote:  # a round trip (and a wait on the server): off the event loop
                    records = await asyncio.to_thread(consumer.poll, n, _POLL)
                    if not records:
                        continue
                else:
                    records = consumer.poll(max_records=n, timeout=0)
                    if not records:
                        await self._asleep(_ASYNC_POLL)
                        continue
                if rs:
                    self._received(rs, len(records))
                t = [0] * 9
                done = [0]
                inflight = self._enter()
                t0 = self._clock()
                try:
                    await self._adrive(self._record_steps(records, t, done))
                finally:
                    self._leave(t)
                    self._rewind(consumer, records, done[0])
                self._sample(self._clock() - t0, done[0], inflight, t)
        except Closed:
            return
        finally:
            if consumer is not None:
                with contextlib.suppress(Closed):
                    consumer.close()
            self._worker_done()


_Steps = Generator[Any, "BaseException | None", None]
# per-batch tally slots; _TRANSIENT: failures the retry policy calls transient (a sign of
# overload for the limiter, unlike a bad message)
_OK, _FAILED, _RETRIED, _DEAD, _RELEASED, _DUPS, _LOST, _TRANSIENT, _SETTLE_NS = range(9)
_local = threading.local()  # a worker thread's event loop, for coroutine handlers


def _is_coroutine_callable(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None), got {timeout!r}")
