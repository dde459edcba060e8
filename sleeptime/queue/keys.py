"""Every Redis key sleeptime uses, in one place.

All keys start with a prefix (``SLEEPTIME_REDIS_PREFIX``, default ``sleeptime``) so one
Redis can serve several deployments. Context keys are ``<namespace>/<context id>``:
namespaces cannot contain ``/``, so the mapping is unambiguous and one tenant's key
can never name another tenant's context.
"""

from __future__ import annotations

from dataclasses import dataclass

from sleeptime.settings import default

#: Consumer group every worker joins.
GROUP = "workers"


def ctx_key(namespace: str, context_id: str) -> str:
    return f"{namespace}/{context_id}"


@dataclass(frozen=True)
class Keys:
    prefix: str = default("redis_prefix")

    # -- queue ------------------------------------------------------------------
    @property
    def stream(self) -> str:
        """Stream of jobs ready to run (consumer group :data:`GROUP`)."""
        return f"{self.prefix}:jobs"

    @property
    def dead(self) -> str:
        """Dead-letter stream: jobs that failed ``max_deliveries`` times, with the error."""
        return f"{self.prefix}:dead"

    @property
    def waiting(self) -> str:
        """ZSET job id -> earliest start time (idle scheduling and retry backoff)."""
        return f"{self.prefix}:waiting"

    @property
    def job_prefix(self) -> str:
        return f"{self.prefix}:job:"

    def job(self, job_id: str) -> str:
        """HASH with one job's fields (namespace, context id, version, state, error...)."""
        return f"{self.job_prefix}{job_id}"

    def dedup(self, namespace: str, context_id: str, version: int) -> str:
        """STRING -> job id while a job for this version exists (SET NX)."""
        return f"{self.prefix}:dedup:{ctx_key(namespace, context_id)}/{version}"

    @property
    def waiting_ns_prefix(self) -> str:
        return f"{self.prefix}:wns:"

    def waiting_ns(self, namespace: str) -> str:
        """ZSET job id -> earliest start, of one namespace's waiting jobs (fair share:
        a claim takes from each namespace in turn, not from the oldest jobs overall)."""
        return f"{self.waiting_ns_prefix}{namespace}"

    @property
    def waiting_namespaces(self) -> str:
        """SET of namespaces that may have waiting jobs (pruned by the claim)."""
        return f"{self.prefix}:wnss"

    @property
    def fair(self) -> str:
        """STRING set once the waiting jobs are indexed per namespace (an upgrade from a
        queue without fair share indexes its jobs at its first claim)."""
        return f"{self.prefix}:fair"

    @property
    def deferred(self) -> str:
        """ZSET job id -> time deferred: jobs a sleep policy put aside until demand."""
        return f"{self.prefix}:deferred"

    @property
    def deferred_ctx(self) -> str:
        """HASH context key -> its newest deferred job id."""
        return f"{self.prefix}:deferred_ctx"

    @property
    def epoch(self) -> str:
        """STRING: a random token set when the queue's keys are created; a worker that
        finds another token (or none) knows the queue was lost (a Redis restart without
        persistence) and sweeps at once."""
        return f"{self.prefix}:epoch"

    @property
    def stats(self) -> str:
        """HASH of counters: done, retried, dead."""
        return f"{self.prefix}:stats"

    # -- scheduling -------------------------------------------------------------
    @property
    def activity(self) -> str:
        """HASH namespace -> time of its last ingest/ask (idle-time scheduling)."""
        return f"{self.prefix}:activity"

    @property
    def rate_prefix(self) -> str:
        return f"{self.prefix}:rate:"

    def rate(self, minute: int) -> str:
        """HASH context key -> activity count in that minute (job priority)."""
        return f"{self.rate_prefix}{minute}"

    # -- workers ----------------------------------------------------------------
    @property
    def worker_prefix(self) -> str:
        return f"{self.prefix}:worker:"

    def worker(self, worker_id: str) -> str:
        """STRING (JSON health) with a TTL: present while the worker is alive."""
        return f"{self.worker_prefix}{worker_id}"

    # -- hot cache --------------------------------------------------------------
    def artifacts(self, namespace: str, context_id: str) -> str:
        """STRING: JSON of the current version's complete artifacts."""
        return f"{self.prefix}:art:{ctx_key(namespace, context_id)}"

    def version(self, namespace: str, context_id: str) -> str:
        """STRING: newest version number known; older cached artifacts are misses."""
        return f"{self.prefix}:ver:{ctx_key(namespace, context_id)}"

    def cache_patterns(self, namespace: str) -> list[str]:
        """SCAN patterns of every hot-cache key of a namespace (namespaces hold no glob
        characters, so the pattern matches that namespace only)."""
        return [
            f"{self.prefix}:art:{namespace}/*",
            f"{self.prefix}:ver:{namespace}/*",
        ]
