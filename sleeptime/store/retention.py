"""Deletion and retention: the only ways context versions and their artifacts leave
the store, whole versions at a time.

``SleepTime.delete`` / ``delete_namespace`` remove contexts; ``SLEEPTIME_KEEP_VERSIONS``
prunes old versions when a new one is stored. A tombstone keeps a deleted context's
last version number, so a version key is never reused for other text (the caches of
every process are keyed by it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from sleeptime.models import DeleteCounts
from sleeptime.store.db import Database
from sleeptime.store.schema import (
    ArtifactRow,
    ContextRow,
    NamespaceRow,
    PassageRow,
    QueryRow,
    TombstoneRow,
)

#: Accepts the (namespace, context id, version) keys of removed versions.
Drop = Callable[[tuple[str, str, int]], bool]


def context_key(namespace: str, context_id: str) -> str:
    """The advisory-lock key of one context's writers (ingest, delete)."""
    return f"{namespace}\x1f{context_id}"


class Retention:
    """Deletes versions; ``forget`` drops them from the in-process caches and ``flush``
    writes the buffered query log (whose rows a deletion must redact too)."""

    def __init__(
        self,
        db: Database,
        *,
        forget: Callable[[Drop], None],
        flush: Callable[[float], bool],
    ) -> None:
        self._db = db
        self._forget = forget
        self._flush = flush

    def prune(self, s: Session, namespace: str, context_id: str, upto: int) -> None:
        """Delete versions <= ``upto`` of one context with their artifacts, in the
        caller's transaction (the one storing the new version)."""
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

    def delete_context(self, namespace: str, context_id: str | None = None) -> DeleteCounts:
        """Delete a context (every version, its artifacts) or, with ``context_id`` None,
        every context of a namespace. Ledger rows (token counts, no text) are kept; the
        query log keeps its rows with the question and answer text blanked, so counts
        and savings stay right. A tombstone keeps each context's last version number."""
        self._flush(30.0)  # buffered query-log rows must be blanked too

        def scope(table: Any) -> list[Any]:
            """The rows being deleted: the namespace's, or one context's."""
            cond = [table.namespace == namespace]
            if context_id is not None:
                cond.append(table.context_id == context_id)
            return cond

        with self._db.session() as s:
            if context_id is not None:  # an ingest of this context waits, or goes first
                self._db.take_turns(s, context_key(namespace, context_id))
            last = s.execute(
                select(ContextRow.context_id, func.max(ContextRow.version))
                .where(*scope(ContextRow))
                .group_by(ContextRow.context_id)
            ).all()
            for cid, version in last:
                tomb = s.get(TombstoneRow, (namespace, cid))
                if tomb is None:
                    s.add(TombstoneRow(namespace=namespace, context_id=cid, version=int(version)))
                else:
                    tomb.version = max(tomb.version, int(version))
            artifacts = rowcount(s.execute(delete(ArtifactRow).where(*scope(ArtifactRow))))
            s.execute(delete(PassageRow).where(*scope(PassageRow)))
            versions = rowcount(s.execute(delete(ContextRow).where(*scope(ContextRow))))
            queries = rowcount(
                s.execute(
                    update(QueryRow)
                    .where(*scope(QueryRow), QueryRow.question != "")
                    .values(question="", answer="")
                )
            )
            if context_id is None:
                s.execute(delete(NamespaceRow).where(NamespaceRow.name == namespace))
        self._forget(lambda k: k[0] == namespace and (context_id is None or k[1] == context_id))
        return DeleteCounts(
            contexts=len(last),
            versions=versions,
            artifacts=artifacts,
            queries_redacted=queries,
        )


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched."""
    return int(getattr(result, "rowcount", 0) or 0)
