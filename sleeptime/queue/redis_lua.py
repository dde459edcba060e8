"""The Lua scripts of the Redis Streams queue (:mod:`sleeptime.queue.redis_streams`):
each runs atomically on the Redis server. Every script reads the time from one clock
(:data:`_NOW`: the caller's, or Redis's ``TIME``); the claim script applies the idle
rule as :data:`sleeptime.queue.scheduler.DUE_LUA`, the Lua twin of
:func:`~sleeptime.queue.scheduler.due` kept next to it, with ``idle_after`` and
``max_delay`` passed in from the queue's :class:`~sleeptime.queue.base.QueueConfig`.

Scripts build job keys from prefixes, so the keys must live on one Redis node (no
cluster sharding).
"""

from __future__ import annotations

from sleeptime.queue.scheduler import DUE_LUA

#: Every script starts here. ARGV[1] is the caller's clock, or '' for the Redis clock
#: (one clock for every worker, whatever host it runs on); the script's own arguments
#: are ``A``.
_NOW = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local nows = string.format('%.6f', now)
local A = {}
for i = 2, #ARGV do A[i - 1] = ARGV[i] end
"""

_DEAD = """
local function dead(jk, id, eid, err, d)
  if eid and eid ~= '' then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
  end
  local f = redis.call('HMGET', jk, 'ns', 'cid', 'version')
  local did = redis.call('XADD', deadkey, '*', 'id', id, 'ns', f[1] or '', 'cid', f[2] or '',
    'version', f[3] or '', 'error', err, 'deliveries', tostring(d), 'at', nows)
  redis.call('HSET', jk, 'state', 'dead', 'error', err, 'dead_entry', did, 'finished_at', nows,
    'worker', '')
  redis.call('HINCRBY', stats, 'dead', 1)
end
"""

#: Waiting jobs live in the global ``waiting`` ZSET (listing, counts) and in their
#: namespace's own ZSET (fair share); ``KP`` is the key prefix with its colon.
_FAIR = """
local function to_waiting(id, ns, score)
  redis.call('ZADD', KP .. 'waiting', score, id)
  if ns then
    redis.call('ZADD', KP .. 'wns:' .. ns, score, id)
    redis.call('SADD', KP .. 'wnss', ns)
  end
end
local function from_waiting(id, ns)
  redis.call('ZREM', KP .. 'waiting', id)
  if ns then redis.call('ZREM', KP .. 'wns:' .. ns, id) end
end
"""

#: Raise a waiting or running job's priority (KEYS[1] its hash, ARGV[1] the priority):
#: 1, or 0 when the job is neither. Atomic with :data:`DEFER`, which reads the stored
#: priority: a running job promoted to the explicit priority is never deferred.
PROMOTE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'priority')
if f[1] ~= 'waiting' and f[1] ~= 'running' then return 0 end
if tonumber(f[2] or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'priority', ARGV[1])
end
return 1
"""

ENQUEUE = (
    _NOW
    + """
local KP, ttl = A[8], tonumber(A[9])
"""
    + _FAIR
    + """
local jk, dedup, waiting = KEYS[1], KEYS[2], KEYS[3]
local id, ns, cid, version, priority = A[1], A[2], A[3], A[4], A[5]
local existing = redis.call('GET', dedup)
if existing and redis.call('EXISTS', A[6] .. existing) == 1 then
  local ek = A[6] .. existing
  local f = redis.call('HMGET', ek, 'state', 'dead_entry')
  if f[1] ~= 'dead' then return {0, existing} end
  -- a dead job is no reason to skip the work: it comes back, deliveries reset
  if f[2] and f[2] ~= '' then redis.call('XDEL', A[7], f[2]) end
  redis.call('HSET', ek, 'state', 'waiting', 'deliveries', 0, 'ready_at', nows,
    'enqueued_at', nows)
  if tonumber(redis.call('HGET', ek, 'priority') or '0') < tonumber(priority) then
    redis.call('HSET', ek, 'priority', priority)
  end
  redis.call('HDEL', ek, 'dead_entry')
  to_waiting(existing, ns, now)
  return {1, existing}
end
-- a deferred job of an older version will never be wanted again
local ctx = ns .. '/' .. cid
local old = redis.call('HGET', KP .. 'deferred_ctx', ctx)
if old then
  local ok = A[6] .. old
  local of = redis.call('HMGET', ok, 'state', 'version', 'dedup')
  if of[1] == 'deferred' and tonumber(of[2] or '0') < tonumber(version) then
    redis.call('HSET', ok, 'state', 'done', 'finished_at', nows,
      'error', 'superseded by v' .. version)
    redis.call('EXPIRE', ok, ttl)
    if of[3] then redis.call('EXPIRE', of[3], ttl) end
    redis.call('ZREM', KP .. 'deferred', old)
    redis.call('HDEL', KP .. 'deferred_ctx', ctx)
  end
end
redis.call('SET', dedup, id)
redis.call('HSET', jk, 'id', id, 'ns', ns, 'cid', cid, 'version', version, 'state', 'waiting',
  'priority', priority, 'enqueued_at', nows, 'ready_at', nows, 'deliveries', 0, 'dedup', dedup)
to_waiting(id, ns, now)
return {1, id}
"""
)

