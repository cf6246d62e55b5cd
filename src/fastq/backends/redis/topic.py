"""The Redis Streams topic engine: what :class:`fastq.Topic` calls when it was made with
``backend=RedisStreams(...)`` (docs/redis.md, "Topic mapping").

A topic ``T`` with ``n`` partitions owns, under one cluster hash tag:

- ``...:{T}:<p>`` for p in 0..n-1: one stream per partition. Entries are added with ids
  ``0-*``, so offsets are dense: the record at offset ``o`` has the id ``0-<o+1>``, and
  ``read(o, k)`` is ``XRANGE 0-<o+1> + COUNT k``. An entry holds ``m`` (the message
  envelope) and ``t`` (the message timestamp, ns: retention and ``offset_for_time``).
- consumer groups: a Redis consumer group on each partition stream whose last-delivered-id
  ``0-<c>`` is the committed offset ``c`` (set with ``ENTRIESREAD c``, so ``XINFO GROUPS``
  reports the lag); made on the first commit (a group that committed nothing has none).
- ``...:{T}:meta``: a hash holding the partition count (every process must use the same).
- ``...:{T}:g:<group>:members``: the live members of a group (a sorted set: member id ->
  heartbeat expiry, ms on the server clock); ``:gen`` (bumped whenever a member joins,
  leaves, expires or releases a partition); ``:seq`` (member ids start with a join number,
  so sorting them gives the join order); ``:owner:<p>``: the member that owns partition p
  (``SET NX PX session_timeout``, refreshed by the owner's heartbeat, deleted by the owner
  after it committed).

Every operation is one server script; a member's poll is one round trip in the steady state
(check the group generation, commit what the last poll returned, check the partition locks,
read)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..._core import Message
from ...codecs import Codec
from ._client import RedisStreams
from ._lua import GROUP_INFO, NOW_MS

__all__ = ("RedisPartition", "RedisTopicEngine", "TopicMember")

# the largest batch one publish script takes (bigger batches are split: offsets stay dense
# per script, and the server is not blocked for long)
_BATCH = 5000
_BATCH_BYTES = 8 << 20

_HELPERS = (
    GROUP_INFO
    + """
local function seq(id) return tonumber(string.match(id, '%-(%d+)$')) end

-- start and end offsets of stream k (0, 0 when it does not exist)
local function bounds(k)
  local ok, info = pcall(redis.call, 'XINFO', 'STREAM', k)
  if not ok then return 0, 0 end
  local last, first = '0-0', false
  for i = 1, #info, 2 do
    local f = info[i]
    if f == 'last-generated-id' then last = info[i + 1]
    elseif f == 'first-entry' then first = info[i + 1] end
  end
  local e = seq(last)
  if first then return seq(first[1]) - 1, e end
  return e, e
end

-- group g on stream k: committed offset (false: no group) and XINFO's lag (false: unknown)
local function ginfo(k, g)
  local last, lag = group_info(k, g)
  if not last then return false, false end
  return seq(last), lag
end

-- commit offset off (a decimal string) for group g on stream k: monotonic
local function commit(k, g, off)
  local cur = ginfo(k, g)
  if not cur then
    redis.call('XGROUP', 'CREATE', k, g, '0-' .. off, 'MKSTREAM', 'ENTRIESREAD', off)
  elseif tonumber(off) > cur then
    redis.call('XGROUP', 'SETID', k, g, '0-' .. off, 'ENTRIESREAD', off)
  end
end

-- a < b for decimal strings of non-negative integers (ns timestamps exceed a double's
-- integer precision: compared as strings, exactly)
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- the timestamp (ns, a decimal string) of entry e
local function ts(e)
  local f = e[2]
  for i = 1, #f, 2 do if f[i] == 't' then return f[i + 1] end end
  return '0'
end

local function ts_at(k, off)
  local id = '0-' .. string.format('%d', off + 1)
  local e = redis.call('XRANGE', k, id, id)[1]
  if not e then return nil end
  return ts(e)
end

-- the first offset in [lo, hi) whose timestamp is >= t (hi if none): timestamps grow with
-- offsets when one producer publishes, as in process
local function search(k, lo, hi, t)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local v = ts_at(k, mid)
    if v == nil or lt(v, t) then lo = mid + 1 else hi = mid end
  end
  return lo
