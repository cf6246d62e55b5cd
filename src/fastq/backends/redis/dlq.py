"""The dead-letter stream of a Redis queue (``{prefix}:q:{name}.dlq``): what
:class:`fastq.DeadLetterQueue` keeps there when it was made with ``backend=``. One entry per
dead letter (field ``e``: the failure context and the message envelope, as a durable
dead-letter queue stores them); entries are read in stream order and removed with XDEL."""

from __future__ import annotations

import functools
from typing import Any

from ._client import RedisStreams

__all__ = ("RedisDeadLetterStore",)

_SEQ_BITS = 22  # a stream id ms-seq as one int key: ms << 22 | seq


def key_of(entry_id: bytes) -> int:
    ms, seq = entry_id.split(b"-", 1)
    return (int(ms) << _SEQ_BITS) | int(seq)


def id_of(key: int) -> str:
    return f"{key >> _SEQ_BITS}-{key & ((1 << _SEQ_BITS) - 1)}"


class RedisDeadLetterStore:
    """Append, read-after, delete and length of one dead-letter stream."""

    def __init__(self, backend: RedisStreams, name: str) -> None:
        self.backend = backend
        self.name = name
        self.stream = backend.key("q", name) + ".dlq"
        self._client = backend.client
        self.source = f"redis {backend.address} stream {self.stream!r}"

    def append(self, data: bytes) -> int:
        eid = self.backend.call(
            lambda: self._client.xadd(self.stream, {"e": data}), f"dead-letter into {self.name!r}"
        )
        return key_of(eid)

    def read_after(self, key: int | None, count: int = 1000) -> list[tuple[int, bytes]]:
        """Entries after ``key`` (from the start if None), oldest first, at most ``count``."""
        start = "-" if key is None else "(" + id_of(key)
        rows: Any = self.backend.call(
            lambda: self._client.xrange(self.stream, start, "+", count=count),
            f"read dead letters of {self.name!r}",
        )
        return [(key_of(eid), fields[b"e"]) for eid, fields in rows]

    def delete(self, keys: list[int]) -> int:
        n = 0
        for i in range(0, len(keys), 1000):
            ids = [id_of(k) for k in keys[i : i + 1000]]
            n += int(
                self.backend.call(
                    functools.partial(self._client.xdel, self.stream, *ids),
                    f"remove dead letters of {self.name!r}",
                )
            )
        return n

    def length(self) -> int:
        return int(
            self.backend.call(lambda: self._client.xlen(self.stream), f"count {self.name!r}")
        )

    def clear(self) -> None:
        self.backend.call(lambda: self._client.delete(self.stream), f"purge {self.name!r}")
