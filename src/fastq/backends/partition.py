"""Partition engines for topics: an append-only sequence of messages with offsets, retention
and committed consumer-group offsets. In memory (:class:`MemoryPartition`, native) or on a
:class:`~fastq.SegmentLog` (:class:`LogPartition`, one log per partition, the message
envelope as the record value)."""

from __future__ import annotations

from typing import Protocol

from .._core import MemoryPartition, Message, SegmentLog, decode_records
from ..codecs import Codec

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
        codec: Codec | None = None,
    ) -> None:
        self._codec = codec
        self._codecs: tuple[Codec, ...] = () if codec is None else (codec,)
        self._log = SegmentLog(
            directory,
            sync=sync,
            retention_bytes=retention_bytes,
            retention_seconds=retention_seconds,
            segment_bytes=segment_bytes,
        )
        self._source = directory

    def append(self, message: Message) -> int:
        return int(self._log.append(message.encode(self._codec), timestamp=message.timestamp))

    def append_many(self, messages: list[Message]) -> int:
        return int(
            self._log.append_many(
                [m.encode(self._codec) for m in messages],
                timestamps=[m.timestamp for m in messages],
            )
        )

    def read(self, offset: int, max_records: int) -> list[Message]:
        start = self._log.start_offset
        records = self._log.read(max(offset, start), max_records)
        return decode_records(records, self._source, self._codecs)  # one native loop

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
        """Monotonic, as in memory: an offset below the committed one is ignored."""
        current = self._log.committed(group)
        if current is None or offset > current:
            self._log.commit(group, offset)

    def committed(self, group: str) -> int | None:
        c = self._log.committed(group)
        return None if c is None else int(c)

    def groups(self) -> list[str]:
        """The groups that committed an offset here (kept on disk)."""
        return list(self._log.groups())

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        if not self._log.closed:
            self._log.close()
