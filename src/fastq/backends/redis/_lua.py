"""The server scripts of the Redis work-queue engine (docs/redis.md, "Queue mapping").

Every script runs atomically on the server. A queue ``N`` owns, under one cluster hash tag:
``...:{N}:0`` .. ``:3`` (one stream per priority class, critical .. low; consumer group
``fastq``), ``:delayed`` (a sorted set: ``class|attempts|put_ms|envelope`` scored by the due
time in ms), ``:meta`` (a hash of counters and the XAUTOCLAIM cursors) and ``{N}.dlq`` (the
dead-letter stream). A stream entry holds ``m`` (the message envelope) and, when it was put
back by a nack or release, ``a`` (attempts already made) and ``t`` (the original put time,
ms). A hand-out is named by (class, entry id, delivery count): a receipt whose entry is no
longer pending for this consumer with that count is stale."""

from __future__ import annotations

# server time in ms
_NOW = """
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
"""

# which receipts of one stream are still ours: pending for consumer c with the same count
_MINE = """
local function mine(k, g, c, ids, cnts)
  local lo, hi = ids[1], ids[1]
  for i = 2, #ids do
    local a, b = ids[i], lo
    local am, as = string.match(a, '^(%d+)-(%d+)$')
    local bm, bs = string.match(b, '^(%d+)-(%d+)$')
    if tonumber(am) < tonumber(bm) or (am == bm and tonumber(as) < tonumber(bs)) then lo = a end
    bm, bs = string.match(hi, '^(%d+)-(%d+)$')
    if tonumber(am) > tonumber(bm) or (am == bm and tonumber(as) > tonumber(bs)) then hi = a end
  end
  local have = {}
  local p = redis.call('XPENDING', k, g, lo, hi, #ids * 4 + 16, c)
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

# KEYS s0 s1 s2 s3 delayed meta
# ARGV maxsize(0: none) dedup_ttl_ms(0: none) dedup_prefix n, then n x (class delay_ms data dkey id)
# -> per message: 1 (stored) or the first message's id (a duplicate); shorter when full
PUT = (
    _NOW
    + """
local maxsize = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local dp = ARGV[3]
local n = tonumber(ARGV[4])
local held = 0
if maxsize > 0 then
  held = redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3])
       + redis.call('XLEN', KEYS[4]) + redis.call('ZCARD', KEYS[5])
