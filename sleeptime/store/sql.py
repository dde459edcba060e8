"""The durable store: one database and its repositories behind one object.

:class:`SQLStore` owns the :class:`~sleeptime.store.db.Database` (engines, the error
guard, fast reads) and one repository per concern, and keeps the methods every layer
calls (``st.store.<method>``) as thin delegations:

- :mod:`~sleeptime.store.contexts`: context versions and the outbox;
- :mod:`~sleeptime.store.artifacts`: what a sleep-time run wrote for a version;
- :mod:`~sleeptime.store.passages`: the passage index of long versions;
- :mod:`~sleeptime.store.ledger`: the token ledger and the query log;
- :mod:`~sleeptime.store.retention`: deletion and pruning of old versions;
- :mod:`~sleeptime.store.admin`: the dashboard's overview and API keys.

SQLite (a file) is the embedded default; PostgreSQL is selected by URL. Every read
filters by namespace first, so one tenant's artifacts are never served to another.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sleeptime.models import Artifacts, ContextVersion, DeleteCounts, Ledger, Phase, Usage
from sleeptime.settings import default
from sleeptime.store.admin import AdminRepo
from sleeptime.store.artifacts import ArtifactRepo, artifacts_from_rows
from sleeptime.store.contexts import ContextRepo, content_hash
from sleeptime.store.db import Database
from sleeptime.store.demand import DemandRepo
from sleeptime.store.kinds import Kind
from sleeptime.store.ledger import LedgerRepo
from sleeptime.store.passages import PassageRepo
from sleeptime.store.retention import Drop, Retention

# The artifact kinds under their old names: callers import them from here.
LEARNED = Kind.LEARNED
QUESTIONS = Kind.QUESTIONS
QA = Kind.QA
MANIFEST = Kind.MANIFEST
INDEX = Kind.INDEX

__all__ = [
    "INDEX",
    "LEARNED",
    "MANIFEST",
    "QA",
    "QUESTIONS",
    "Kind",
    "SQLStore",
    "artifacts_from_rows",
    "content_hash",
]


class SQLStore:
    """The store's repositories over one database. Thread-safe; cheap to share across
    threads."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        cache_size: int = 1024,
        keep_versions: int = default("keep_versions"),
    ) -> None:
        self.db = Database(url)
        #: The URL as connected (``postgres://`` names its driver: ``postgresql+psycopg://``).
        self.url = self.db.url
        self.accounting = LedgerRepo(self.db)
        self.artifacts = ArtifactRepo(self.db, cache_size)
        #: The passage index (full-text search over long versions' passages).
        self.passages = PassageRepo(self.db)
        self.retention = Retention(self.db, forget=self._forget, flush=self.accounting.flush)
        self.contexts = ContextRepo(
            self.db, self.retention, keep_versions=keep_versions, cache_size=cache_size // 4
        )
        self.admin = AdminRepo(self.db, flush=self.accounting.flush)
        #: What the sleep policy reads of the query log, ledger and contexts.
        self.demand = DemandRepo(self.db, flush=lambda: self.accounting.flush(timeout=5.0))
        if create:
            self.migrate()

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def keep_versions(self) -> int:
        """Versions of a context kept with their text and artifacts (0 = all); older
        ones are pruned when a new version is stored. The current one is never pruned."""
        return self.contexts.keep_versions

    @keep_versions.setter
    def keep_versions(self, value: int) -> None:
        self.contexts.keep_versions = value

    def _forget(self, drop: Drop) -> None:
        """Drop removed versions from every in-process cache."""
        self.artifacts.forget(drop)
        self.contexts.forget(drop)
        self.passages.forget(drop)

    # -- the database -----------------------------------------------------------------

    def migrate(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision (Alembic; once, under a lock, however
        many processes start at once). Returns (revision before, revision after)."""
        return self.db.migrate()

    def schema_revision(self) -> str | None:
        """The database's schema revision (None: never migrated)."""
        return self.db.schema_revision()

    def dispose(self) -> None:
        self.accounting.close()  # buffered query-log rows first, while engines are open
        self.db.dispose()

    def read(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of one read on the online path, for the store's repositories."""
        return self.db.read(stmt, params)

    def ping(self) -> None:
        """One trivial read; raises StoreUnavailable when the database is down."""
        self.db.ping()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write buffered query-log rows now (a barrier for readers of the log)."""
        return self.accounting.flush(timeout)

    def session(self) -> AbstractContextManager[Session]:
        """One write transaction (committed on leaving, rolled back on an error)."""
        return self.db.session()

    # -- contexts and the outbox: ContextRepo -----------------------------------------

    def put_context(
        self,
        namespace: str,
        context_id: str,
        text: str,
        *,
        outbox: bool = False,
        activity: bool = True,
    ) -> ContextVersion:
        """Store ``text`` as the newest version unless it equals the newest already
        (``outbox``: with its sleep-time job's outbox row, in the same transaction)."""
        return self.contexts.put(namespace, context_id, text, outbox=outbox, activity=activity)

    def get_context(
        self, namespace: str, context_id: str, version: int | None = None
    ) -> ContextVersion | None:
        return self.contexts.get(namespace, context_id, version)

    def current_version(self, namespace: str, context_id: str) -> int | None:
        """The newest version number: one indexed lookup, on every query."""
        return self.contexts.current_version(namespace, context_id)

    def last_versions(self, namespace: str, context_id: str | None = None) -> dict[str, int]:
        """Context id -> newest stored version, for one context or a whole namespace."""
        return self.contexts.last_versions(namespace, context_id)

    def context_ids(self, namespace: str) -> list[str]:
        """Ids of the contexts stored in a namespace, sorted."""
        return self.contexts.ids(namespace)

    def versions(self, namespace: str, context_id: str) -> list[int]:
        """Version numbers still stored for a context (retention may have pruned some)."""
        return self.contexts.versions(namespace, context_id)

    def missing_versions(self, limit: int = 10_000) -> list[tuple[str, str, int]]:
        """Current versions without a complete artifact set (a worker's sweep)."""
        return self.contexts.missing_versions(limit)

    def unsent_outbox(self, limit: int = 500) -> list[tuple[int, str, str, int, bool]]:
        """Outbox rows not relayed to the queue yet, oldest first."""
        return self.contexts.unsent_outbox(limit)

    def mark_outbox_sent(self, ids: list[int], keep_s: float = 86400.0) -> None:
        self.contexts.mark_outbox_sent(ids, keep_s)

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by state: ``unsent`` and ``sent`` (within the retention)."""
        return self.contexts.outbox_counts()

    # -- artifacts: ArtifactRepo ------------------------------------------------------

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
        return self.artifacts.put(
            namespace, context_id, version, kind, key, payload, model=model, usage=usage
        )

    def get_artifact(
        self, namespace: str, context_id: str, version: int, kind: str, key: str
    ) -> dict[str, Any] | None:
        return self.artifacts.get(namespace, context_id, version, kind, key)

    def load_artifacts(self, namespace: str, context_id: str, version: int) -> Artifacts:
        """Everything servable for one version (complete sets cached in-process)."""
        return self.artifacts.load(namespace, context_id, version)

    def latest_complete_version(self, namespace: str, context_id: str, before: int) -> int | None:
        """The newest version older than ``before`` whose sleep-time run finished."""
        return self.artifacts.latest_complete_version(namespace, context_id, before)

    def latest_learned(
        self, namespace: str, context_id: str, before: int
    ) -> tuple[int, str] | None:
        """The newest learned context of a version older than ``before``."""
        return self.artifacts.latest_learned(namespace, context_id, before)

    # -- the ledger and the query log: LedgerRepo -------------------------------------

    def recorder(
        self, namespace: str, context_id: str, version: int, model: str
    ) -> Callable[[Phase, str, Usage, float], None]:
        """A ``ModelGateway`` recorder that books every call on this context version."""
        return self.accounting.recorder(namespace, context_id, version, model)

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
        self.accounting.record_call(
            namespace,
            context_id,
            version,
            phase=phase,
            step=step,
            model=model,
            usage=usage,
            latency_ms=latency_ms,
        )

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
        self.accounting.log_query(
            namespace,
            context_id,
            version,
            question=question,
            answer=answer,
            source=source,
            usage=usage,
            latency_ms=latency_ms,
            cold_prompt_tokens=cold_prompt_tokens,
        )

    def tokens_by_phase(self) -> dict[str, int]:
        """Tokens (prompt + completion) in the whole ledger by phase, for metrics."""
        return self.accounting.tokens_by_phase()

    def ledger(self, namespace: str, context_id: str) -> Ledger:
        return self.accounting.ledger(namespace, context_id)

    # -- deletion: Retention ----------------------------------------------------------

    def delete_context(self, namespace: str, context_id: str | None = None) -> DeleteCounts:
        """Delete a context (every version, its artifacts) or, with ``context_id`` None,
        every context of a namespace (see :meth:`Retention.delete_context`)."""
        return self.retention.delete_context(namespace, context_id)

    # -- the overview and API keys: AdminRepo -----------------------------------------

    def overview(self, limit: int = 200) -> list[dict[str, Any]]:
        """One row per context (newest first) for the operator dashboard."""
        return self.admin.overview(limit)

    def add_api_key(self, key_hash: str, key_id: str, namespace: str, *, admin: bool) -> None:
        self.admin.add_api_key(key_hash, key_id, namespace, admin=admin)

    def find_api_key(self, key_hash: str) -> tuple[str, bool] | None:
        """(namespace, admin) of the key with this hash, or None (every HTTP request)."""
        return self.admin.find_api_key(key_hash)

    def api_keys(self) -> list[tuple[str, str, bool]]:
        """(key id, namespace, admin) of every key; never the key or its hash."""
        return self.admin.api_keys()

    def revoke_api_key(self, key_id: str) -> bool:
        return self.admin.revoke_api_key(key_id)
