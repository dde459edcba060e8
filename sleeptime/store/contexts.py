"""Context versions and the outbox of their sleep-time jobs.

A context's text is stored as numbered versions (a new one only when the text
changes); a new version and its outbox row commit in one transaction, so no
committed version can miss its job. The outbox relay moves the rows to the queue.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime

from cachetools import LRUCache
from sqlalchemy import and_, bindparam, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from sleeptime.errors import StoreUnavailable
from sleeptime.models import ContextVersion
from sleeptime.store.db import Database
from sleeptime.store.kinds import Kind
from sleeptime.store.retention import Drop, Retention, context_key
from sleeptime.store.schema import (
    ArtifactRow,
    ContextRow,
    NamespaceRow,
    OutboxRow,
    TombstoneRow,
    utcnow,
)

_CURRENT_VERSION = select(func.max(ContextRow.version)).where(
    ContextRow.namespace == bindparam("ns"), ContextRow.context_id == bindparam("cid")
)

#: Contexts up to this size are cached in-process (bounds the cache to ~64 MiB).
_CACHED_CONTEXT_CHARS = 256_000


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ContextRepo:
    """Context versions and the outbox, over the store's database."""

    def __init__(
        self,
        db: Database,
        retention: Retention,
        *,
        keep_versions: int,
        cache_size: int = 256,
    ) -> None:
        self._db = db
        self._retention = retention
        #: Versions of a context kept with their text and artifacts (0 = all); older
        #: ones are pruned when a new version is stored. The current one is never pruned.
        self.keep_versions = keep_versions
        # a version's text never changes: safe to cache in-process
        self._cache: LRUCache[tuple[str, str, int], ContextVersion] = LRUCache(
            maxsize=max(1, cache_size)
        )
        # LRUCache reorders itself on every read: readers take the lock too
        self._lock = threading.Lock()

    # -- versions ---------------------------------------------------------------------

    def put(
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
                with self._db.session() as s:
                    # On PostgreSQL, writers of one context take turns: without it, a
                    # dozen concurrent ingests of one id kept colliding on the next
                    # version number until their retries ran out.
                    self._db.take_turns(s, context_key(namespace, context_id))
                    self._db.insert_ignore(s, {"name": namespace}, NamespaceRow.__table__)
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
                        upto = row.version - self.keep_versions
                        self._retention.prune(s, namespace, context_id, upto)
                    return _ctx(row, created=True)
            except IntegrityError:  # a concurrent ingest took this version number
                continue
        raise StoreUnavailable(f"could not store {namespace}/{context_id}: too much contention")

    def get(
        self, namespace: str, context_id: str, version: int | None = None
    ) -> ContextVersion | None:
        stmt = select(ContextRow).where(
            ContextRow.namespace == namespace, ContextRow.context_id == context_id
        )
        if version is None:
            stmt = stmt.order_by(ContextRow.version.desc()).limit(1)
        else:
            with self._lock:
                hit = self._cache.get((namespace, context_id, version))
            if hit is not None:
                return hit
            stmt = stmt.where(ContextRow.version == version)
        with self._db.session() as s:
            row = s.scalars(stmt).first()
            if row is None:
                return None
            ctx = _ctx(row)
        if len(ctx.text) <= _CACHED_CONTEXT_CHARS:
            with self._lock:
                self._cache[(namespace, context_id, ctx.version)] = ctx
        return ctx

    def current_version(self, namespace: str, context_id: str) -> int | None:
        """The newest version number: one indexed lookup, on every query."""
        row = self._db.read_row(_CURRENT_VERSION, {"ns": namespace, "cid": context_id})
        return row[0] if row else None

    def last_versions(self, namespace: str, context_id: str | None = None) -> dict[str, int]:
        """Context id -> newest stored version, for one context or a whole namespace."""
        stmt = select(ContextRow.context_id, func.max(ContextRow.version)).where(
            ContextRow.namespace == namespace
        )
        if context_id is not None:
            stmt = stmt.where(ContextRow.context_id == context_id)
        with self._db.session() as s:
            rows = s.execute(stmt.group_by(ContextRow.context_id)).all()
        return {cid: int(v) for cid, v in rows}

    def ids(self, namespace: str) -> list[str]:
        """Ids of the contexts stored in a namespace, sorted."""
        stmt = (
            select(ContextRow.context_id)
            .where(ContextRow.namespace == namespace)
            .distinct()
            .order_by(ContextRow.context_id)
        )
        with self._db.session() as s:
            return list(s.scalars(stmt).all())

    def versions(self, namespace: str, context_id: str) -> list[int]:
        """Version numbers still stored for a context (retention may have pruned some)."""
        stmt = (
            select(ContextRow.version)
            .where(ContextRow.namespace == namespace, ContextRow.context_id == context_id)
            .order_by(ContextRow.version)
        )
        with self._db.session() as s:
            return [int(v) for v in s.scalars(stmt).all()]

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
                ArtifactRow.kind == Kind.MANIFEST,
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
        with self._db.session() as s:
            return [(ns, cid, int(v)) for ns, cid, v in s.execute(stmt).all()]

    def forget(self, drop: Drop) -> None:
        """Drop the cached texts of deleted or pruned versions."""
        with self._lock:
            for key in [k for k in self._cache if drop(k)]:
                del self._cache[key]

    # -- outbox -----------------------------------------------------------------------

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
        with self._db.session() as s:
            return [
                (int(i), ns, cid, int(v), bool(a)) for i, ns, cid, v, a in s.execute(stmt).all()
            ]

    def mark_outbox_sent(self, ids: list[int], keep_s: float = 86400.0) -> None:
        """Mark relayed rows (enqueueing is idempotent, so a second relay of a row is
        harmless) and drop rows relayed more than ``keep_s`` ago."""
        if not ids:
            return
        now = utcnow()
        with self._db.session() as s:
            s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(sent_at=now))
            cutoff = datetime.fromtimestamp(now.timestamp() - keep_s, UTC)
            s.execute(delete(OutboxRow).where(OutboxRow.sent_at < cutoff))

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by state: ``unsent`` and ``sent`` (within the retention)."""
        stmt = select(OutboxRow.sent_at.is_(None), func.count()).group_by(
            OutboxRow.sent_at.is_(None)
        )
        with self._db.session() as s:
            by_state = {bool(unsent): int(n) for unsent, n in s.execute(stmt).all()}
        return {"unsent": by_state.get(True, 0), "sent": by_state.get(False, 0)}


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
