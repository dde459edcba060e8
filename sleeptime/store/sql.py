"""The durable store: contexts, artifacts, the token ledger and the query log.

SQLite (a file) is the embedded default; PostgreSQL is selected by URL. Every read
filters by namespace first, so one tenant's artifacts are never served to another.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, select
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sleeptime.errors import InvalidInput, StoreUnavailable
from sleeptime.models import Artifacts, ContextVersion, Ledger, Phase, PredictedQA, Usage
from sleeptime.redact import redact_text, redact_url
from sleeptime.store import migrate
from sleeptime.store.schema import (
    ArtifactRow,
    ContextRow,
    LedgerRow,
    NamespaceRow,
    QueryRow,
)

_CURRENT_VERSION = select(func.max(ContextRow.version)).where(
    ContextRow.namespace == bindparam("ns"), ContextRow.context_id == bindparam("cid")
)
_LOCK_CONTEXT = sql_text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_INSERT_QUERY = insert(QueryRow)
_INSERT_LEDGER = insert(LedgerRow)

#: Contexts up to this size are cached in-process (bounds the cache to ~64 MiB).
_CACHED_CONTEXT_CHARS = 256_000

K = TypeVar("K")
V = TypeVar("V")

#: Artifact kinds written by the sleep-time graph.
LEARNED = "learned"
QUESTIONS = "questions"
QA = "qa"
MANIFEST = "manifest"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SQLStore:
    """Repository over SQLAlchemy. Thread-safe; cheap to share across threads."""

    def __init__(self, url: str, *, create: bool = True, cache_size: int = 1024) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(
                f"database URL must be a non-empty string, not {type(url).__name__} "
                "(e.g. sqlite:///sleeptime.db or postgresql+psycopg://user@host/db)"
            )
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
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
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # immutable rows keyed by version: safe to cache in-process, across processes
        self._artifacts: LRU[tuple[str, str, int], Artifacts] = LRU(cache_size)
        self._contexts: LRU[tuple[str, str, int], ContextVersion] = LRU(cache_size // 4)
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
        self.engine.dispose()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
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

    def put_context(self, namespace: str, context_id: str, text: str) -> ContextVersion:
        """Store ``text`` as the newest version unless it equals the newest already."""
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
                    row = ContextRow(
                        namespace=namespace,
                        context_id=context_id,
                        version=(latest.version + 1) if latest else 1,
                        content_hash=digest,
                        text=text,
                    )
                    s.add(row)
                    s.flush()
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
        """The newest version number: one indexed lookup, used on the online path
        (a statement built once: rebuilding it cost ~0.15 ms per query)."""
        with self._guard(), self.engine.connect() as conn:
            return conn.execute(_CURRENT_VERSION, {"ns": namespace, "cid": context_id}).scalar()

    def list_contexts(self, namespace: str | None = None) -> list[tuple[str, str, int]]:
        stmt = select(
            ContextRow.namespace, ContextRow.context_id, func.max(ContextRow.version)
        ).group_by(ContextRow.namespace, ContextRow.context_id)
        if namespace is not None:
            stmt = stmt.where(ContextRow.namespace == namespace)
        with self.session() as s:
            return [(ns, cid, int(v)) for ns, cid, v in s.execute(stmt).all()]

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
        with self._guard(), self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        arts = artifacts_from_rows(namespace, context_id, version, rows)
        if arts.complete:
            self._artifacts.put(ck, arts)
        return arts

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
        with self._guard(), self.engine.begin() as conn:  # Core INSERT: see log_query
            conn.execute(_INSERT_LEDGER, [row])

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
    ) -> None:
        # A Core INSERT, not an ORM unit of work: this runs on every ask, and the ORM
        # flush cost ~0.6-1 ms of the online path's 1 ms budget (issue #3 benchmark).
        row = {
            "namespace": namespace,
            "context_id": context_id,
            "version": version,
            "question": question,
            "answer": answer,
            "source": source,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "latency_ms": latency_ms,
        }
        with self._guard(), self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # The query log is telemetry: do not wait for the WAL flush (~3 ms per ask).
                # A *server* crash may drop the last fraction of a second of log rows;
                # it never corrupts them, and artifacts/ledger writes stay synchronous.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            conn.execute(_INSERT_QUERY, [row])

    def ledger(self, namespace: str, context_id: str) -> Ledger:
        totals = (
            select(
                LedgerRow.phase,
                func.coalesce(func.sum(LedgerRow.prompt_tokens), 0),
                func.coalesce(func.sum(LedgerRow.completion_tokens), 0),
                func.count(),
            )
            .where(LedgerRow.namespace == namespace, LedgerRow.context_id == context_id)
            .group_by(LedgerRow.phase)
        )
        sources = (
            select(QueryRow.source, func.count())
            .where(QueryRow.namespace == namespace, QueryRow.context_id == context_id)
            .group_by(QueryRow.source)
        )
        with self.session() as s:
            by_phase = {
                phase: Usage(prompt_tokens=int(p), completion_tokens=int(c), calls=int(n))
                for phase, p, c, n in s.execute(totals).all()
            }
            by_source = {src: int(n) for src, n in s.execute(sources).all()}
        return Ledger(
            namespace=namespace,
            context_id=context_id,
            sleep=by_phase.get("sleep", Usage()),
            test=by_phase.get("test", Usage()),
            queries=sum(by_source.values()),
            by_source=by_source,
        )


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
    for kind, key, payload in rows:
        if kind == LEARNED:
            learned = payload["text"]
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
    )


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
