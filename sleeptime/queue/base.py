"""The job queue contract both backends (Redis Streams, embedded SQLite) implement.

A job is one sleep-time run of one context version. Delivery is at-least-once: a job
whose worker dies is handed to another worker after its lease expires. That is safe
because :meth:`sleeptime.SleepTime.sleep` is idempotent and resumable (artifacts are
keyed and written once), so a second delivery never duplicates an artifact.
"""

from __future__ import annotations

import builtins
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from sleeptime.errors import JobNotFound, QueueUnavailable
from sleeptime.settings import Settings, default

#: What ``fail`` did with the job.
FailOutcome = Literal["retry", "dead", "lost"]
#: What ``defer`` did with the job: ``deferred``; ``explicit``, refused because its
#: stored priority is :data:`EXPLICIT_PRIORITY` or more (an explicit sleep promoted it
#: while it ran): it stays running, held by this worker, which must sleep it; ``lost``,
#: this worker no longer holds it.
DeferOutcome = Literal["deferred", "explicit", "lost"]

__all__ = ["JobNotFound", "QueueUnavailable"]  # re-exported for the backends


@dataclass(frozen=True)
class Job:
    id: str
    namespace: str
    context_id: str
    version: int
    #: waiting, running, dead, done or deferred (a sleep policy put it aside; ``error``
    #: says why, e.g. "skipped: expected 0.1 queries"; a query on its version revives it)
    state: str = "waiting"
    deliveries: int = 0
    priority: float = 0.0
    enqueued_at: float = 0.0
    #: A waiting job read by ``list`` or ``retry``: the earliest time it can be claimed
    #: (its backoff and the idle rule, :func:`sleeptime.queue.scheduler.eta`); later
    #: activity in its namespace moves it, up to ``enqueued_at + max_delay``.
    ready_at: float = 0.0
    worker: str | None = None
    error: str | None = None
    #: When it was done, dead-lettered or deferred (epoch seconds, the queue's clock; 0
    #: before that). A deferral for a spent daily sleep budget is revived once its UTC
    #: day is over (the worker's sweep). Not part of :meth:`to_dict`.
    finished_at: float = 0.0
    #: Backend handle of this delivery (the stream entry id for Redis).
    receipt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "context_id": self.context_id,
            "version": self.version,
            "state": self.state,
            "deliveries": self.deliveries,
            "priority": self.priority,
            "enqueued_at": self.enqueued_at,
            "ready_at": self.ready_at,
            "worker": self.worker,
            "error": self.error,
        }


@dataclass(frozen=True)
class QueueConfig:
    """Policy shared by both backends; defaults and environment: :class:`Settings`."""

    idle_after: float = default("idle_after")
    max_delay: float = default("max_delay")
    lease_s: float = default("lease_s")
    max_deliveries: int = default("max_deliveries")
    #: How many of the oldest waiting jobs one claim looks at to pick the highest-priority
    #: due ones (bounds the Lua script's work per claim; priority applies within them).
    scan: int = default("queue_scan")

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueConfig:
        return cls(
            idle_after=settings.idle_after,
            max_delay=settings.max_delay,
            lease_s=settings.lease_s,
            max_deliveries=settings.max_deliveries,
            scan=settings.queue_scan,
        )


