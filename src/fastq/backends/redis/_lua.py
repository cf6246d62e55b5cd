"""The server scripts of the Redis work-queue engine (docs/redis.md, "Queue mapping").

Every script runs atomically on the server. A queue ``N`` owns, under one cluster hash tag:
``...:{N}:0`` .. ``:3`` (one stream per priority class, critical .. low; consumer group
``fastq``), ``:delayed`` (a sorted set: ``class|attempts|put_ms|envelope`` scored by the due
time in ms), ``:meta`` (a hash: ``held`` messages, ``u0``..``u3`` unread per class, the
totals, the XAUTOCLAIM cursors) and ``{N}.dlq`` (the dead-letter stream).

A stream entry holds ``m`` (the message envelope) and, when a nack or release put it back,
``a`` (attempts already made) and ``t`` (the original put time, ms). Acked entries are not
deleted one by one (XDEL costs more than the rest of an ack): every claim round trims each
stream below its oldest entry still pending or unread (``XTRIM MINID``), so the counters in
``meta``, not XLEN, say what is held. A hand-out is named by (class, entry id, delivery
count): a receipt whose entry is no longer pending for this consumer with that count is
stale. Scripts check everything before their first write (Redis does not roll a failed
script back)."""

from __future__ import annotations

# server time in ms
NOW_MS = """
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
"""

# which of `ids` (between lo and hi) are still pending for consumer c with the same count
_MINE = """
local function mine(k, g, c, lo, hi, ids, cnts, limit)
  local have = {}
  local p = redis.call('XPENDING', k, g, lo, hi, limit or (#ids + 16), c)
  for _, e in ipairs(p) do have[e[1]] = tonumber(e[4]) end
  local ok = {}
  for i = 1, #ids do ok[i] = (have[ids[i]] == tonumber(cnts[i])) end
  return ok
end
"""

_FIELDS = """
local function fields(f)
  local m, a, ts = false, 0, false
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'm' then m = f[i + 1] elseif k == 'a' then a = tonumber(f[i + 1])
    elseif k == 't' then ts = f[i + 1] end
  end
  return m, a, ts
end
"""

# consumer group g of stream k as XINFO GROUPS shows it: its last-delivered id and lag (false,
# false when the stream or the group does not exist; the lag is false when Redis cannot tell).
# Shared with the topic engine's scripts.
GROUP_INFO = """
local function group_info(k, g)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', k)
  if not ok then return false, false end
  for _, gi in ipairs(groups) do
    local name, last, lag = nil, '0-0', false
    for j = 1, #gi, 2 do
      local f = gi[j]
      if f == 'name' then name = gi[j + 1]
      elseif f == 'last-delivered-id' then last = gi[j + 1]
      elseif f == 'lag' then lag = gi[j + 1] end
    end
    if name == g then return last, lag end
  end
  return false, false
end
"""

# the group's last-delivered id of a stream: entries after it are unread
_LAST = (
    GROUP_INFO
    + """
local function last_delivered(k, g)
  return (group_info(k, g)) or '0-0'
end
"""
)

