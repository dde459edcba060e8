"""The job queue on Redis Streams: durable (AOF), shared by any number of workers.

Layout (names in :mod:`sleeptime.queue.keys`): an enqueued job is a HASH plus an
entry in the ``waiting`` ZSET (scored by its earliest start). A claim runs one Lua
script that moves the highest-priority *due* jobs (idle-time rule of
:mod:`sleeptime.queue.scheduler`, evaluated with the Redis clock so workers on
different hosts agree) into the ``jobs`` stream and reads them with ``XREADGROUP``:
the stream's pending-entries list is the set of leases, and each job records its
lease deadline (``lease_until``). A worker that dies leaves its entries pending;
``reclaim`` hands those whose deadline has passed to another worker (``XCLAIM``).
Running workers move their deadlines forward (``renew``). Failures go back to
``waiting`` with a backoff, and after ``max_deliveries`` to the ``dead`` stream with
the error text. Every time is read from one clock: Redis's ``TIME``, or the ``clock``
given to the queue (tests step it instead of sleeping).

Scripts build job keys from prefixes, so the keys must live on one Redis node (no
cluster sharding).
"""

from __future__ import annotations

import builtins
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from sleeptime.errors import InvalidInput
from sleeptime.queue.base import (
    DONE_TTL,
    FAIR_NAMESPACES,
    FailOutcome,
    Job,
    JobNotFound,
    QueueConfig,
    QueueUnavailable,
    new_job_id,
)
from sleeptime.queue.keys import GROUP, Keys, ctx_key
from sleeptime.queue.scheduler import eta
from sleeptime.redact import redact_text, redact_url, redacted_cause
from sleeptime.settings import default

T = TypeVar("T")

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

#: Raise a waiting job's priority (KEYS[1] its hash, ARGV[1] the priority): 1, or 0
#: when the job is not waiting.
_PROMOTE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'priority')
if f[1] ~= 'waiting' then return 0 end
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
    local idle = idle_after <= 0 or now - last >= idle_after
    local cands = {}
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', job_prefix .. id, 'cid', 'enqueued_at', 'priority')
      if not f[1] then
        redis.call('ZREM', zk, id)
        redis.call('ZREM', waiting, id)
      else
        local enq = tonumber(f[2])
        if idle or now - enq >= max_delay then
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