end
local out = {}
local stored, dups = 0, 0
for i = 0, n - 1 do
  local b = 5 + i * 5
  local cls = tonumber(ARGV[b])
  local delay = tonumber(ARGV[b + 1])
  local dk = ARGV[b + 3]
  local first = false
  if ttl > 0 and dk ~= '' then first = redis.call('GET', dp .. dk) end
  if first then
    out[#out + 1] = first
    dups = dups + 1
  else
    if maxsize > 0 and held >= maxsize then break end
    if ttl > 0 and dk ~= '' then redis.call('SET', dp .. dk, ARGV[b + 4], 'PX', ttl) end
    if delay > 0 then
      redis.call('ZADD', KEYS[5], now + delay, cls .. '|0|' .. now .. '|' .. ARGV[b + 2])
    else
      redis.call('XADD', KEYS[1 + cls], '*', 'm', ARGV[b + 2])
    end
    held = held + 1
    stored = stored + 1
    out[#out + 1] = 1
  end
end
if stored > 0 then redis.call('HINCRBY', KEYS[6], 'put', stored) end
if dups > 0 then redis.call('HINCRBY', KEYS[6], 'dedup', dups) end
return out
"""
)

# the unread entries of a stream (after the group's last-delivered id)
_UNREAD = """
local function last_delivered(k, g)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', k)
  if not ok then return '0-0' end
  for _, gi in ipairs(groups) do
    local name, last = nil, '0-0'
    for j = 1, #gi, 2 do
      if gi[j] == 'name' then name = gi[j + 1]
      elseif gi[j] == 'last-delivered-id' then last = gi[j + 1] end
    end
    if name == g then return last end
  end
  return '0-0'
end
"""

# KEYS s0 s1 s2 s3 delayed meta
# ARGV group consumer count vt_ms max_deliveries claim_interval_ms aging_ms
# -> {now_ms, entries, next_due_ms|false, last ids...}; an entry is
#    {class, id, count, attempts_before, envelope, put_ms|false, dead(0|1)}
POLL = (
    _NOW
    + _UNREAD
    + _FIELDS
    + """
local g, c = ARGV[1], ARGV[2]
local need = tonumber(ARGV[3])
local vt = tonumber(ARGV[4])
local maxd = tonumber(ARGV[5])
local ci = tonumber(ARGV[6])
local aging = tonumber(ARGV[7])
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1024)
for _, m in ipairs(due) do
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  local p3 = string.find(m, '|', p2 + 1, true)
  local cls = tonumber(string.sub(m, 1, p1 - 1))
  redis.call('XADD', KEYS[1 + cls], '*', 'm', string.sub(m, p3 + 1),
             'a', string.sub(m, p1 + 1, p2 - 1), 't', string.sub(m, p2 + 1, p3 - 1))
  redis.call('ZREM', KEYS[5], m)
end
local claim = true
if ci > 0 then
  local nxt = tonumber(redis.call('HGET', KEYS[6], 'next_claim') or '0')
  if now < nxt then claim = false else redis.call('HSET', KEYS[6], 'next_claim', now + ci) end
end
-- the order the classes are served in: strict, or aged (a class's oldest unread message
-- gains one class per `aging` ms it has waited)
local order = {1, 2, 3, 4}
if aging > 0 then
  local busy, rank = 0, {}
  for k = 1, 4 do
    rank[k] = k * 1000000 + k
    if redis.call('XLEN', KEYS[k]) > 0 then busy = busy + 1 end
  end
  if busy > 1 then
    for k = 2, 4 do
      local ldid = last_delivered(KEYS[k], g)
      local head = redis.call('XRANGE', KEYS[k], '(' .. ldid, '+', 'COUNT', 1)
      if head[1] then
        local _, _, ts = fields(head[1][2])
        local put = tonumber(ts or string.match(head[1][1], '^(%d+)'))
        local gained = math.floor((now - put) / aging)
        if gained > k - 1 then gained = k - 1 end
        rank[k] = (k - gained) * 1000000 + k
      end
    end
    table.sort(order, function(x, y) return rank[x] < rank[y] end)
  end
end
local out = {}
for _, k in ipairs(order) do
  if need <= 0 then break end
  local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', need, 'STREAMS', KEYS[k], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      local m, a, ts = fields(e[2])
      out[#out + 1] = {k - 1, e[1], 1, a, m, ts, 0}
      need = need - 1
    end
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
      out[#out + 1] = {k - 1, e[1], cnt, a, m, ts, dead}
      n = n + 1
    end
    if n > 0 then redis.call('HINCRBY', KEYS[6], 'expired', n) end
  end
end
local res = {now, out}
if #out == 0 then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  res[3] = first[2] or false
  for k = 1, 4 do
    local last = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)
    res[3 + k] = last[1] and last[1][1] or '0-0'
  end
end
return res
"""
)

# KEYS s0 s1 s2 s3 meta
# ARGV group consumer n, then n x (class id count) -> the 0-based indexes that were stale
ACK = (
    _MINE
    + """
local g, c = ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local by = {{}, {}, {}, {}}
for i = 0, n - 1 do
  local b = 4 + i * 3
  local s = by[1 + tonumber(ARGV[b])]
  s[#s + 1] = {i, ARGV[b + 1], ARGV[b + 2]}
end
local stale, acked = {}, 0
for k = 1, 4 do
  local s = by[k]
  if #s > 0 then
    local ids, cnts = {}, {}
    for j, r in ipairs(s) do ids[j] = r[2]; cnts[j] = r[3] end
    local ok = mine(KEYS[k], g, c, ids, cnts)
    local good = {}
    for j, r in ipairs(s) do
      if ok[j] then good[#good + 1] = r[2] else stale[#stale + 1] = r[1] end
    end
    for j = 1, #good, 1000 do
      local chunk = {unpack(good, j, math.min(j + 999, #good))}
      redis.call('XACK', KEYS[k], g, unpack(chunk))
      redis.call('XDEL', KEYS[k], unpack(chunk))
    end
    acked = acked + #good
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[5], 'acked', acked) end
return stale
"""
)

# KEYS stream delayed meta
# ARGV group consumer id count delay_ms attempts counter(nacked|released)
# -> 1, or 0 when stale: the entry goes back (after delay_ms, via the delayed set) as a new
#    entry carrying its attempts, behind its class's ready messages
PUT_BACK = (
    _NOW
    + _MINE
    + _FIELDS
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if not mine(KEYS[1], g, c, {id}, {ARGV[4]})[1] then return 0 end
local e = redis.call('XRANGE', KEYS[1], id, id)[1]
if not e then return 0 end
local m, _, ts = fields(e[2])
ts = ts or string.match(id, '^(%d+)')
local delay = tonumber(ARGV[5])
if delay > 0 then
  local cls = string.match(KEYS[1], ':(%d)$')
  redis.call('ZADD', KEYS[2], now + delay, cls .. '|' .. ARGV[6] .. '|' .. ts .. '|' .. m)
else
  redis.call('XADD', KEYS[1], '*', 'm', m, 'a', ARGV[6], 't', ts)
end
redis.call('XACK', KEYS[1], g, id)
redis.call('XDEL', KEYS[1], id)
redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
return 1
"""
)

# KEYS stream meta dlq
# ARGV group consumer id count entry(bytes, '' = no dead-letter stream) check(1|0)
# -> 1, or 0 when stale. The dead-letter entry is written in the same script as the XACK.
DEAD = (
    _MINE
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if ARGV[6] == '1' and not mine(KEYS[1], g, c, {id}, {ARGV[4]})[1] then return 0 end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[3], '*', 'e', ARGV[5]) end
redis.call('XACK', KEYS[1], g, id)
redis.call('XDEL', KEYS[1], id)
redis.call('HINCRBY', KEYS[2], 'dead', 1)
return 1
"""
)

# KEYS stream ; ARGV group consumer id count idle_ms -> 1, or 0 when stale
EXTEND = (
    _MINE
    + """
local g, c, id = ARGV[1], ARGV[2], ARGV[3]
if not mine(KEYS[1], g, c, {id}, {ARGV[4]})[1] then return 0 end
redis.call('XCLAIM', KEYS[1], g, c, 0, id, 'IDLE', tonumber(ARGV[5]), 'JUSTID')
return 1
"""
)

# KEYS s0 s1 s2 s3 delayed meta ; ARGV group
# -> {xlen x4, pending x4, delayed, oldest unread put ms|false, meta field/value list}
STATS = (
    _UNREAD
    + _FIELDS
    + """
local g = ARGV[1]
local out = {}
local oldest = false
for k = 1, 4 do
  out[k] = redis.call('XLEN', KEYS[k])
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[k], g)
  out[4 + k] = ok and p[1] or 0
  local head = redis.call('XRANGE', KEYS[k], '(' .. last_delivered(KEYS[k], g), '+', 'COUNT', 1)
  if head[1] then
    local _, _, ts = fields(head[1][2])
    local put = tonumber(ts or string.match(head[1][1], '^(%d+)'))
    if not oldest or put < oldest then oldest = put end
  end
end
out[9] = redis.call('ZCARD', KEYS[5])
out[10] = oldest
out[11] = redis.call('HGETALL', KEYS[6])
return out
"""
)

# KEYS s0 s1 s2 s3 ; ARGV group -> how many unread entries were deleted
PURGE = (
    _UNREAD
    + """
local g = ARGV[1]
local n = 0
for k = 1, 4 do
  while true do
    local from = '(' .. last_delivered(KEYS[k], g)
    local rows = redis.call('XRANGE', KEYS[k], from, '+', 'COUNT', 1000)
    if #rows == 0 then break end
    local ids = {}
    for j, r in ipairs(rows) do ids[j] = r[1] end
    redis.call('XDEL', KEYS[k], unpack(ids))
    n = n + #ids
  end
end
return n
"""
)

# KEYS s0 s1 s2 s3 delayed -> messages held (unread + pending + delayed)
HELD = """
return redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3])
     + redis.call('XLEN', KEYS[4]) + redis.call('ZCARD', KEYS[5])
"""