# KEYS s0 s1 s2 s3 delayed meta
# ARGV maxsize(0: none) delay_ms classes(one digit per message) envelopes(each u32le length +
#      bytes) mark retried(0|1) dedup_ttl_ms(0: none) dedup_prefix, then per message (key or
#      '', id) when ttl > 0
# -> per message: 1 (stored) or the first message's id (a duplicate); shorter when full.
# `mark` (a key named after the batch's first message) remembers for 5 minutes how many were
# stored: a call retried after a lost reply returns that instead of storing them again.
PUT = (
    NOW_MS
    + """
local maxsize = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local classes = ARGV[3]
local blob = ARGV[4]
local mark = ARGV[5]
local ttl = tonumber(ARGV[7] or '0')
local dp = ARGV[8] or ''
if ARGV[6] == '1' then
  local prev = redis.call('GET', mark)
  if prev then
    local out = {}
    for i = 1, tonumber(prev) do out[i] = 1 end
    return out
  end
end
local held = tonumber(redis.call('HGET', KEYS[6], 'held') or '0')
local out = {}
local stored, dups = 0, 0
local unread = {0, 0, 0, 0}
local pos = 1
for i = 1, #classes do
  local len = struct.unpack('<I4', blob, pos)
  local data = string.sub(blob, pos + 4, pos + 3 + len)
  pos = pos + 4 + len
  local cls = string.byte(classes, i) - 48
  local first = false
  local dk = ttl > 0 and ARGV[7 + 2 * i] or ''
  if dk ~= '' then first = redis.call('GET', dp .. dk) end
  if first then
    out[i] = first
    dups = dups + 1
  else
    if maxsize > 0 and held >= maxsize then break end
    if dk ~= '' then redis.call('SET', dp .. dk, ARGV[8 + 2 * i], 'PX', ttl) end
    if delay > 0 then
      redis.call('ZADD', KEYS[5], now + delay, cls .. '|0|' .. now .. '|' .. data)
    else
      redis.call('XADD', KEYS[1 + cls], '*', 'm', data)
      unread[1 + cls] = unread[1 + cls] + 1
    end
    held = held + 1
    stored = stored + 1
    out[i] = 1
  end
end
if stored > 0 then
  redis.call('HINCRBY', KEYS[6], 'put', stored)
  redis.call('HINCRBY', KEYS[6], 'held', stored)
  for k = 1, 4 do
    if unread[k] > 0 then redis.call('HINCRBY', KEYS[6], 'u' .. (k - 1), unread[k]) end
  end
end
if dups > 0 then redis.call('HINCRBY', KEYS[6], 'dedup', dups) end
redis.call('SET', mark, stored, 'PX', 300000)
return out
"""
)

# KEYS s0 s1 s2 s3 delayed meta
# ARGV group consumer count vt_ms max_deliveries claim_interval_ms aging_ms
# -> {now_ms, fresh, claimed, next_due_ms|false, last ids...}: fresh = class, entries as
#    XREADGROUP gave them (delivery count 1), ...; claimed = {class, id, count,
#    attempts_before, envelope, put_ms|false, dead(0|1)}, ... (leases that ran out)
POLL = (
    NOW_MS
    + _LAST
    + _FIELDS
    + """
local g, c = ARGV[1], ARGV[2]
local need = tonumber(ARGV[3])
local vt = tonumber(ARGV[4])
local maxd = tonumber(ARGV[5])
local ci = tonumber(ARGV[6])
local aging = tonumber(ARGV[7])
local meta = redis.call('HMGET', KEYS[6], 'u0', 'u1', 'u2', 'u3', 'next_claim')
local unread = {}
for k = 1, 4 do unread[k] = tonumber(meta[k] or '0') end
-- due delayed messages join the end of their class
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1024)
for _, m in ipairs(due) do
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  local p3 = string.find(m, '|', p2 + 1, true)
  local cls = tonumber(string.sub(m, 1, p1 - 1))
  redis.call('XADD', KEYS[1 + cls], '*', 'm', string.sub(m, p3 + 1),
             'a', string.sub(m, p1 + 1, p2 - 1), 't', string.sub(m, p2 + 1, p3 - 1))
  redis.call('ZREM', KEYS[5], m)
  unread[1 + cls] = unread[1 + cls] + 1
end
local claim = ci <= 0 or now >= tonumber(meta[5] or '0')
if claim then
  redis.call('HSET', KEYS[6], 'next_claim', now + ci)
  -- acked entries stay until here: trim each stream below its oldest pending or unread entry
  for k = 1, 4 do
    local ok, p = pcall(redis.call, 'XPENDING', KEYS[k], g)
    if ok then
      local floor = p[2]
      local last = last_delivered(KEYS[k], g)
      local ms, seq = string.match(last, '^(%d+)-(%d+)$')
      local after = ms .. '-' .. (tonumber(seq) + 1)
      if not floor then floor = after end
      redis.call('XTRIM', KEYS[k], 'MINID', '~', floor)
    end
  end
end
-- the order the classes are served in: strict, or aged (a class's oldest unread message
-- gains one class per `aging` ms it has waited)
local order = {1, 2, 3, 4}
if aging > 0 then
  local busy, rank = 0, {}
  for k = 1, 4 do
    rank[k] = k * 1000000 + k
    if unread[k] > 0 then busy = busy + 1 end
  end
  if busy > 1 then
    for k = 2, 4 do
      if unread[k] > 0 then
        local from = '(' .. last_delivered(KEYS[k], g)
        local head = redis.call('XRANGE', KEYS[k], from, '+', 'COUNT', 1)
        if head[1] then
          local _, _, ts = fields(head[1][2])
          local put = tonumber(ts or string.match(head[1][1], '^(%d+)'))
          local gained = math.floor((now - put) / aging)
          if gained > k - 1 then gained = k - 1 end
          rank[k] = (k - gained) * 1000000 + k
        end
      end
    end
    table.sort(order, function(x, y) return rank[x] < rank[y] end)
  end
end
local fresh, claimed = {}, {}
local got_any = false
for _, k in ipairs(order) do
  if need <= 0 then break end
  -- the counter says where to look; a claim round looks everywhere (self-healing)
  if unread[k] > 0 or claim then
    local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', need, 'STREAMS', KEYS[k], '>')
    local got = 0
    if r then
      got = #r[1][2]
      fresh[#fresh + 1] = k - 1
      fresh[#fresh + 1] = r[1][2]  -- as read: the client takes the fields apart
      got_any = true
    end
    if got < need or got >= unread[k] then unread[k] = 0 else unread[k] = unread[k] - got end
    need = need - got
  end
  if claim and need > 0 then
    local cur = redis.call('HGET', KEYS[6], 'cursor' .. k) or '0-0'
    local cr = redis.call('XAUTOCLAIM', KEYS[k], g, c, vt, cur, 'COUNT', need)
    redis.call('HSET', KEYS[6], 'cursor' .. k, cr[1])
    local n = 0
    for _, e in ipairs(cr[2]) do
      local p = redis.call('XPENDING', KEYS[k], g, e[1], e[1], 1)
      local cnt = tonumber(p[1][4])
      local m, a, ts = fields(e[2])
      local dead = 0
      if cnt + a > maxd then dead = 1 else need = need - 1 end
      claimed[#claimed + 1] = {k - 1, e[1], cnt, a, m, ts, dead}
      n = n + 1
      got_any = true
    end
    if n > 0 then redis.call('HINCRBY', KEYS[6], 'expired', n) end
  end
end
redis.call('HSET', KEYS[6], 'u0', unread[1], 'u1', unread[2], 'u2', unread[3], 'u3', unread[4])
local res = {now, fresh, claimed}
if not got_any then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  res[4] = first[2] or false
  for k = 1, 4 do
    local last = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)
    res[4 + k] = last[1] and last[1][1] or '0-0'
  end
end
return res
"""
)

