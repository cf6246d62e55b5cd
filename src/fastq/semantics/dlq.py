"""Dead-letter queues: where messages go when they cannot be delivered, with the context of why."""

from __future__ import annotations

import json
import struct
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass

from .._core import Message, SegmentLog
from ..codecs import Codec
from ..errors import CorruptLogError
from ..stats import DeadLetterStatistics

__all__ = ("DeadLetter", "DeadLetterQueue")

REASONS = ("max_deliveries", "expired", "rejected")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message and its failure context (times are unix seconds)."""

    message: Message
    """The original message, unchanged."""
    reason: str
    """``max_deliveries`` (every allowed attempt failed or timed out), ``expired`` (its
    ``deadline`` passed before delivery) or ``rejected`` (nacked on its last attempt)."""
    queue: str
    """The queue it came from."""
    attempts: int
    """How many times it was handed out."""
    first_delivery: float | None
    last_delivery: float | None
    dead_lettered_at: float
    last_error: str | None
    """The last failure's description, when a consumer gave one (``nack(error=...)``)."""


_CONTEXT_LEN = struct.Struct("<I")
_POPPED = "popped"  # the log's consumer position: entries before it were popped or dropped


class DeadLetterQueue:
    """Holds :class:`DeadLetter` entries in arrival order. ``maxsize`` (None: unbounded) keeps
    memory bounded by dropping the oldest entries first (counted). ``path``: a directory for a
    durable dead-letter queue (a :class:`~fastq.SegmentLog`; each entry is one record: the
    failure context as JSON, then the message envelope). Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        maxsize: int | None = None,
        path: str | None = None,
        sync: str = "none",
        codec: Codec | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if maxsize is not None:
            if isinstance(maxsize, bool) or not isinstance(maxsize, int):
                raise TypeError(f"maxsize must be an int or None, got {type(maxsize).__name__}")
            if maxsize < 1:
                raise ValueError(f"maxsize must be >= 1 (or None), got {maxsize!r}")
        self.name = name
        self.maxsize = maxsize
        self._entries: deque[DeadLetter] = deque()
        self._lock = threading.Lock()
        self._added = 0
        self._dropped = 0
        self._codec = codec
        self._log: SegmentLog | None = None
        self._offsets: deque[int] = deque()  # log offset of each held entry (durable only)
        if path is not None:
            self._log = SegmentLog(path, sync=sync)
            self._load()

    def _load(self) -> None:
        assert self._log is not None
        start = self._log.committed(_POPPED) or 0
        for rec in self._log.iter(max(start, self._log.start_offset)):
            value = rec.value_view
            source = f"{self._log.directory} (record {rec.offset})"
            try:
                (n,) = _CONTEXT_LEN.unpack_from(value)
                ctx = json.loads(bytes(value[4 : 4 + n]))
                msg = Message.decode(
                    value[4 + n :],
                    codecs=() if self._codec is None else (self._codec,),
                    source=source,
                    position=4 + n,
                )
                entry = DeadLetter(message=msg, **ctx)
            except CorruptLogError:
                raise
            except Exception as exc:
                raise CorruptLogError(source, 0, f"dead-letter context: {exc}") from None
            self._entries.append(entry)
            self._offsets.append(rec.offset)

    def _encode(self, entry: DeadLetter) -> bytes:
        ctx = {
            "reason": entry.reason,
            "queue": entry.queue,
            "attempts": entry.attempts,
            "first_delivery": entry.first_delivery,
            "last_delivery": entry.last_delivery,
            "dead_lettered_at": entry.dead_lettered_at,
            "last_error": entry.last_error,
        }
        raw = json.dumps(ctx, separators=(",", ":")).encode()
        return _CONTEXT_LEN.pack(len(raw)) + raw + entry.message.encode(self._codec)

    def _forget_through(self, n: int) -> None:
        """The oldest n held entries are gone: move the durable position past them."""
        if self._log is not None and n:
            for _ in range(n - 1):
                self._offsets.popleft()
            position = self._offsets.popleft() + 1
            self._log.commit(_POPPED, position)
            self._log.truncate_before(position)  # whole segments only: cheap

    def add(self, entry: DeadLetter) -> None:
        """Store one entry (queues call this)."""
        if not isinstance(entry, DeadLetter):
            raise TypeError(f"entry must be a DeadLetter, got {type(entry).__name__}")
        with self._lock:
            if self._log is not None:
                self._offsets.append(self._log.append(self._encode(entry), key=b"L"))
            self._entries.append(entry)
            self._added += 1
            if self.maxsize is not None and len(self._entries) > self.maxsize:
                self._entries.popleft()
                self._forget_through(1)
                self._dropped += 1

    def list(self, limit: int | None = None) -> list[DeadLetter]:
        """The oldest ``limit`` entries (all if None), without removing them."""
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit!r}")
        with self._lock:
            if limit is None or limit >= len(self._entries):
                return list(self._entries)
            return [self._entries[i] for i in range(limit)]

    def pop(self) -> DeadLetter | None:
        """Remove and return the oldest entry (None if empty)."""
        with self._lock:
            if not self._entries:
                return None
            self._forget_through(1)
            return self._entries.popleft()

    def purge(self) -> int:
        """Drop every entry; returns how many."""
        with self._lock:
            n = len(self._entries)
            self._forget_through(n)
            self._entries.clear()
            return n

    def flush(self) -> None:
        """Durable: make every entry added so far survive a power loss now."""
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        """Durable: close the log (entries stay on disk for the next open)."""
        if self._log is not None and not self._log.closed:
            self._log.close()

    def statistics(self) -> DeadLetterStatistics:
        with self._lock:
            by_reason = dict(Counter(e.reason for e in self._entries))
            return DeadLetterStatistics(
                name=self.name,
                size=len(self._entries),
                added_total=self._added,
                dropped_total=self._dropped,
                by_reason=by_reason,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(self.list())

    def __repr__(self) -> str:
        return f"DeadLetterQueue({self.name!r}, size={len(self)})"
