"""The worker runtime: claim due jobs, run sleep-time compute, ack; drain on SIGTERM.

The worker reaches the library only through its port
(:class:`~sleeptime.worker.port.WorkerPort`), and asks its sleep policy
(:mod:`sleeptime.policy`) before each job it runs on its own: a version the policy skips
is deferred with the reason, and revived when the query log shows a query on it (or,
deferred for a spent daily sleep budget, by the sweep once the UTC day is over).
Claims share the workers between namespaces (fair share, in the queue).

One loop per process hands jobs to a thread pool of ``concurrency`` slots. A side
thread renews the leases of jobs in hand and writes the health key; a job whose
worker dies is reclaimed by another worker after ``lease_s``. Running a job twice is
harmless (``SleepTime.sleep`` is idempotent and resumable), so every step favours
"at least once" over "maybe never".

One retry layer per failure: a model call is retried by the gateway
(:class:`~sleeptime.llm.retry.RetryPolicy`); a job that fails anyway goes back to the
queue with a backoff and is dead-lettered after ``max_deliveries``; a queue write lost
to a Redis restart is retried for up to one lease, after which the job is reclaimed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sleeptime.errors import InvalidInput, QueueUnavailable
from sleeptime.models import SleepReport
from sleeptime.policy import Decision, SleepPolicy
from sleeptime.quality import degraded_causes
from sleeptime.queue.base import (
    EXPLICIT_PRIORITY,
    FailOutcome,
    Job,
    JobQueue,
    LossAware,
    short_error,
)
from sleeptime.queue.scheduler import TokenWindow, retry_delay
from sleeptime.redact import redact_url
from sleeptime.store.db import is_in_memory
from sleeptime.worker.breaker import INFRASTRUCTURE, PERMANENT, CircuitBreaker
from sleeptime.worker.logs import StepLog, log_event
from sleeptime.worker.metrics import WorkerMetrics
from sleeptime.worker.port import PortProvider, WorkerPort
from sleeptime.worker.revival import Revival

log = logging.getLogger("sleeptime.worker")
T = TypeVar("T")

#: A ``burst`` worker gives up when this many claims in a row find the queue
#: unreachable (about 3 s of backoff, plus the client's own retries of each call).
BURST_QUEUE_ATTEMPTS = 5


def describe_queue(queue: JobQueue) -> str:
    """The queue for the start line: Redis with its URL (password hidden), or the
    embedded SQLite file."""
    url = getattr(queue, "url", None)
    if isinstance(url, str):
        return f"redis {redact_url(url)}"
    path = getattr(queue, "path", None)
    if isinstance(path, str):
        return f"embedded {path}"
    return type(queue).__name__


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Processes sleep-time jobs from ``queue`` through ``port`` (a
    :class:`~sleeptime.worker.port.WorkerPort`, or something that hands one out, such as
    the :class:`~sleeptime.SleepTime` facade). ``policy`` decides what the worker sleeps
    on its own (default: the port's, from ``SLEEPTIME_SLEEP_POLICY``). ``clock``: epoch
    seconds, the UTC day a spent sleep budget is renewed on (tests pass their own)."""

    def __init__(
        self,
        port: WorkerPort | PortProvider,
        queue: JobQueue,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        metrics: WorkerMetrics | None = None,
        policy: SleepPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(port, WorkerPort):
            port = port.worker_port()
        url = port.database_url
        if is_in_memory(url):
            raise InvalidInput(
                "background workers need a database file or server, not an in-memory SQLite "
                "database (each thread would see its own empty database)"
            )
        self.port: WorkerPort = port
        self.queue = queue
        self.settings = port.settings
        self.policy = policy or port.sleep_policy()
        self.clock = clock
        self.concurrency = concurrency or self.settings.worker_concurrency
        self.id = worker_id or worker_name()
        self.tokens = TokenWindow(self.settings.worker_tokens_per_minute)
        self.breaker = CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_open_s)
        self.metrics = metrics or WorkerMetrics(queue, port)
        self.revival = Revival(port, queue, self.metrics, clock)
        self.grace = self.settings.shutdown_grace_s
        self.started_at = time.time()
        self.jobs_done = 0
        self.jobs_failed = 0
        #: Seconds spent inside ``SleepTime.sleep``; the rest of a job's time is overhead.
        self.sleep_seconds = 0.0
        self._stop = threading.Event()
        self._force = threading.Event()
        self._wake = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._in_hand: dict[str, tuple[Job, Future[None]]] = {}
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0
        #: The queue was lost and the sweep that re-enqueues its work has not run yet.
        self._resweep = False

    # -- lifecycle ------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; jobs in hand get ``grace`` seconds to finish."""
        self._stop.set()
        self._wake.set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop.is_set():
            log.warning("second %s: not waiting for jobs in hand", signal.Signals(signum).name)
            self._force.set()
        else:
            log.info(
                "%s: draining (%d job(s) in hand, grace %.0f s)",
                signal.Signals(signum).name,
                len(self._in_hand),
                self.grace,
            )
        self.request_stop()

    def start(self) -> threading.Thread:
        """Run in a daemon thread of this process (embedded mode)."""
        self._thread = threading.Thread(
            target=self.run, kwargs={"install_signals": False}, name="sleeptime-worker", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, grace: float | None = None) -> None:
        if grace is not None:
            self.grace = grace
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=self.grace + 10)

    @property
    def in_hand(self) -> list[Job]:
        with self._lock:
            return [job for job, _ in self._in_hand.values()]

    # -- main loop ------------------------------------------------------------------

    def run(self, *, burst: bool = False, install_signals: bool = True) -> int:
        """Work until stopped (or, with ``burst``, until the queue is empty).
        Returns how many jobs were left in hand after the grace period."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        beat = threading.Thread(
            target=self._heartbeat_loop, name="sleeptime-heartbeat", daemon=True
        )
        beat.start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sleeptime-job")
        log.info(
            "worker %s: concurrency %d, database %s, queue %s, model %s, sleep policy %s",
            self.id,
            self.concurrency,
            redact_url(self.port.database_url),
            describe_queue(self.queue),
            self.port.model_label,
            self.policy.name,
        )
        next_reclaim = 0.0
        next_sweep = 0.0
        next_relay = 0.0
        backoff = 0.0
        queue_failures = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep()
                    next_sweep = (
                        now + self.settings.sweep_s if self.settings.sweep_s else float("inf")
                    )
                if now >= next_relay:
                    self._relay()
                    self._revive()
                    next_relay = now + self.settings.relay_s
                free = self.breaker.allowance(self.concurrency - len(self._in_hand))
                jobs: list[Job] = []
                if free > 0 and self.tokens.allows():
                    try:
                        if now >= next_reclaim:
                            jobs += self.queue.reclaim(self.id, free)
                            next_reclaim = now + min(self.settings.lease_s / 2, 5.0)
                        if len(jobs) < free:
                            jobs += self.queue.claim(self.id, free - len(jobs))
                        backoff = 0.0
                        queue_failures = 0
                        if not jobs and self.breaker.state == "half-open":
                            self.breaker.release()  # no probe job to be had
                    except QueueUnavailable as exc:
                        self.breaker.release()
                        queue_failures += 1
                        if burst and queue_failures >= BURST_QUEUE_ATTEMPTS:
                            # a one-off run must end: waiting forever helps no one
                            raise QueueUnavailable(
                                exc.queue,
                                f"{exc.reason.rstrip('. ')}; the --burst worker gave up after "
                                f"{queue_failures} attempts: check the URL (--redis-url, "
                                "SLEEPTIME_REDIS_URL) and that the server is running",
                            ) from None
                        backoff = min(5.0, max(0.1, backoff * 2))
                        self._warn(f"queue unavailable, retrying in {backoff:.1f} s: {exc}")
                        self._stop.wait(backoff)
                        continue
                for job in jobs:
                    self._submit(pool, job)
                if self._recover_lost_queue():
                    if self.settings.sweep_s:
                        next_sweep = now + self.settings.sweep_s
                    continue  # claim what the sweep put back, now
                if jobs and len(self._in_hand) < self.concurrency:
                    continue  # there may be more due work right now
                if burst and not jobs and not self._in_hand and self._drained():
                    if self._recover_lost_queue():  # counts() may be what noticed it
                        continue
                    break
                timeout = self.settings.poll_s
                if self.breaker.state == "open":
                    timeout = max(timeout, self.breaker.wait_s())
                if not self.tokens.allows():
                    timeout = max(timeout, min(self.tokens.wait_s(), 5.0))
                self._wake.wait(timeout)
        finally:
            left = self._drain(pool)
            self._stop.set()
            self._finished.set()
            beat.join(timeout=5)  # its last beat marks this worker stopped
        return left

    def process_due(self, limit: int = 100_000) -> int:
        """Run the due work in the calling thread, one job at a time, until none is
        left: relay the outbox, revive deferred jobs whose version was queried, then
        claim and run (the same steps as :meth:`run`, without its threads). For tests
        and benchmarks on a simulated clock; returns how many jobs ran."""
        self._relay()
        self._revive()
        ran = 0
        while ran < limit:
            jobs = self.queue.reclaim(self.id, 1) or self.queue.claim(self.id, 1)
            if not jobs:
                break
            for job in jobs:
                self._execute(job)
                ran += 1
        return ran

    def _drained(self) -> bool:
        try:
            counts = self.queue.counts()
        except QueueUnavailable:
            return False
        return counts["waiting"] == 0 and counts["running"] == 0

    def _drain(self, pool: ThreadPoolExecutor) -> int:
        deadline = time.monotonic() + self.grace
        while self._in_hand and time.monotonic() < deadline and not self._force.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
        left = self.in_hand
        pool.shutdown(wait=False, cancel_futures=True)
        if left:
            log.warning(
                "worker %s stopping with %d job(s) unfinished; they will be reclaimed after the "
                "%.0f s lease: %s",
                self.id,
                len(left),
                self.settings.lease_s,
                ", ".join(j.id for j in left),
            )
        else:
            log.info(
                "worker %s drained: %d done, %d failed", self.id, self.jobs_done, self.jobs_failed
            )
        return len(left)

    def _submit(self, pool: ThreadPoolExecutor, job: Job) -> None:
        with self._lock:
            fut = pool.submit(self._execute, job)
            self._in_hand[job.id] = (job, fut)

    # -- one job --------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        start = time.perf_counter()
        ids: dict[str, object] = {
            "job": job.id,
            "ns": job.namespace,
            "ctx": job.context_id,
            "v": job.version,
        }
        steps = StepLog(log, ids)
        end: dict[str, object] = {}
        self.metrics.in_progress.inc()
        try:
            current = self.port.current_version(job.namespace, job.context_id)
            if current is not None and current > job.version:
                self.breaker.success()  # the database answered
                self._queue_call(lambda: self.queue.ack(self.id, job))
                self.metrics.superseded.inc()
                end = {"status": "superseded", "tokens": 0, "by_v": current}
                return
            decision = self._decide(job)
            if not decision.sleep:
                self.breaker.success()
                deferral = self._queue_call(lambda: self.queue.defer(self.id, job, decision.reason))
                if deferral != "explicit":  # deferred, lost, or None (reclaimed later)
                    ids.update(decision.log_fields())
                    self.metrics.deferred.inc()
                    end = {"status": "deferred", "tokens": 0}
                    return
                # an explicit sleep promoted the job after its claim: the queue refused
                # to defer it, and this worker, which still holds it, sleeps it
                decision = Decision(True, "explicit sleep (promoted while running)")
            ids.update(decision.log_fields())
            report = self._sleep(job, steps, decision)
        except Exception as exc:
            outcome = self._failed(job, exc)
            # tokens of the steps that finished before the failure (the ledger has all)
            end = {
                "status": "failed",
                "tokens": steps.tokens,
                "error": type(exc).__name__,
                "outcome": outcome,
            }
        else:
            self.breaker.success()
            self._queue_call(lambda: self.queue.ack(self.id, job))
            tokens = report.usage.total_tokens
            self.tokens.add(tokens)
            self.metrics.sleep_tokens.inc(tokens)
            self.metrics.done.inc()
            self.jobs_done += 1
            self._warm_cache(job)
            end = {
                "status": "done",
                "tokens": tokens,
                "skipped": report.skipped or None,
                # the causes only (empty, repetition, truncated, ...): a log line carries
                # ids and counts, never text of the context or of the model's output
                "degraded": ",".join(sorted(degraded_causes(report.warnings))) or None,
            }
        finally:
            elapsed = time.perf_counter() - start
            log_event(
                log,
                {
                    "event": "job",
                    **ids,
                    "status": end.get("status", "failed"),
                    "duration_ms": round(elapsed * 1000),
                    **{k: v for k, v in end.items() if k != "status"},
                    "delivery": job.deliveries,
                },
            )
            self.metrics.duration.observe(elapsed)
            self.metrics.in_progress.dec()
            with self._lock:
                self._in_hand.pop(job.id, None)
            self._wake.set()

    def _decide(self, job: Job) -> Decision:
        """The sleep policy's decision for a job the worker runs on its own; a job an
        explicit sleep enqueued (priority :data:`EXPLICIT_PRIORITY`) always runs."""
        if job.priority >= EXPLICIT_PRIORITY:
            return Decision(True, "explicit sleep")
        if self.policy.name == "eager":
            return Decision(True, "eager")
        chars = self.port.text_chars(job.namespace, job.context_id, job.version)
        return self.policy.decide(job.namespace, job.context_id, job.version, chars=chars)

    def _sleep(
        self, job: Job, steps: StepLog | None = None, decision: Decision | None = None
    ) -> SleepReport:
        """Run the job once. Model calls were already retried by the gateway (the one
        retry layer for a model failure); a job that still fails goes back to the
        queue with a backoff (:meth:`_failed`), so the next attempt may run on any
        worker and a run killed halfway resumes from its last persisted step."""
        t0 = time.perf_counter()
        try:
            return self.port.sleep_version(
                job.namespace,
                job.context_id,
                job.version,
                on_step=steps,
                k=decision.k if decision else None,
                n_questions=decision.n_questions if decision else None,
                answer_samples=decision.answer_samples if decision else None,
            )
        finally:
            self.sleep_seconds += time.perf_counter() - t0

    def _failed(self, job: Job, exc: Exception) -> FailOutcome | None:
        """Hand a failed job back to the queue; returns what the queue did with it (None
        when the queue could not be written: the job will be reclaimed)."""
        self.jobs_failed += 1
        self.metrics.failed.inc()
        error = short_error(exc)
        infra = isinstance(exc, INFRASTRUCTURE)
        if infra:
            was_closed = self.breaker.state == "closed"
            if self.breaker.failure() and was_closed:  # probes that fail again: debug
                log.warning(
                    "worker %s: circuit breaker open for %.1f s after %d infrastructure "
                    "failure(s) in a row: %s",
                    self.id,
                    self.breaker.open_s,
                    self.breaker.failures,
                    error,
                )
        else:
            self.breaker.release()
        delay = retry_delay(
            job.deliveries, self.settings.retry_initial_s, self.settings.retry_max_s
        )
        outcome = self._queue_call(
            lambda: self.queue.fail(
                self.id,
                job,
                error,
                delay=delay,
                permanent=isinstance(exc, PERMANENT),
                consume=not infra,
            )
        )
        if outcome == "retry":
            self.metrics.retried.inc()
            log.log(
                logging.DEBUG if infra else logging.WARNING,
                "job %s (%s/%s v%d) failed, delivery %d, retry in %.1f s: %s",
                job.id,
                job.namespace,
                job.context_id,
                job.version,
                job.deliveries,
                delay,
                error,
            )
        elif outcome == "dead":
            self.metrics.dead.inc()
            log.error(
                "job %s (%s/%s v%d) dead after %d deliveries: %s",
                job.id,
                job.namespace,
                job.context_id,
                job.version,
                job.deliveries,
                error,
            )
        return outcome

    def _queue_call(self, fn: Callable[[], T]) -> T | None:
        """A queue write that must not be lost to a Redis restart: retried with backoff
        for up to one lease; after that the job is reclaimed and re-run (idempotent)."""
        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.settings.lease_s),
                wait=wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.2),
                retry=retry_if_exception_type(QueueUnavailable),
                reraise=True,
            ):
                with attempt:
                    if self._force.is_set() and attempt.retry_state.attempt_number > 1:
                        raise QueueUnavailable("job queue", "this worker is stopping") from None
                    return fn()
        except QueueUnavailable as exc:
            log.error(
                "worker %s: giving up on a queue write (the job will be reclaimed): %s",
                self.id,
                exc,
            )
        return None

    def _warm_cache(self, job: Job) -> None:
        """Put the finished artifacts in the hot cache if the job's version is still the
        current one in SQL. They are read back from SQL (one read, cached in-process),
        not rebuilt from the report, so the cache holds every kind a reader would find
        there (the passage index included). The cache's compare-and-set refuses a
        version older than its key, and a key lost to a Redis restart without
        persistence is left for a reader to re-create from SQL (never at an old
        version)."""
        try:
            self.port.warm_cache(job.namespace, job.context_id, job.version)
        except Exception as exc:  # the cache is an optimisation
            log.debug("could not warm the cache: %s", exc)

    # -- background duties ----------------------------------------------------------

    def _relay(self) -> None:
        """Move committed versions' outbox rows to the queue (ingests by clients that
        have no queue of their own, or whose relay thread died with them)."""
        try:
            self.port.relay(self.queue)
        except Exception as exc:
            self._warn(f"outbox relay failed: {exc}")

    def _revive(self) -> int:
        """Demand revives deferred jobs (:meth:`Revival.queried`); returns how many."""
        try:
            revived = self.revival.queried()
        except Exception as exc:
            self._warn(f"reviving deferred jobs failed: {exc}")
            return 0
        if revived:
            self._wake.set()
        return revived

    def _sweep(self) -> int | None:
        """Enqueue current versions that have no artifacts (ingested before the outbox
        existed, or whose job was dead-lettered or lost with the queue); dedup makes
        this idempotent, and a dead job of a current version is revived by the enqueue.
        Jobs deferred for a spent daily sleep budget come back once their day is over
        (:meth:`Revival.budget_renewed`). Returns how many versions were enqueued
        (None: the sweep failed, and said so)."""
        try:
            missing = self.port.missing_versions()
            added = sum(1 for ns, cid, v in missing if self.queue.enqueue(ns, cid, v) is not None)
            if added:
                log.info("sweep: enqueued %d version(s) without artifacts", added)
        except Exception as exc:
            self._warn(f"sweep failed: {exc}")
            return None
        try:
            if self.revival.budget_renewed():
                self._wake.set()
        except Exception as exc:
            self._warn(f"reviving jobs deferred for a spent sleep budget failed: {exc}")
        return added

    def _recover_lost_queue(self) -> bool:
        """If the queue noticed that its state was lost (Redis restarted without
        persistence: the stream, the consumer group, the waiting jobs gone), sweep now
        instead of at the next ``sweep_s``, with a warning. True if it did."""
        if isinstance(self.queue, LossAware) and self.queue.lost():
            log.warning(
                "worker %s: the job queue was lost (Redis restarted without persistence, "
                "or its keys were deleted); re-enqueuing current versions without "
                "artifacts now",
                self.id,
            )
            self._resweep = True
        if not self._resweep:
            return False
        # a failed sweep (the database did not answer) is tried again next round
        self._resweep = self._sweep() is None
        return not self._resweep

    def _heartbeat_loop(self) -> None:
        interval = min(self.settings.heartbeat_s, self.settings.lease_s / 3)
        while not self._finished.is_set():  # leases are renewed while draining, too
            self.heartbeat()
            self._finished.wait(interval)
        with contextlib.suppress(Exception):  # a last beat that says we are gone
            self.queue.heartbeat(self.id, self.health() | {"state": "stopped"}, ttl=interval)

    def health(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "state": "draining" if self._stop.is_set() else "running",
            "started_at": self.started_at,
            "beat_at": time.time(),
            "concurrency": self.concurrency,
            "in_hand": [j.id for j in self.in_hand],
            "done": self.jobs_done,
            "failed": self.jobs_failed,
            "sleep_s": round(self.sleep_seconds, 6),
            "tokens_last_minute": self.tokens.used(),
        }

    def heartbeat(self) -> None:
        interval = min(self.settings.heartbeat_s, self.settings.lease_s / 3)
        try:
            jobs = self.in_hand
            if jobs:
                lost = self.queue.renew(self.id, jobs)
                if lost:
                    log.warning(
                        "worker %s lost the lease of %s (another worker may re-run it)",
                        self.id,
                        ", ".join(lost),
                    )
            self.queue.heartbeat(self.id, self.health(), ttl=3 * interval)
            self.metrics.last_heartbeat.set(time.time())
        except Exception as exc:
            self._warn(f"heartbeat failed: {exc}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning("worker %s: %s", self.id, message)