# KEYS s0 s1 s2 s3 meta
# ARGV group consumer limit(at least the consumer's pending entries) retried(0|1), then per
#      class: lowest id, highest id, "id count id count ..." to check ('' if none), "id id
#      ..." acked without a check ('' if none)
# -> {the stale "id"s among the checked, how many unchecked ones were not pending}
# An entry is checked (still pending for this consumer with the same delivery count) unless
# the client knows its lease cannot have run out yet: then no other consumer can have claimed
# it (XAUTOCLAIM takes only entries idle for visibility_timeout), and XACK alone is exact.
# A retried call (its first reply was lost) counts an entry pending for nobody as acked: the
# first call acked it (or another consumer did, after the lease ran out).
ACK = (
    _MINE
    + """
local g, c = ARGV[1], ARGV[2]
local limit = tonumber(ARGV[3])
local retried = ARGV[4] == '1'
local stale, acked, lost = {}, 0, 0
for k = 1, 4 do
  local b = 5 + (k - 1) * 4
  local items, fresh = ARGV[b + 2], ARGV[b + 3]
  local good = {}
  if items ~= '' then
    local ids, cnts = {}, {}
    for id, cnt in string.gmatch(items, '(%S+) (%S+)') do
      ids[#ids + 1] = id
      cnts[#cnts + 1] = cnt
    end
    local ok = mine(KEYS[k], g, c, ARGV[b], ARGV[b + 1], ids, cnts, limit)
    for j = 1, #ids do
      if ok[j] then
        good[#good + 1] = ids[j]
      elseif not (retried and #redis.call('XPENDING', KEYS[k], g, ids[j], ids[j], 1) == 0) then
        stale[#stale + 1] = ids[j]
      end
    end
  end
  local sure = 0
  if fresh ~= '' then
    for id in string.gmatch(fresh, '%S+') do
      good[#good + 1] = id
      sure = sure + 1
    end
  end
  local n = 0
  for j = 1, #good, 1000 do
    n = n + redis.call('XACK', KEYS[k], g, unpack(good, j, math.min(j + 999, #good)))
  end
  if n < #good and not retried then lost = lost + (#good - n) end
  acked = acked + n
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[5], 'acked', acked)
  redis.call('HINCRBY', KEYS[5], 'held', -acked)
end
return {stale, lost}
"""
)

