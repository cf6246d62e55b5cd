"""Partition engines for topics: an append-only sequence of messages with offsets, retention
and committed consumer-group offsets. In memory (:class:`MemoryPartition`) or on a
:class:`~fastq.SegmentLog` (:class:`LogPartition`, one log per partition, the message
envelope as the record value)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from .._core import Message, SegmentLog

__all__ = ("LogPartition", "MemoryPartition", "PartitionEngine")


class PartitionEngine(Protocol):
    """One partition: offsets are dense from ``start_offset`` to ``end_offset``."""

    def append(self, message: Message) -> int: ...

    def append_many(self, messages: list[Message]) -> int: ...

    def read(self, offset: int, max_records: int) -> list[Message]: ...

    @property
    def start_offset(self) -> int: ...

    @property
    def end_offset(self) -> int: ...

    def offset_for_time(self, timestamp_ns: int) -> int: ...

    def commit(self, group: str, offset: int) -> None: ...

    def committed(self, group: str) -> int | None: ...

    def close(self) -> None: ...


class MemoryPartition:
    """Messages in a list (offset - start = index past a dropped head); retention by bytes
    (payload bytes, as queues count them) and age (the message timestamp) runs on append.
    Thread-safe."""

    def __init__(
        self, *, retention_bytes: int | None = None, retention_seconds: float | None = None
    ) -> None:
        self._items: list[Message] = []
        self._head = 0  # items before it were dropped by retention (compacted lazily)
        self._sizes: deque[int] = deque()
        self._start = 0  # offset of self._items[self._head]
        self._bytes = 0
        self._retention_bytes = retention_bytes
        self._retention_ns = None if retention_seconds is None else int(retention_seconds * 1e9)
        self._retain = retention_bytes is not None or retention_seconds is not None
        self._committed: dict[str, int] = {}
        self._lock = threading.Lock()

    def append(self, message: Message) -> int:
        with self._lock:
            items = self._items
            offset = self._start + len(items) - self._head
            items.append(message)
            if self._retain:
                self._account([message])
            return offset

    def append_many(self, messages: list[Message]) -> int:
        with self._lock:
            offset = self._start + len(self._items) - self._head
            self._items.extend(messages)
            if self._retain:
                self._account(messages)
            return offset

    def _account(self, messages: list[Message]) -> None:
        for m in messages:
            p = m.payload
            n = len(p) if isinstance(p, (bytes, bytearray)) else len(str(p).encode())
            self._sizes.append(n)
            self._bytes += n
        # the newest record always stays (Kafka keeps the active segment)
        if self._retention_bytes is not None:
            while len(self._sizes) > 1 and self._bytes > self._retention_bytes:
                self._drop_oldest()
        if self._retention_ns is not None:
            horizon = time.time_ns() - self._retention_ns
            while len(self._sizes) > 1 and self._items[self._head].timestamp < horizon:
                self._drop_oldest()
        if self._head > 4096 and self._head * 2 > len(self._items):
            del self._items[: self._head]
            self._head = 0

    def _drop_oldest(self) -> None:
        self._items[self._head] = None  # type: ignore[call-overload]
        self._head += 1
        self._bytes -= self._sizes.popleft()
        self._start += 1

    def read(self, offset: int, max_records: int) -> list[Message]:
        with self._lock:
            i = self._head + max(offset - self._start, 0)
            return self._items[i : i + max_records]

    @property
    def start_offset(self) -> int:
        return self._start

    @property
    def end_offset(self) -> int:
        return self._start + len(self._items) - self._head

    def offset_for_time(self, timestamp_ns: int) -> int:
        """The first offset whose message timestamp is >= timestamp_ns (end if none);
        timestamps are creation times, so this assumes they grow with offsets, as they do
        when one process publishes."""
        with self._lock:
            lo, hi = self._head, len(self._items)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._items[mid].timestamp < timestamp_ns:
                    lo = mid + 1
                else:
                    hi = mid
            return self._start + lo - self._head

    def commit(self, group: str, offset: int) -> None:
        with self._lock:
            self._committed[group] = max(offset, self._committed.get(group, 0))

    def committed(self, group: str) -> int | None:
        return self._committed.get(group)

    def close(self) -> None:
        pass


class LogPartition:
    """A partition on a SegmentLog: record value = the message envelope, record key = the
    message key's bytes (for tools), record timestamp = the message timestamp. Committed
    offsets use the log's durable commit (tmp + fsync + rename)."""

    def __init__(
        self,
        directory: str,
        *,
        sync: str = "none",
        retention_bytes: int | None = None,
        retention_seconds: float | None = None,
        segment_bytes: int = 64 << 20,
    ) -> None:
        self._log = SegmentLog(
            directory,
            sync=sync,
            retention_bytes=retention_bytes,
            retention_seconds=retention_seconds,
            segment_bytes=segment_bytes,
        )
        self._source = directory

    def append(self, message: Message) -> int:
        return int(self._log.append(message.encode(), timestamp=message.timestamp))

    def append_many(self, messages: list[Message]) -> int:
        return int(
            self._log.append_many(
                [m.encode() for m in messages], timestamps=[m.timestamp for m in messages]
            )
        )

    def read(self, offset: int, max_records: int) -> list[Message]:
        start = self._log.start_offset
        records = self._log.read(max(offset, start), max_records)
        src = self._source
        return [Message.decode(r.value_view, source=f"{src} (record {r.offset})") for r in records]

    @property
    def start_offset(self) -> int:
        return int(self._log.start_offset)

    @property
    def end_offset(self) -> int:
        return int(self._log.end_offset)

    def offset_for_time(self, timestamp_ns: int) -> int:
        found = self._log.offset_for_time(timestamp_ns)
        return self.end_offset if found is None else int(found)

    def commit(self, group: str, offset: int) -> None:
        self._log.commit(group, offset)

    def committed(self, group: str) -> int | None:
        c = self._log.committed(group)
        return None if c is None else int(c)

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        if not self._log.closed:
            self._log.close()
