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

This module is the client side (connections, arguments, replies, listings); the
scripts themselves are in :mod:`sleeptime.queue.redis_lua`. They build job keys from
prefixes, so the keys must live on one Redis node (no cluster sharding).
"""

from __future__ import annotations

import builtins
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    EXPLICIT_PRIORITY,
    FAIR_NAMESPACES,
    DeferOutcome,
    FailOutcome,
    Job,
    JobNotFound,
    QueueConfig,
    QueueUnavailable,
    new_job_id,
)
from sleeptime.queue.keys import GROUP, Keys, ctx_key
from sleeptime.queue.redis_lua import PROMOTE, SCRIPTS
from sleeptime.queue.scheduler import with_eta
from sleeptime.redact import redact_text, redact_url, redacted_cause
from sleeptime.settings import default

T = TypeVar("T")


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
        finished_at=num("finished_at"),
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
        self._scripts = {name: self.r.register_script(src) for name, src in SCRIPTS.items()}
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
            server, detail = redact_url(self.url), redact_text(exc, self.url)
            raise QueueUnavailable(f"Redis at {server}", detail) from redacted_cause(exc, self.url)

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
            was_lost, self._losses = self._losses > 0, 0
        return was_lost

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

    def defer(self, worker: str, job: Job, reason: str) -> DeferOutcome:
        out: DeferOutcome = self._run(
            "defer",
            [self.keys.stream, self.keys.job(job.id)],
            [GROUP, worker, job.receipt, job.id, reason, self._kp, EXPLICIT_PRIORITY],
        )
        return out

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
        def last_activity(namespaces: builtins.list[str]) -> dict[str, float]:
            with self._guard():
                at = self.r.hmget(self.keys.activity, namespaces)
            return {ns: float(t or 0.0) for ns, t in zip(namespaces, at, strict=True)}

        return with_eta(jobs, self.config, last_activity)

    def promote(self, job_id: str, priority: float) -> Job | None:
        with self._guard():
            ok = self.r.eval(PROMOTE, 1, self.keys.job(job_id), priority)
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
        records = [json.loads(v) for v in values if v]
        return [w for w in records if float(w.pop("expires", now)) >= now]

    def close(self) -> None:
        self.r.close()


__all__ = ["RedisStreamsQueue", "connect", "ctx_key", "new_job_id"]