TOUCH = (
    _NOW
    + """
local activity, rate_prefix = KEYS[1], KEYS[2]
local rk = rate_prefix .. math.floor(now / 60)
for i = 1, #A, 2 do
  local ctx = A[i]
  local ns = string.match(ctx, '^([^/]*)/')
  redis.call('HSET', activity, ns, nows)
  redis.call('HINCRBY', rk, ctx, tonumber(A[i + 1]))
end
redis.call('EXPIRE', rk, 180)
return 1
"""
)

CLAIM = (
    _NOW
    + """
local waiting, stream, activity, epochkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate_prefix, job_prefix, group, consumer = A[1], A[2], A[3], A[4]
local count, idle_after, max_delay, scan = tonumber(A[5]), tonumber(A[6]),
  tonumber(A[7]), tonumber(A[8])
local KP = A[11]
"""
    + _FAIR
    + DUE_LUA
    + """
-- the queue's epoch: created with the first claim, gone with the rest of the keys
local epoch = redis.call('GET', epochkey)
if not epoch then
  epoch = A[10]
  redis.call('SET', epochkey, epoch)
end
local lease_until = string.format('%.6f', now + tonumber(A[9]))
local minute = math.floor(now / 60)
local r1, r0 = rate_prefix .. minute, rate_prefix .. (minute - 1)
local maxns = tonumber(A[12])
-- a queue from before fair share: index its waiting jobs per namespace, once
if redis.call('EXISTS', KP .. 'fair') == 0 then
  local all = redis.call('ZRANGE', waiting, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local ns = redis.call('HGET', job_prefix .. all[i], 'ns')
    if ns then
      redis.call('ZADD', KP .. 'wns:' .. ns, all[i + 1], all[i])
      redis.call('SADD', KP .. 'wnss', ns)
    end
  end
  redis.call('SET', KP .. 'fair', '1')
end
local nss
if redis.call('SCARD', KP .. 'wnss') > maxns then
  nss = redis.call('SRANDMEMBER', KP .. 'wnss', maxns)
else
  nss = redis.call('SMEMBERS', KP .. 'wnss')
end
-- fair share: jobs in flight per namespace (the leases: the stream's pending entries)
local busy = {}
for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 1000)) do
  local e = redis.call('XRANGE', stream, p[1], p[1])[1]
  if e then
    local ns = redis.call('HGET', job_prefix .. e[2][2], 'ns')
    if ns then busy[ns] = (busy[ns] or 0) + 1 end
  end
end
local per, heads = {}, {}
for _, ns in ipairs(nss) do
  local zk = KP .. 'wns:' .. ns
  local ids = redis.call('ZRANGEBYSCORE', zk, '-inf', now, 'LIMIT', 0, scan)
  if #ids == 0 then
    if redis.call('ZCARD', zk) == 0 then redis.call('SREM', KP .. 'wnss', ns) end
  else
    local last = tonumber(redis.call('HGET', activity, ns) or '0')
    local cands = {}
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', job_prefix .. id, 'cid', 'enqueued_at', 'priority')
      if not f[1] then
        redis.call('ZREM', zk, id)
        redis.call('ZREM', waiting, id)
      else
        local enq = tonumber(f[2])
        if due(now, enq, last, idle_after, max_delay) then
          local ctx = ns .. '/' .. f[1]
          local rate = tonumber(redis.call('HGET', r1, ctx) or '0')
            + tonumber(redis.call('HGET', r0, ctx) or '0')
          cands[#cands + 1] = {id, tonumber(f[3] or '0') + rate, enq}
        end
      end
    end
    if #cands > 0 then
      table.sort(cands, function(a, b)
        if a[2] ~= b[2] then return a[2] > b[2] end
        if a[3] ~= b[3] then return a[3] < b[3] end
        return a[1] < b[1]
      end)
      per[ns] = cands
      heads[ns] = 1
    end
  end
end
-- each pick: the namespace with the fewest jobs in flight, ties to the oldest job
local picked = 0
while picked < count do
  local best, bb, be
  for ns, h in pairs(heads) do
    local b, e = busy[ns] or 0, per[ns][h][3]
    if best == nil or b < bb or (b == bb and (e < be or (e == be and ns < best))) then
      best, bb, be = ns, b, e
    end
  end
  if best == nil then break end
  local id = per[best][heads[best]][1]
  from_waiting(id, best)
  redis.call('XADD', stream, '*', 'id', id)
  picked = picked + 1
  busy[best] = bb + 1
  heads[best] = heads[best] + 1
  if heads[best] > #per[best] then heads[best] = nil end
end
local out = {epoch}
local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
  'STREAMS', stream, '>')
if res then
  for _, e in ipairs(res[1][2]) do
    local eid, id = e[1], e[2][2]
    local jk = job_prefix .. id
    if redis.call('EXISTS', jk) == 0 then
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
    else
      redis.call('HINCRBY', jk, 'deliveries', 1)
      redis.call('HSET', jk, 'state', 'running', 'worker', consumer, 'entry', eid,
        'started_at', nows, 'lease_until', lease_until)
      out[#out + 1] = eid
      out[#out + 1] = id
    end
  end
end
return out
"""
)

