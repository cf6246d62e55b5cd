"""Topic: stream semantics (Kafka / Redis Streams, in process). Messages are appended to
partitions chosen by key; consumer groups share the partitions and keep committed offsets;
different groups read independently; anything still retained can be replayed. docs/topic.md."""

from __future__ import annotations

import datetime as _dt
import itertools
import os
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
from ..codecs import Codec
from ..errors import Closed, OffsetOutOfRange
from ..stats import ConsumerGroupStatistics, TopicStatistics
from .queue import message_from

__all__ = ("Consumer", "Topic")

_Callback = Callable[[list[int]], object]


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
    ``retention_seconds``); in memory otherwise. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        partitions: int = 8,
        path: str | None = None,
        retention_bytes: int | None = None,
        retention_seconds: float | None = None,
        sync: str = "none",
        segment_bytes: int = 64 << 20,
        codec: Codec | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"name must be a non-empty file-name-safe str, got {name!r}")
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
        self._parts: list[PartitionEngine] = []
        for p in range(self.partitions):
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
        self._memory = self.path is None
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
        return Consumer(g, start, auto_commit, on_assign, on_revoke, reset, auto_commit_interval)

    def end_offsets(self) -> dict[int, int]:
        return {p: part.end_offset for p, part in enumerate(self._parts)}

    def start_offsets(self) -> dict[int, int]:
        return {p: part.start_offset for p, part in enumerate(self._parts)}

    def committed(self, group: str) -> dict[int, int | None]:
        """The group's committed offset per partition (None where it committed nothing)."""
        return {p: part.committed(group) for p, part in enumerate(self._parts)}

    def lag(self, group: str) -> dict[int, int]:
        """Records per partition the group has not committed past (from the partition start
        where it committed nothing)."""
        out = {}
        for p, part in enumerate(self._parts):
            c = part.committed(group)
            out[p] = part.end_offset - max(part.start_offset if c is None else c, part.start_offset)
        return out

    def statistics(self) -> TopicStatistics:
        """Offsets, records held, publish rate and every known group's lag (no I/O beyond
        reading one record header per lagging partition)."""
        starts = self.start_offsets()
        ends = self.end_offsets()
        with self._lock:
            names = set(self._groups)
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
        for p, part in enumerate(self._parts):
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
        """Close the topic: members leave (committing), durable partitions close."""
        with self._lock:
            groups = list(self._groups.values())
        for g in groups:
            for member in g.members_snapshot():
                member.close()
        self._closed = True
        for part in self._parts:
            part.close()

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
            self._topic._parts[p].commit(self._group.name, off)

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
