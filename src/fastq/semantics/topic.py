"""Topic: stream semantics (Kafka / Redis Streams, in process). Messages are appended to
partitions chosen by key; consumer groups share the partitions and keep committed offsets;
different groups read independently; anything still retained can be replayed. docs/topic.md."""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._core import (
    ConsumerRecord,
    Message,
    consumer_records,
    group_by_partition,
    make_messages,
    new_message,
    publish_grouped,
    route_publish,
)
from .._core import partition as _partition
from .._meter import RateMeter
from .._registry import track
from ..backends.partition import LogPartition, MemoryPartition, PartitionEngine
from ..backends.redis import RedisStreams, as_backend
from ..backends.redis.topic import RedisTopicEngine
from ..codecs import Codec
from ..errors import BackendError, Closed, OffsetOutOfRange, Unsupported
from ..stats import ConsumerGroupStatistics, TopicStatistics
from .queue import message_from

__all__ = ("Consumer", "Topic")

_Callback = Callable[[list[int]], object]

log = logging.getLogger("fastq.topic")

_REMOTE_HINTS = {
    "path=": "durability is the server's (appendonly yes, appendfsync always)",
    "sync=": "durability is the server's (appendonly yes, appendfsync always)",
    "segment_bytes=": "the server keeps the partitions as streams, not log segments",
    "retention_bytes=": "streams are trimmed by age: use retention_seconds=",
}
_DEFAULT_SEGMENT_BYTES = 64 << 20


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