DEFER = (
    _NOW
    + """
local stream, jk = KEYS[1], KEYS[2]
local group, consumer, eid, id, reason, KP = A[1], A[2], A[3], A[4], A[5], A[6]
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 or p[1][2] ~= consumer or redis.call('EXISTS', jk) == 0 then return 0 end
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
redis.call('HSET', jk, 'state', 'deferred', 'error', reason, 'worker', '', 'finished_at', nows)
redis.call('ZADD', KP .. 'deferred', now, id)
local f = redis.call('HMGET', jk, 'ns', 'cid')
redis.call('HSET', KP .. 'deferred_ctx', f[1] .. '/' .. f[2], id)
redis.call('HINCRBY', KP .. 'stats', 'deferred', 1)
return 1
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


def _job(fields: dict[str, str], receipt: str = "") -> Job:
    def num(name: str) -> float:
        raw = fields.get(name) or "0"
        try:
            return float(raw)
        except ValueError:
            return 0.0

    return Job(
        id=fields["id"],
        namespace=fields.get("ns", ""),
        context_id=fields.get("cid", ""),
        version=int(fields.get("version") or 0),
        state=fields.get("state", "waiting"),
        deliveries=int(num("deliveries")),
        priority=num("priority"),
        enqueued_at=num("enqueued_at"),
        ready_at=num("ready_at"),
        worker=fields.get("worker") or None,
        error=fields.get("error") or None,
        receipt=receipt or fields.get("entry", ""),
    )


def connect(url: str, *, timeout: float | None = 5.0, retries: int = 3) -> redis.Redis:
    """A client that retries dropped connections with backoff (Redis restarts)."""
    try:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=30,
        )
    except ValueError as exc:  # redis-py's own message may quote part of the URL
        raise InvalidInput(
            f"bad Redis URL {redact_url(url)}: {redact_text(exc, url)}; "
            "use redis://[:password@]host[:port][/db], rediss://... or unix://path"
        ) from None


class RedisStreamsQueue:
    """:class:`sleeptime.queue.base.JobQueue` on Redis Streams."""

    def __init__(
        self,
        url: str,
        config: QueueConfig | None = None,
        *,
        prefix: str = default("redis_prefix"),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.config = config or QueueConfig()
        #: None: the Redis clock (shared by every worker); tests pass a controllable one.
        self.clock = clock
        self.keys = Keys(prefix)
        self.r: Any = connect(url)  # responses are str (decode_responses)
        self._scripts = {
            name: self.r.register_script(src)
            for name, src in {
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
            }.items()
        }
        #: The key prefix with its colon, for scripts that build keys (one node only).
        self._kp = f"{self.keys.prefix}:"
        self._group_ready = False
        #: The epoch token this queue last saw (None: no claim yet).
        self._epoch: str | None = None
        self._losses = 0
        self._lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            where, detail = redact_url(self.url), redact_text(exc, self.url)
            raise QueueUnavailable(f"Redis at {where}", detail) from redacted_cause(exc, self.url)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.r.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _now(self) -> float:
        """The queue's clock: the injected one, else the Redis server's."""
        if self.clock is not None:
            return self.clock()
        with self._guard():
            sec, usec = self.r.time()
        return float(sec) + float(usec) / 1e6

    def _group_lost(self, exc: ResponseError) -> None:
        """Redis lost the consumer group (a restart without persistence, the stream
        deleted): re-raise anything else; recreate it and count a loss."""
        if "NOGROUP" not in str(exc):
            raise exc
        self._group_ready = False
        self._lost()
        self._ensure_group()

    def _lost(self) -> None:
        with self._lock:
            self._losses += 1

    def lost(self) -> bool:
        """True once for each loss of the queue's state noticed since the last call."""
        with self._lock:
            found, self._losses = self._losses > 0, 0
        return found

    def _saw_epoch(self, epoch: str) -> None:
        with self._lock:
            if self._epoch is not None and epoch != self._epoch:
                self._losses += 1
            self._epoch = epoch

    def _with_group(self, read: Callable[[], T]) -> T:
        """A read of the consumer group, retried once if Redis lost the group."""
        try:
            return read()
        except ResponseError as exc:
            self._group_lost(exc)
            return read()

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; recreate the consumer group if Redis lost it (no AOF)."""
        args = ["" if self.clock is None else f"{self.clock():.6f}", *args]
        with self._guard():
            self._ensure_group()
            try:
                return self._scripts[name](keys=keys, args=args)
            except ResponseError as exc:
                self._group_lost(exc)
                return self._scripts[name](keys=keys, args=args)

    def _jobs(self, pairs: list[str]) -> list[Job]:
        """Jobs from a flat [receipt, id, receipt, id, ...] script reply."""
        if not pairs:
            return []
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id in pairs[1::2]:
                pipe.hgetall(self.keys.job(job_id))
            rows = pipe.execute()
        return [_job(f, receipt) for receipt, f in zip(pairs[0::2], rows, strict=True) if f]

    # -- JobQueue -------------------------------------------------------------------

    def enqueue(
        self, namespace: str, context_id: str, version: int, priority: float = 0.0
    ) -> Job | None:
        job_id = new_job_id()
        created, job_id = self._run(
            "enqueue",
            [
                self.keys.job(job_id),
                self.keys.dedup(namespace, context_id, version),
                self.keys.waiting,
            ],
            [
                job_id,
                namespace,
                context_id,
                version,
                priority,
                self.keys.job_prefix,
                self.keys.dead,
                self._kp,
                int(DONE_TTL),
            ],
        )
        if not int(created):
            return None
        return Job(
            id=job_id,
            namespace=namespace,
            context_id=context_id,
            version=version,
            priority=priority,
        )

    def touch(self, activity: dict[str, int]) -> None:
        if not activity:
            return
        args: list[Any] = []
        for ctx, n in activity.items():
            args += [ctx, n]
        self._run("touch", [self.keys.activity, self.keys.rate_prefix], args)

    def claim(self, worker: str, count: int = 1) -> list[Job]:
        c = self.config
        out = self._run(
            "claim",
            [self.keys.waiting, self.keys.stream, self.keys.activity, self.keys.epoch],
            [
                self.keys.rate_prefix,
                self.keys.job_prefix,
                GROUP,
                worker,
                count,
                c.idle_after,
                c.max_delay,
                c.scan,
                c.lease_s,
                secrets.token_hex(8),  # the epoch, if the queue has none yet
                self._kp,
                FAIR_NAMESPACES,
            ],
        )
        self._saw_epoch(str(out[0]))
        return self._jobs(out[1:])

    def reclaim(self, worker: str, count: int = 1) -> list[Job]:
        pairs = self._run(
            "reclaim",
            [self.keys.stream, self.keys.dead, self.keys.stats],
            [
                GROUP,
                worker,
                self.config.lease_s,
                count,
                self.keys.job_prefix,
                self.config.max_deliveries,
                self.config.scan,
            ],
        )
        return self._jobs(pairs)

    def renew(self, worker: str, jobs: list[Job]) -> list[str]:
        held = [x for j in jobs if j.receipt for x in (j.receipt, j.id)]
        if not held:
            return []
        lost = set(
            self._run(
                "renew",
                [self.keys.stream],
                [GROUP, worker, self.keys.job_prefix, self.config.lease_s, *held],
            )
        )
        return [j.id for j in jobs if j.receipt in lost]

    def ack(self, worker: str, job: Job) -> bool:
        done = self._run(
            "ack",
            [
                self.keys.stream,
                self.keys.waiting,
                self.keys.dead,
                self.keys.stats,
                self.keys.job(job.id),
            ],
            [GROUP, job.receipt, job.id, int(DONE_TTL), self._kp],
        )
        return bool(int(done))

    def fail(
        self,
        worker: str,
        job: Job,
        error: str,
        *,
        delay: float,
        permanent: bool = False,
        consume: bool = True,
    ) -> FailOutcome:
        out: FailOutcome = self._run(
            "fail",
            [
                self.keys.stream,
                self.keys.waiting,
                self.keys.dead,
                self.keys.stats,
                self.keys.job(job.id),
            ],
            [
                GROUP,
                worker,
                job.receipt,
                job.id,
                error,
                max(0.0, delay),
                "1" if permanent else "0",
                self.config.max_deliveries,
                "1" if consume else "0",
                self._kp,
            ],
        )
        return out

    def defer(self, worker: str, job: Job, reason: str) -> bool:
        done = self._run(
            "defer",
            [self.keys.stream, self.keys.job(job.id)],
            [GROUP, worker, job.receipt, job.id, reason, self._kp],
        )
        return bool(int(done))

    def revive(
        self, namespace: str, context_id: str, version: int | None = None, reason: str = ""
    ) -> Job | None:
        dedup = "" if version is None else self.keys.dedup(namespace, context_id, version)
        job_id = self._run(
            "revive",
            [self.keys.waiting],
            [dedup, ctx_key(namespace, context_id), reason, self.keys.job_prefix, self._kp],
        )
        return self._get(job_id) if job_id else None

    def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        out: list[Job] = []
        with self._guard():
            self._ensure_group()
            if state in (None, "pending", "waiting", "queued"):
                ids = self.r.zrange(self.keys.waiting, 0, limit - 1)
                out += self._jobs([x for job_id in ids for x in ("", job_id)])
            if state in (None, "running"):
                pending = self._with_group(
                    lambda: self.r.xpending_range(self.keys.stream, GROUP, "-", "+", limit)
                )
                pairs: list[str] = []
                for p in pending:
                    entry = self.r.xrange(self.keys.stream, p["message_id"], p["message_id"])
                    if entry:
                        pairs += [p["message_id"], entry[0][1]["id"]]
                out += self._jobs(pairs)
            if state in (None, "dead"):
                for eid, f in self.r.xrange(self.keys.dead, "-", "+", count=limit):
                    job = _job({**f, "state": "dead"}, eid)
                    out.append(job)
            if state in (None, "deferred"):
                ids = self.r.zrange(self.keys.deferred, 0, limit - 1)
                out += self._jobs([x for job_id in ids for x in ("", job_id)])
        return self._with_eta(out)

    def _with_eta(self, jobs: builtins.list[Job]) -> builtins.list[Job]:
        """Waiting jobs with ``ready_at`` their earliest start (backoff and idle rule,
        :func:`~sleeptime.queue.scheduler.eta`, as the claim script decides it); the
        stored backoff time (the ``waiting`` score) is untouched."""
        namespaces = sorted({j.namespace for j in jobs if j.state == "waiting"})
        if not namespaces:
            return jobs
        with self._guard():
            found = self.r.hmget(self.keys.activity, namespaces)
        last = {ns: float(at or 0.0) for ns, at in zip(namespaces, found, strict=True)}
        c = self.config
        return [
            replace(
                j,
                ready_at=eta(
                    j.ready_at, j.enqueued_at, last[j.namespace], c.idle_after, c.max_delay
                ),
            )
            if j.state == "waiting"
            else j
            for j in jobs
        ]

    def promote(self, job_id: str, priority: float) -> Job | None:
        with self._guard():
            ok = self.r.eval(_PROMOTE, 1, self.keys.job(job_id), priority)
        return self._get(job_id) if ok else None

    def _get(self, job_id: str) -> Job | None:
        with self._guard():
            f = self.r.hgetall(self.keys.job(job_id))
        return self._with_eta([_job(f)])[0] if f else None

    def retry(self, job_id: str) -> Job:
        out = self._run(
            "retry",
            [self.keys.job(job_id), self.keys.dead, self.keys.waiting],
            [job_id, self._kp],
        )
        if out == "missing":
            raise JobNotFound(job_id)
        if out != "ok":
            raise JobNotFound(job_id, state=out)
        job = self._get(job_id)
        assert job is not None
        return job

    def counts(self) -> dict[str, int]:
        def read() -> Any:
            pipe = self.r.pipeline(transaction=False)
            pipe.zcard(self.keys.waiting)
            pipe.xpending(self.keys.stream, GROUP)
            pipe.xlen(self.keys.dead)
            pipe.hgetall(self.keys.stats)
            pipe.zcard(self.keys.deferred)
            return pipe.execute()

        with self._guard():
            self._ensure_group()
            waiting, pending, dead, stats, deferred = self._with_group(read)
        return {
            "waiting": int(waiting),
            "running": int(pending["pending"]),
            "dead": int(dead),
            "deferred": int(deferred),
            "done": int(stats.get("done", 0)),
            "retried": int(stats.get("retried", 0)),
        }

    def heartbeat(self, worker: str, info: dict[str, Any], ttl: float) -> None:
        # the key's TTL removes it; "expires" lets readers on the queue's clock agree
        record = json.dumps({**info, "expires": self._now() + ttl})
        with self._guard():
            self.r.set(self.keys.worker(worker), record, px=max(1, int(ttl * 1000)))

    def workers(self) -> builtins.list[dict[str, Any]]:
        with self._guard():
            names = list(self.r.scan_iter(match=self.keys.worker_prefix + "*", count=500))
            values = self.r.mget(names) if names else []
        now = self._now()
        found = [json.loads(v) for v in values if v]
        return [w for w in found if float(w.pop("expires", now)) >= now]

    def close(self) -> None:
        self.r.close()


__all__ = ["RedisStreamsQueue", "connect", "ctx_key", "new_job_id"]
