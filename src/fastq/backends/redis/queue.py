"""The Redis Streams work-queue engine: what :class:`fastq.Queue` calls when it was made with
``backend=RedisStreams(...)``. Non-blocking and batch-first like the in-process engines; the
queue does the waiting (:meth:`RedisQueueEngine.wait` blocks on ``XREAD`` for new entries).

Each call is one server script (``_lua.py``): a batch put, a poll that also promotes due
delayed messages and reclaims expired leases, a batch ack. Receipts are local numbers naming
(class, entry id, delivery count); the server checks at settle time that the entry is still
pending for this consumer with that count, so a receipt whose lease ran out and was claimed
by another consumer is refused (:class:`fastq.InvalidReceipt`)."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..._core import Delivery, Histogram, Message
from ...codecs import Codec
from ...errors import InvalidReceipt
from . import _lua
from ._client import RedisStreams

__all__ = ("CLASSES", "RedisQueueEngine")

CLASSES = {"critical": 0, "high": 1, "normal": 2, "low": 3}
_CLASS_DIGIT = {name: str(c) for name, c in CLASSES.items()}
_U32 = struct.Struct("<I")
GROUP = "fastq"
_CLAIM_EVERY_MS = 100  # how often (at most) a poll looks for expired leases to reclaim
_WAIT_SLICE = 0.2  # the longest a waiting get blocks before it looks at leases / delays again


_COUNTERS = (b"put", b"acked", b"nacked", b"released", b"dead", b"expired", b"dedup", b"held")


def _describe(error: object) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__qualname__}: {text}" if text else type(error).__qualname__
    return str(error)


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _idkey(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


class _Held:
    """One hand-out this process holds: enough to settle it on the server."""

    __slots__ = ("attempt", "cls", "count", "first", "fresh_until", "id", "message", "put_ms")

    def __init__(
        self,
        cls: int,
        id: bytes,
        count: int,
        attempt: int,
        message: Message,
        put_ms: int,
        first: float,
        fresh_until: float,
    ) -> None:
        self.cls = cls
        self.id = id
        self.count = count
        self.attempt = attempt
        self.message = message
        self.put_ms = put_ms  # when it was put (ms), 0: the entry id's time
        self.first = first
        #: before this (monotonic) the lease cannot have run out on the server: the poll (or
        #: extend) that started it was sent later than the server started it
        self.fresh_until = fresh_until


class RedisQueueEngine:
    """One queue's state on a Redis server (see ``_lua.py`` for the keys). ``owner`` is the
    :class:`fastq.Queue` the deliveries name. ``dead_letter(message, reason, attempts,
    first_delivery, last_error)`` is called for each message that leaves for the dead-letter
    queue, before the server forgets it: it returns the ``<name>.dlq`` stream entry to write
    in the same script (or b"" when it stored the dead letter elsewhere itself)."""

    def __init__(
        self,
        backend: RedisStreams,
        name: str,
        *,
        owner: Any,
        maxsize: int | None,
        visibility_timeout: float,
        max_deliveries: int,
        priority_aging: float | None,
        dedup_window: float | None,
        codec: Codec | None,
        dead_letter: Callable[..., bytes],
        own_backend: bool = False,
    ) -> None:
        self.backend = backend
        self._own_backend = own_backend
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.name = name
        self._owner = owner
        self._maxsize = 0 if maxsize is None else int(maxsize)
        self._vt = float(visibility_timeout)
        self._vt_ms = max(1, round(self._vt * 1000))
        # how much sooner than the server this process counts a lease as possibly run out
        # (clock rates, the server's ms resolution)
        self._margin = 0.05 * self._vt + 0.01
        self._max_deliveries = int(max_deliveries)
        self._aging_ms = 0 if priority_aging is None else max(1, int(priority_aging * 1000))
        self._dedup_ms = 0 if dedup_window is None else max(1, int(dedup_window * 1000))
        self._codec = codec
        self._codecs: tuple[Codec, ...] = () if codec is None else (codec,)
        self._dead_letter = dead_letter
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        key = backend.key
        self.streams = [key("q", name, str(c)) for c in range(4)]
        self.delayed = key("q", name, "delayed")
        self.meta = key("q", name, "meta")
        self.dlq = key("q", name) + ".dlq"
        self._dedup_prefix = key("q", name, "dedup") + ":"
        self._mark_prefix = key("q", name, "put") + ":"
        self._k_all = [*self.streams, self.delayed, self.meta]
        self._client = backend.client
        self._put = backend.script(_lua.PUT)
        self._poll = backend.script(_lua.POLL)
        self._ack = backend.script(_lua.ACK)
        self._put_back = backend.script(_lua.PUT_BACK)
        self._dead = backend.script(_lua.DEAD)
        self._extend = backend.script(_lua.EXTEND)
        self._stats = backend.script(_lua.STATS)
        self._purge = backend.script(_lua.PURGE)
        self._held_script = backend.script(_lua.HELD)
        self._held: dict[int, _Held] = {}
        self._source = f"redis {backend.address} queue {name!r}"
        # receipts are numbered in blocks, one block per poll, taken under a lock (free-threaded
        # builds give itertools.count no such guarantee)
        self._next_receipt = 1
        self._receipt_lock = threading.Lock()
        self._closed = False
        self._latency: Histogram | None = None
        self._last_ids: list[bytes] = [b"0-0"] * 4
        self._next_due: float | None = None
        # the in-process engines' interface that the queue also uses
        self.on_room: Any = None
        self.room_waiters = 0
        self.direct_ack = False
        self.dead_pending = False
        self.deduplicated = 0  # as of the last counts()
        self._make_groups()

    # ---- set-up ---------------------------------------------------------------------------

    def _make_groups(self) -> None:
        errors = self.backend._errors

        def make() -> None:
            for s in self.streams:
                try:
                    self._client.xgroup_create(s, GROUP, id="0", mkstream=True)
                except errors.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

        self.backend.call(make, f"open queue {self.name!r}")

    def _run(
        self, script: Any, keys: list[str], args: list[Any], what: str, retried_at: int = -1
    ) -> Any:
        """Run a script; a missing consumer group (the server lost its data, or the keys were
        deleted) is made again once. ``retried_at``: the argument that says 1 when the call is
        a retry after a lost connection (the first call may have been applied)."""
        errors = self.backend._errors
        tries = 0

        def once() -> Any:
            nonlocal tries
            tries += 1
            if retried_at >= 0:
                args[retried_at] = 1 if tries > 1 else 0
            return script(keys=keys, args=args)

        try:
            return self.backend.call(once, what)
        except errors.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        self._make_groups()
        return self.backend.call(once, what)

    def _set_latency(self, hist: Histogram | None) -> None:
        self._latency = hist

    # ---- put ------------------------------------------------------------------------------

    def _args(self, messages: Sequence[Message], delay: float) -> list[Any]:
        codec = self._codec
        blob = bytearray()
        for m in messages:
            data = m.encode(codec)
            blob += _U32.pack(len(data))
            blob += data
        classes = "".join([_CLASS_DIGIT.get(m.priority, "2") for m in messages])
        delay_ms = 0 if not delay else max(1, round(delay * 1000))
        mark = self._mark_prefix + messages[0].id
        args: list[Any] = [self._maxsize, delay_ms, classes, bytes(blob), mark, 0]
        if self._dedup_ms:
            args += (self._dedup_ms, self._dedup_prefix)
            for m in messages:
                key = m.idempotency_key
                args += (
                    b"" if key is None else (key if isinstance(key, bytes) else str(key).encode()),
                    m.id,
                )
        return args

    def put_many(self, messages: Sequence[Message], delay: float = 0.0) -> list[Any]:
        """Store in order until the queue is full: per message stored, 1 (or the first
        message's id, bytes, when the dedup window dropped it)."""
        if not messages:
            return []
        return list(
            self._run(
                self._put,
                self._k_all,
                self._args(messages, delay),
                f"put into {self.name!r}",
                retried_at=5,
            )
        )

    def offer(self, message: Message, delay: float = 0.0) -> bool:
        return len(self.put_many([message], delay)) == 1

    def offer_many(self, messages: Iterable[Message], delay: float = 0.0) -> int:
        return len(self.put_many(list(messages), delay))

    def offer_payload(self, item: Any, delay: float = 0.0) -> str | None:
        msg = item if type(item) is Message else Message(item)
        return msg.id if self.offer(msg, delay) else None

    def offer_payloads(self, items: Iterable[Any], delay: float = 0.0) -> list[str]:
        msgs = [m if type(m) is Message else Message(m) for m in items]
        n = len(self.put_many(msgs, delay))
        return [m.id for m in msgs[:n]]

    def has_room(self, message: Message | None = None) -> bool:
        return not self._maxsize or len(self) < self._maxsize

    # ---- get ------------------------------------------------------------------------------

    def poll(self) -> Delivery | None:
        got = self.poll_many(1)
        return got[0] if got else None

    def poll_many(self, max_messages: int) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, [] if nothing is ready. Messages past their
        deadline or their last delivery go to the dead letters on the way (and the poll goes
        on to the next ones)."""
        while not self._closed:
            out, buried = self._poll_once(max_messages)
            if out or not buried:
                return out
        return []

    def _poll_once(self, max_messages: int) -> tuple[list[Delivery], int]:
        safe_until = time.monotonic() + self._vt - self._margin
        res = self._run(
            self._poll,
            self._k_all,
            [
                GROUP,
                self.consumer,
                max_messages,
                self._vt_ms,
                self._max_deliveries,
                _CLAIM_EVERY_MS,
                self._aging_ms,
            ],
            f"get from {self.name!r}",
        )
        fresh, claimed = res[1], res[2]
        if not fresh and not claimed:
            due = res[3]
            self._next_due = None if due is None else float(due) / 1000.0
            self._last_ids = list(res[4:8])
            return [], 0
        out: list[Delivery] = []
        now = res[0] / 1000.0  # the server's clock: when these were handed out
        deadline = time.monotonic() + self._vt
        source = self._source
        codecs = self._codecs
        owner = self._owner
        held = self._held
        with self._receipt_lock:
            first_receipt = self._next_receipt
            self._next_receipt += sum(len(fresh[i]) for i in range(1, len(fresh), 2)) + len(
                claimed
            )
        receipts = itertools.count(first_receipt)
        decode = Message.decode
        got: list[_Held] = []
        dead: list[tuple[_Held, str]] = []
        for i in range(0, len(fresh), 2):
            cls = fresh[i]
            for eid, f in fresh[i + 1]:
                if len(f) == 2:  # put once: m only; put time = the id's (0: read it there)
                    msg = decode(f[1], codecs=codecs, source=source)
                    got.append(_Held(cls, eid, 1, 1, msg, 0, now, safe_until))
                else:
                    kv = dict(zip(f[::2], f[1::2], strict=True))
                    msg = decode(kv[b"m"], codecs=codecs, source=source)
                    put = int(kv.get(b"t", 0))
                    attempt = 1 + int(kv.get(b"a", 0))
                    got.append(_Held(cls, eid, 1, attempt, msg, put, now, safe_until))
        for cls, eid, count, before, data, put, is_dead in claimed:
            msg = decode(data, codecs=codecs, source=source)
            h = _Held(cls, eid, count, count + before, msg, int(put or 0), now, safe_until)
            if is_dead:
                dead.append((h, "max_deliveries"))
            else:
                got.append(h)
        for h in got:
            if h.message.deadline is not None and h.message.deadline <= now:
                dead.append((h, "expired"))
                continue
            receipt = next(receipts)
            held[receipt] = h
            out.append(Delivery(h.message, h.attempt, receipt, deadline, owner))
        # past max_deliveries, or past its deadline before this hand-out: not delivered
        for h, reason in dead:
            self._bury(h, reason, None, check=False, attempts=h.attempt - 1)
        return out, len(dead)

    def wait(self, seconds: float) -> None:
        """Block up to ``seconds`` (at most a slice, so that leases running out elsewhere and
        delayed messages coming due are noticed) until a new entry arrives on any class."""
        seconds = min(seconds, _WAIT_SLICE)
        if self._next_due is not None:
            seconds = min(seconds, max(0.0, self._next_due - time.time()) + 0.001)
        if seconds <= 0.001:
            return
        streams = dict(zip(self.streams, self._last_ids, strict=False))
        ms = max(1, int(seconds * 1000))
        self.backend.call(
            lambda: self._client.xread(streams, count=1, block=ms), f"wait on {self.name!r}"
        )

    # ---- settle ---------------------------------------------------------------------------

    def _take(self, receipt: Any) -> _Held:
        if isinstance(receipt, Delivery):
            receipt = receipt.receipt
        held = self._held.pop(receipt, None)
        if held is None:
            raise InvalidReceipt(f"receipt {receipt!r} is stale or not of queue {self.name!r}")
        return held

    def ack(self, receipt: int) -> None:
        self.ack_many([receipt])

    def ack_many(self, receipts: Iterable[int | Delivery]) -> None:
        helds: list[_Held] = []
        stale = 0
        first: Any = None
        for r in receipts:
            try:
                helds.append(self._take(r))
            except InvalidReceipt:
                stale += 1
                if first is None:
                    first = r.receipt if isinstance(r, Delivery) else r
        if helds:
            now = time.monotonic()
            per: list[list[_Held]] = [[], [], [], []]
            sure: list[list[bytes]] = [[], [], [], []]
            for h in helds:
                if now < h.fresh_until:  # its lease cannot have run out: no check needed
                    sure[h.cls].append(h.id)
                else:
                    per[h.cls].append(h)
            # XPENDING's count: every entry this consumer has pending (this queue object's
            # deliveries) could lie between the lowest and highest id checked
            args: list[Any] = [GROUP, self.consumer, len(self._held) + len(helds) + 16, 0]
            for hs, ids in zip(per, sure, strict=True):
                if hs:
                    checked = [h.id for h in hs]
                    args += (
                        min(checked, key=_idkey),
                        max(checked, key=_idkey),
                        b" ".join([b"%s %d" % (h.id, h.count) for h in hs]),
                    )
                else:
                    args += (b"-", b"-", b"")
                args.append(b" ".join(ids))
            bad, lost = self._run(
                self._ack, [*self.streams, self.meta], args, f"ack on {self.name!r}", retried_at=3
            )
            stale += len(bad) + lost
            if bad and first is None:
                first = f"(entry {bad[0].decode()})"
            elif lost and first is None:
                first = "(an entry the server no longer had pending)"
            if self._latency is not None:
                now_ms = time.time() * 1000.0
                skip = set(bad)
                record = self._latency.record
                for h in helds:
                    if h.id not in skip:
                        put_ms = h.put_ms or _ms(h.id)
                        record(max(0.0, (now_ms - put_ms) / 1000.0))
        if stale:
            raise InvalidReceipt(
                f"{stale} stale receipt(s) on queue {self.name!r}, the first {first!r}: the "
                "lease ran out and the message went to another consumer, or it was settled"
            )

    def nack(self, receipt: int, delay: float | None = None, error: object = None) -> bool:
        """A failed attempt; True when the message was dead-lettered (its last attempt)."""
        held = self._take(receipt)
        if held.attempt >= self._max_deliveries:
            self._bury(held, "rejected", error, check=True, attempts=held.attempt, nacked=True)
            return True
        self._give_back(held, delay, held.attempt, "nacked")
        return False

    def release(self, receipt: int, delay: float | None = None) -> None:
        held = self._take(receipt)
        self._give_back(held, delay, held.attempt - 1, "released")

    def _give_back(self, held: _Held, delay: float | None, attempts: int, counter: str) -> None:
        delay_ms = 0 if not delay else max(1, round(delay * 1000))
        ok = self._run(
            self._put_back,
            [self.streams[held.cls], self.delayed, self.meta],
            [GROUP, self.consumer, held.id, held.count, delay_ms, attempts, counter, held.cls],
            f"{counter[:-2]} on {self.name!r}",
        )
        if not ok:
            raise InvalidReceipt(f"the lease of entry {held.id.decode()} on {self.name!r} ran out")

    def reject(self, receipt: int, reason: str = "permanent", error: object = None) -> None:
        if reason not in ("permanent", "max_attempts"):
            raise ValueError(f"reason must be 'permanent' or 'max_attempts', got {reason!r}")
        held = self._take(receipt)
        self._bury(held, reason, error, check=True, attempts=held.attempt)

    def _bury(
        self,
        held: _Held,
        reason: str,
        error: object,
        *,
        check: bool,
        attempts: int,
        nacked: bool = False,
    ) -> None:
        """Dead-letter one message: the dead-letter entry and the XACK in one script (the
        ``<name>.dlq`` stream), or stored by the queue first (another dead-letter queue:
        at-least-once into it)."""
        data = self._dead_letter(
            held.message, reason, max(attempts, 0), held.first, _describe(error)
        )
        ok = self._run(
            self._dead,
            [self.streams[held.cls], self.meta, self.dlq],
            [GROUP, self.consumer, held.id, held.count, data, 1 if check else 0, int(nacked)],
            f"dead-letter on {self.name!r}",
        )
        if not ok:
            raise InvalidReceipt(f"the lease of entry {held.id.decode()} on {self.name!r} ran out")

    def extend(self, receipt: int, seconds: float) -> float:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
        if not 0 <= seconds <= self._vt:
            raise ValueError(
                f"seconds must be between 0 and the visibility_timeout ({self._vt:g}) on Redis "
                f"Streams (a lease is the entry's idle time), got {seconds!r}"
            )
        held = self._held.get(receipt)
        if held is None:
            raise InvalidReceipt(f"receipt {receipt!r} is stale or not of queue {self.name!r}")
        idle = max(0, self._vt_ms - int(seconds * 1000))
        sent = time.monotonic()
        ok = self._run(
            self._extend,
            [self.streams[held.cls]],
            [GROUP, self.consumer, held.id, held.count, idle],
            f"extend on {self.name!r}",
        )
        if not ok:
            self._held.pop(receipt, None)
            raise InvalidReceipt(f"the lease of entry {held.id.decode()} on {self.name!r} ran out")
        held.fresh_until = sent + seconds - self._margin
        return time.monotonic() + seconds

    # ---- housekeeping ---------------------------------------------------------------------

    def take_dead(self) -> Sequence[tuple[Any, ...]]:
        return ()

    def purge(self) -> int:
        return int(
            self._run(self._purge, [*self.streams, self.meta], [GROUP], f"purge {self.name!r}")
        )

    def now(self) -> float:
        return time.monotonic()

    def next_due(self) -> float | None:
        return None

    def statistics(self) -> dict[str, Any]:
        """The server's view: lengths, pending, delayed, oldest unread put time, counters."""
        r = self._run(self._stats, self._k_all, [GROUP], f"statistics of {self.name!r}")
        meta = r[6]
        fields = {meta[i]: meta[i + 1] for i in range(0, len(meta), 2)}
        counters = {k.decode(): int(fields.get(k, 0)) for k in _COUNTERS}
        counters["unread"] = sum(int(fields.get(b"u%d" % c, 0)) for c in range(4))
        return {
            "pending": sum(r[0:4]),
            "delayed": int(r[4]),
            "oldest_ms": None if r[5] is None else int(r[5]),
            **counters,
        }

    def counts(self) -> tuple[Any, ...]:
        """The in-process engines' tuple (times on :meth:`now`'s clock)."""
        s = self.statistics()
        self.deduplicated = s.get("dedup", 0)
        in_flight = s["pending"]
        ready = max(0, s["held"] - in_flight - s["delayed"])
        oldest = None
        if s["oldest_ms"] is not None:
            oldest = self.now() - max(0.0, time.time() - s["oldest_ms"] / 1000.0)
        return (
            ready,
            s["delayed"],
            in_flight,
            s["held"],
            0,
            oldest,
            s.get("put", 0),
            s.get("acked", 0),
            s.get("expired", 0) + s.get("nacked", 0),
            s.get("dead", 0),
            s.get("nacked", 0),
            s.get("expired", 0),
            s.get("released", 0),
        )

    def __len__(self) -> int:
        if self._closed:
            return 0
        return int(self._run(self._held_script, [self.meta], [], f"length of {self.name!r}"))

    def advance(self) -> None:
        pass

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads the queue's async calls wait on (made on first use)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=64, thread_name_prefix=f"fastq-{self.name}"
            )
        return self._executor

    def shutdown(self) -> None:
        """This process stops: every receipt it holds is stale here (the server redelivers
        their messages once their leases run out); the messages stay on the server. A
        backend the queue made from a URL is closed (redis-py reconnects should the
        dead-letter queue still be used)."""
        self._closed = True
        self._held.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._own_backend:
            self.backend.close()

    def delete(self) -> None:
        self.shutdown()
        self.backend.delete(self.name, "q")

    def __repr__(self) -> str:
        return f"RedisQueueEngine({self.name!r}, {self.backend!r})"
