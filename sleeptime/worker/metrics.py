"""Prometheus metrics of one worker (served on ``/metrics`` by prometheus-client)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sleeptime.queue.base import JobQueue

log = logging.getLogger("sleeptime.worker")


class LedgerTotals(Protocol):
    def tokens_by_phase(self) -> dict[str, int]: ...


class _StateCollector(Collector):
    """Read at scrape time: queue depth per state and ledger tokens per phase."""

    def __init__(self, queue: JobQueue, store: LedgerTotals) -> None:
        self.queue = queue
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # collected lazily: do not touch Redis/SQL at registration

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "sleeptime_queue_depth",
            "Jobs in the queue by state (shared by all workers)",
            labels=["state"],
        )
        try:
            counts = self.queue.counts()
            for state in ("waiting", "running", "dead", "deferred"):
                depth.add_metric([state], counts.get(state, 0))
            yield depth
        except Exception as exc:
            log.debug("queue depth unavailable: %s", exc)
        tokens = GaugeMetricFamily(
            "sleeptime_ledger_tokens",
            "Tokens recorded in the ledger by phase (sleep = background, test = online answers)",
            labels=["phase"],
        )
        try:
            by_phase = self.store.tokens_by_phase()
            for phase in ("sleep", "test"):
                tokens.add_metric([phase], float(by_phase.get(phase, 0)))
            yield tokens
        except Exception as exc:
            log.debug("ledger totals unavailable: %s", exc)


class WorkerMetrics:
    def __init__(
        self, queue: JobQueue, store: LedgerTotals, registry: CollectorRegistry | None = None
    ) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.done = Counter("sleeptime_jobs_done", "Jobs finished by this worker", registry=r)
        self.failed = Counter("sleeptime_jobs_failed", "Job runs that raised", registry=r)
        self.retried = Counter(
            "sleeptime_jobs_retried", "Failed jobs put back with a backoff", registry=r
        )
        self.dead = Counter(
            "sleeptime_jobs_dead", "Jobs this worker moved to the dead letter", registry=r
        )
        self.superseded = Counter(
            "sleeptime_jobs_superseded", "Jobs skipped because a newer version exists", registry=r
        )
        self.deferred = Counter(
            "sleeptime_jobs_deferred",
            "Jobs this worker's sleep policy deferred until a query",
            registry=r,
        )
        self.revived = Counter(
            "sleeptime_jobs_revived", "Deferred jobs this worker revived after a query", registry=r
        )
        self.in_progress = Gauge(
            "sleeptime_jobs_in_progress", "Jobs running in this worker", registry=r
        )
        self.duration = Histogram(
            "sleeptime_job_duration_seconds",
            "Wall time of one job (sleep-time compute + queue bookkeeping)",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.sleep_tokens = Counter(
            "sleeptime_worker_sleep_tokens",
            "Sleep-time tokens spent by this worker's jobs",
            registry=r,
        )
        self.last_heartbeat = Gauge(
            "sleeptime_worker_last_heartbeat_seconds", "Unix time of the last heartbeat", registry=r
        )
        r.register(_StateCollector(queue, store))

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Start the ``/metrics`` HTTP endpoint in a daemon thread."""
        return start_http_server(port, addr=addr, registry=self.registry)