# KEYS stream delayed meta
# ARGV group consumer id count delay_ms attempts counter(nacked|released) class
# -> 1, or 0 when stale: the entry goes back (after delay_ms, via the delayed set) as a new
#    entry carrying its attempts, behind its class's ready messages
PUT_BACK = (
    NOW_MS
    + _MINE
    + _FIELDS
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if not mine(KEYS[1], g, c, id, id, {id}, {ARGV[4]})[1] then return 0 end
local e = redis.call('XRANGE', KEYS[1], id, id)[1]
if not e then return 0 end
local m, _, ts = fields(e[2])
ts = ts or string.match(id, '^(%d+)')
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, ARGV[8] .. '|' .. ARGV[6] .. '|' .. ts .. '|' .. m)
else
  redis.call('XADD', KEYS[1], '*', 'm', m, 'a', ARGV[6], 't', ts)
  redis.call('HINCRBY', KEYS[3], 'u' .. ARGV[8], 1)
end
redis.call('XACK', KEYS[1], g, id)
redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
return 1
"""
)

# KEYS stream meta dlq
# ARGV group consumer id count entry(bytes, '' = no dead-letter stream) check(1|0) nacked(1|0)
# -> 1, or 0 when stale. The dead-letter entry is written in the same script as the XACK.
DEAD = (
    _MINE
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if ARGV[6] == '1' and not mine(KEYS[1], g, c, id, id, {id}, {ARGV[4]})[1] then return 0 end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[3], '*', 'e', ARGV[5]) end
redis.call('XACK', KEYS[1], g, id)
redis.call('HINCRBY', KEYS[2], 'dead', 1)
redis.call('HINCRBY', KEYS[2], 'held', -1)
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[2], 'nacked', 1) end
return 1
"""
)

# KEYS stream ; ARGV group consumer id count idle_ms -> 1, or 0 when stale
EXTEND = (
    _MINE
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if not mine(KEYS[1], g, c, id, id, {id}, {ARGV[4]})[1] then return 0 end
redis.call('XCLAIM', KEYS[1], g, c, 0, id, 'IDLE', tonumber(ARGV[5]), 'JUSTID')
return 1
"""
)

# KEYS s0 s1 s2 s3 delayed meta ; ARGV group
# -> {pending x4, delayed, oldest unread put ms|false, meta field/value list}
STATS = (
    _LAST
    + _FIELDS
    + """
local g = ARGV[1]
local out = {}
local oldest = false
for k = 1, 4 do
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[k], g)
  out[k] = ok and p[1] or 0
  local head = redis.call('XRANGE', KEYS[k], '(' .. last_delivered(KEYS[k], g), '+', 'COUNT', 1)
  if head[1] then
    local _, _, ts = fields(head[1][2])
    local put = tonumber(ts or string.match(head[1][1], '^(%d+)'))
    if not oldest or put < oldest then oldest = put end
  end
end
out[5] = redis.call('ZCARD', KEYS[5])
out[6] = oldest
out[7] = redis.call('HGETALL', KEYS[6])
return out
"""
)

# KEYS s0 s1 s2 s3 meta ; ARGV group -> how many unread messages were dropped (the group
# skips to each stream's end; the entries are trimmed with the acked ones)
PURGE = """
local g = ARGV[1]
local n = 0
for k = 1, 4 do
  local u = tonumber(redis.call('HGET', KEYS[5], 'u' .. (k - 1)) or '0')
  if u > 0 then
    redis.call('XGROUP', 'SETID', KEYS[k], g, '$')
    redis.call('HSET', KEYS[5], 'u' .. (k - 1), 0)
    n = n + u
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[5], 'held', -n) end
return n
"""

# KEYS meta -> messages held (unread + pending + delayed)
HELD = """
return tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
"""