class Topic:
    """A partitioned, replayable stream. ``publish`` routes a message to
    ``fastq.partition(key, partitions)`` (keyless messages go round-robin), so records of one
    key keep their order. ``path``: a directory for durable partitions (one
    :class:`~fastq.SegmentLog` each, with ``sync``, ``retention_bytes`` per partition and
    ``retention_seconds``); in memory otherwise. Thread-safe.

    ``backend``: a :class:`fastq.backends.RedisStreams` or a ``redis://`` URL keeps the
    partitions, committed offsets and group membership on a Redis server (one stream per
    partition), shared by every process and machine that opens a topic of this name there:
    the members of a consumer group in all of them share the partitions, one owner at a time
    (docs/redis.md). ``path``, ``sync``, ``segment_bytes`` and ``retention_bytes`` do not
    apply there (:class:`fastq.Unsupported`)."""

    def __init__(
        self,
        name: str,
        *,
        partitions: int = 8,
        path: str | None = None,
        retention_bytes: int | None = None,
        retention_seconds: float | None = None,
        sync: str = "none",
        segment_bytes: int = _DEFAULT_SEGMENT_BYTES,
        codec: Codec | None = None,
        backend: RedisStreams | str | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"name must be a non-empty file-name-safe str, got {name!r}")
        remote = as_backend(backend)
        #: a backend made here from a URL is this topic's to close
        self._own_backend = remote is not None and not isinstance(backend, RedisStreams)
        if remote is not None:
            for arg, given in (
                ("path=", path is not None),
                ("sync=", sync != "none"),
                ("segment_bytes=", segment_bytes != _DEFAULT_SEGMENT_BYTES),
                ("retention_bytes=", retention_bytes is not None),
            ):
                if given:
                    raise Unsupported(arg, remote.name, _REMOTE_HINTS[arg])
        self.name = name
        self.partitions = _positive_int(partitions, "partitions")
        if retention_bytes is not None:
            _positive_int(retention_bytes, "retention_bytes")
        if retention_seconds is not None:
            if isinstance(retention_seconds, bool) or not isinstance(
                retention_seconds, (int, float)
            ):
                raise TypeError(
                    f"retention_seconds must be a number, got {type(retention_seconds).__name__}"
                )
            if not retention_seconds > 0:
                raise ValueError(f"retention_seconds must be > 0, got {retention_seconds!r}")
        if sync != "none" and path is None:
            raise ValueError(f"sync applies to durable topics (path=); got {sync!r} without a path")
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"codec must be a fastq.codecs.Codec, got {type(codec).__name__}")
        self.path = None if path is None else os.path.join(os.fspath(path), name)
        #: the Redis server the topic lives on (None: in this process)
        self.backend = remote
        self._remote: RedisTopicEngine | None = None
        self._parts: list[PartitionEngine] = []
        if remote is not None:
            self._remote = RedisTopicEngine(
                remote,
                name,
                self.partitions,
                retention_seconds=retention_seconds,
                codec=codec,
            )
            self._parts.extend(self._remote.parts)
        for p in range(self.partitions if remote is None else 0):
            if self.path is None:
                self._parts.append(
                    MemoryPartition(
                        retention_bytes=retention_bytes, retention_seconds=retention_seconds
                    )
                )
            else:
                self._parts.append(
                    LogPartition(
                        os.path.join(self.path, f"p{p}"),
                        sync=sync,
                        retention_bytes=retention_bytes,
                        retention_seconds=retention_seconds,
                        segment_bytes=segment_bytes,
                        codec=codec,
                    )
                )
        self._rr = itertools.count()
        self._memory = self.path is None and remote is None
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._throughput = RateMeter()
        track(self)

    # ---- publish --------------------------------------------------------------------------

    def publish(self, message: Any, /, *, key: Any = None, **fields: Any) -> tuple[int, int]:
        """Append a message (or a payload, with Message fields as keywords) to its key's
        partition; returns ``(partition, offset)``."""
        if self._closed:
            raise Closed(f"topic {self.name!r} is closed")
        if type(message) is Message and key is None and not fields:
            msg = message
        elif not fields and type(message) is not Message:
            msg = new_message(message, key)  # no keyword parsing: the common case
        else:
            msg = self._message(message, key, fields)
        if self._memory:
            rr = next(self._rr) if msg.key is None else 0  # keyed messages take no turn
            return route_publish(self._parts, msg, rr)  # type: ignore[arg-type]
        k = msg.key
        p = next(self._rr) % self.partitions if k is None else _partition(k, self.partitions)
        return p, self._parts[p].append(msg)

    def publish_many(
        self, messages: Iterable[Any], /, *, key: Any = None, **fields: Any
    ) -> list[tuple[int, int]]:
        """Publish a batch: grouped per partition in C (one append per partition); returns
        ``(partition, offset)`` per message, in input order. Keyless messages spread
        round-robin."""
        if self._closed:
            raise Closed(f"topic {self.name!r} is closed")
        if key is not None or fields:
            msgs = [self._message(m, key, fields) for m in messages]
            keys = [m.key for m in msgs]
        else:
            msgs, keys = make_messages(messages)
        n = len(msgs)
        if not n:
            return []
        if self._remote is not None:
            # keyless messages take round-robin turns exactly as publish() does; the batch
            # is one server script (each partition's messages appended contiguously)
            rr, parts = self._rr, self.partitions
            ps = [next(rr) % parts if k is None else _partition(k, parts) for k in keys]
            return self._remote.publish(ps, msgs)
        out: list[tuple[int, int]] = [(0, 0)] * n
        if any(k is None for k in keys):
            # keyless messages take round-robin turns exactly as publish() does
            rr = self._rr
            for i, (m, k) in enumerate(zip(msgs, keys, strict=True)):
                p = next(rr) % self.partitions if k is None else _partition(k, self.partitions)
                out[i] = (p, self._parts[p].append(m))
            return out
        order, counts = group_by_partition(keys, self.partitions)  # type: ignore[arg-type]
        return publish_grouped(self._parts, msgs, order, counts)

    def _message(self, obj: Any, key: Any, fields: dict[str, Any]) -> Message:
        return message_from(obj, fields if key is None else {**fields, "key": key})

    # ---- consume --------------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        *,
        start: str | int | _dt.datetime = "committed",
        auto_commit: bool = True,
        on_assign: _Callback | None = None,
        on_revoke: _Callback | None = None,
        reset: str = "earliest",
        auto_commit_interval: float = 0.0,
    ) -> Consumer:
        """A new member of consumer group ``group`` (see :class:`Consumer`)."""
        if not isinstance(group, str) or not group:
            raise TypeError(f"group must be a non-empty str, got {group!r}")
        if self._closed:
            raise Closed(f"topic {self.name!r} is closed")
        with self._lock:
            g = self._groups.get(group)
            if g is None:
                g = self._groups[group] = _Group(self, group)
        cls = Consumer if self._remote is None else _RemoteConsumer
        return cls(g, start, auto_commit, on_assign, on_revoke, reset, auto_commit_interval)

    def end_offsets(self) -> dict[int, int]:
        if self._remote is not None:
            return dict(enumerate(self._remote.bounds()[1]))
        return {p: part.end_offset for p, part in enumerate(self._parts)}

    def start_offsets(self) -> dict[int, int]:
        if self._remote is not None:
            return dict(enumerate(self._remote.bounds()[0]))
        return {p: part.start_offset for p, part in enumerate(self._parts)}

    def committed(self, group: str) -> dict[int, int | None]:
        """The group's committed offset per partition (None where it committed nothing)."""
        if self._remote is not None:
            return dict(enumerate(self._remote.committed(group)))
        return {p: part.committed(group) for p, part in enumerate(self._parts)}

    def lag(self, group: str) -> dict[int, int]:
        """Records per partition the group has not committed past (from the partition start
        where it committed nothing). On Redis: the lag ``XINFO GROUPS`` reports."""
        if self._remote is not None:
            return {p: row[3] for p, row in enumerate(self._remote.group_info(group)[1])}
        out = {}
        for p, part in enumerate(self._parts):
            c = part.committed(group)
            out[p] = part.end_offset - max(part.start_offset if c is None else c, part.start_offset)
        return out

    def statistics(self) -> TopicStatistics:
        """Offsets, records held, publish rate and every known group's lag (no I/O beyond
        reading one record header per lagging partition)."""
        with self._lock:
            names = set(self._groups)
        if self._remote is not None:
            start_list, end_list, remote_names = self._remote.bounds()
            starts, ends = dict(enumerate(start_list)), dict(enumerate(end_list))
            names.update(remote_names)
        else:
            starts = self.start_offsets()
            ends = self.end_offsets()
            for part in self._parts:  # a closed durable topic raises Closed (no statistics)
                groups = getattr(part, "groups", None)
                if groups is not None:
                    names.update(groups())
        return TopicStatistics(
            name=self.name,
            partitions=self.partitions,
            start_offsets=starts,
            end_offsets=ends,
            records=sum(ends[p] - starts[p] for p in ends),
            throughput=self._throughput.rate(sum(ends.values()), time.monotonic()),
            groups={g: self.group_statistics(g) for g in sorted(names)},
            closed=self._closed,
        )

    def group_statistics(self, group: str) -> ConsumerGroupStatistics:
        """One consumer group: members here, committed offsets, lag per partition and the age
        of the oldest record it has not committed past."""
        if not isinstance(group, str):
            raise TypeError(f"group must be a str, got {type(group).__name__}")
        with self._lock:
            g = self._groups.get(group)
        members = 0 if g is None else len(g.members_snapshot())
        committed: dict[int, int | None] = {}
        lag: dict[int, int] = {}
        oldest: int | None = None
        if self._remote is not None:
            # members: the live members on the server, in every process
            members, rows = self._remote.group_info(group, heads=True)
            for p, (_, _, c, n, head) in enumerate(rows):
                committed[p] = c
                lag[p] = n
                if n > 0 and head is not None and (oldest is None or head < oldest):
                    oldest = head
        for p, part in enumerate(self._parts if self._remote is None else ()):
            c = part.committed(group)
            committed[p] = c
            start = part.start_offset
            at = start if c is None else max(c, start)
            lag[p] = part.end_offset - at
            if lag[p] > 0:
                head = part.read(at, 1)
                if head and (oldest is None or head[0].timestamp < oldest):
                    oldest = head[0].timestamp
        return ConsumerGroupStatistics(
            topic=self.name,
            group=group,
            members=members,
            committed=committed,
            lag=lag,
            total_lag=sum(lag.values()),
            oldest_uncommitted_age=None if oldest is None else max(0.0, time.time() - oldest / 1e9),
        )

    def flush(self) -> None:
        for part in self._parts:
            flush = getattr(part, "flush", None)
            if flush is not None:
                flush()

    def close(self) -> None:
        """Close the topic: members leave (committing), durable partitions close. On a Redis
        server the records and committed offsets stay (:meth:`delete` drops them)."""
        with self._lock:
            groups = list(self._groups.values())
        for g in groups:
            for member in g.members_snapshot():
                member.close()
        self._closed = True
        for part in self._parts:
            part.close()
        self._close_backend()

    def _close_backend(self) -> None:
        if self._own_backend and self.backend is not None:
            self.backend.close()

    def delete(self) -> None:
        """Close the topic and drop its records and committed offsets: every key of the topic
        on its Redis server, or a durable topic's directory."""
        self.close()
        if self._remote is not None:
            self._remote.delete()
        elif self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        self._close_backend()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Topic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, partitions={self.partitions})"


