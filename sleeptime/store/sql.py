"""The durable store: contexts, artifacts, the token ledger and the query log.

SQLite (a file) is the embedded default; PostgreSQL is selected by URL. Every read
filters by namespace first, so one tenant's artifacts are never served to another.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from sleeptime.errors import InvalidInput, StoreUnavailable
from sleeptime.models import (
    Artifacts,
    ContextVersion,
    DeleteCounts,
    Ledger,
    PassageIndex,
    Phase,
    PredictedQA,
    Usage,
)
from sleeptime.redact import redact_text, redact_url
from sleeptime.settings import default
from sleeptime.store import migrate
from sleeptime.store.passages import PassageRepo
from sleeptime.store.querylog import QueryLog
from sleeptime.store.schema import (
    ApiKeyRow,
    ArtifactRow,
    ContextRow,
    LedgerRow,
    NamespaceRow,
    OutboxRow,
    PassageRow,
    QueryRow,
    TombstoneRow,
    utcnow,
)

_CURRENT_VERSION = select(func.max(ContextRow.version)).where(
    ContextRow.namespace == bindparam("ns"), ContextRow.context_id == bindparam("cid")
)
_LOCK_CONTEXT = sql_text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_INSERT_QUERY = insert(QueryRow)
_INSERT_LEDGER = insert(LedgerRow)

#: Contexts up to this size are cached in-process (bounds the cache to ~64 MiB).
_CACHED_CONTEXT_CHARS = 256_000
#: Prompt tokens answers did not send against a cold answer (the query log's rows).
_SAVED_SUM = func.coalesce(
    func.sum(
        case(
            (
                QueryRow.cold_prompt_tokens > QueryRow.prompt_tokens,
                QueryRow.cold_prompt_tokens - QueryRow.prompt_tokens,
            ),
            else_=0,
        )
    ),
    0,
)

_FIND_API_KEY = select(ApiKeyRow.namespace, ApiKeyRow.admin).where(
    ApiKeyRow.key_hash == bindparam("h")
)


@functools.cache
def _sqlite_form(stmt: Any) -> tuple[str, tuple[str, ...]]:
    """A statement compiled once for the sqlite3 module: its SQL and the order of its
    named parameters (the fast read speaks to sqlite3 directly)."""
    compiled = stmt.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


K = TypeVar("K")
V = TypeVar("V")

#: Artifact kinds written by the sleep-time graph.
LEARNED = "learned"
QUESTIONS = "questions"
QA = "qa"
MANIFEST = "manifest"
#: The passage index of a long version: row-id range, text and cold-prompt token counts.
INDEX = "index"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SQLStore:
    """Repository over SQLAlchemy. Thread-safe; cheap to share across threads."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        cache_size: int = 1024,
        keep_versions: int = default("keep_versions"),
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(
                f"database URL must be a non-empty string, not {type(url).__name__} "
                "(e.g. sqlite:///sleeptime.db or postgresql+psycopg://user@host/db)"
            )
        self.url = url
        #: Versions of a context kept with their text and artifacts (0 = all); older
        #: ones are pruned when a new version is stored. The current one is never pruned.
        self.keep_versions = keep_versions
        kwargs: dict[str, Any] = {"future": True}
        #: Serializes every statement on an in-memory SQLite database (None otherwise).
        self._serial: threading.RLock | None = None
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if _in_memory(url):
                # One connection for every thread: SQLAlchemy's default for :memory:
                # gives each thread its own, i.e. its own empty database, so the k
                # parallel rethinks of a sleep found no tables. The shared connection
                # is used by one thread at a time (see _guard).
                kwargs["poolclass"] = StaticPool
                self._serial = threading.RLock()
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreUnavailable(
                f"bad database URL {redact_url(url)}: {redact_text(exc, url)}"
            ) from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self._hot: Engine = self.engine
        else:
            # The online path's reads are single statements on immutable or monotonic
            # rows: on a server they run in autocommit, without a pre-ping, so each is
            # one round trip instead of four (ping, BEGIN, SELECT, ROLLBACK). A
            # connection the server dropped is detected by the read itself and the
            # read is retried once on a fresh one (see _hot_read).
            self._hot = create_engine(
                url, future=True, pool_pre_ping=False, isolation_level="AUTOCOMMIT"
            )
            if self.engine.dialect.name == "postgresql":
                event.listen(self._hot, "connect", _no_wal_wait)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # immutable rows keyed by version: safe to cache in-process, across processes
        self._artifacts: LRU[tuple[str, str, int], Artifacts] = LRU(cache_size)
        self._contexts: LRU[tuple[str, str, int], ContextVersion] = LRU(cache_size // 4)
        memory = self.engine.dialect.name == "sqlite" and self.engine.url.database in (
            None,
            "",
            ":memory:",
        )
        self._sqlite_file: str | None = (
            self.engine.url.database
            if self.engine.dialect.name == "sqlite" and not memory
            else None
        )
        #: On a SQLite file, the online path's writes (ledger rows, query-log batches)
        #: take turns in-process: SQLite admits one writer, and a writer that finds the
        #: file locked backs off in sleeps of up to 100 ms (its busy handler), which
        #: turned 8 concurrent answers into a 130 ms p99. Other processes still meet
        #: the busy handler.
        self._hot_writes: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if self._sqlite_file is not None else contextlib.nullcontext()
        )
        self._local = threading.local()
        self._raw_conns: list[sqlite3.Connection] = []
        self._raw_lock = threading.Lock()
        self._queries = QueryLog(self._write_queries, inline=memory)
        #: The passage index (full-text search over long versions' passages).
        self.passages = PassageRepo(self)
        if create:
            self.migrate()

    # -- plumbing -----------------------------------------------------------------

    def migrate(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision (Alembic; once, under a lock, however
        many processes start at once). Returns (revision before, revision after)."""
        with self._guard():
            return migrate.upgrade(self.engine)

    def schema_revision(self) -> str | None:
        """The database's schema revision (None: never migrated)."""
        with self._guard():
            return migrate.current(self.engine)

    def dispose(self) -> None:
        self._queries.close()
        with self._raw_lock:
            for conn in self._raw_conns:
                conn.close()
            self._raw_conns.clear()
        self._local = threading.local()
        self.engine.dispose()
        self._hot.dispose()

    def _hot_read(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of one read on the online path (see ``_hot``)."""
        with self._guard():
            for attempt in range(2):
                try:
                    with self._hot.connect() as conn:
                        return list(conn.execute(stmt, params or {}).all())
                except DBAPIError as exc:
                    if attempt or not exc.connection_invalidated:
                        raise
        raise AssertionError("unreachable")

    def read(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of one read on the online path, for the store's repositories."""
        return self._hot_read(stmt, params)

    def ping(self) -> None:
        """One trivial read; raises StoreUnavailable when the database is down."""
        self._hot_read(select(1))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write buffered query-log rows now (a barrier for readers of the log)."""
        return self._queries.flush(timeout)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            if self._serial is None:
                yield
            else:
                with self._serial:
                    yield
        except OperationalError as exc:
            detail = redact_text(str(exc.orig).strip(), self.url)
            raise StoreUnavailable(
                f"database {redact_url(self.url)} unavailable: {detail}"
            ) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._guard(), self._sessions.begin() as s:
            yield s

    def _insert_ignore(self, s: Session, row: dict[str, Any], table: Any) -> bool:
        """INSERT that is a no-op when the primary key exists; True if a row was added."""
        name = self.engine.dialect.name
        if name == "sqlite":
            stmt: Any = sqlite.insert(table).values(**row).on_conflict_do_nothing()
        elif name == "postgresql":
            stmt = postgresql.insert(table).values(**row).on_conflict_do_nothing()
        else:  # generic fallback: savepoint + IntegrityError
            try:
                with s.begin_nested():
                    s.execute(table.insert().values(**row))
                return True
            except IntegrityError:
                return False
        # RETURNING, not rowcount: psycopg reports rowcount 1 for a skipped conflict
        key = next(iter(table.primary_key.columns))
        return s.execute(stmt.returning(key)).first() is not None

    # -- contexts -----------------------------------------------------------------

    def put_context(
        self,
        namespace: str,
        context_id: str,
        text: str,
        *,
        outbox: bool = False,
        activity: bool = True,
    ) -> ContextVersion:
        """Store ``text`` as the newest version unless it equals the newest already.
        ``outbox``: a new version also gets its outbox row (its sleep-time job), in the
        same transaction, so no committed version can miss its job."""
        digest = content_hash(text)
        for _attempt in range(5):
            try:
                with self.session() as s:
                    self._lock_context(s, namespace, context_id)
                    self._insert_ignore(s, {"name": namespace}, NamespaceRow.__table__)
                    latest = s.scalars(
                        select(ContextRow)
                        .where(ContextRow.namespace == namespace)
                        .where(ContextRow.context_id == context_id)
                        .order_by(ContextRow.version.desc())
                        .limit(1)
                    ).first()
                    if latest is not None and latest.content_hash == digest:
                        return _ctx(latest, created=False)
                    if latest is not None:
                        previous = latest.version
                    else:  # a deleted context continues its version numbers
                        tomb = s.get(TombstoneRow, (namespace, context_id))
                        previous = tomb.version if tomb is not None else 0
                    row = ContextRow(
                        namespace=namespace,
                        context_id=context_id,
                        version=previous + 1,
                        content_hash=digest,
                        text=text,
                    )
                    s.add(row)
                    if outbox:
                        s.add(
                            OutboxRow(
                                namespace=namespace,
                                context_id=context_id,
                                version=row.version,
                                activity=activity,
                            )
                        )
                    s.flush()
                    if self.keep_versions > 0 and row.version > self.keep_versions:
                        self._prune(s, namespace, context_id, row.version - self.keep_versions)
                    return _ctx(row, created=True)
            except IntegrityError:  # a concurrent ingest took this version number
                continue
        raise StoreUnavailable(f"could not store {namespace}/{context_id}: too much contention")

    def _lock_context(self, s: Session, namespace: str, context_id: str) -> None:
        """On PostgreSQL, writers of one context take turns (a transaction-level advisory
        lock on its key): without it, a dozen concurrent ingests of one id kept colliding
        on the next version number until their retries ran out."""
        if self.engine.dialect.name == "postgresql":
            s.execute(_LOCK_CONTEXT, {"key": f"{namespace}\x1f{context_id}"})

    def get_context(
        self, namespace: str, context_id: str, version: int | None = None
    ) -> ContextVersion | None:
        stmt = select(ContextRow).where(
            ContextRow.namespace == namespace, ContextRow.context_id == context_id
        )
        if version is None:
            stmt = stmt.order_by(ContextRow.version.desc()).limit(1)
        else:
            hit = self._contexts.get((namespace, context_id, version))
            if hit is not None:
                return hit
            stmt = stmt.where(ContextRow.version == version)
        with self.session() as s:
            row = s.scalars(stmt).first()
            if row is None:
                return None
            ctx = _ctx(row)
        if len(ctx.text) <= _CACHED_CONTEXT_CHARS:
            self._contexts.put((namespace, context_id, ctx.version), ctx)
        return ctx

    def current_version(self, namespace: str, context_id: str) -> int | None:
        """The newest version number: one indexed lookup, on every query."""
        row = self._fast_row(_CURRENT_VERSION, {"ns": namespace, "cid": context_id})
        return row[0] if row else None

    def _fast_row(self, stmt: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of one indexed read made on every request (the current
        version, an API key). On a server: ``_hot_read``. On a SQLite file: a
        connection of this thread's own outside the pool, since checkout, result proxy
        and rollback-on-return cost more than the read itself; a plain SELECT in WAL
        mode sees the latest commit."""
        if self._sqlite_file is None:
            rows = self._hot_read(stmt, params)
            return tuple(rows[0]) if rows else None
        sql, names = _sqlite_form(stmt)
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = sqlite3.connect(self._sqlite_file, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA busy_timeout=30000")
                self._local.conn = conn
                with self._raw_lock:
                    self._raw_conns.append(conn)
            row: tuple[Any, ...] | None = conn.execute(
                sql, tuple(params[n] for n in names)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"database {redact_url(self.url)} unavailable: {exc}; check the file and disk"
            ) from exc
        return row

    def missing_versions(self, limit: int = 10_000) -> list[tuple[str, str, int]]:
        """Current versions without a complete artifact set, as (namespace, context id,
        version), in one query: what a worker's sweep enqueues (versions ingested while
        the queue was unreachable, or before any worker existed)."""
        latest = (
            select(
                ContextRow.namespace.label("ns"),
                ContextRow.context_id.label("cid"),
                func.max(ContextRow.version).label("v"),
            )
            .group_by(ContextRow.namespace, ContextRow.context_id)
            .subquery()
        )
        done = exists().where(
            and_(
                ArtifactRow.namespace == latest.c.ns,
                ArtifactRow.context_id == latest.c.cid,
                ArtifactRow.version == latest.c.v,
                ArtifactRow.kind == MANIFEST,
            )
        )
        # a version whose outbox row is not relayed yet belongs to the relay, which
        # records the namespace as busy before it enqueues (idle-time scheduling)
        unsent = exists().where(
            and_(
                OutboxRow.namespace == latest.c.ns,
                OutboxRow.context_id == latest.c.cid,
                OutboxRow.version == latest.c.v,
                OutboxRow.sent_at.is_(None),
            )
        )
        stmt = select(latest.c.ns, latest.c.cid, latest.c.v).where(~done, ~unsent).limit(limit)
        with self.session() as s:
            return [(ns, cid, int(v)) for ns, cid, v in s.execute(stmt).all()]

    # -- outbox -------------------------------------------------------------------

    def unsent_outbox(self, limit: int = 500) -> list[tuple[int, str, str, int, bool]]:
        """Outbox rows not relayed to the queue yet, oldest first, as (row id,
        namespace, context id, version, the ingest was activity)."""
        stmt = (
            select(
                OutboxRow.id,
                OutboxRow.namespace,
                OutboxRow.context_id,
                OutboxRow.version,
                OutboxRow.activity,
            )
            .where(OutboxRow.sent_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        with self.session() as s:
            return [
                (int(i), ns, cid, int(v), bool(a)) for i, ns, cid, v, a in s.execute(stmt).all()
            ]

    def mark_outbox_sent(self, ids: list[int], keep_s: float = 86400.0) -> None:
        """Mark relayed rows (enqueueing is idempotent, so a second relay of a row is
        harmless) and drop rows relayed more than ``keep_s`` ago."""
        if not ids:
            return
        now = utcnow()
        with self.session() as s:
            s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(sent_at=now))
            cutoff = datetime.fromtimestamp(now.timestamp() - keep_s, UTC)
            s.execute(delete(OutboxRow).where(OutboxRow.sent_at < cutoff))

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by state: ``unsent`` and ``sent`` (within the retention)."""
        stmt = select(OutboxRow.sent_at.is_(None), func.count()).group_by(
            OutboxRow.sent_at.is_(None)
        )
        with self.session() as s:
            found = {bool(unsent): int(n) for unsent, n in s.execute(stmt).all()}
        return {"unsent": found.get(True, 0), "sent": found.get(False, 0)}

    # -- artifacts ----------------------------------------------------------------

    def put_artifact(
        self,
        namespace: str,
        context_id: str,
        version: int,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        model: str = "",
        usage: Usage | None = None,
    ) -> bool:
        """Idempotent write; returns False when the artifact already existed."""
        usage = usage or Usage()
        row = {
            "namespace": namespace,
            "context_id": context_id,
            "version": version,
            "kind": kind,
            "key": key,
            "payload": payload,
            "model": model,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }
        with self.session() as s:
            return self._insert_ignore(s, row, ArtifactRow.__table__)

    def get_artifact(
        self, namespace: str, context_id: str, version: int, kind: str, key: str
    ) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(ArtifactRow, (namespace, context_id, version, kind, key))
            return dict(row.payload) if row else None

    def load_artifacts(self, namespace: str, context_id: str, version: int) -> Artifacts:
        """Everything servable for one version. Complete sets are cached in-process
        (they are immutable), so repeated queries cost one version lookup."""
        ck = (namespace, context_id, version)
        hit = self._artifacts.get(ck)
        if hit is not None:
            return hit
        stmt = select(ArtifactRow.kind, ArtifactRow.key, ArtifactRow.payload).where(
            ArtifactRow.namespace == namespace,
            ArtifactRow.context_id == context_id,
            ArtifactRow.version == version,
        )
        rows = self._hot_read(stmt)
        arts = artifacts_from_rows(namespace, context_id, version, rows)
        if arts.complete:
            self._artifacts.put(ck, arts)
        return arts

    def latest_complete_version(self, namespace: str, context_id: str, before: int) -> int | None:
        """The newest version older than ``before`` whose sleep-time run finished."""
        stmt = select(func.max(ArtifactRow.version)).where(
            ArtifactRow.namespace == namespace,
            ArtifactRow.context_id == context_id,
            ArtifactRow.kind == MANIFEST,
            ArtifactRow.version < before,
        )
        rows = self._hot_read(stmt)
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def latest_learned(
        self, namespace: str, context_id: str, before: int
    ) -> tuple[int, str] | None:
        """The newest learned context of a version older than ``before``: what the
        online path leans on (flagged stale) until the current version is learned."""
        stmt = (
            select(ArtifactRow.version, ArtifactRow.payload)
            .where(
                ArtifactRow.namespace == namespace,
                ArtifactRow.context_id == context_id,
                ArtifactRow.kind == LEARNED,
                ArtifactRow.key == "0",
                ArtifactRow.version < before,
            )
            .order_by(ArtifactRow.version.desc())
            .limit(1)
        )
        rows = self._hot_read(stmt)
        return (int(rows[0][0]), str(rows[0][1]["text"])) if rows else None

    # -- accounting ---------------------------------------------------------------

    def recorder(
        self, namespace: str, context_id: str, version: int, model: str
    ) -> Callable[[Phase, str, Usage, float], None]:
        """A ``ModelGateway`` recorder that books every call on this context version."""

        def record(phase: Phase, step: str, usage: Usage, latency_ms: float) -> None:
            self.record_call(
                namespace,
                context_id,
                version,
                phase=phase,
                step=step,
                model=model,
                usage=usage,
                latency_ms=latency_ms,
            )

        return record

    def record_call(
        self,
        namespace: str,
        context_id: str,
        version: int,
        *,
        phase: Phase,
        step: str,
        model: str,
        usage: Usage,
        latency_ms: float,
    ) -> None:
        row = {
            "namespace": namespace,
            "context_id": context_id,
            "version": version,
            "phase": phase,
            "step": step,
            "model": model,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "latency_ms": latency_ms,
        }
        # One autocommit INSERT on the online path's connections: a test-time call is
        # booked in one round trip. On PostgreSQL those connections do not wait for
        # the WAL flush: the row is committed when this returns, and only a crash of
        # the database *server* within a fraction of a second could drop it.
        with self._guard(), self._hot_writes, self._hot.connect() as conn:
            conn.execute(_INSERT_LEDGER, [row])
            if self._hot is self.engine:
                conn.commit()

    def log_query(
        self,
        namespace: str,
        context_id: str,
        version: int,
        *,
        question: str,
        answer: str,
        source: str,
        usage: Usage,
        latency_ms: float,
        cold_prompt_tokens: int | None = None,
    ) -> None:
        self._queries.append(
            {
                "namespace": namespace,
                "context_id": context_id,
                "version": version,
                "question": question,
                "answer": answer,
                "source": source,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cold_prompt_tokens": cold_prompt_tokens or 0,
                "latency_ms": latency_ms,
            }
        )

    def _write_queries(self, rows: list[dict[str, Any]]) -> None:
        # One Core multi-row INSERT per batch (an ORM unit of work per row cost more
        # than the rest of a zero-token answer).
        with self._guard(), self._hot_writes, self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # The query log is telemetry: do not wait for the WAL flush. A *server*
                # crash may drop the last fraction of a second of log rows; it never
                # corrupts them, and artifact and ledger writes stay synchronous.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            conn.execute(_INSERT_QUERY, rows)

    def tokens_by_phase(self) -> dict[str, int]:
        """Tokens (prompt + completion) in the whole ledger by phase, for metrics."""
        stmt = select(
            LedgerRow.phase,
            func.coalesce(func.sum(LedgerRow.prompt_tokens + LedgerRow.completion_tokens), 0),
        ).group_by(LedgerRow.phase)
        with self.session() as s:
            return {phase: int(n) for phase, n in s.execute(stmt).all()}

    def ledger(self, namespace: str, context_id: str) -> Ledger:
        self.flush(timeout=5.0)  # count the queries answered so far
        totals = (
            select(
                LedgerRow.model,
                LedgerRow.phase,
                func.coalesce(func.sum(LedgerRow.prompt_tokens), 0),
                func.coalesce(func.sum(LedgerRow.completion_tokens), 0),
                func.count(),
            )
            .where(LedgerRow.namespace == namespace, LedgerRow.context_id == context_id)
            .group_by(LedgerRow.model, LedgerRow.phase)
        )
        sources = (
            select(QueryRow.source, func.count(), _SAVED_SUM)
            .where(QueryRow.namespace == namespace, QueryRow.context_id == context_id)
            .group_by(QueryRow.source)
        )
        by_phase: dict[str, Usage] = {}
        by_model: dict[str, dict[str, Usage]] = {}
        with self.session() as s:
            for model, phase, p, c, n in s.execute(totals).all():
                used = Usage(prompt_tokens=int(p), completion_tokens=int(c), calls=int(n))
                by_phase[phase] = by_phase.get(phase, Usage()) + used
                by_model.setdefault(model or "", {})[phase] = used
            by_source, saved_tokens = {}, 0
            for src, n, sv in s.execute(sources).all():
                by_source[src] = int(n)
                saved_tokens += int(sv)
        return Ledger(
            namespace=namespace,
            context_id=context_id,
            sleep=by_phase.get("sleep", Usage()),
            test=by_phase.get("test", Usage()),
            queries=sum(by_source.values()),
            by_source=by_source,
            by_model=by_model,
            saved_prompt_tokens=saved_tokens,
        )

    # -- deletion and retention -----------------------------------------------------

    def _prune(self, s: Session, namespace: str, context_id: str, upto: int) -> None:
        """Delete versions <= ``upto`` of one context with their artifacts."""
        for table, col_v in (
            (ArtifactRow, ArtifactRow.version),
            (PassageRow, PassageRow.version),
            (ContextRow, ContextRow.version),
        ):
            s.execute(
                delete(table).where(
                    table.namespace == namespace,
                    table.context_id == context_id,
                    col_v <= upto,
                )
            )
        self._forget(lambda k: k[0] == namespace and k[1] == context_id and k[2] <= upto)

    def _forget(self, drop: Callable[[tuple[str, str, int]], bool]) -> None:
        self._artifacts.discard(drop)
        self._contexts.discard(drop)
        self.passages.forget(drop)

    def delete_context(self, namespace: str, context_id: str | None = None) -> DeleteCounts:
        """Delete a context (every version, its artifacts) or, with ``context_id`` None,
        every context of a namespace. Ledger rows (token counts, no text) are kept; the
        query log keeps its rows with the question and answer text blanked, so counts
        and savings stay right. A tombstone keeps each context's last version number."""
        self.flush(timeout=30.0)  # buffered query-log rows must be blanked too

        def where(table: Any) -> list[Any]:
            cond = [table.namespace == namespace]
            if context_id is not None:
                cond.append(table.context_id == context_id)
            return cond

        with self.session() as s:
            if context_id is not None:  # an ingest of this context waits, or goes first
                self._lock_context(s, namespace, context_id)
            last = s.execute(
                select(ContextRow.context_id, func.max(ContextRow.version))
                .where(*where(ContextRow))
                .group_by(ContextRow.context_id)
            ).all()
            for cid, version in last:
                tomb = s.get(TombstoneRow, (namespace, cid))
                if tomb is None:
                    s.add(TombstoneRow(namespace=namespace, context_id=cid, version=int(version)))
                else:
                    tomb.version = max(tomb.version, int(version))
            artifacts = _rowcount(s.execute(delete(ArtifactRow).where(*where(ArtifactRow))))
            s.execute(delete(PassageRow).where(*where(PassageRow)))
            versions = _rowcount(s.execute(delete(ContextRow).where(*where(ContextRow))))
            queries = _rowcount(
                s.execute(
                    update(QueryRow)
                    .where(*where(QueryRow), QueryRow.question != "")
                    .values(question="", answer="")
                )
            )
            if context_id is None:
                s.execute(delete(NamespaceRow).where(NamespaceRow.name == namespace))
        self._forget(lambda k: k[0] == namespace and (context_id is None or k[1] == context_id))
        return DeleteCounts(
            contexts=len(last),
            versions=int(versions or 0),
            artifacts=int(artifacts or 0),
            queries_redacted=int(queries or 0),
        )

    def last_versions(self, namespace: str, context_id: str | None = None) -> dict[str, int]:
        """Context id -> newest stored version, for one context or a whole namespace."""
        stmt = select(ContextRow.context_id, func.max(ContextRow.version)).where(
            ContextRow.namespace == namespace
        )
        if context_id is not None:
            stmt = stmt.where(ContextRow.context_id == context_id)
        with self.session() as s:
            rows = s.execute(stmt.group_by(ContextRow.context_id)).all()
        return {cid: int(v) for cid, v in rows}

    def context_ids(self, namespace: str) -> list[str]:
        """Ids of the contexts stored in a namespace, sorted."""
        stmt = (
            select(ContextRow.context_id)
            .where(ContextRow.namespace == namespace)
            .distinct()
            .order_by(ContextRow.context_id)
        )
        with self.session() as s:
            return list(s.scalars(stmt).all())

    def versions(self, namespace: str, context_id: str) -> list[int]:
        """Version numbers still stored for a context (retention may have pruned some)."""
        stmt = (
            select(ContextRow.version)
            .where(ContextRow.namespace == namespace, ContextRow.context_id == context_id)
            .order_by(ContextRow.version)
        )
        with self.session() as s:
            return [int(v) for v in s.scalars(stmt).all()]

    def overview(self, limit: int = 200) -> list[dict[str, Any]]:
        """One row per context (newest first, at most ``limit``) for the operator
        dashboard: versions stored, whether the current one has complete artifacts, and
        its ledger (sleep/test tokens, queries by source)."""
        self.flush(timeout=5.0)
        latest = (
            select(
                ContextRow.namespace,
                ContextRow.context_id,
                func.max(ContextRow.version),
                func.count(),
                func.max(ContextRow.created_at),
            )
            .group_by(ContextRow.namespace, ContextRow.context_id)
            .order_by(func.max(ContextRow.created_at).desc())
            .limit(limit)
        )
        with self.session() as s:
            rows = s.execute(latest).all()
            keys = {(ns, cid) for ns, cid, *_ in rows}
            namespaces = sorted({ns for ns, _ in keys})
            done = {
                (ns, cid, int(v))
                for ns, cid, v in s.execute(
                    select(
                        ArtifactRow.namespace, ArtifactRow.context_id, ArtifactRow.version
                    ).where(ArtifactRow.kind == MANIFEST, ArtifactRow.namespace.in_(namespaces))
                ).all()
            }
            tokens: dict[tuple[str, str], dict[str, int]] = {}
            for ns, cid, phase, n in s.execute(
                select(
                    LedgerRow.namespace,
                    LedgerRow.context_id,
                    LedgerRow.phase,
                    func.sum(LedgerRow.prompt_tokens + LedgerRow.completion_tokens),
                )
                .where(LedgerRow.namespace.in_(namespaces))
                .group_by(LedgerRow.namespace, LedgerRow.context_id, LedgerRow.phase)
            ).all():
                tokens.setdefault((ns, cid), {})[phase] = int(n or 0)
            sources: dict[tuple[str, str], dict[str, int]] = {}
            saved: dict[tuple[str, str], int] = {}
            for ns, cid, src, n, sv in s.execute(
                select(
                    QueryRow.namespace,
                    QueryRow.context_id,
                    QueryRow.source,
                    func.count(),
                    _SAVED_SUM,
                )
                .where(QueryRow.namespace.in_(namespaces))
                .group_by(QueryRow.namespace, QueryRow.context_id, QueryRow.source)
            ).all():
                sources.setdefault((ns, cid), {})[src] = int(n)
                saved[(ns, cid)] = saved.get((ns, cid), 0) + int(sv)
        out = []
        for ns, cid, version, n_versions, created in rows:
            by_source = sources.get((ns, cid), {})
            out.append(
                {
                    "namespace": ns,
                    "context_id": cid,
                    "version": int(version),
                    "versions": int(n_versions),
                    "complete": (ns, cid, int(version)) in done,
                    "updated_at": created,
                    "sleep_tokens": tokens.get((ns, cid), {}).get("sleep", 0),
                    "test_tokens": tokens.get((ns, cid), {}).get("test", 0),
                    "queries": sum(by_source.values()),
                    "zero_token_answers": by_source.get("predicted", 0),
                    "saved_tokens": saved.get((ns, cid), 0),
                }
            )
        return out

    # -- API keys ---------------------------------------------------------------------

    def add_api_key(self, key_hash: str, key_id: str, namespace: str, *, admin: bool) -> None:
        with self.session() as s:
            s.add(ApiKeyRow(key_hash=key_hash, key_id=key_id, namespace=namespace, admin=admin))

    def find_api_key(self, key_hash: str) -> tuple[str, bool] | None:
        """(namespace, admin) of the key with this hash, or None. It runs on every HTTP
        request, so it takes the online path's fast read, never an ORM session; a
        revoked key is gone from the next request on."""
        row = self._fast_row(_FIND_API_KEY, {"h": key_hash})
        return (str(row[0]), bool(row[1])) if row is not None else None

    def api_keys(self) -> list[tuple[str, str, bool]]:
        """(key id, namespace, admin) of every key; never the key or its hash."""
        with self.session() as s:
            rows = s.execute(
                select(ApiKeyRow.key_id, ApiKeyRow.namespace, ApiKeyRow.admin).order_by(
                    ApiKeyRow.created_at
                )
            ).all()
        return [(k, ns, bool(a)) for k, ns, a in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        with self.session() as s:
            return bool(_rowcount(s.execute(delete(ApiKeyRow).where(ApiKeyRow.key_id == key_id))))


class LRU(Generic[K, V]):
    """A small thread-safe LRU map for immutable rows."""

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._size = max(1, size)
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def discard(self, drop: Callable[[K], bool]) -> None:
        """Remove every entry whose key ``drop`` accepts."""
        with self._lock:
            for key in [k for k in self._data if drop(k)]:
                del self._data[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


def artifacts_from_rows(namespace: str, context_id: str, version: int, rows: Any) -> Artifacts:
    """Assemble an :class:`Artifacts` snapshot from (kind, key, payload) rows."""
    learned: str | None = None
    qas: list[tuple[int, PredictedQA]] = []
    complete = False
    index: PassageIndex | None = None
    for kind, key, payload in rows:
        if kind == LEARNED:
            learned = payload["text"]
        elif kind == INDEX:
            index = PassageIndex.model_validate(payload)
        elif kind == QA:
            qas.append((int(key), PredictedQA(**payload)))
        elif kind == MANIFEST:
            complete = True
    qas.sort(key=lambda item: item[0])
    return Artifacts(
        namespace=namespace,
        context_id=context_id,
        version=version,
        learned=learned,
        qas=tuple(qa for _, qa in qas),
        complete=complete,
        index=index,
    )


def _rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched."""
    return int(getattr(result, "rowcount", 0) or 0)


def _ctx(row: ContextRow, created: bool = False) -> ContextVersion:
    return ContextVersion(
        namespace=row.namespace,
        context_id=row.context_id,
        version=row.version,
        content_hash=row.content_hash,
        text=row.text,
        created_at=row.created_at,
        created=created,
    )


def _no_wal_wait(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("SET SESSION synchronous_commit TO OFF")
    cur.close()
    dbapi_conn.commit()  # a session setting, kept for the connection's life


def _in_memory(url: str) -> bool:
    try:
        database = make_url(url).database
    except ArgumentError:
        return False
    return database in (None, "", ":memory:")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # WAL is a property of the file: set it once. Switching needs an exclusive lock and
    # does not wait on the busy handler, so processes opening a fresh file together
    # (workers starting at once) retry instead of failing with "database is locked".
    for attempt in range(100):
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            break
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break  # set (an in-memory database keeps its own mode)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
