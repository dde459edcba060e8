"""The embedded job queue: a SQLite file, no server.

Used when ``SLEEPTIME_REDIS_URL`` is not set, so ``SleepTime(background=True)`` and
``sleeptime worker`` run sleep-time work durably on one machine. Several processes may
share the file: every state change is one ``BEGIN IMMEDIATE`` transaction, and a
lease is a deadline column plus a per-delivery receipt, so a dead worker's job is
taken over after ``lease_s`` exactly as with Redis.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

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
    fair_pick,
    new_job_id,
)
from sleeptime.queue.keys import ctx_key
from sleeptime.queue.scheduler import due, with_eta
from sleeptime.store import migrate

_COLUMNS = (
    "id, namespace, context_id, version, state, deliveries, priority, enqueued_at, ready_at, "
    "worker, error, receipt, finished_at"
)


def sqlite_path(url_or_path: str) -> str:
    """``sqlite:///x.db`` or a plain path -> the file path (``:memory:`` stays)."""
    if url_or_path.startswith("sqlite"):
        path = url_or_path.split("///", 1)[1] if "///" in url_or_path else ":memory:"
        return path.split("?", 1)[0] or ":memory:"
    return url_or_path


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        namespace=row[1],
        context_id=row[2],
        version=int(row[3]),
        state=row[4],
        deliveries=int(row[5]),
        priority=float(row[6]),
        enqueued_at=float(row[7]),
        ready_at=float(row[8]),
        worker=row[9] or None,
        error=row[10] or None,
        receipt=row[11] or "",
        finished_at=float(row[12] or 0.0),
    )