class _Group:
    """Membership and partition ownership of one consumer group (cooperative rebalancing at
    poll boundaries: a partition moves only after its owner released it)."""

    def __init__(self, topic: Topic, name: str) -> None:
        self.topic = topic
        self.name = name
        self.lock = threading.Lock()
        self.members: list[Consumer] = []
        self.target: dict[Consumer, set[int]] = {}
        self.owner: dict[int, Consumer | None] = dict.fromkeys(range(topic.partitions))
        self.generation = 0

    def members_snapshot(self) -> list[Consumer]:
        with self.lock:
            return list(self.members)

    def _assign(self) -> None:
        """Range-assign the partitions over the members in join order (called under lock)."""
        self.generation += 1
        n, m = self.topic.partitions, len(self.members)
        self.target = {c: set() for c in self.members}
        for i, c in enumerate(self.members):
            lo = i * n // m
            hi = (i + 1) * n // m
            self.target[c] = set(range(lo, hi))

    def join(self, c: Consumer) -> None:
        with self.lock:
            self.members.append(c)
            self._assign()

    def leave(self, c: Consumer) -> None:
        with self.lock:
            if c in self.members:
                self.members.remove(c)
            for p, o in self.owner.items():
                if o is c:
                    self.owner[p] = None
            self._assign()