RECLAIM = (
    _NOW
    + """
local stream, deadkey, stats = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, lease, count, job_prefix, maxd, scan = A[1], A[2], tonumber(A[3]),
  tonumber(A[4]), A[5], tonumber(A[6]), tonumber(A[7])
local lease_until = string.format('%.6f', now + lease)
"""
    + _DEAD
    + """
-- a lease is over when its deadline (set at claim, moved by renew) has passed; an entry
-- claimed without a deadline (by an older version) falls back to its idle time
local out = {}
local taken = 0
for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', scan)) do
  if taken >= count then break end
  local eid, idle = p[1], tonumber(p[3])
  local e = redis.call('XRANGE', stream, eid, eid)[1]
  local id = e and e[2][2]
  local jk = id and (job_prefix .. id)
  local expired = false
  if not id or redis.call('EXISTS', jk) == 0 then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
  else
    local deadline = tonumber(redis.call('HGET', jk, 'lease_until') or '')
    if deadline then expired = deadline < now else expired = idle >= lease * 1000 end
  end
  if expired then
    taken = taken + 1
    redis.call('XCLAIM', stream, group, consumer, 0, eid, 'JUSTID')
    local d = redis.call('HINCRBY', jk, 'deliveries', 1)
    if d > maxd then
      local last = redis.call('HGET', jk, 'error')
      local err = 'gave up after ' .. (d - 1) .. ' deliveries: its worker stopped holding the '
        .. 'lease (killed, or the job kills workers)'
      if last and last ~= '' then err = err .. '; last error: ' .. last end
      dead(jk, id, eid, err, d - 1)
    else
      redis.call('HSET', jk, 'state', 'running', 'worker', consumer, 'entry', eid,
        'started_at', nows, 'lease_until', lease_until)
      out[#out + 1] = eid
      out[#out + 1] = id
    end
  end
end
return out
"""
)

RENEW = (
    _NOW
    + """
local stream, group, consumer, job_prefix = KEYS[1], A[1], A[2], A[3]
local lease_until = string.format('%.6f', now + tonumber(A[4]))
local lost = {}
for i = 5, #A, 2 do
  local eid, id = A[i], A[i + 1]
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  if #p == 0 or p[1][2] ~= consumer then
    lost[#lost + 1] = eid
  else
    redis.call('XCLAIM', stream, group, consumer, 0, eid, 'JUSTID')
    redis.call('HSET', job_prefix .. id, 'lease_until', lease_until)
  end
end
return lost
"""
)

ACK = (
    _NOW
    + """
local stream, waiting, deadkey, stats, jk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, eid, id, ttl, KP = A[1], A[2], A[3], tonumber(A[4]), A[5]
"""
    + _FAIR
    + """
if eid ~= '' then
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
end
local f = redis.call('HMGET', jk, 'state', 'dedup', 'dead_entry', 'ns')
if not f[1] or f[1] == 'done' then return 0 end
if f[1] == 'dead' and f[3] then redis.call('XDEL', deadkey, f[3]) end
from_waiting(id, f[4])
-- the dedup key lives as long as the done job: a late duplicate (a sweep racing this
-- ack) finds it and adds nothing
if f[2] and redis.call('GET', f[2]) == id then redis.call('EXPIRE', f[2], ttl) end
redis.call('HSET', jk, 'state', 'done', 'finished_at', nows, 'error', '')
redis.call('EXPIRE', jk, ttl)
redis.call('HINCRBY', stats, 'done', 1)
return 1
"""
)