end
"""
)

# KEYS: the partition streams of this batch
# ARGV: retention_ms (0: none), then per key: count, trim (0|1), then count x (envelope,
#       timestamp ns)
# -> the first offset per key (the others follow it densely)
APPEND = (
    _HELPERS
    + NOW_MS
    + """
local ret = tonumber(ARGV[1])
local out = {}
local a = 2
for i = 1, #KEYS do
  local k = KEYS[i]
  local n = tonumber(ARGV[a])
  local trim = ARGV[a + 1] == '1'
  a = a + 2
  local first = -1
  for j = 1, n do
    local id = redis.call('XADD', k, '0-*', 'm', ARGV[a], 't', ARGV[a + 1])
    if j == 1 then first = seq(id) - 1 end
    a = a + 2
  end
  out[i] = first
  if ret > 0 and trim then
    -- retention by age: drop the head while it is older than the horizon, never the newest
    local horizon = string.format('%d', now - ret) .. '000000'
    local head = redis.call('XRANGE', k, '-', '+', 'COUNT', 1)[1]
    if head and lt(ts(head), horizon) then
      local h = seq(head[1]) - 1
      local last = seq(redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)[1][1]) - 1
      if h < last then
        local keep = search(k, h + 1, last, horizon)
        redis.call('XTRIM', k, 'MINID', '0-' .. string.format('%d', keep + 1))
      end
    end
  end
end
return out
"""
)

# KEYS: meta ; ARGV: partitions -> the partition count the topic was made with
DECLARE = """
redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1])
return tonumber(redis.call('HGET', KEYS[1], 'partitions'))
"""

# KEYS: streams ; ARGV: group ('' = none) -> {starts, ends, group names (if group == '')}
BOUNDS = (
    _HELPERS
    + """
local starts, ends, names, seen = {}, {}, {}, {}
for i = 1, #KEYS do
  starts[i], ends[i] = bounds(KEYS[i])
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[i])
  if ok then
    for _, gi in ipairs(groups) do
      for j = 1, #gi, 2 do
        if gi[j] == 'name' and not seen[gi[j + 1]] then
          seen[gi[j + 1]] = true
          names[#names + 1] = gi[j + 1]
        end
      end
    end
  end
end
return {starts, ends, names}
"""
)

# KEYS: members, streams ; ARGV: group, heads (1: the timestamp of the first uncommitted
# record of each lagging partition)
# -> {live members, per stream {start, end, committed|false, xinfo lag|false, head ts|false}}
GROUP_INFO = (
    _HELPERS
    + NOW_MS
    + """
local g = ARGV[1]
local heads = ARGV[2] == '1'
local rows = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local s, e = bounds(k)
  local c, lag = ginfo(k, g)
  local at = s
  if c and c > s then at = c end
  local head = false
  if heads and at < e then head = ts_at(k, at) or false end
  rows[#rows + 1] = {s, e, c, lag, head}
end
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), rows}
"""
)

# KEYS: stream ; ARGV: timestamp ns -> the first offset at or after it (the end if none)
OFFSET_FOR_TIME = (
    _HELPERS
    + """
local s, e = bounds(KEYS[1])
return search(KEYS[1], s, e, ARGV[1])
"""
)

# KEYS: stream ; ARGV: group, offset -> nothing (monotonic)
COMMIT_RAW = (
    _HELPERS
    + """
