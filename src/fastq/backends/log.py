"""The durable engine: the native work-queue state machine, journalled to a SegmentLog.

Every change that must survive a crash is one log record (docs/queue.md, "Durability"):

===  =====================================  ==============================================
key  value                                  meaning
===  =====================================  ==============================================
P    the message envelope                   put (key ``P`` + i64 ready time, if delayed)
D    u64 put offset, u32 attempt            handed out (attempt counts survive)
N    u64 put offset, i64 ready time, error  nacked: visible again at that wall time
A    u64 put offsets                        acked (or purged): never delivered again
X    u64 put offsets                        moved to the dead-letter queue (written after
                                            the dead-letter entry itself)
===  =====================================  ==============================================

A message is named by the offset of its put record. Reopening replays the log: every message
put and neither acked nor dead-lettered is back, with its attempt count; one that was in
flight when the process died has had a failed attempt (its lease died with the process), so
at ``max_deliveries`` it goes to the dead-letter queue. Segments whose messages are all
settled are deleted (retention).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._core import Delivery, MemoryQueue, Message, SegmentLog
from ..errors import CorruptLogError

__all__ = ("LogEngine",)

_DELIVER = struct.Struct("<QI")
_NACK = struct.Struct("<Qq")
_I64 = struct.Struct("<q")
_P = b"P"
_RETAIN_EVERY = 4096  # settlements between retention passes


def _tags(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


class LogEngine:
    """A :class:`~fastq.backends.MemoryEngine` whose every change is journalled to a
    :class:`~fastq.SegmentLog` in ``directory`` (sync mode ``sync``)."""

    def __init__(
        self,
        directory: str,
        *,
        sync: str = "none",
        segment_bytes: int = 64 << 20,
        owner: Any = None,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        self._mem = MemoryQueue(clock=clock, owner=owner, **options)
        self._mem.direct_ack = False  # acks must be journalled: through the queue
        self._max_deliveries: int = options.get("max_deliveries", 5)
        self._log = SegmentLog(directory, sync=sync, segment_bytes=segment_bytes)
        self._directory = directory
        self._settled = 0
        self._recovered_dead: list[tuple[Any, ...]] = []
        # (put wall ns, idempotency key, message id) of every put replayed, for the dedup window
        self.recovered_keys: list[tuple[int, str | bytes, str]] = []

    # ---- recovery --------------------------------------------------------------------------

    def recover(self, want_keys: bool = False) -> int:
        """Replay the log into the engine; returns how many messages are live."""
        log = self._log
        live: dict[int, list[Any]] = {}  # put offset -> [record, attempts, ready_ns, error]
        for rec in log.iter():
            key = rec.key or b""
            op = key[:1]
            if op == _P:
                ready = _I64.unpack_from(key, 1)[0] if len(key) >= 9 else 0
                live[rec.offset] = [rec, 0, ready, None]
            elif op == b"D":
                tag, attempt = _DELIVER.unpack(rec.value)
                entry = live.get(tag)
                if entry is not None:
                    entry[1] = attempt
            elif op == b"N":
                value = rec.value
                tag, ready = _NACK.unpack_from(value)
                entry = live.get(tag)
                if entry is not None:
                    entry[2] = ready
                    entry[3] = value[_NACK.size :].decode("utf-8", "surrogatepass") or None
            elif op in (b"A", b"X"):
                value = rec.value
                for tag in struct.unpack(f"<{len(value) // 8}Q", value):
                    live.pop(tag, None)
            else:
                raise CorruptLogError(
                    self._directory, rec.offset, f"record {rec.offset}: unknown queue op {key!r}"
                )
            if want_keys and op == _P:
                msg = self._decode(rec)
                if msg.idempotency_key is not None:
                    self.recovered_keys.append((msg.timestamp, msg.idempotency_key, msg.id))
        now_wall = time.time_ns()
        for tag, (rec, attempts, ready, error) in live.items():
            msg = self._decode(rec)
            if attempts >= self._max_deliveries:
                # its last lease died with the process: a failed attempt, and the last allowed
                self._recovered_dead.append(
                    (msg, "max_deliveries", attempts, None, None, 0.0, error, tag)
                )
                continue
            delay = max(0.0, (ready - now_wall) / 1e9) if ready else 0.0
            self._mem.restore(msg, delay, tag, attempts)
        self._retain()
        return len(live) - len(self._recovered_dead)

    def _decode(self, rec: Any) -> Message:
        return Message.decode(rec.value_view, source=f"{self._directory} (record {rec.offset})")

    # ---- put -------------------------------------------------------------------------------

    def _key(self, delay: float) -> bytes:
        if delay:
            d = float(delay)
            if not d >= 0 or d == float("inf"):
                raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
            return _P + _I64.pack(time.time_ns() + int(d * 1e9))
        return _P

    def offer(self, message: Message, delay: float = 0.0) -> bool:
        if not self._mem.has_room(message):
            return False
        tag = self._log.append(message.encode(), key=self._key(delay))
        if not self._mem.offer_tagged(message, delay, tag):  # lost a race for the last room
            self._log.append(_tags([tag]), key=b"A")
            return False
        return True

    def offer_payload(self, item: Any, delay: float = 0.0) -> str | None:
        msg = item if type(item) is Message else Message(item)
        return msg.id if self.offer(msg, delay) else None

    def offer_payloads(self, items: Iterable[Any], delay: float = 0.0) -> list[str]:
        ids: list[str] = []
        msgs = [m if type(m) is Message else Message(m) for m in items]
        n = self.offer_many(msgs, delay)
        ids = [m.id for m in msgs[:n]]
        return ids

    def offer_many(self, messages: Iterable[Message], delay: float = 0.0) -> int:
        msgs = list(messages)
        if not msgs:
            return 0
        key = self._key(delay)
        first = self._log.append_many([m.encode() for m in msgs], keys=[key] * len(msgs))
        stored = 0
        for i, m in enumerate(msgs):
            if not self._mem.offer_tagged(m, delay, first + i):
                break
            stored += 1
        if stored < len(msgs):  # full: the rest were never admitted
            self._log.append(_tags(list(range(first + stored, first + len(msgs)))), key=b"A")
        return stored

    def has_room(self, message: Message | None = None) -> bool:
        return self._mem.has_room(message)

    # ---- get -------------------------------------------------------------------------------

    def poll(self) -> Delivery | None:
        d = self._mem.poll()
        if d is not None:
            self._log.append(_DELIVER.pack(d._tag, d.attempt), key=b"D")
        return d

    def poll_many(self, max_messages: int) -> list[Delivery]:
        ds = self._mem.poll_many(max_messages)
        if ds:
            self._log.append_many(
                [_DELIVER.pack(d._tag, d.attempt) for d in ds], keys=[b"D"] * len(ds)
            )
        return ds

    # ---- settle ----------------------------------------------------------------------------

    def ack(self, receipt: int) -> None:
        tag = self._mem.ack_tag(receipt)
        self._log.append(_I64.pack(tag), key=b"A")
        self._settle(1)

    def ack_many(self, receipts: Iterable[int | Delivery]) -> None:
        from ..errors import InvalidReceipt

        tags: list[int] = []
        bad = 0
        first_bad: object = None
        for r in receipts:
            try:
                tags.append(self._mem.ack_tag(r.receipt if isinstance(r, Delivery) else r))
            except InvalidReceipt:
                if not bad:
                    first_bad = r
                bad += 1
        if tags:
            self._log.append(_tags(tags), key=b"A")
            self._settle(len(tags))
        if bad:
            raise InvalidReceipt(
                f"{bad} stale receipt(s), the first {first_bad!r}; the others were acked"
            )

    def nack(self, receipt: int, delay: float | None = None, error: object = None) -> bool:
        dead, tag = self._mem.nack_tag(receipt, delay, error)
        if not dead:
            ready = time.time_ns() + int((delay or 0.0) * 1e9)
            text = b""
            if error is not None:
                text = (
                    error if isinstance(error, str) else f"{type(error).__qualname__}: {error}"
                ).encode("utf-8", "surrogatepass")
            self._log.append(_NACK.pack(tag, ready) + text, key=b"N")
        return bool(dead)

    def extend(self, receipt: int, seconds: float) -> float:
        return self._mem.extend(receipt, seconds)

    def _settle(self, n: int) -> None:
        self._settled += n
        if self._settled >= _RETAIN_EVERY:
            self._retain()

    def _retain(self) -> None:
        self._settled = 0
        low = self._mem.min_tag()
        self._log.truncate_before(self._log.end_offset if low is None else low)

    # ---- dead letters and housekeeping ---------------------------------------------------

    @property
    def dead_pending(self) -> bool:
        return bool(self._recovered_dead) or self._mem.dead_pending

    def take_dead(self) -> list[tuple[Any, ...]]:
        dead = self._recovered_dead + self._mem.take_dead()
        self._recovered_dead = []
        return dead

    def confirm_dead(self, tags: Sequence[int]) -> None:
        """The dead-letter queue holds these now: drop them from this log."""
        if tags:
            self._log.append(_tags(tags), key=b"X")
            self._settle(len(tags))

    def purge(self) -> int:
        tags = self._mem.purge_tags()
        if tags:
            self._log.append(_tags(tags), key=b"A")
            self._settle(len(tags))
        return len(tags)

    def advance(self) -> None:
        self._mem.advance()

    def now(self) -> float:
        return self._mem.now()

    def next_due(self) -> float | None:
        return self._mem.next_due()

    def counts(self) -> tuple[Any, ...]:
        return self._mem.counts()

    def __len__(self) -> int:
        return len(self._mem)

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        if not self._log.closed:
            self._retain()
            self._log.close()

    @property
    def closed(self) -> bool:
        return bool(self._log.closed)

    # the facade's wake-up hooks live on the state machine
    @property
    def on_room(self) -> Any:
        return self._mem.on_room

    @on_room.setter
    def on_room(self, fn: Any) -> None:
        self._mem.on_room = fn

    @property
    def room_waiters(self) -> int:
        return self._mem.room_waiters

    @room_waiters.setter
    def room_waiters(self, n: int) -> None:
        self._mem.room_waiters = n

    @property
    def direct_ack(self) -> bool:
        return False

    @direct_ack.setter
    def direct_ack(self, value: bool) -> None:
        pass  # never: every ack is journalled
