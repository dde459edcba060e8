"""Deferred jobs back to waiting. A sleep policy defers a version it does not sleep
now (:meth:`sleeptime.queue.base.JobQueue.defer`); two things bring the job back, and
the policy then decides again:

- demand: a query on its version, read from the query log since the last pass (every
  relay interval, off the online path);
- a new UTC day, for a job deferred because its namespace's daily sleep-time budget
  was spent (:func:`sleeptime.policy.budget_deferred`): the budget resets at 00:00
  UTC, and a version nobody queries again would otherwise stay deferred (the sweep).

The queue's revive is atomic, so of several workers exactly one revives a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sleeptime.policy import budget_deferred
from sleeptime.queue.base import JobQueue
from sleeptime.quotas import day_start
from sleeptime.worker.logs import log_event
from sleeptime.worker.metrics import WorkerMetrics
from sleeptime.worker.port import WorkerPort

log = logging.getLogger("sleeptime.worker")

#: Revive passes read at most this many query-log rows back at a worker's start.
REVIVE_LOOKBACK = 100_000
#: A sweep looks at up to this many deferred jobs (oldest first) for spent budgets.
BUDGET_SCAN = 1000
#: The revival note of a job deferred for a spent daily sleep budget.
BUDGET_RENEWED = "sleep-time budget renewed (a new UTC day)"


class Revival:
    """One worker's revivals (see the module docstring). ``clock``: epoch seconds, whose
    UTC day decides when a spent budget is renewed."""

    def __init__(
        self,
        port: WorkerPort,
        queue: JobQueue,
        metrics: WorkerMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.port, self.queue, self.metrics, self.clock = port, queue, metrics, clock
        #: The query-log row up to which demand was looked at (None: not yet).
        self._queried_after: int | None = None

    def queried(self) -> int:
        """Every version queried since the last pass gets its deferred job back to
        waiting, if it has one. Returns how many were revived."""
        if self._queried_after is None:
            _, last = self.port.queried_versions(-1)  # -1: only the log's last row id
            self._queried_after = max(0, last - REVIVE_LOOKBACK)
        queried, self._queried_after = self.port.queried_versions(self._queried_after)
        return sum(
            self._revive(ns, cid, version, f"queried v{version}") for ns, cid, version in queried
        )

    def budget_renewed(self) -> int:
        """Jobs deferred for a spent daily sleep-time budget on a UTC day that is over
        go back to waiting. Returns how many were revived."""
        today = day_start(self.clock()).timestamp()
        revived = sum(
            self._revive(job.namespace, job.context_id, job.version, BUDGET_RENEWED)
            for job in self.queue.list("deferred", limit=BUDGET_SCAN)
            if budget_deferred(job.error) and 0 < job.finished_at < today
        )
        if revived:
            log.info("sweep: revived %d job(s) deferred for an earlier day's sleep budget", revived)
        return revived

    def _revive(self, namespace: str, context_id: str, version: int, reason: str) -> bool:
        """Revive a version's deferred job, count and log it; False if there was none
        (never deferred, or another worker was first)."""
        job = self.queue.revive(namespace, context_id, version, reason=reason)
        if job is None:
            return False
        self.metrics.revived.inc()
        log_event(
            log,
            {
                "event": "revived",
                "job": job.id,
                "ns": namespace,
                "ctx": context_id,
                "v": version,
                "reason": reason,
            },
        )
        return True