class Consumer:
    """A member of a consumer group, made by :meth:`Topic.consumer`.

    Members of one group share the partitions (range assignment in join order, rebalanced
    when members join or leave); each partition belongs to one member at a time, so records
    of one key reach one member at a time, in publish order. Rebalancing is cooperative: a
    member gives a partition up at its next :meth:`poll` (first ``on_revoke``, then a commit
    of its position), and only then does the new owner get it (``on_assign``) and resume
    from the group's committed offset.

    ``start`` applies only where the group has committed nothing: ``"committed"`` and
    ``"earliest"`` start at the oldest retained record, ``"latest"`` at the end, an int at that
    offset, a datetime at the first record at or after it. ``auto_commit``: each poll first
    commits what the previous polls returned (processed by then), as Kafka's auto commit does;
    also on revoke and close. ``auto_commit_interval`` (seconds, default 0: every poll) spaces
    those commits out, as Kafka's ``auto.commit.interval.ms`` (5 s there) does: on a durable
    topic each commit is an atomic file replacement, worth sparing at high poll rates (a
    crash then redelivers up to one interval of records). ``reset``: where to go when a
    position fell below the retained start (retention deleted it): ``"earliest"`` (the
    default) or ``"latest"``, or ``"raise"`` for :class:`~fastq.OffsetOutOfRange`.
    """

    def __init__(
        self,
        group: _Group,
        start: str | int | _dt.datetime,
        auto_commit: bool,
        on_assign: _Callback | None,
        on_revoke: _Callback | None,
        reset: str,
        auto_commit_interval: float = 0.0,
    ) -> None:
        if isinstance(auto_commit_interval, bool) or not isinstance(
            auto_commit_interval, (int, float)
        ):
            raise TypeError(
                f"auto_commit_interval must be a number of seconds, "
                f"got {type(auto_commit_interval).__name__}"
            )
        if not auto_commit_interval >= 0 or auto_commit_interval == float("inf"):
            raise ValueError(
                f"auto_commit_interval must be a finite number >= 0, got {auto_commit_interval!r}"
            )
        self.auto_commit_interval = float(auto_commit_interval)
        self._last_auto_commit = 0.0
        if isinstance(start, str):
            if start not in ("committed", "earliest", "latest"):
                raise ValueError(
                    f"start must be 'committed', 'earliest', 'latest', an offset or a "
                    f"datetime, got {start!r}"
                )
        elif isinstance(start, bool) or not isinstance(start, (int, _dt.datetime)):
            raise TypeError(
                f"start must be 'committed', 'earliest', 'latest', an int or a datetime, "
                f"got {type(start).__name__}"
            )
        elif isinstance(start, int) and start < 0:
            raise ValueError(f"start offset must be >= 0, got {start!r}")
        if reset not in ("earliest", "latest", "raise"):
            raise ValueError(f"reset must be 'earliest', 'latest' or 'raise', got {reset!r}")
        for name, cb in (("on_assign", on_assign), ("on_revoke", on_revoke)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name} must be callable, got {type(cb).__name__}")
        self._group = group
        self._topic = group.topic
        self._start = start
        self.auto_commit = bool(auto_commit)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._reset = reset
        self._positions: dict[int, int] = {}  # owned partition -> next offset to read
        self._returned: dict[int, int] = {}  # position after what the last poll returned
        self._closed = False
        self._next_part = 0
        group.join(self)

    @property
    def group(self) -> str:
        return self._group.name

    def assignment(self) -> list[int]:
        """The partitions this member owns now."""
        return sorted(self._positions)

    # ---- polling -------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float | None = None) -> list[ConsumerRecord]:
        """Up to ``max_records`` records from the partitions this member owns (round-robin
        over them), after settling any rebalance. Returns ``[]`` when nothing is there within
        ``timeout`` seconds (None or 0: look once)."""
        _positive_int(max_records, "max_records")
        if self._closed:
            raise Closed("consumer is closed")
        if self.auto_commit:
            if not self.auto_commit_interval:
                self.commit()
            else:
                now = time.monotonic()
                if now - self._last_auto_commit >= self.auto_commit_interval:
                    self._last_auto_commit = now
                    self.commit()
        self._rebalance()
        out = self._fetch(max_records)
        if out or not timeout:
            return out
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while not out:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))  # appends are not signalled: back off and look
            delay = min(delay * 2, 0.05)
            self._rebalance()
            out = self._fetch(max_records)
        return out

    def _fetch(self, max_records: int) -> list[ConsumerRecord]:
        parts = self._topic._parts
        owned = sorted(self._positions)
        out: list[ConsumerRecord] = []
        if not owned:
            return out
        k = len(owned)
        first = self._next_part % k
        self._next_part += 1
        for j in range(k):
            p = owned[(first + j) % k]
            pos = self._positions[p]
            part = parts[p]
            start = part.start_offset
            if pos < start:
                pos = self._reset_position(p, pos, start)
            msgs = part.read(pos, max_records - len(out))
            if msgs:
                out.extend(consumer_records(p, pos, msgs))
                pos += len(msgs)
                self._positions[p] = pos
                self._returned[p] = pos
            if len(out) >= max_records:
                break
        return out

    def _reset_position(self, p: int, pos: int, start: int) -> int:
        if self._reset == "raise":
            raise OffsetOutOfRange(
                f"partition {p}: offset {pos} was deleted by retention (the oldest retained "
                f"is {start}); seek() to a retained offset, or use reset='earliest'"
            )
        new = start if self._reset == "earliest" else self._topic._parts[p].end_offset
        self._positions[p] = new
        return new

    def _initial_position(self, p: int) -> int:
        part = self._topic._parts[p]
        c = part.committed(self._group.name)
        if c is not None:
            return max(min(c, part.end_offset), 0)  # clamp an offset beyond a truncated end
        s = self._start
        if s in ("committed", "earliest"):
            return part.start_offset
        if s == "latest":
            return part.end_offset
        if isinstance(s, _dt.datetime):
            return part.offset_for_time(int(s.timestamp() * 1e9))
        assert isinstance(s, int)
        return min(max(s, part.start_offset), part.end_offset)

    def _rebalance(self) -> None:
        g = self._group
        revoked: list[int] = []
        assigned: list[int] = []
        with g.lock:
            target = g.target.get(self, set())
            for p in list(self._positions):
                if p not in target:
                    revoked.append(p)
            # commit before the partitions move (the new owner resumes from here)
            for p in revoked:
                if self.auto_commit:
                    self._commit_partition(p)
                del self._positions[p]
                self._returned.pop(p, None)
                g.owner[p] = None
            for p in sorted(target):
                if p not in self._positions and g.owner.get(p) is None:
                    g.owner[p] = self
                    self._positions[p] = self._initial_position(p)
                    assigned.append(p)
        if revoked and self._on_revoke is not None:
            self._on_revoke(revoked)
        if assigned and self._on_assign is not None:
            self._on_assign(assigned)

    # ---- positions -----------------------------------------------------------------------

    def _commit_partition(self, p: int) -> None:
        pos = self._returned.get(p)
        if pos is not None:
            self._topic._parts[p].commit(self._group.name, pos)

    def commit(self, offsets: dict[int, int] | None = None) -> None:
        """Commit, per owned partition, the position after the records polled so far; or,
        with ``offsets`` (partition -> offset, as Kafka's ``commitSync(offsets)``), exactly
        those positions: the next record to process in each (partitions assigned to this
        member)."""
        if offsets is None:
            for p in list(self._returned):
                self._commit_partition(p)
            return
        for p, off in self._checked(offsets).items():
            self._topic._parts[p].commit(self._group.name, off)

    def _checked(self, offsets: object) -> dict[int, int]:
        """``offsets`` of :meth:`commit`, checked: partitions of this member, offsets >= 0."""
        if not isinstance(offsets, dict):
            raise TypeError(f"offsets must be a dict of partition -> offset, got {offsets!r}")
        for p, off in offsets.items():
            if p not in self._positions:
                raise ValueError(
                    f"partition {p!r} is not assigned to this member (assigned: "
                    f"{self.assignment()})"
                )
            if isinstance(off, bool) or not isinstance(off, int) or off < 0:
                raise ValueError(f"offsets[{p}] must be an offset >= 0, got {off!r}")
        return offsets

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (it must be assigned to this member)."""
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise TypeError(f"partition must be an int, got {type(partition).__name__}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        self._rebalance()
        if partition not in self._positions:
            raise ValueError(
                f"partition {partition} is not assigned to this member (assigned: "
                f"{self.assignment()})"
            )
        part = self._topic._parts[partition]
        if not part.start_offset <= offset <= part.end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} is outside partition {partition}'s "
                f"{part.start_offset}..{part.end_offset}"
            )
        if self.auto_commit:
            self._commit_partition(partition)  # what the last poll returned was processed
        self._positions[partition] = offset
        self._returned.pop(partition, None)

    def position(self, partition: int) -> int:
        """The next offset this member reads from ``partition`` (assigned to it)."""
        if partition not in self._positions:
            raise ValueError(f"partition {partition} is not assigned to this member")
        return self._positions[partition]

    def statistics(self) -> ConsumerGroupStatistics:
        """This member's group (``topic.group_statistics(consumer.group)``)."""
        return self._topic.group_statistics(self._group.name)

    def lag(self) -> dict[int, int]:
        """Records left to read, per partition owned by this member."""
        parts = self._topic._parts
        return {p: max(0, parts[p].end_offset - pos) for p, pos in self._positions.items()}

    def close(self) -> None:
        """Commit (if auto_commit) and leave the group: the partitions go to the others."""
        if self._closed:
            return
        if self.auto_commit and not self._topic.closed:
            self.commit()
        self._closed = True
        revoked = sorted(self._positions)
        self._positions.clear()
        self._returned.clear()
        self._group.leave(self)
        if revoked and self._on_revoke is not None:
            self._on_revoke(revoked)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Any:
        """Records forever (polls with a 0.1 s timeout) until closed."""
        while not self._closed:
            yield from self.poll(timeout=0.1)

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, assignment={self.assignment()})"


