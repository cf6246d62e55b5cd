"""The durable engine: the native work-queue state machine, journalled to a SegmentLog.

Every change that must survive a crash is one log record (docs/queue.md, "Durability"):

===  =====================================  ==============================================
key  value                                  meaning
===  =====================================  ==============================================
P    the message envelope                   put (key ``P`` + i64 ready time, if delayed)
D    (u64 put offset, u32 attempt)...      handed out (attempt counts survive); one record
                                            per get, or per get_many batch
N    u64 put offset, i64 ready time, error  nacked: visible again at that wall time
R    u64 put offset, u32 attempts, i64 ready released untried: its attempts (the hand-out
                                            not counted), visible again at that wall time
A    u64 put offsets                        acked (or purged): never delivered again; one
                                            record per ack, or per ack_many batch
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
from collections.abc import Callable, Sequence
from typing import Any

from .._core import MemoryQueue, Message, SegmentLog
from ..codecs import Codec
from ..errors import CorruptLogError
from .base import Capabilities

__all__ = ("LogEngine",)

_DELIVER = struct.Struct("<QI")
_NACK = struct.Struct("<Qq")
_RELEASE = struct.Struct("<QIq")
_I64 = struct.Struct("<q")
_P = b"P"


def _tags(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


class LogEngine:
    """Opens the journal in ``directory`` (a :class:`~fastq.SegmentLog`, sync mode ``sync``),
    replays it into a :class:`~fastq.backends.MemoryEngine` (:meth:`recover`) and attaches
    it, so that from then on the native engine (:attr:`engine`) journals every change itself:
    put, hand-out, nack and ack records are appended from C, with no Python per message."""

    capabilities = Capabilities(durable=True)

    def __init__(
        self,
        directory: str,
        *,
        sync: str = "none",
        segment_bytes: int = 64 << 20,
        owner: Any = None,
        clock: Callable[[], float] | None = None,
        codec: Codec | None = None,
        **options: Any,
    ) -> None:
        self._mem = MemoryQueue(clock=clock, owner=owner, **options)
        self._codec = codec
        self._codecs: tuple[Codec, ...] = () if codec is None else (codec,)
        self._max_deliveries: int = options.get("max_deliveries", 5)
        self._log = SegmentLog(directory, sync=sync, segment_bytes=segment_bytes)
        self._directory = directory
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
                for tag, attempt in _DELIVER.iter_unpack(rec.value):
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
            elif op == b"R":
                tag, attempts, ready = _RELEASE.unpack_from(rec.value)
                entry = live.get(tag)
                if entry is not None:
                    entry[1] = attempts
                    entry[2] = ready
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
        self._mem.attach_journal(self._log, self._codec)
        self._mem.retain()
        return len(live) - len(self._recovered_dead)

    def _decode(self, rec: Any) -> Message:
        return Message.decode(
            rec.value_view,
            codecs=self._codecs,
            source=f"{self._directory} (record {rec.offset})",
        )

    # ---- dead letters and housekeeping ---------------------------------------------------

    @property
    def engine(self) -> MemoryQueue:
        """The state machine, journalling to this log (after :meth:`recover`)."""
        return self._mem

    @property
    def dead_pending(self) -> bool:
        return bool(self._recovered_dead) or self._mem.dead_pending

    def take_dead(self) -> list[tuple[Any, ...]]:
        dead = self._recovered_dead + self._mem.take_dead()
        self._recovered_dead = []
        return dead

    def confirm_dead(self, tags: Sequence[int]) -> None:
        """The dead-letter queue holds these now: drop them from this log."""
        for i in range(0, len(tags), 1000):  # 8,000 bytes: fits even the smallest segments
            self._log.append(_tags(tags[i : i + 1000]), key=b"X")

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        if not self._log.closed:
            self._mem.retain()
            self._log.close()

    @property
    def closed(self) -> bool:
        return bool(self._log.closed)