@runtime_checkable
class JobQueue(Protocol):
    """A durable queue of sleep-time jobs with leases, retries and a dead letter."""

    config: QueueConfig

    def enqueue(
        self, namespace: str, context_id: str, version: int, priority: float = 0.0
    ) -> Job | None:
        """Add a job unless one for (namespace, context id, version) exists (else None).
        Done jobs count for a day, so a late duplicate of finished work adds nothing. A
        dead job does not count: it is revived (waiting, deliveries reset) and returned,
        so a catch-up sweep or ``jobs retry --all`` can bring back a current version
        whose job died in an outage."""
        ...

    def touch(self, activity: dict[str, int]) -> None:
        """Record activity: ``{"<namespace>/<context id>": count}``; postpones idle work."""
        ...

    def claim(self, worker: str, count: int = 1) -> list[Job]:
        """Lease up to ``count`` due jobs, highest priority first."""
        ...

    def reclaim(self, worker: str, count: int = 1) -> list[Job]:
        """Take over jobs whose lease expired (their worker died)."""
        ...

    def renew(self, worker: str, jobs: list[Job]) -> list[str]:
        """Extend the leases of jobs in hand; returns the ids this worker no longer holds."""
        ...

    def ack(self, worker: str, job: Job) -> bool:
        """Mark a job done; False if it was already finished elsewhere."""
        ...

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
        """Retry after ``delay`` seconds, or dead-letter (permanent / too many deliveries).
        ``consume=False``: the failure was the infrastructure's (database down), not the
        job's: it goes back without using up a delivery and is never dead-lettered."""
        ...

    def defer(self, worker: str, job: Job, reason: str) -> DeferOutcome:
        """A worker's sleep policy chose not to sleep the job's version now: the job is
        finished without being lost (state ``deferred``, ``reason`` as its error, its
        dedup key kept) until :meth:`revive`; ``"deferred"``. Atomic with
        :meth:`promote`: a job whose stored priority is :data:`EXPLICIT_PRIORITY` or
        more (an explicit sleep arrived while it ran, whatever priority ``job`` was
        claimed with) is never deferred: ``"explicit"``, it stays running, held by this
        worker, which sleeps it. ``"lost"`` if this worker no longer holds it."""
        ...

    def revive(
        self, namespace: str, context_id: str, version: int | None = None, reason: str = ""
    ) -> Job | None:
        """Demand arrived (a query on a deferred version): the deferred job goes back to
        waiting. Atomic and idempotent across workers: None when there is nothing to
        revive. ``version`` None: the newest deferred version of the context."""
        ...

    def promote(self, job_id: str, priority: float) -> Job | None:
        """Raise a waiting or running job's priority to at least ``priority`` (an
        explicit sleep of a version whose job was already queued:
        :data:`EXPLICIT_PRIORITY`, so no sleep policy holds it back; a running job's
        worker that has not asked its policy yet finds :meth:`defer` refused and sleeps
        it). Atomic; None when the job is neither waiting nor running (deferred,
        finished or gone: the caller looks again)."""
        ...

    def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs that are waiting (``state`` ``"waiting"``; ``"pending"`` is the same),
        running, dead or deferred; a waiting job's ``ready_at`` is its earliest start."""
        ...

    def retry(self, job_id: str) -> Job:
        """Bring a dead (or deferred) job back (deliveries reset)."""
        ...

    def counts(self) -> dict[str, int]:
        """Jobs per state: waiting, running, dead, deferred (+ done/retried counters)."""
        ...

    def heartbeat(self, worker: str, info: dict[str, Any], ttl: float) -> None: ...

    def workers(self) -> builtins.list[dict[str, Any]]:
        """Health records of live workers."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LossAware(Protocol):
    """A queue whose state can vanish under it (Redis restarted without persistence,
    its keys deleted): it says so, and the worker re-enqueues the lost work at once."""

    def lost(self) -> bool:
        """True once for each loss noticed since the last call (the stream or the
        consumer group gone, or the queue's epoch token changed)."""
        ...


#: Done jobs (and their dedup keys) are kept this long, then expire. Deferred jobs are
#: kept until revived or superseded by a newer version.
DONE_TTL = 86400.0

#: Priority of a job an explicit sleep enqueued or promoted (``POST .../sleep``): ahead
#: of the other due jobs, and never held back by a sleep policy (it always runs; the
#: queues refuse to defer it).
EXPLICIT_PRIORITY = 1000.0

#: A claim considers at most this many namespaces with due jobs (those waiting longest).
FAIR_NAMESPACES = 64


def fair_pick(
    candidates: dict[str, builtins.list[tuple[float, float, str]]],
    in_flight: dict[str, int],
    count: int,
) -> builtins.list[str]:
    """Fair share between namespaces: ``count`` job ids from ``candidates`` (namespace
    -> its due jobs as (sort key, enqueued at, id), best first). Each pick goes to the
    namespace with the fewest jobs in flight (``in_flight`` plus those picked here),
    ties to the one whose next job was enqueued first: one tenant's backlog cannot
    starve another's, and an idle tenant's job goes next."""
    heads = {ns: 0 for ns, jobs in candidates.items() if jobs}
    busy = {ns: int(in_flight.get(ns, 0)) for ns in heads}
    out: builtins.list[str] = []
    while heads and len(out) < count:
        ns = min(heads, key=lambda n: (busy[n], candidates[n][heads[n]][1], n))
        out.append(candidates[ns][heads[ns]][2])
        busy[ns] += 1
        heads[ns] += 1
        if heads[ns] >= len(candidates[ns]):
            del heads[ns]
    return out


def new_job_id() -> str:
    """Time-ordered, unique across hosts: ``<ms since epoch>-<random>``."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def short_error(exc: BaseException, limit: int = 2000) -> str:
    """The error text stored with a failed job (type + message, bounded)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
