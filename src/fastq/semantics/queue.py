"""Queue: work-queue semantics (competing consumers, leases, ack/nack, redelivery, dead letters,
delays, priorities with aging, deduplication) over a storage engine. See docs/queue.md."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from .._core import DedupWindow, Delivery, Histogram, Message
from .._meter import RateMeter
from .._registry import track
from ..backends.base import Capabilities
from ..backends.log import LogEngine
from ..backends.memory import MEMORY_CAPABILITIES, MemoryEngine
from ..backends.redis import RedisStreams, as_backend
from ..codecs import Codec
from ..errors import Closed, Empty, Full, Unsupported
from ..stats import QueueStatistics
from .dlq import DeadLetter, DeadLetterQueue

__all__ = ("Queue",)

_POLL_SLICE = 0.005  # real seconds between clock reads when the clock cannot wake us
_FULL_SLICE = 0.02  # real seconds between retries of a put into a full remote queue
_REMOTE_CHUNK = 1000  # messages per server script of a remote put_many
_REMOTE_HINTS = {
    "path=": "durability is the server's (appendonly yes, appendfsync always)",
    "sync=": "durability is the server's (appendonly yes, appendfsync always)",
    "clock=": "leases and delays run on the server's clock, which a FakeClock cannot drive",
    "max_bytes=": "bound the queue by messages (maxsize=) instead",
}
_FIELDS = frozenset(
    {
        "key",
        "type",
        "priority",
        "headers",
        "id",
        "idempotency_key",
        "deadline",
        "source",
        "trace_id",
    }
)


def message_from(obj: Any, fields: dict[str, Any]) -> Message:
    """The Message a put or publish stores: ``obj`` itself, a copy with ``fields`` changed,
    or a new Message of payload ``obj``; an unknown field is a TypeError."""
    if fields:
        try:
            if type(obj) is Message:
                return obj.replace(**fields)
            return Message(obj, **fields)
        except TypeError:
            for name in fields:  # say which keyword is not a Message field, as put would
                if name not in _FIELDS:
                    raise TypeError(f"unexpected keyword argument {name!r}") from None
            raise
    if type(obj) is Message:
        return obj
    return Message(obj)


def _timeout(value: Any, name: str = "timeout") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds (or None), got {value!r}")
    return float(value)


class Queue:
    """A work queue: each message goes to one consumer at a time under a lease
    (``visibility_timeout`` seconds). Settle a :class:`~fastq.Delivery` with ``ack()``; a nack
    or a lease running out is a failed attempt, and after ``max_deliveries`` attempts the
    message moves to ``dead_letter``. At-least-once: a message is only gone once acked.

    ``maxsize`` / ``max_bytes`` bound the messages / payload bytes held (ready, delayed and in
    flight); ``put`` then blocks or raises :class:`~fastq.Full`. Priorities are served strictly
    by class, except that a message gains one class per ``priority_aging`` seconds it waits
    (None: strict), so ``low`` is never starved forever. ``dedup_window`` (seconds) drops a put
    whose ``idempotency_key`` was put within the window and returns the first message's id.
    ``clock`` supplies every time the queue uses (see :mod:`fastq.clock`). ``metrics=True``
    (the default) records each message's put-to-ack time (wall clock) in ``queue.latency``, a
    :class:`~fastq.Histogram` shown by ``statistics()``; ``metrics=False`` leaves it None.

    Sync and async users may share one queue across threads and event loops.

    ``backend``: where the messages live. None (the default) keeps them in this process (in
    memory, or journalled under ``path``); a :class:`fastq.backends.RedisStreams` or a
    ``redis://`` URL keeps them on a Redis server, shared by every process and machine that
    opens a queue of this name there (docs/redis.md).
    """

    def __init__(
        self,
        name: str,
        *,
        path: str | None = None,
        maxsize: int | None = 10_000,
        max_bytes: int | None = None,
        visibility_timeout: float = 30.0,
        max_deliveries: int = 5,
        dead_letter: str | DeadLetterQueue | None = "auto",
        dedup_window: float | None = None,
        sync: str = "none",
        clock: Callable[[], float] | None = None,
        priority_aging: float | None = 10.0,
        codec: Codec | None = None,
        metrics: bool = True,
        backend: RedisStreams | str | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"name must be a non-empty file-name-safe str, got {name!r}")
        remote = as_backend(backend)
        if remote is not None:
            for arg, given in (
                ("path=", path is not None),
                ("sync=", sync != "none"),
                ("clock=", clock is not None),
                ("max_bytes=", max_bytes is not None),
            ):
                if given:
                    raise Unsupported(arg, remote.name, _REMOTE_HINTS[arg])
        if sync != "none" and path is None:
            raise ValueError(f"sync applies to durable queues (path=); got {sync!r} without a path")
        if not (dead_letter in ("auto", None) or isinstance(dead_letter, DeadLetterQueue)):
            raise TypeError(
                f"dead_letter must be 'auto', a DeadLetterQueue or None, got {dead_letter!r}"
            )
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"codec must be a fastq.codecs.Codec, got {type(codec).__name__}")
        self.codec = codec
        ttl = None
        if dedup_window is not None:
            ttl = _timeout(dedup_window, "dedup_window")
            if not ttl:
                raise ValueError(f"dedup_window must be > 0 seconds, got {dedup_window!r}")
        self.name = name
        self.path = None if path is None else os.path.join(os.fspath(path), name)
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.max_deliveries = max_deliveries
        self._clock = clock
        # reentrant: a blocked get holds it while a dead-lettering (or the drain that closes
        # a durable log) wakes the waiters
        self._cond = threading.Condition(threading.RLock())
        self._waiting = 0  # sync + async waiters (getters and putters)
        # a getter is about to sleep: the next put must wake it. Getters set it (holding
        # _cond) before their last look at the queue; a put that sees it clears it and wakes
        # them all, so a burst of puts wakes sleeping getters once, not once per put.
        self._armed = False
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._closed = False
        self._kicks = 0  # bumped by _kick: blocked gets return Empty
        self._dead_total = 0
        self._dedup: DedupWindow | None = None
        self._dedup_ids: dict[Any, str] = {}
        self._dedup_order: deque[tuple[float, Any]] = deque()
        self._dedup_ttl = 0.0
        self._deduplicated = 0
        self._dedup_lock = threading.Lock()
        if ttl is not None:
            self._dedup = DedupWindow(ttl, max_keys=1_000_000, exact=True, clock=clock)
            self._dedup_ttl = ttl
        options: dict[str, Any] = dict(
            maxsize=maxsize,
            max_bytes=max_bytes,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
            priority_aging=priority_aging,
            clock=clock,
            owner=self,
        )
        self._log_engine: LogEngine | None = None
        self._own_dlq = dead_letter == "auto"
        self.dead_letter: DeadLetterQueue | None = (
            None if dead_letter == "auto" else dead_letter  # type: ignore[assignment]
        )
        self._remote: Any = None
        if remote is not None:
            if self._own_dlq:
                self.dead_letter = DeadLetterQueue(f"{name}.dlq", backend=remote, codec=codec)
            from ..backends.redis.queue import RedisQueueEngine

            self._dedup = None  # the server keeps the window (SET NX PX)
            self._engine: Any = RedisQueueEngine(
                remote,
                name,
                owner=self,
                maxsize=maxsize,
                visibility_timeout=visibility_timeout,
                max_deliveries=max_deliveries,
                priority_aging=priority_aging,
                dedup_window=ttl,
                codec=codec,
                dead_letter=self._remote_dead_letter,
                # a backend made here from a URL is this queue's to close
                own_backend=not isinstance(backend, RedisStreams),
            )
            self._remote = self._engine
        elif self.path is None:
            self._engine = MemoryEngine(**options)
            self._engine.direct_ack = True
            if self._own_dlq:
                self.dead_letter = DeadLetterQueue(f"{name}.dlq")
        else:
            self._open_durable(os.fspath(path), sync, options)  # type: ignore[arg-type]
        self._engine.on_room = self._wake
        if self.dead_letter is not None:
            self.dead_letter._bind_source(self)  # replay(to=None) puts back here
        self.visibility_timeout = float(visibility_timeout)
        # how long a blocked call may sleep in real seconds before re-reading the clock
        subscribe = getattr(clock, "subscribe", None)
        if clock is None:
            self._slice: float | None = None  # the clock is real time: sleep until due
        elif callable(subscribe):
            subscribe(self._wake)
            self._slice = math.inf  # woken by FakeClock.advance
        else:
            self._slice = _POLL_SLICE
        self._throughput = RateMeter()
        if not isinstance(metrics, bool):
            raise TypeError(f"metrics must be a bool, got {type(metrics).__name__}")
        #: put -> ack time of every acked message (None with metrics=False)
        self.latency: Histogram | None = Histogram(name=f"{name}.latency") if metrics else None
        if self.latency is not None:
            getattr(self._engine, "engine", self._engine)._set_latency(self.latency)
        track(self)

    def _open_durable(self, root: str, sync: str, options: dict[str, Any]) -> None:
        """Open the journal and the automatic dead-letter queue, replay; on any failure close
        what was opened (a failed constructor must not keep the directories locked)."""
        assert self.path is not None
        engine = LogEngine(self.path, sync=sync, codec=self.codec, **options)
        try:
            if self._own_dlq:
                self.dead_letter = DeadLetterQueue(
                    f"{self.name}.dlq",
                    path=os.path.join(root, f"{self.name}.dlq"),
                    sync=sync,
                    codec=self.codec,
                )
            self._log_engine = engine
            self._engine = engine.engine
            engine.recover(want_keys=self._dedup is not None)
            self._rebuild_dedup()
            self._flush_dead()  # what the reopen dead-lettered
        except BaseException:
            engine.close()
            if self._own_dlq and self.dead_letter is not None:
                self.dead_letter.close()
            raise

    # ---- put ------------------------------------------------------------------------------

    def put(
        self,
        message: Any,
        /,
        *,
        delay: float = 0.0,
        block: bool = True,
        timeout: float | None = None,
        **fields: Any,
    ) -> str:
        """Put a :class:`~fastq.Message` (or a payload, with Message ``fields`` as keywords);
        visible after ``delay`` seconds. Returns the message id (the first message's id when
        the dedup window drops it). Blocks while full (``block=False``: raise ``Full`` at once;
        ``timeout``: raise ``Full`` after that long)."""
        if self._remote is not None:
            return str(self._remote_put([message], fields, delay, block, timeout)[0])
        if not fields and self._dedup is None and not self._closed:
            mid: str | None = self._engine.offer_payload(message, delay)  # all in C
            if mid is not None:
                if self._armed:
                    self._wake_getters()
                return mid
        msg, first = self._admit(message, fields)
        if first is not None:
            return first
        try:
            if not self._engine.offer(msg, delay):
                self._put_wait(msg, delay, block, timeout)
        except BaseException:
            self._dedup_release(msg)
            raise
        if self._armed:
            self._wake_getters()
        return msg.id

    def _admit(self, message: Any, fields: dict[str, Any]) -> tuple[Message, str | None]:
        """The Message to put, and the first message's id when the dedup window drops it (its
        key is taken otherwise: :meth:`_dedup_release` frees it if the put then fails)."""
        if self._closed:
            raise Closed(f"queue {self.name!r} is closed")
        msg = message_from(message, fields)
        if self._dedup is not None and msg.idempotency_key is not None:
            return msg, self._dedup_claim(msg)
        return msg, None

    def put_many(
        self,
        messages: Iterable[Any],
        /,
        *,
        delay: float = 0.0,
        block: bool = True,
        timeout: float | None = None,
        **fields: Any,
    ) -> list[str]:
        """Put several messages in order (each a Message or a payload; ``fields`` apply to
        all). Returns their ids. If the queue fills up, waits for room like :meth:`put`; when
        that fails, :class:`~fastq.Full` is raised with ``exc.ids`` = the ids stored so far."""
        if self._closed:
            raise Closed(f"queue {self.name!r} is closed")
        items = messages if isinstance(messages, (list, tuple)) else list(messages)
        if self._remote is not None:
            return self._remote_put(items, fields, delay, block, timeout)
        ids: list[str] = []
        if self._dedup is None and not fields:
            ids = self._engine.offer_payloads(items, delay)  # stops at the first that does not fit
            rest = [message_from(m, fields) for m in items[len(ids) :]]
        else:
            rest = [message_from(m, fields) for m in items]
        try:
            for msg in rest:
                ids.append(self.put(msg, delay=delay, block=block, timeout=timeout))
        except Full as exc:
            exc.ids = ids  # type: ignore[attr-defined]
            raise
        finally:
            if self._armed and ids:
                self._wake_getters()
        return ids

    async def aput(
        self, message: Any, /, *, delay: float = 0.0, timeout: float | None = None, **fields: Any
    ) -> str:
        """:meth:`put`, waiting for room without blocking the event loop."""
        if self._remote is not None:
            if self._closed:
                raise Closed(f"queue {self.name!r} is closed")
            got: str = await self._in_thread(
                self._remote_put, [message], fields, delay, True, timeout, first=True
            )
            return got
        if not fields and self._dedup is None and not self._closed:
            mid: str | None = self._engine.offer_payload(message, delay)  # all in C
            if mid is not None:
                if self._armed:
                    self._wake_getters()
                return mid
        msg, first = self._admit(message, fields)
        if first is not None:
            return first
        try:
            deadline = self._deadline(_timeout(timeout))
            while not self._engine.offer(msg, delay):
                await self._await_change(deadline, Full, room=True)
                if self._closed:
                    raise Closed(f"queue {self.name!r} is closed")
        except BaseException:
            self._dedup_release(msg)
            raise
        if self._armed:
            self._wake_getters()
        return msg.id

    def _remote_put(
        self,
        items: Any,
        fields: dict[str, Any],
        delay: float,
        block: bool,
        timeout: float | None,
    ) -> list[str]:
        """Put on the server, in chunks; a full queue is retried every few ms (another process
        frees the room: nothing here can wake us) until the timeout."""
        if self._closed:
            raise Closed(f"queue {self.name!r} is closed")
        t = _timeout(timeout)
        delay = float(_timeout(delay, "delay") or 0.0)
        msgs = [message_from(m, fields) for m in items]
        ids: list[str] = []
        deadline = None if t is None else time.monotonic() + t
        i = 0
        while i < len(msgs):
            chunk = msgs[i : i + _REMOTE_CHUNK]
            done = self._remote.put_many(chunk, delay)
            for msg, r in zip(chunk, done, strict=False):
                ids.append(msg.id if r == 1 else r.decode())
            i += len(done)
            if len(done) == len(chunk):
                continue
            if not block or (deadline is not None and time.monotonic() >= deadline):
                exc = Full(f"queue {self.name!r} is full")
                exc.ids = ids  # type: ignore[attr-defined]
                raise exc
            if self._closed:
                raise Closed(f"queue {self.name!r} is closed")
            time.sleep(_FULL_SLICE)
        return ids

    def _remote_dead_letter(
        self, msg: Message, reason: str, attempts: int, first: float | None, err: str | None
    ) -> bytes:
        """A message leaves the server queue for the dead-letter queue: the entry for the
        ``<name>.dlq`` stream (written by the same script that acks), or stored in the
        dead-letter queue given (first: at-least-once into it)."""
        self._dead_total += 1
        entry = DeadLetter(
            message=msg,
            reason=reason,
            queue=self.name,
            attempts=attempts,
            first_delivery=first,
            last_delivery=time.time(),
            dead_lettered_at=time.time(),
            last_error=err,
        )
        dlq = self.dead_letter
        if dlq is None:
            return b""
        if self._own_dlq:
            return dlq._encode(entry)
        dlq.add(entry)
        return b""

    async def _in_thread(self, fn: Callable[..., Any], *args: Any, first: bool = False) -> Any:
        """Run a blocking remote call on this queue's waiter threads (a cancelled await gives
        back untried whatever the call took meanwhile)."""
        fut = asyncio.get_running_loop().run_in_executor(self._remote.executor(), fn, *args)
        try:
            got = await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(_give_back)
            raise
        return got[0] if first else got

    def _put_wait(self, msg: Message, delay: float, block: bool, timeout: float | None) -> None:
        t = _timeout(timeout)
        if not block or t == 0:
            if not self._engine.offer(msg, delay):
                raise Full(f"queue {self.name!r} is full")
            return
        deadline = self._deadline(t)
        with self._cond:
            self._waiting += 1
            self._engine.room_waiters += 1
            try:
                while not self._engine.offer(msg, delay):
                    if self._closed:
                        raise Closed(f"queue {self.name!r} is closed")
                    if not self._cond_wait(deadline):
                        raise Full(f"queue {self.name!r} is full (waited {t} s)")
            finally:
                self._waiting -= 1
                self._engine.room_waiters -= 1

    # ---- get ------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Delivery:
        """The next message as a leased :class:`~fastq.Delivery`. Waits up to ``timeout``
        seconds (None: forever; 0: not at all), then raises :class:`~fastq.Empty`; raises
        :class:`~fastq.Closed` once the queue is closed and holds nothing more."""
        d: Delivery | None = self._engine.poll()
        if self._engine.dead_pending:
            self._flush_dead()
        if d is not None:
            return d
        return self._get_wait(_timeout(timeout), 0)  # type: ignore[return-value]

    def get_many(self, max_messages: int, timeout: float | None = None) -> list[Delivery]:
        """Up to ``max_messages`` deliveries (at least one: waits like :meth:`get`)."""
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError(f"max_messages must be an int, got {type(max_messages).__name__}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        ds: list[Delivery] = self._engine.poll_many(max_messages)
        if self._engine.dead_pending:
            self._flush_dead()
        if ds:
            return ds
        return self._get_wait(_timeout(timeout), max_messages)  # type: ignore[return-value]

    def _take(self, n: int) -> Delivery | list[Delivery] | None:
        if n == 0:
            got: Delivery | list[Delivery] | None = self._engine.poll()
        else:
            got = self._engine.poll_many(n) or None
        if self._engine.dead_pending:
            self._flush_dead()
        return got

    def _get_wait(self, timeout: float | None, n: int) -> Delivery | list[Delivery]:
        if timeout == 0:
            self._check_drained()
            raise Empty(f"queue {self.name!r} has nothing ready")
        if self._remote is not None:
            return self._remote_wait(timeout, n)
        deadline = self._deadline(timeout)
        kicks = self._kicks
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    got = self._take(n)
                    if got is not None:
                        return got
                    self._check_drained()
                    if self._kicks != kicks:
                        raise Empty(f"queue {self.name!r}: the wait was interrupted")
                    if not self._armed:
                        self._armed = True  # puts from now on wake us: look once more
                        continue
                    if not self._cond_wait(deadline):
                        raise Empty(f"queue {self.name!r} has nothing ready (waited {timeout} s)")
            finally:
                self._waiting -= 1

    async def aget(self, timeout: float | None = None) -> Delivery:
        """:meth:`get` without blocking the event loop."""
        return await self._aget(_timeout(timeout), 0)  # type: ignore[return-value]

    async def aget_many(self, max_messages: int, timeout: float | None = None) -> list[Delivery]:
        """:meth:`get_many` without blocking the event loop."""
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError(f"max_messages must be an int, got {type(max_messages).__name__}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        return await self._aget(_timeout(timeout), max_messages)  # type: ignore[return-value]

    def _remote_wait(self, timeout: float | None, n: int) -> Delivery | list[Delivery]:
        """Wait for the server queue: the engine blocks (in slices) on new entries."""
        deadline = None if timeout is None else time.monotonic() + timeout
        kicks = self._kicks
        while True:
            got = self._take(n)
            if got is not None:
                return got
            self._check_drained()
            if self._kicks != kicks:
                raise Empty(f"queue {self.name!r}: the wait was interrupted")
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise Empty(f"queue {self.name!r} has nothing ready (waited {timeout} s)")
            self._remote.wait(left)

    async def _aget(self, timeout: float | None, n: int) -> Delivery | list[Delivery]:
        if self._remote is not None:
            got = self._take(n)  # one script: a busy queue answers without a thread
            if got is not None:
                return got
            self._check_drained()
            if timeout == 0:
                raise Empty(f"queue {self.name!r} has nothing ready")
            return await self._in_thread(self._remote_wait, timeout, n)  # type: ignore[no-any-return]
        deadline = self._deadline(timeout)
        kicks = self._kicks
        while True:
            got = self._take(n)
            if got is not None:
                return got
            self._check_drained()
            if timeout == 0:
                raise Empty(f"queue {self.name!r} has nothing ready")
            if self._kicks != kicks:
                raise Empty(f"queue {self.name!r}: the wait was interrupted")
            await self._await_change(deadline, Empty, room=False, kicks=kicks)

    def __iter__(self) -> Iterator[Delivery]:
        """Deliveries until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except Closed:
                return

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Delivery]:
        while True:
            try:
                yield await self.aget()
            except Closed:
                return

    # ---- settle ---------------------------------------------------------------------------

    def ack(self, receipt: int) -> None:
        """Settle a delivery as done (``Delivery.ack()`` does the same)."""
        self._engine.ack(receipt)

    def ack_many(self, receipts: Iterable[int | Delivery]) -> None:
        """Ack several receipts (or deliveries); all valid ones are acked even if some are
        stale, then :class:`~fastq.InvalidReceipt` reports the stale ones."""
        self._engine.ack_many(receipts)

    def nack(self, receipt: int, *, delay: float | None = None, error: object = None) -> None:
        """A failed attempt: visible again after ``delay`` seconds (default at once), or moved
        to the dead-letter queue if it was the last one allowed."""
        self._engine.nack(receipt, delay, error)
        if self._engine.dead_pending:
            self._flush_dead()
        if self._waiting:
            self._wake()

    def release(self, receipt: int, *, delay: float | None = None) -> None:
        """Give a delivery back untried: visible again after ``delay`` seconds (default at
        once), and the hand-out does not count as an attempt (a consumer pool that is stopping,
        or whose circuit breaker is open). Released messages go behind their class's ready
        messages, as a nacked one."""
        self._engine.release(receipt, delay)
        if self._waiting:
            self._wake()

    def reject(self, receipt: int, *, error: object = None, reason: str = "permanent") -> None:
        """Move a delivery's message to the dead-letter queue now (RabbitMQ's reject without
        requeue): ``reason="permanent"``
        (retrying cannot help) or ``"max_attempts"`` (the consumer's own retry limit, lower
        than ``max_deliveries``). ``error`` is kept as its last error."""
        self._engine.reject(receipt, reason, error)
        self._flush_dead()
        if self._waiting:
            self._wake()

    def extend(self, receipt: int, seconds: float) -> float:
        """Heartbeat: the lease runs out ``seconds`` from now. Returns the new deadline."""
        deadline: float = self._engine.extend(receipt, seconds)
        if self._waiting:
            self._wake()  # a waiter may be sleeping until the old deadline
        return deadline

    # ---- housekeeping ---------------------------------------------------------------------

    def purge(self) -> int:
        """Drop every ready message; returns how many (delayed and in-flight ones stay)."""
        return int(self._engine.purge())

    def statistics(self) -> QueueStatistics:
        c = self._engine.counts()
        if self._engine.dead_pending:
            self._flush_dead()
        now = self._engine.now()
        return QueueStatistics(
            name=self.name,
            ready=c[0],
            delayed=c[1],
            in_flight=c[2],
            dead_lettered=self._dead_total if self._remote is None else c[9],
            oldest_ready_age=None if c[5] is None else max(0.0, now - c[5]),
            bytes=c[4],
            put_total=c[6],
            acked_total=c[7],
            redelivered_total=c[8],
            nacked_total=c[10],
            lease_expiries=c[11],
            released_total=c[12],
            deduplicated_total=(
                self._deduplicated if self._remote is None else self._remote.deduplicated
            ),
            closed=self._closed,
            throughput=self._throughput.rate(c[7], time.monotonic()),
            latency=None if self.latency is None else self.latency.snapshot(),
        )

    def __len__(self) -> int:
        """Messages held: ready + delayed + in flight."""
        return len(self._engine)

    def close(self, *, drain: bool = True) -> None:
        """Refuse new puts. Consumers go on draining: ``get`` raises :class:`~fastq.Closed`
        once nothing is ready, delayed or in flight (a lease that runs out still redelivers).
        A durable queue closes its log once drained. ``drain=False`` stops at once: in-flight
        receipts go stale; a durable queue keeps what it holds on disk for the next open, an
        in-memory one drops it."""
        if not drain:
            self._closed = True
            self._shut()
            self._wake()
            return
        with self._cond:  # room_waiters is also counted by putters, under this lock
            if not self._closed:
                self._closed = True
                # from now on every ack may be the one that drains the queue: have the engine
                # report acks (as it does for waiting putters) so blocked getters hear of it
                self._engine.room_waiters += 1
        self._wake()

    def _shut(self) -> None:
        """Stop the engine: every receipt goes stale, the durable log is closed."""
        self._engine.advance()
        if self._engine.dead_pending:
            self._flush_dead()  # before the log forgets them
        if self._log_engine is not None:
            self._log_engine.close()
            if self._own_dlq and self.dead_letter is not None:
                self.dead_letter.close()
        old = self._engine
        self._engine = MemoryEngine(maxsize=1, clock=self._clock, owner=self)
        self._engine.direct_ack = True
        old.shutdown()  # every receipt handed out so far is stale now

    def delete(self) -> None:
        """Close the queue and drop everything it holds (a durable queue: its directory and
        its automatic dead-letter queue's)."""
        self._closed = True
        remote = self._remote
        self._shut()
        if remote is not None:
            remote.delete()
            if self._own_dlq and self.dead_letter is not None:
                self.dead_letter.purge()
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            if self._own_dlq:
                shutil.rmtree(f"{self.path}.dlq", ignore_errors=True)
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backend(self) -> RedisStreams | None:
        """The server the queue lives on (None: in this process)."""
        return None if self._remote is None else self._remote.backend

    @property
    def capabilities(self) -> Capabilities:
        """What the storage engine under this queue does itself (durable, delays, ...)."""
        if self.backend is not None:
            return self.backend.capabilities
        return LogEngine.capabilities if self._log_engine is not None else MEMORY_CAPABILITIES

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(drain=False)

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, held={len(self)}, closed={self._closed})"

    # ---- internals ------------------------------------------------------------------------

    def _check_drained(self) -> None:
        if self._closed and len(self._engine) == 0:
            if self._log_engine is not None and not self._log_engine.closed:
                self._shut()  # drained: the durable log has nothing left to keep
            raise Closed(f"queue {self.name!r} is closed and drained")

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._engine.now() + timeout

    def _sleep_for(self, deadline: float | None) -> float | None:
        """Real seconds to sleep before re-checking: until the next due event or the
        deadline, read on the queue clock."""
        due = self._engine.next_due()
        until = deadline if due is None else (due if deadline is None else min(due, deadline))
        if self._slice is None:
            return None if until is None else max(0.0, until - self._engine.now()) + 1e-4
        if self._slice == math.inf:
            return None
        return self._slice

    def _cond_wait(self, deadline: float | None) -> bool:
        """Wait (holding self._cond) for a change; False once the deadline has passed."""
        if deadline is not None and self._engine.now() >= deadline:
            return False
        self._cond.wait(self._sleep_for(deadline))
        return True

    async def _await_change(
        self, deadline: float | None, exc: type[Exception], *, room: bool, kicks: int = -1
    ) -> None:
        if deadline is not None and self._engine.now() >= deadline:
            raise exc(f"queue {self.name!r} is {'full' if room else 'empty'} (timed out)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiter = (loop, fut)
        with self._cond:
            self._async_waiters.add(waiter)
            self._waiting += 1
            if room:
                self._engine.room_waiters += 1
            else:
                self._armed = True
        try:
            # re-check after registering: a wake-up between the caller's checks and the
            # registration (a put, an ack that drained a closed queue, a close, a kick) was
            # sent to nobody, so look at what it would have announced
            if room and (self._closed or self._engine.has_room()):
                return  # the caller puts, or sees Closed
            if not room and self._closed and not len(self._engine):
                return  # closed and drained: the caller sees Closed
            if not room and (
                (len(self._engine) and self._engine.counts()[0]) or self._kicks != kicks
            ):
                return
            sleep = self._sleep_for(deadline)
            # woken, or the due time / deadline came: either way the caller re-checks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, sleep)
        finally:
            with self._cond:
                self._async_waiters.discard(waiter)
                self._waiting -= 1
                if room:
                    self._engine.room_waiters -= 1

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody to wake there
                loop.call_soon_threadsafe(_resolve, fut)

    def _wake_getters(self) -> None:
        self._armed = False
        self._wake()

    def _kick(self) -> None:
        """Make the gets blocked now return :class:`Empty` at once (a consumer pool that is
        stopping uses it so its workers do not sit out their poll timeout)."""
        with self._cond:
            self._kicks += 1
        self._wake()

    def _flush_dead(self) -> None:
        source = self._log_engine if self._log_engine is not None else self._engine
        dead = source.take_dead()
        if not dead:
            return
        self._dead_total += len(dead)
        if self.dead_letter is not None:
            offset = time.time() - self._engine.now()  # queue clock -> unix seconds
            now = time.time()
            for msg, reason, attempts, first, last, _put_at, err, _tag in dead:
                self.dead_letter.add(
                    DeadLetter(
                        message=msg,
                        reason=reason,
                        queue=self.name,
                        attempts=attempts,
                        first_delivery=None if first is None else first + offset,
                        last_delivery=None if last is None else last + offset,
                        dead_lettered_at=now,
                        last_error=err,
                    )
                )
        if self._log_engine is not None:
            # at-least-once into the dead-letter queue: its entries are written (and, in
            # sync="always", synced) before this log forgets the messages
            self._log_engine.confirm_dead([d[7] for d in dead])
        if self._waiting:
            self._wake()

    def _rebuild_dedup(self) -> None:
        """A durable queue reopened: keys put within the window are taken again (for a whole
        window from now: conservative, a duplicate is refused a little longer, never let in)."""
        if self._dedup is None or self._log_engine is None:
            return
        horizon = time.time_ns() - int(self._dedup_ttl * 1e9)
        now = self._engine.now()
        for put_ns, key, mid in self._log_engine.recovered_keys:
            if put_ns >= horizon and not self._dedup.seen(key):
                self._dedup_ids[key] = mid
                self._dedup_order.append((now + self._dedup_ttl, key))
        self._log_engine.recovered_keys.clear()

    def _dedup_claim(self, msg: Message) -> str | None:
        """None if ``msg`` is new (its key is now taken), else the first message's id."""
        assert self._dedup is not None
        key = msg.idempotency_key
        assert key is not None
        with self._dedup_lock:
            now = self._engine.now()
            order = self._dedup_order
            while order and order[0][0] <= now:
                self._dedup_ids.pop(order.popleft()[1], None)
            if self._dedup.seen(key):
                first = self._dedup_ids.get(key)
                if first is not None:
                    self._deduplicated += 1
                    return first
            self._dedup_ids[key] = msg.id
            order.append((now + self._dedup_ttl, key))
            return None

    def _dedup_release(self, msg: Message) -> None:
        """The put of ``msg`` failed: its key (if it took one) is free again."""
        key = msg.idempotency_key
        if self._dedup is None or key is None:
            return
        with self._dedup_lock:
            if self._dedup_ids.get(key) == msg.id:
                del self._dedup_ids[key]
                self._dedup.forget(key)


def _give_back(fut: asyncio.Future[Any]) -> None:
    """The await of a remote get was cancelled: release what the call took."""
    if fut.cancelled() or fut.exception() is not None:
        return
    got = fut.result()
    for d in got if isinstance(got, list) else [got]:
        if isinstance(d, Delivery):
            with contextlib.suppress(Exception):
                d.release()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