FAIL = (
    _NOW
    + """
local stream, waiting, deadkey, stats, jk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer, eid, id, err, delay, permanent, maxd, consume = A[1], A[2], A[3],
  A[4], A[5], tonumber(A[6]), A[7], tonumber(A[8]), A[9]
local KP = A[10]
"""
    + _DEAD
    + _FAIR
    + """
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 or p[1][2] ~= consumer or redis.call('EXISTS', jk) == 0 then return 'lost' end
local d = tonumber(redis.call('HGET', jk, 'deliveries') or '0')
if consume == '0' then
  redis.call('HINCRBY', jk, 'deliveries', -1)
elseif permanent == '1' or d >= maxd then
  dead(jk, id, eid, err, d)
  return 'dead'
end
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
local ready = now + delay
redis.call('HSET', jk, 'state', 'waiting', 'error', err, 'worker', '',
  'ready_at', string.format('%.6f', ready))
to_waiting(id, redis.call('HGET', jk, 'ns'), ready)
redis.call('HINCRBY', stats, 'retried', 1)
return 'retry'
"""
)

RETRY = (
    _NOW
    + """
local jk, deadkey, waiting, id, KP = KEYS[1], KEYS[2], KEYS[3], A[1], A[2]
"""
    + _FAIR
    + """
local f = redis.call('HMGET', jk, 'state', 'dead_entry', 'dedup', 'ns')
if not f[1] then return 'missing' end
if f[1] ~= 'dead' and f[1] ~= 'deferred' then return f[1] end
if f[2] and f[2] ~= '' then redis.call('XDEL', deadkey, f[2]) end
redis.call('ZREM', KP .. 'deferred', id)
redis.call('HSET', jk, 'state', 'waiting', 'deliveries', 0, 'ready_at', nows)
redis.call('HDEL', jk, 'dead_entry')
to_waiting(id, f[4], now)
if f[3] then redis.call('SET', f[3], id) end
return 'ok'
"""
)

#: Defer a running job: 'deferred'; 'lost' when this consumer no longer holds it;
#: 'explicit' (left running, held) when its stored priority is A[7] or more (an
#: explicit sleep promoted it while it ran).
DEFER = (
    _NOW
    + """
local stream, jk = KEYS[1], KEYS[2]
local group, consumer, eid, id, reason, KP = A[1], A[2], A[3], A[4], A[5], A[6]
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 or p[1][2] ~= consumer or redis.call('EXISTS', jk) == 0 then return 'lost' end
if tonumber(redis.call('HGET', jk, 'priority') or '0') >= tonumber(A[7]) then
  return 'explicit'
end
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
redis.call('HSET', jk, 'state', 'deferred', 'error', reason, 'worker', '', 'finished_at', nows)
redis.call('ZADD', KP .. 'deferred', now, id)
local f = redis.call('HMGET', jk, 'ns', 'cid')
redis.call('HSET', KP .. 'deferred_ctx', f[1] .. '/' .. f[2], id)
redis.call('HINCRBY', KP .. 'stats', 'deferred', 1)
return 'deferred'
"""
)

REVIVE = (
    _NOW
    + """
local dedup, ctx, reason, job_prefix, KP = A[1], A[2], A[3], A[4], A[5]
"""
    + _FAIR
    + """
local id
if dedup ~= '' then id = redis.call('GET', dedup) else
  id = redis.call('HGET', KP .. 'deferred_ctx', ctx) end
if not id then return '' end
local jk = job_prefix .. id
local f = redis.call('HMGET', jk, 'state', 'error', 'ns')
if f[1] ~= 'deferred' then return '' end
local note = 'revived'
if reason ~= '' then note = note .. ': ' .. reason end
if f[2] and f[2] ~= '' then note = note .. ' (was ' .. f[2] .. ')' end
redis.call('HSET', jk, 'state', 'waiting', 'deliveries', 0, 'ready_at', nows, 'error', note)
redis.call('ZREM', KP .. 'deferred', id)
if redis.call('HGET', KP .. 'deferred_ctx', ctx) == id then
  redis.call('HDEL', KP .. 'deferred_ctx', ctx)
end
to_waiting(id, f[3], now)
redis.call('HINCRBY', KP .. 'stats', 'revived', 1)
return id
"""
)


#: The scripts the queue registers, by the name it runs them under.
SCRIPTS = {
    "enqueue": ENQUEUE,
    "touch": TOUCH,
    "claim": CLAIM,
    "reclaim": RECLAIM,
    "renew": RENEW,
    "ack": ACK,
    "fail": FAIL,
    "retry": RETRY,
    "defer": DEFER,
    "revive": REVIVE,
}