_WAIT_SLICE = 0.1  # the longest a waiting poll blocks on the server before it looks again


class _RemoteConsumer(Consumer):
    """A member of a consumer group of a topic on a Redis server. Membership, partition
    ownership and committed offsets live on the server, so the members of one group in every
    process and machine share the partitions, one owner at a time (docs/redis.md):

    - a member registers in the group's member set and heartbeats at most every
      ``session_timeout / 3`` seconds while it polls (also while a poll waits); one that
      stays silent for ``session_timeout`` leaves the group, and its partitions go to the
      others, which resume from the committed offsets (at-least-once);
    - each member range-assigns the partitions over the live members sorted by join order
      (as in process) and owns a partition through its lock (``SET NX PX``); it reads only
      partitions whose lock it holds; it gives a partition up at a poll boundary: commit,
      delete the lock, ``on_revoke``; the next owner takes it at its next poll
      (``on_assign``);
    - a partition whose lock ran out (the member was silent too long) is lost: its
      uncommitted records are not committed by this member, ``on_revoke`` reports it.

    A poll is one server round trip in the steady state (the group generation check, the
    auto commit, the lock checks and the reads in one script)."""

    def __init__(
        self,
        group: _Group,
        start: str | int | _dt.datetime,
        auto_commit: bool,
        on_assign: _Callback | None,
        on_revoke: _Callback | None,
        reset: str,
        auto_commit_interval: float = 0.0,
    ) -> None:
        engine = group.topic._remote
        assert engine is not None
        self._engine = engine
        self._member = engine.member(group.name)
        self._gen: bytes = b""
        self._stale = True  # sync (heartbeat + rebalance) before the next read
        self._next_sync = 0.0
        self._sync_every = engine.backend.session_timeout / 3
        self._pending: dict[int, int] = {}  # auto commits the next script carries
        super().__init__(
            group, start, auto_commit, on_assign, on_revoke, reset, auto_commit_interval
        )
        try:
            self._member.join()
        except BaseException:
            self._closed = True
            group.leave(self)
            raise

    @property
    def member_id(self) -> str:
        """This member's id in the group on the server (join number first)."""
        return self._member.id

    # ---- polling -------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float | None = None) -> list[ConsumerRecord]:
        _positive_int(max_records, "max_records")
        if self._closed:
            raise Closed("consumer is closed")
        if self.auto_commit:
            now = time.monotonic()
            if (
                not self.auto_commit_interval
                or now - self._last_auto_commit >= self.auto_commit_interval
            ):
                self._last_auto_commit = now
                self._pending.update(self._returned)  # committed by the next script
        self._rebalance()
        out = self._fetch(max_records)
        if out or not timeout:
            return out
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not out:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._positions:
                self._wait(min(remaining, _WAIT_SLICE))
            else:  # nothing owned yet: look again soon (a partition may be released)
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.05)
            self._rebalance()
            out = self._fetch(max_records)
        return out

    def _wait(self, seconds: float) -> None:
        """Block on the server until a record arrives in an owned partition (or ``seconds``,
        cut short to keep the heartbeat on time)."""
        seconds = min(seconds, max(0.001, self._next_sync - time.monotonic()))
        streams = {self._engine.streams[p]: f"0-{pos}" for p, pos in self._positions.items()}
        ms = max(1, int(seconds * 1000))
        client = self._engine.backend.client
        self._engine.backend.call(
            lambda: client.xread(streams, count=1, block=ms), f"wait on {self._topic.name!r}"
        )

    def _rebalance(self) -> None:
        if self._stale or time.monotonic() >= self._next_sync:
            self._sync()

    def _sync(self) -> None:
        """Heartbeat and rebalance in one script: commit and release the partitions that go
        to others, refresh the locks of those kept, claim the free ones of the target."""
        owned: dict[int, tuple[int, int]] = {}
        for p in self._positions:
            release = self._returned.get(p, -1) if self.auto_commit else -1
            owned[p] = (self._pending.get(p, -1), release)
        started = time.monotonic()
        gen, released, lost, claimed, _ = self._member.sync(owned)
        self._pending.clear()
        self._gen = gen
        self._stale = False
        self._next_sync = started + self._sync_every
        revoked = sorted(released + lost)
        if lost:
            log.warning(
                "topic %r group %r: partitions %s were taken over (this member was silent "
                "for longer than the session timeout); their uncommitted records go to "
                "the new owner",
                self._topic.name,
                self._group.name,
                sorted(lost),
            )
        for p in revoked:
            self._positions.pop(p, None)
            self._returned.pop(p, None)
        assigned: list[int] = []
        for p, (c, s, e) in sorted(claimed.items()):
            self._positions[p] = self._initial_from(p, c, s, e)
            assigned.append(p)
        if revoked and self._on_revoke is not None:
            self._on_revoke(revoked)
        if assigned and self._on_assign is not None:
            self._on_assign(assigned)

    def _initial_from(self, p: int, c: int | None, start: int, end: int) -> int:
        if c is not None:
            return max(min(c, end), 0)  # clamp an offset beyond a truncated end
        s = self._start
        if s in ("committed", "earliest"):
            return start
        if s == "latest":
            return end
        if isinstance(s, _dt.datetime):
            return int(self._engine.offset_for_time(p, int(s.timestamp() * 1e9)))
        assert isinstance(s, int)
        return min(max(s, start), end)

    def _initial_position(self, p: int) -> int:
        start, end = self._engine.bounds_of(p)
        return self._initial_from(p, self._engine.committed(self._group.name)[p], start, end)

    def _fetch(self, max_records: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        for _ in range(4):  # the group changed: settle it and read again
            owned = sorted(self._positions)
            if owned:
                first = self._next_part % len(owned)
                self._next_part += 1
                owned = owned[first:] + owned[:first]
            parts = [(p, self._positions[p], self._pending.get(p, -1)) for p in owned]
            _, changed, lost, rows = self._member.fetch(
                self._gen, parts, self._reset[0], max_records
            )
            self._pending.clear()
            if lost:
                self._stale = True  # the next sync reports them (on_revoke) and re-claims
            if changed:
                self._stale = True
                self._sync()
                continue
            for (p, pos, _), row in zip(parts, rows, strict=True):
                if row is None or p in lost:
                    continue
                at, start = int(row[0]), int(row[1])
                if at < start:  # reset="raise": the position was deleted by retention
                    raise OffsetOutOfRange(
                        f"partition {p}: offset {at} was deleted by retention (the oldest "
                        f"retained is {start}); seek() to a retained offset, or use "
                        "reset='earliest'"
                    )
                data = row[2]
                if data:
                    decode = self._engine.decode
                    out.extend(consumer_records(p, at, [decode(d) for d in data]))
                    at += len(data)
                    self._returned[p] = at
                if at != pos:
                    self._positions[p] = at
            return out
        return out

    # ---- positions -----------------------------------------------------------------------

    def _commit_partition(self, p: int) -> None:
        pos = self._returned.get(p)
        if pos is not None:
            self._commit_offsets({p: pos})

    def _commit_offsets(self, offsets: dict[int, int]) -> None:
        for p in offsets:
            self._pending.pop(p, None)
        fenced = self._member.commit(offsets)
        if fenced:
            # the partitions were taken over: the next poll reports them (on_revoke)
            self._stale = True
            log.warning(
                "topic %r group %r: commit on partitions %s refused, this member no longer "
                "owns them (silent for longer than the session timeout)",
                self._topic.name,
                self._group.name,
                fenced,
            )

    def commit(self, offsets: dict[int, int] | None = None) -> None:
        if offsets is None:
            self._commit_offsets(
                {p: off for p, off in self._returned.items() if p in self._positions}
            )
            return
        self._commit_offsets(dict(self._checked(offsets)))

    def seek(self, partition: int, offset: int) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise TypeError(f"partition must be an int, got {type(partition).__name__}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        self._rebalance()
        if partition not in self._positions:
            raise ValueError(
                f"partition {partition} is not assigned to this member (assigned: "
                f"{self.assignment()})"
            )
        start, end = self._engine.bounds_of(partition)
        if not start <= offset <= end:
            raise OffsetOutOfRange(
                f"offset {offset} is outside partition {partition}'s {start}..{end}"
            )
        if self.auto_commit:
            self._commit_partition(partition)  # what the last poll returned was processed
        self._positions[partition] = offset
        self._returned.pop(partition, None)
        self._pending.pop(partition, None)

    def lag(self) -> dict[int, int]:
        ends = self._engine.bounds()[1]
        return {p: max(0, ends[p] - pos) for p, pos in self._positions.items()}

    def close(self) -> None:
        """Commit (if auto_commit), release the partitions and leave the group on the server:
        the partitions go to the other members at their next poll."""
        if self._closed:
            return
        commit = self.auto_commit and not self._topic.closed
        commits = {p: self._returned.get(p, -1) if commit else -1 for p in self._positions}
        self._closed = True
        revoked = sorted(self._positions)
        self._positions.clear()
        self._returned.clear()
        self._pending.clear()
        try:
            self._member.leave(commits)
        except BackendError as exc:
            log.warning(
                "topic %r group %r: could not leave the group on the server (%s); the "
                "server lets this member's partitions go after the session timeout",
                self._topic.name,
                self._group.name,
                exc,
            )
        finally:
            self._group.leave(self)
        if revoked and self._on_revoke is not None:
            self._on_revoke(revoked)

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, assignment={self.assignment()}, redis)"