class SQLiteQueue:
    """:class:`sleeptime.queue.base.JobQueue` in a SQLite file (or in memory)."""

    def __init__(
        self,
        path: str,
        config: QueueConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = sqlite_path(path)
        self.config = config or QueueConfig()
        #: Wall-clock seconds; tests pass a controllable clock instead of sleeping.
        self.clock: Callable[[], float] = clock or time.time
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            with self._lock:
                # the tables are the store's to define (Alembic, their own revisions)
                migrate.upgrade_queue(self._db)
        except (sqlite3.Error, SQLAlchemyError) as exc:
            raise QueueUnavailable(f"job queue {self.path}", str(exc)) from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; taken immediately so concurrent claimers serialize."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise QueueUnavailable(f"job queue {self.path}", str(exc)) from exc

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise QueueUnavailable(f"job queue {self.path}", str(exc)) from exc

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "INSERT INTO st_job_stats (name, n) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET n = n + 1",
            (name,),
        )

    # -- JobQueue -------------------------------------------------------------------

    def enqueue(
        self, namespace: str, context_id: str, version: int, priority: float = 0.0
    ) -> Job | None:
        job_id, now = new_job_id(), self.clock()
        dedup = f"{ctx_key(namespace, context_id)}/{version}"
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO st_jobs (id, namespace, context_id, version, state, "
                "priority, enqueued_at, ready_at, dedup) "
                "VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?)",
                (job_id, namespace, context_id, version, priority, now, now, dedup),
            )
            if cur.rowcount:
                # a deferred job of an older version will never be wanted again
                db.execute(
                    "UPDATE st_jobs SET state = 'done', finished_at = ?, "
                    "error = 'superseded by v' || ? "
                    "WHERE namespace = ? AND context_id = ? AND version < ? "
                    "AND state = 'deferred'",
                    (now, version, namespace, context_id, version),
                )
            else:
                # a dead job is no reason to skip the work: it comes back, deliveries reset
                row = db.execute(
                    "SELECT id FROM st_jobs WHERE dedup = ? AND state = 'dead'", (dedup,)
                ).fetchone()
                if row is None:
                    return None
                job_id = row[0]
                db.execute(
                    "UPDATE st_jobs SET state = 'waiting', deliveries = 0, ready_at = ?, "
                    "enqueued_at = ?, finished_at = NULL, priority = MAX(priority, ?) "
                    "WHERE id = ?",
                    (now, now, priority, job_id),
                )
        return Job(job_id, namespace, context_id, version, "waiting", 0, priority, now, now)

    def touch(self, activity: dict[str, int]) -> None:
        if not activity:
            return
        now = self.clock()
        minute = int(now // 60)
        with self._tx() as db:
            for ctx, n in activity.items():
                ns = ctx.split("/", 1)[0]
                db.execute(
                    "INSERT INTO st_job_activity (namespace, at) VALUES (?, ?) "
                    "ON CONFLICT(namespace) DO UPDATE SET at = excluded.at",
                    (ns, now),
                )
                db.execute(
                    "INSERT INTO st_job_rates (ctx, minute, n) VALUES (?, ?, ?) "
                    "ON CONFLICT(ctx, minute) DO UPDATE SET n = n + excluded.n",
                    (ctx, minute, n),
                )
            db.execute("DELETE FROM st_job_rates WHERE minute < ?", (minute - 2,))

    def claim(self, worker: str, count: int = 1) -> list[Job]:
        """Lease up to ``count`` due jobs, shared fairly between namespaces: each pick
        goes to the namespace with the fewest jobs in flight (running, or picked in
        this claim), ties to the one whose best job is oldest, so one tenant's backlog
        cannot starve another's; within a namespace, highest priority first."""
        c = self.config
        now = self.clock()
        minute = int(now // 60)
        out: list[Job] = []
        with self._tx() as db:
            namespaces = [
                r[0]
                for r in db.execute(
                    "SELECT namespace FROM st_jobs WHERE state = 'waiting' AND ready_at <= ? "
                    "GROUP BY namespace ORDER BY MIN(ready_at) LIMIT ?",
                    (now, FAIR_NAMESPACES),
                ).fetchall()
            ]
            if not namespaces:
                return []
            last = dict(db.execute("SELECT namespace, at FROM st_job_activity").fetchall())
            busy = dict(
                db.execute(
                    "SELECT namespace, COUNT(*) FROM st_jobs WHERE state = 'running' "
                    "GROUP BY namespace"
                ).fetchall()
            )
            rates = dict(
                db.execute(
                    "SELECT ctx, SUM(n) FROM st_job_rates WHERE minute >= ? GROUP BY ctx",
                    (minute - 1,),
                ).fetchall()
            )
            per_ns: dict[str, list[tuple[float, float, str]]] = {}
            for ns in namespaces:
                # the idle rule of scheduler.due for the namespace; if it is busy, only
                # its jobs that waited max_delay are due
                if not due(now, now, last.get(ns, 0.0), c.idle_after, c.max_delay):
                    rows = db.execute(
                        "SELECT id, context_id, enqueued_at, priority FROM st_jobs "
                        "WHERE state = 'waiting' AND namespace = ? AND ready_at <= ? "
                        "AND enqueued_at <= ? ORDER BY ready_at LIMIT ?",
                        (ns, now, now - c.max_delay, c.scan),
                    ).fetchall()
                else:
                    rows = db.execute(
                        "SELECT id, context_id, enqueued_at, priority FROM st_jobs "
                        "WHERE state = 'waiting' AND namespace = ? AND ready_at <= ? "
                        "ORDER BY ready_at LIMIT ?",
                        (ns, now, c.scan),
                    ).fetchall()
                cands = sorted(
                    (-(prio + rates.get(ctx_key(ns, cid), 0)), enq, job_id)
                    for job_id, cid, enq, prio in rows
                )
                if cands:
                    per_ns[ns] = cands
            for job_id in fair_pick(per_ns, busy, count):
                receipt = secrets.token_hex(8)
                db.execute(
                    "UPDATE st_jobs SET state = 'running', worker = ?, receipt = ?, "
                    "lease_until = ?, deliveries = deliveries + 1 WHERE id = ?",
                    (worker, receipt, now + c.lease_s, job_id),
                )
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM st_jobs WHERE id = ?", (job_id,)
                ).fetchone()
                out.append(_job(row))
        return out

    def reclaim(self, worker: str, count: int = 1) -> list[Job]:
        c = self.config
        now = self.clock()
        out: list[Job] = []
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM st_jobs WHERE state = 'running' AND lease_until < ? "
                "ORDER BY lease_until LIMIT ?",
                (now, count),
            ).fetchall()
            for row in rows:
                job = _job(row)
                if job.deliveries + 1 > c.max_deliveries:
                    err = (
                        f"gave up after {job.deliveries} deliveries: its worker stopped holding "
                        "the lease (killed, or the job kills workers)"
                    )
                    if job.error:
                        err += f"; last error: {job.error}"
                    self._dead(db, job.id, err, now)
                    continue
                receipt = secrets.token_hex(8)
                db.execute(
                    "UPDATE st_jobs SET worker = ?, receipt = ?, lease_until = ?, "
                    "deliveries = deliveries + 1 WHERE id = ?",
                    (worker, receipt, now + c.lease_s, job.id),
                )
                row2 = db.execute(
                    f"SELECT {_COLUMNS} FROM st_jobs WHERE id = ?", (job.id,)
                ).fetchone()
                out.append(_job(row2))
        return out

    def renew(self, worker: str, jobs: list[Job]) -> list[str]:
        lost: list[str] = []
        until = self.clock() + self.config.lease_s
        with self._tx() as db:
            for job in jobs:
                cur = db.execute(
                    "UPDATE st_jobs SET lease_until = ? "
                    "WHERE id = ? AND receipt = ? AND state = 'running'",
                    (until, job.id, job.receipt),
                )
                if not cur.rowcount:
                    lost.append(job.id)
        return lost

    def ack(self, worker: str, job: Job) -> bool:
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE st_jobs SET state = 'done', error = NULL, worker = NULL, "
                "finished_at = ? WHERE id = ? AND state != 'done'",
                (now, job.id),
            )
            if cur.rowcount:
                self._bump(db, "done")
            db.execute(
                "DELETE FROM st_jobs WHERE state = 'done' AND finished_at < ?", (now - DONE_TTL,)
            )
        return bool(cur.rowcount)

    def defer(self, worker: str, job: Job, reason: str) -> DeferOutcome:
        """Put a running job aside: a worker's sleep policy decided not to sleep its
        version now. Acked, not lost: it stays (state ``deferred``, ``reason`` as its
        error) and keeps its dedup key, so a sweep does not bring it back; demand
        (:meth:`revive`) does. One UPDATE whose WHERE reads the stored priority, so a
        job :meth:`promote` made explicit (even after this worker claimed it) is never
        deferred: ``"explicit"``. ``"lost"`` if this worker no longer holds it."""
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE st_jobs SET state = 'deferred', error = ?, worker = NULL, "
                "receipt = NULL, finished_at = ? "
                "WHERE id = ? AND receipt = ? AND state = 'running' AND priority < ?",
                (reason, now, job.id, job.receipt, EXPLICIT_PRIORITY),
            )
            if cur.rowcount:
                self._bump(db, "deferred")
                return "deferred"
            held = db.execute(
                "SELECT 1 FROM st_jobs WHERE id = ? AND receipt = ? AND state = 'running'",
                (job.id, job.receipt),
            ).fetchone()
        return "explicit" if held else "lost"

    def revive(
        self, namespace: str, context_id: str, version: int | None = None, reason: str = ""
    ) -> Job | None:
        """Bring a deferred job back to waiting (demand arrived: a query on its
        version); None when there is none (never deferred, already revived by another
        worker, done). ``version`` None: the newest deferred version of the context."""
        now = self.clock()
        with self._tx() as db:
            if version is None:
                row = db.execute(
                    "SELECT id, error FROM st_jobs WHERE namespace = ? AND context_id = ? "
                    "AND state = 'deferred' ORDER BY version DESC LIMIT 1",
                    (namespace, context_id),
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT id, error FROM st_jobs WHERE dedup = ? AND state = 'deferred'",
                    (f"{ctx_key(namespace, context_id)}/{version}",),
                ).fetchone()
            if row is None:
                return None
            note = f"revived: {reason}" if reason else "revived"
            db.execute(
                "UPDATE st_jobs SET state = 'waiting', deliveries = 0, ready_at = ?, "
                "finished_at = NULL, error = ? WHERE id = ? AND state = 'deferred'",
                (now, f"{note} (was {row[1]})" if row[1] else note, row[0]),
            )
            self._bump(db, "revived")
        return self._get(row[0])

    def promote(self, job_id: str, priority: float) -> Job | None:
        """Raise a waiting or running job's priority (one UPDATE: a concurrent
        :meth:`defer` sees either the old priority and defers first, then this finds
        the job deferred and returns None, or the new one and refuses)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE st_jobs SET priority = MAX(priority, ?) "
                "WHERE id = ? AND state IN ('waiting', 'running')",
                (priority, job_id),
            )
        return self._get(job_id) if cur.rowcount else None

    def _dead(self, db: sqlite3.Connection, job_id: str, error: str, now: float) -> None:
        db.execute(
            "UPDATE st_jobs SET state = 'dead', error = ?, worker = NULL, receipt = NULL, "
            "finished_at = ? WHERE id = ?",
            (error, now, job_id),
        )
        self._bump(db, "dead")

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
        now = self.clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT deliveries FROM st_jobs WHERE id = ? AND receipt = ? AND state = 'running'",
                (job.id, job.receipt),
            ).fetchone()
            if row is None:
                return "lost"
            if consume and (permanent or int(row[0]) >= self.config.max_deliveries):
                self._dead(db, job.id, error, now)
                return "dead"
            db.execute(
                "UPDATE st_jobs SET state = 'waiting', error = ?, worker = NULL, receipt = NULL, "
                "ready_at = ?, deliveries = deliveries - ? WHERE id = ?",
                (error, now + max(0.0, delay), 0 if consume else 1, job.id),
            )
            self._bump(db, "retried")
        return "retry"

    def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        states = {
            None: ("waiting", "running", "dead", "deferred"),
            "pending": ("waiting",),
            "waiting": ("waiting",),
            "queued": ("waiting",),
            "running": ("running",),
            "dead": ("dead",),
            "deferred": ("deferred",),
        }.get(state, (state or "",))
        marks = ",".join("?" * len(states))
        rows = self._read(
            f"SELECT {_COLUMNS} FROM st_jobs WHERE state IN ({marks}) ORDER BY id LIMIT ?",
            (*states, limit),
        )
        return self._with_eta([_job(r) for r in rows])

    def _with_eta(self, jobs: builtins.list[Job]) -> builtins.list[Job]:
        return with_eta(
            jobs,
            self.config,
            lambda _namespaces: dict(self._read("SELECT namespace, at FROM st_job_activity")),
        )

    def _get(self, job_id: str) -> Job | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM st_jobs WHERE id = ?", (job_id,))
        return self._with_eta([_job(rows[0])])[0] if rows else None

    def retry(self, job_id: str) -> Job:
        with self._tx() as db:
            row = db.execute("SELECT state FROM st_jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            if row[0] not in ("dead", "deferred"):
                raise JobNotFound(job_id, state=row[0])
            db.execute(
                "UPDATE st_jobs SET state = 'waiting', deliveries = 0, ready_at = ? WHERE id = ?",
                (self.clock(), job_id),
            )
        job = self._get(job_id)
        assert job is not None
        return job

    def counts(self) -> dict[str, int]:
        by_state = dict(self._read("SELECT state, COUNT(*) FROM st_jobs GROUP BY state"))
        stats = dict(self._read("SELECT name, n FROM st_job_stats"))
        return {
            "waiting": int(by_state.get("waiting", 0)),
            "running": int(by_state.get("running", 0)),
            "dead": int(by_state.get("dead", 0)),
            "deferred": int(by_state.get("deferred", 0)),
            "done": int(stats.get("done", 0)),
            "retried": int(stats.get("retried", 0)),
        }

    def heartbeat(self, worker: str, info: dict[str, Any], ttl: float) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO st_job_workers (id, info, expires) VALUES (?, ?, ?)",
                (worker, json.dumps(info), now + ttl),
            )
            db.execute("DELETE FROM st_job_workers WHERE expires < ?", (now - 3600,))

    def workers(self) -> builtins.list[dict[str, Any]]:
        rows = self._read("SELECT info FROM st_job_workers WHERE expires >= ?", (self.clock(),))
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
