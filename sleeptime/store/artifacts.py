"""Artifact rows: what a sleep-time run wrote for one context version.

Artifacts are immutable rows keyed by (namespace, context id, version, kind, key):
written once (a second write of a key is a no-op, so every graph step is
idempotent), removed only with their whole version. A complete set never changes, so
it is cached in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache
from sqlalchemy import bindparam, func, select

from sleeptime.models import Artifacts, PassageIndex, PredictedQA, Usage
from sleeptime.store.db import Database
from sleeptime.store.kinds import Kind
from sleeptime.store.schema import ArtifactRow

#: A cache key: (namespace, context id, version).
VersionKey = tuple[str, str, int]

#: One artifact's payload by its key: built once (a read, not a write transaction).
_ONE = select(ArtifactRow.payload).where(
    ArtifactRow.namespace == bindparam("ns"),
    ArtifactRow.context_id == bindparam("cid"),
    ArtifactRow.version == bindparam("v"),
    ArtifactRow.kind == bindparam("kind"),
    ArtifactRow.key == bindparam("key"),
)


class ArtifactRepo:
    """The artifacts of context versions, over the store's database."""

    def __init__(self, db: Database, cache_size: int = 1024) -> None:
        self._db = db
        # immutable rows keyed by version: safe to cache in-process, across processes
        self._complete: LRUCache[VersionKey, Artifacts] = LRUCache(maxsize=max(1, cache_size))
        # LRUCache reorders itself on every read: readers take the lock too
        self._lock = threading.Lock()

    def put(
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
            "kind": str(kind),  # a Kind's value, never its name
            "key": key,
            "payload": payload,
            "model": model,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }
        with self._db.session() as s:
            return self._db.insert_ignore(s, row, ArtifactRow.__table__)

    def get(
        self, namespace: str, context_id: str, version: int, kind: str, key: str
    ) -> dict[str, Any] | None:
        params = {"ns": namespace, "cid": context_id, "v": version, "kind": str(kind), "key": key}
        rows = self._db.read(_ONE, params)
        return dict(rows[0][0]) if rows else None

    def load(self, namespace: str, context_id: str, version: int) -> Artifacts:
        """Everything servable for one version. Complete sets are cached in-process
        (they are immutable), so repeated queries cost one version lookup."""
        ck = (namespace, context_id, version)
        with self._lock:
            hit = self._complete.get(ck)
        if hit is not None:
            return hit
        stmt = select(ArtifactRow.kind, ArtifactRow.key, ArtifactRow.payload).where(
            ArtifactRow.namespace == namespace,
            ArtifactRow.context_id == context_id,
            ArtifactRow.version == version,
        )
        arts = artifacts_from_rows(namespace, context_id, version, self._db.read(stmt))
        if arts.complete:
            with self._lock:
                self._complete[ck] = arts
        return arts

    def latest_complete_version(self, namespace: str, context_id: str, before: int) -> int | None:
        """The newest version older than ``before`` whose sleep-time run finished."""
        stmt = select(func.max(ArtifactRow.version)).where(
            ArtifactRow.namespace == namespace,
            ArtifactRow.context_id == context_id,
            ArtifactRow.kind == Kind.MANIFEST,
            ArtifactRow.version < before,
        )
        rows = self._db.read(stmt)
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
                ArtifactRow.kind == Kind.LEARNED,
                ArtifactRow.key == "0",
                ArtifactRow.version < before,
            )
            .order_by(ArtifactRow.version.desc())
            .limit(1)
        )
        rows = self._db.read(stmt)
        return (int(rows[0][0]), str(rows[0][1]["text"])) if rows else None

    def forget(self, drop: Callable[[VersionKey], bool]) -> None:
        """Drop the cached sets of deleted or pruned versions."""
        with self._lock:
            for key in [k for k in self._complete if drop(k)]:
                del self._complete[key]


def artifacts_from_rows(namespace: str, context_id: str, version: int, rows: Any) -> Artifacts:
    """Assemble an :class:`Artifacts` snapshot from (kind, key, payload) rows."""
    learned: str | None = None
    qas: list[tuple[int, PredictedQA]] = []
    complete = False
    index: PassageIndex | None = None
    for kind, key, payload in rows:
        if kind == Kind.LEARNED:
            learned = payload["text"]
        elif kind == Kind.INDEX:
            index = PassageIndex.model_validate(payload)
        elif kind == Kind.QA:
            qas.append((int(key), PredictedQA(**payload)))
        elif kind == Kind.MANIFEST:
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