commit(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: members, gen, seq ; ARGV: id suffix, session ms -> the member id (join number first)
JOIN = (
    NOW_MS
    + """
local n = redis.call('INCR', KEYS[3])
local id = string.format('%012d', n) .. ':' .. ARGV[1]
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
redis.call('INCR', KEYS[2])
return id
"""
)

# The heartbeat and rebalance of one member, in one script.
# KEYS: members, gen, then per partition p (0..n-1): lock p, stream p
# ARGV: me, session ms, group, n, then per partition: owned (0|1), commit if kept (-1: none),
#       commit if released (-1: none)
# -> {gen, released, lost, claimed: {p, committed|false, start, end}..., members}
SYNC = (
    _HELPERS
    + NOW_MS
    + """
local me, st, g = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = tonumber(ARGV[4])
local bump = false
if redis.call('ZADD', KEYS[1], now + st, me) == 1 then bump = true end
if redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) > 0 then bump = true end
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(ids)
local i, m = 0, #ids
for j, id in ipairs(ids) do if id == me then i = j - 1 end end
local lo = math.floor(i * n / m)
local hi = math.floor((i + 1) * n / m)
local released, lost, claimed = {}, {}, {}
for p = 0, n - 1 do
  local lock, k = KEYS[3 + 2 * p], KEYS[4 + 2 * p]
  local b = 5 + 3 * p
  local mine = p >= lo and p < hi
  local owned = ARGV[b] == '1'
  if owned then
    if redis.call('GET', lock) == me then
      if mine then
        if ARGV[b + 1] ~= '-1' then commit(k, g, ARGV[b + 1]) end
        redis.call('PEXPIRE', lock, st)
      else
        -- commit first, then let the partition go: the next owner resumes from the commit
        if ARGV[b + 2] ~= '-1' then commit(k, g, ARGV[b + 2]) end
        redis.call('DEL', lock)
        released[#released + 1] = p
        bump = true
      end
    else
      lost[#lost + 1] = p
      owned = false  -- taken over, or its lock ran out: claimed afresh below if free
    end
  end
  if mine and not owned then
    if redis.call('SET', lock, me, 'NX', 'PX', st) then
      local s, e = bounds(k)
      local c = ginfo(k, g)
      claimed[#claimed + 1] = {p, c, s, e}
    end
  end
end
if bump then redis.call('INCR', KEYS[2]) end
return {redis.call('GET', KEYS[2]) or '0', released, lost, claimed, m}
"""
)

# One poll's read.
# KEYS: gen, then per owned partition: lock, stream
# ARGV: me, known gen, group, reset (e|l|r), max records, then per owned partition:
#       position, commit (-1: none)
# -> {gen, changed (0|1), lost (indexes), rows: per owned {position, start, envelopes}}
#    (start: the partition's start where the position was below it, else the position)
#    (the commits are done first; nothing is read when the group changed)
FETCH = (
    _HELPERS
    + """
local me, g, reset = ARGV[1], ARGV[3], ARGV[4]
local need = tonumber(ARGV[5])
local np = (#KEYS - 1) / 2
local lost, ok = {}, {}
for i = 1, np do
  if redis.call('GET', KEYS[2 * i]) == me then
    ok[i] = true
    local c = ARGV[5 + 2 * i]
    if c ~= '-1' then commit(KEYS[2 * i + 1], g, c) end
  else
    lost[#lost + 1] = i - 1
  end
end
local gen = redis.call('GET', KEYS[1]) or '0'
if gen ~= ARGV[2] then return {gen, 1, lost, {}} end
local rows = {}
for i = 1, np do
  if ok[i] and need > 0 then
    local k = KEYS[2 * i + 1]
    local pos = tonumber(ARGV[4 + 2 * i])
    local s = pos
    local data = {}
    local got = redis.call('XRANGE', k, '0-' .. string.format('%d', pos + 1), '+',
                           'COUNT', need)
    if got[1] then
      local f = seq(got[1][1]) - 1
      if f > pos then s = f end  -- retention deleted the records from pos on to f
    elseif redis.call('XLEN', k) == 0 then
      s = bounds(k)  -- an empty stream: pos may be below a trimmed end
    end
    if pos < s then
      if reset == 'e' then
        pos = s
      else
        if reset == 'l' then pos = select(2, bounds(k)) end
        got = {}
      end
    end
    for j, entry in ipairs(got) do
      local f = entry[2]
      for x = 1, #f, 2 do if f[x] == 'm' then data[j] = f[x + 1] end end
    end
    need = need - #got
    rows[i] = {pos, s, data}
  else
    rows[i] = false
  end
end
return {gen, 0, lost, rows}
"""
)

# KEYS: per partition: lock, stream ; ARGV: me, group, then per partition: offset
# -> the indexes of the partitions this member no longer owns (not committed)
COMMIT = (
    _HELPERS
    + """
local me, g = ARGV[1], ARGV[2]
local fenced = {}
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i - 1]) == me then
    commit(KEYS[2 * i], g, ARGV[2 + i])
  else
    fenced[#fenced + 1] = i - 1
  end
end
return fenced
"""
)

# KEYS: members, gen, then per owned partition: lock, stream
# ARGV: me, group, then per owned partition: commit (-1: none) -> 1
LEAVE = (
    _HELPERS
    + """
local me, g = ARGV[1], ARGV[2]
for i = 1, (#KEYS - 2) / 2 do
  local lock, k = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if redis.call('GET', lock) == me then
    local c = ARGV[2 + i]
    if c ~= '-1' then commit(k, g, c) end
    redis.call('DEL', lock)
  end
end
redis.call('ZREM', KEYS[1], me)
redis.call('INCR', KEYS[2])
return 1
"""
)


class RedisPartition:
    """One partition of a Redis topic (the :class:`~fastq.backends.PartitionEngine`
    interface; the topic and its consumers mostly use the engine's batched calls)."""

    def __init__(self, engine: RedisTopicEngine, index: int) -> None:
        self._engine = engine
        self.index = index
        self.stream = engine.streams[index]

    def append(self, message: Message) -> int:
        return self._engine.append_groups([(self.index, [message])])[0]

    def append_many(self, messages: list[Message]) -> int:
        """Contiguous offsets: one server script; returns the first."""
        if not messages:
            return self.end_offset
        return self._engine.append_groups([(self.index, list(messages))])[0]

    def read(self, offset: int, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages from ``offset`` (from the start if it is older)."""
        return self._engine.read(self.index, offset, max_records)

    @property
    def start_offset(self) -> int:
        return self._engine.bounds_of(self.index)[0]

    @property
    def end_offset(self) -> int:
        return self._engine.bounds_of(self.index)[1]

    def bounds(self) -> tuple[int, int]:
        """(start, end) in one round trip."""
        return self._engine.bounds_of(self.index)

    def offset_for_time(self, timestamp_ns: int) -> int:
        return self._engine.offset_for_time(self.index, timestamp_ns)

    def commit(self, group: str, offset: int) -> None:
        """Monotonic, as in process: an offset below the committed one is ignored."""
        self._engine.commit_raw(self.index, group, offset)

    def committed(self, group: str) -> int | None:
        return self._engine.committed(group)[self.index]

    def groups(self) -> list[str]:
        return self._engine.groups()

    def close(self) -> None:
        pass


class RedisTopicEngine:
    """One topic's partitions on a Redis server (see the module docstring for the keys)."""

    def __init__(
        self,
        backend: RedisStreams,
        name: str,
        partitions: int,
        *,
        retention_seconds: float | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.backend = backend
        self.name = name
        self.n = partitions
        self._codec = codec
        self._codecs: tuple[Codec, ...] = () if codec is None else (codec,)
        self._retention_ms = (
            0 if retention_seconds is None else max(1, round(retention_seconds * 1000))
        )
        # how often (at most) a publish from here trims a partition by age
        self._trim_every = 0.0 if retention_seconds is None else min(1.0, retention_seconds / 4)
        self._next_trim = [0.0] * partitions
        self.streams = [backend.key("t", name, str(p)) for p in range(partitions)]
        self.source = f"redis {backend.address} topic {name!r}"
        self._client = backend.client
        s = backend.script
        self._append = s(APPEND)
        self._bounds = s(BOUNDS)
        self._group_info = s(GROUP_INFO)
        self._offset_for_time = s(OFFSET_FOR_TIME)
        self._commit_raw = s(COMMIT_RAW)
        self.parts = [RedisPartition(self, p) for p in range(partitions)]
        self.meta = backend.key("t", name, "meta")
        declared = int(self._run(s(DECLARE), [self.meta], [partitions], "open topic"))
        if declared != partitions:
            raise ValueError(
                f"topic {name!r} on redis at {backend.address} has {declared} partitions, not "
                f"{partitions} (keys are routed by the partition count: every process must "
                "use the same one; delete the topic to change it)"
            )

    def _run(self, script: Any, keys: list[str], args: list[Any], what: str) -> Any:
        return self.backend.call(lambda: script(keys=keys, args=args), f"{what} {self.name!r}")

    def group_key(self, group: str, *parts: str) -> str:
        return self.backend.key("t", self.name, "g", group, *parts)

    # ---- records --------------------------------------------------------------------------

    def append_groups(self, groups: Sequence[tuple[int, Sequence[Message]]]) -> list[int]:
        """Append each (partition, messages) group in one script; returns the first offset
        of each group (its messages have dense offsets from there)."""
        codec = self._codec
        return self._append_encoded(
            [(p, [(m.encode(codec), m.timestamp) for m in msgs]) for p, msgs in groups]
        )

    def _append_encoded(
        self, groups: Sequence[tuple[int, Sequence[tuple[bytes, int]]]]
    ) -> list[int]:
        keys: list[str] = []
        args: list[Any] = [self._retention_ms]
        now = time.monotonic() if self._retention_ms else 0.0
        for p, rows in groups:
            keys.append(self.streams[p])
            trim = 0
            if self._retention_ms and now >= self._next_trim[p]:
                self._next_trim[p] = now + self._trim_every
                trim = 1
            args += (len(rows), trim)
            for data, ts in rows:
                args += (data, ts)
        return [int(x) for x in self._run(self._append, keys, args, "publish to")]

    def publish(self, partitions: Sequence[int], messages: Sequence[Message]) -> list[Any]:
        """``(partition, offset)`` per message, in input order: one script for the whole
        batch, which appends each partition's messages contiguously (a batch over _BATCH
        messages or _BATCH_BYTES bytes is split into slices, one script each)."""
        codec = self._codec
        n = len(messages)
        rows = [(m.encode(codec), m.timestamp) for m in messages]
        out: list[Any] = [None] * n
        i = 0
        while i < n:
            j, size = i, 0
            while j < n and j - i < _BATCH and size < _BATCH_BYTES:
                size += len(rows[j][0])
                j += 1
            by: dict[int, list[int]] = {}
            for x in range(i, j):
                by.setdefault(partitions[x], []).append(x)
            order = sorted(by)
            firsts = self._append_encoded([(p, [rows[x] for x in by[p]]) for p in order])
            for p, first in zip(order, firsts, strict=True):
                for k, x in enumerate(by[p]):
                    out[x] = (p, first + k)
            i = j
        return out

    def decode(self, data: Any) -> Message:
        return Message.decode(data, codecs=self._codecs, source=self.source)

    def read(self, p: int, offset: int, max_records: int) -> list[Message]:
        if max_records <= 0:
            return []
        stream = self.streams[p]
        rows = self.backend.call(
            lambda: self._client.xrange(stream, f"0-{max(offset, 0) + 1}", "+", max_records),
            f"read {self.name!r}",
        )
        return [self.decode(fields[b"m"]) for _, fields in rows]

    def offset_for_time(self, p: int, timestamp_ns: int) -> int:
        return int(
            self._run(self._offset_for_time, [self.streams[p]], [int(timestamp_ns)], "search")
        )

    # ---- offsets --------------------------------------------------------------------------

    def bounds(self) -> tuple[list[int], list[int], list[str]]:
        """(start offsets, end offsets, the names of the groups that committed somewhere)."""
        starts, ends, names = self._run(self._bounds, self.streams, [], "offsets of")
        return (
            [int(x) for x in starts],
            [int(x) for x in ends],
            [x.decode() if isinstance(x, bytes) else str(x) for x in names],
        )

    def bounds_of(self, p: int) -> tuple[int, int]:
        starts, ends, _ = self._run(self._bounds, [self.streams[p]], [], "offsets of")
        return int(starts[0]), int(ends[0])

    def groups(self) -> list[str]:
        return self.bounds()[2]

    def commit_raw(self, p: int, group: str, offset: int) -> None:
        self._run(self._commit_raw, [self.streams[p]], [group, int(offset)], "commit on")

    def group_info(self, group: str, heads: bool = False) -> tuple[int, list[tuple[Any, ...]]]:
        """(live members, per partition (start, end, committed|None, lag, head timestamp ns
        |None)). The lag is XINFO GROUPS' (entries added - entries read) where the server
        knows it and the committed offset is still retained; otherwise, and where nothing
        is committed, end - max(committed, start) (the same number, as in process)."""
        members, rows = self._run(
            self._group_info,
            [self.group_key(group, "members"), *self.streams],
            [group, 1 if heads else 0],
            "group statistics of",
        )
        out = []
        for s, e, c, xlag, head in rows:
            s, e = int(s), int(e)
            c = None if c is None else int(c)
            at = s if c is None else max(c, s)
            lag = e - at
            if xlag is not None and c is not None and c >= s:
                lag = int(xlag)
            out.append((s, e, c, lag, None if head is None else int(head)))
        return int(members), out

    def committed(self, group: str) -> list[int | None]:
        return [row[2] for row in self.group_info(group)[1]]

    # ---- membership -----------------------------------------------------------------------

    def member(self, group: str) -> TopicMember:
        return TopicMember(self, group)

    def delete(self) -> None:
        self.backend.delete(self.name, "t")


class TopicMember:
    """One member of a consumer group, as the server sees it: join, heartbeat + rebalance
    (:meth:`sync`), read (:meth:`fetch`), commit and leave; each one script."""

    def __init__(self, engine: RedisTopicEngine, group: str) -> None:
        self.engine = engine
        self.group = group
        backend = engine.backend
        self.session_ms = max(1, round(backend.session_timeout * 1000))
        self.members = engine.group_key(group, "members")
        self.gen = engine.group_key(group, "gen")
        self.seq = engine.group_key(group, "seq")
        self.locks = [engine.group_key(group, "owner", str(p)) for p in range(engine.n)]
        s = backend.script
        self._join = s(JOIN)
        self._sync = s(SYNC)
        self._fetch = s(FETCH)
        self._commit = s(COMMIT)
        self._leave = s(LEAVE)
        self.id = ""
        self._sync_keys = [self.members, self.gen]
        for p in range(engine.n):
            self._sync_keys += (self.locks[p], engine.streams[p])

    def join(self) -> str:
        suffix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        rid = self.engine._run(
            self._join,
            [self.members, self.gen, self.seq],
            [suffix, self.session_ms],
            f"join group {self.group!r} of",
        )
        self.id = rid.decode() if isinstance(rid, bytes) else str(rid)
        return self.id

    def sync(
        self, owned: dict[int, tuple[int, int]]
    ) -> tuple[bytes, list[int], list[int], dict[int, tuple[int | None, int, int]], int]:
        """Heartbeat and rebalance. ``owned``: partition -> (commit if kept, commit if
        released), -1 for none. Returns (generation, released, lost, claimed: partition ->
        (committed, start, end), live members)."""
        args: list[Any] = [self.id, self.session_ms, self.group, self.engine.n]
        for p in range(self.engine.n):
            o = owned.get(p)
            if o is None:
                args += (0, -1, -1)
            else:
                args += (1, o[0], o[1])
        gen, released, lost, claimed, members = self.engine._run(
            self._sync, self._sync_keys, args, f"heartbeat in group {self.group!r} of"
        )
        got = {int(p): (None if c is None else int(c), int(s), int(e)) for p, c, s, e in claimed}
        return gen, [int(p) for p in released], [int(p) for p in lost], got, int(members)

    def fetch(
        self,
        gen: bytes,
        parts: Sequence[tuple[int, int, int]],
        reset: str,
        max_records: int,
    ) -> tuple[bytes, bool, list[int], list[Any]]:
        """Commit, check ownership and read. ``parts``: (partition, position, commit or -1).
        Returns (generation, changed, lost partitions, rows: per part (position, start,
        end, envelopes) or None)."""
        keys = [self.gen]
        args: list[Any] = [self.id, gen, self.group, reset, max_records]
        for p, pos, c in parts:
            keys += (self.locks[p], self.engine.streams[p])
            args += (pos, c)
        g, changed, lost, rows = self.engine._run(
            self._fetch, keys, args, f"poll group {self.group!r} of"
        )
        return g, bool(changed), [parts[int(i)][0] for i in lost], rows

    def commit(self, offsets: dict[int, int]) -> list[int]:
        """Commit where this member still owns the partition; returns the others."""
        if not offsets:
            return []
        items = sorted(offsets.items())
        keys: list[str] = []
        args: list[Any] = [self.id, self.group]
        for p, _ in items:
            keys += (self.locks[p], self.engine.streams[p])
        args += [off for _, off in items]
        fenced = self.engine._run(self._commit, keys, args, f"commit group {self.group!r} of")
        return [items[int(i)][0] for i in fenced]

    def leave(self, commits: dict[int, int]) -> None:
        """Commit (``commits``: owned partition -> offset or -1), release the partitions and
        leave the group."""
        keys = [self.members, self.gen]
        args: list[Any] = [self.id, self.group]
        for p, c in sorted(commits.items()):
            keys += (self.locks[p], self.engine.streams[p])
            args.append(c)
        self.engine._run(self._leave, keys, args, f"leave group {self.group!r} of")
