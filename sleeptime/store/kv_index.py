"""The index of KV-prefix blobs (``st_kv_blobs``): which saved llama.cpp prefix states
exist, for which namespace and model, how big they are and when they were last used.

The blob bytes are files (:mod:`sleeptime.llm.kv.blobs`); this is the SQL half. Every
lookup is keyed by namespace first: one tenant's prefix states are never found for
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, select, update

from sleeptime.store.schema import KVBlobRow
from sleeptime.store.sql import SQLStore

#: Only bump a blob's LRU clock when it was last bumped longer ago than this.
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class KVBlob:
    """One stored prefix state (an index row)."""

    namespace: str
    model_key: str
    prefix_hash: str
    n_tokens: int
    file: str
    size_bytes: int
    context_id: str = ""
    version: int = 0


def _blob(row: KVBlobRow) -> KVBlob:
    # the dataclass's fields are the row's columns of the same names
    return KVBlob(**{f.name: getattr(row, f.name) for f in fields(KVBlob)})


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _key(blob: KVBlob) -> ColumnElement[bool]:
    return and_(
        KVBlobRow.namespace == blob.namespace,
        KVBlobRow.model_key == blob.model_key,
        KVBlobRow.prefix_hash == blob.prefix_hash,
    )


class KVIndex:
    """SQL over ``st_kv_blobs``, on the same database as the rest of the store."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store

    def put(self, blob: KVBlob) -> None:
        """Insert ``blob``, replacing a row with the same key (a re-saved prefix)."""
        now = datetime.now(UTC)
        with self.store.session() as s:
            s.execute(delete(KVBlobRow).where(_key(blob)))
            s.add(KVBlobRow(**asdict(blob), created_at=now, last_used_at=now))

    def delete(self, blob: KVBlob) -> None:
        with self.store.session() as s:
            s.execute(delete(KVBlobRow).where(_key(blob)))

    def evict(self, incoming: int, max_bytes: int) -> list[KVBlob]:
        """Delete least recently used rows until ``incoming`` more bytes fit under
        ``max_bytes``; returns the deleted blobs (their files are the caller's)."""
        evicted: list[KVBlob] = []
        with self.store.session() as s:
            total = int(s.scalar(select(func.coalesce(func.sum(KVBlobRow.size_bytes), 0))) or 0)
            if total + incoming <= max_bytes:
                return []
            rows = s.scalars(
                select(KVBlobRow).order_by(KVBlobRow.last_used_at, KVBlobRow.created_at)
            ).all()
            for row in rows:
                if total + incoming <= max_bytes:
                    break
                total -= row.size_bytes
                evicted.append(_blob(row))
                s.delete(row)
        return evicted

    def delete_older_versions(self, namespace: str, context_id: str, version: int) -> list[KVBlob]:
        """Delete the rows of versions before ``version`` of one context; returns them."""
        with self.store.session() as s:
            rows = s.scalars(
                select(KVBlobRow).where(
                    KVBlobRow.namespace == namespace,
                    KVBlobRow.context_id == context_id,
                    KVBlobRow.version < version,
                )
            ).all()
            out = [_blob(r) for r in rows]
            for row in rows:
                s.delete(row)
        return out

    def delete_context(self, namespace: str, context_id: str | None = None) -> list[KVBlob]:
        """Delete the rows of one context (every version), or of a whole namespace when
        ``context_id`` is None; returns them (their files are the caller's)."""
        q = select(KVBlobRow).where(KVBlobRow.namespace == namespace)
        if context_id is not None:
            q = q.where(KVBlobRow.context_id == context_id)
        with self.store.session() as s:
            rows = s.scalars(q).all()
            out = [_blob(r) for r in rows]
            for row in rows:
                s.delete(row)
        return out

    def files(self) -> set[str]:
        with self.store.session() as s:
            return set(s.scalars(select(KVBlobRow.file)).all())

    def blobs(self, namespace: str | None = None) -> list[KVBlob]:
        """Every row (of one namespace), least recently used first."""
        q = select(KVBlobRow).order_by(KVBlobRow.last_used_at)
        if namespace is not None:
            q = q.where(KVBlobRow.namespace == namespace)
        with self.store.session() as s:
            return [_blob(r) for r in s.scalars(q).all()]

    def has(self, namespace: str, context_id: str, version: int, model_key: str) -> bool:
        """Whether a prefix state of this context version is stored for this model."""
        q = (
            select(KVBlobRow.prefix_hash)
            .where(
                KVBlobRow.namespace == namespace,
                KVBlobRow.context_id == context_id,
                KVBlobRow.version == version,
                KVBlobRow.model_key == model_key,
            )
            .limit(1)
        )
        with self.store.session() as s:
            return s.scalars(q).first() is not None

    def total_bytes(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(KVBlobRow.size_bytes), 0))) or 0)

    def lengths(self, namespace: str, model_key: str, below: int) -> list[int]:
        """The distinct prefix lengths (> 0, < ``below``) stored for a namespace and model,
        ascending: the candidates a prompt's prefixes are hashed at."""
        q = (
            select(KVBlobRow.n_tokens)
            .where(
                KVBlobRow.model_key == model_key,
                KVBlobRow.namespace == namespace,
                KVBlobRow.n_tokens < below,
                KVBlobRow.n_tokens > 0,
            )
            .distinct()
        )
        with self.store.session() as s:
            return sorted(s.scalars(q).all())

    def longest(self, namespace: str, model_key: str, hashes: Sequence[str]) -> KVBlob | None:
        """The longest stored prefix among ``hashes``; bumps its LRU clock (at most once
        per :data:`TOUCH_EVERY`, so a hot blob does not cost a write per query)."""
        with self.store.session() as s:
            row = s.scalars(
                select(KVBlobRow)
                .where(
                    KVBlobRow.model_key == model_key,
                    KVBlobRow.namespace == namespace,
                    KVBlobRow.prefix_hash.in_(list(hashes)),
                )
                .order_by(KVBlobRow.n_tokens.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            blob = _blob(row)
            now = datetime.now(UTC)
            if row.last_used_at is None or _aware(row.last_used_at) < now - TOUCH_EVERY:
                s.execute(update(KVBlobRow).where(_key(blob)).values(last_used_at=now))
            return blob
