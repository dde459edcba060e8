"""The passage index: write a version's passages once, search them by a question.

The search runs in the database's own full-text engine (no new service): FTS5 with
BM25 on SQLite, ``tsvector`` with ``ts_rank`` on PostgreSQL. Every search is keyed by
(namespace, context id, version) first, so one tenant's passages are never ranked,
returned or counted for another. On SQLite the FTS5 match is also bounded by the
version's rowid range (its passages are inserted in one transaction, so their ids are
consecutive): the engine then reads only that slice of each term's posting list,
however many contexts the database holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import LRUCache
from sqlalchemy import Engine, func, insert, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from sleeptime.passages import Span, query_terms
from sleeptime.store.schema import PassageRow


class Database(Protocol):
    """What a repository needs of the store: its engine, a write transaction and the
    online path's one-statement read."""

    engine: Engine

    def session(self) -> AbstractContextManager[Session]: ...

    def read(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]: ...


_SQLITE_SEARCH = sql_text(
    "SELECT p.idx, p.start_char, p.end_char, p.n_tokens, p.text "
    "FROM st_passages_fts JOIN st_passages AS p ON p.id = st_passages_fts.rowid "
    "WHERE st_passages_fts MATCH :q AND st_passages_fts.rowid BETWEEN :lo AND :hi "
    "AND p.namespace = :ns AND p.context_id = :cid AND p.version = :v "
    "ORDER BY st_passages_fts.rank LIMIT :n"
)
_PG_SEARCH = sql_text(
    "SELECT idx, start_char, end_char, n_tokens, text FROM st_passages, "
    "to_tsquery('english', :q) AS q "
    "WHERE namespace = :ns AND context_id = :cid AND version = :v AND tsv @@ q "
    "ORDER BY ts_rank(tsv, q) DESC, idx LIMIT :n"
)


@dataclass(frozen=True)
class Found:
    """A passage a search returned, best first."""

    idx: int
    start: int
    end: int
    n_tokens: int
    text: str


class PassageRepo:
    """Passages of context versions, over the store's engines."""

    def __init__(self, db: Database, cache_size: int = 256) -> None:
        self._db = db
        self._dialect = db.engine.dialect.name
        # a version's passages never change: their embeddings are read once per process
        self._vectors: LRUCache[tuple[str, str, int], list[tuple[Found, list[float]]]] = LRUCache(
            maxsize=cache_size
        )
        self._lock = threading.Lock()

    def put(
        self,
        namespace: str,
        context_id: str,
        version: int,
        text: str,
        spans: Sequence[Span],
        vectors: Sequence[list[float]] | None = None,
    ) -> tuple[int, int] | None:
        """Index a version's passages once (a second call keeps the first set) and
        return their (first, last) row ids, or None for no passages. ``vectors``: one
        embedding per span, for semantic retrieval beside the full-text engine."""
        where = (
            PassageRow.namespace == namespace,
            PassageRow.context_id == context_id,
            PassageRow.version == version,
        )
        with self._db.session() as s:
            have = s.execute(select(func.min(PassageRow.id), func.max(PassageRow.id)).where(*where))
            lo, hi = have.one()
            if lo is None and spans:
                rows = [
                    {
                        "namespace": namespace,
                        "context_id": context_id,
                        "version": version,
                        "idx": sp.idx,
                        "start_char": sp.start,
                        "end_char": sp.end,
                        "n_tokens": sp.n_tokens,
                        "text": text[sp.start : sp.end],
                        "embedding": list(vectors[i]) if vectors is not None else None,
                    }
                    for i, sp in enumerate(spans)
                ]
                s.execute(insert(PassageRow), rows)
                lo, hi = s.execute(
                    select(func.min(PassageRow.id), func.max(PassageRow.id)).where(*where)
                ).one()
        return (int(lo), int(hi)) if lo is not None else None

    def search(
        self,
        namespace: str,
        context_id: str,
        version: int,
        question: str,
        *,
        limit: int,
        ids: tuple[int, int] | None = None,
    ) -> list[Found]:
        """The passages of one version that best match ``question``, best first (at
        most ``limit``). ``ids``: the version's row-id range, from its index manifest."""
        terms = query_terms(question)
        if not terms or limit < 1:
            return []
        params: dict[str, Any] = {"ns": namespace, "cid": context_id, "v": version, "n": limit}
        if self._dialect == "sqlite":
            stmt = _SQLITE_SEARCH
            params["q"] = " OR ".join(f'"{t}"' for t in terms)
            params["lo"], params["hi"] = ids if ids is not None else (0, 2**62)
        elif self._dialect == "postgresql":
            stmt = _PG_SEARCH
            params["q"] = " | ".join(terms)
        else:  # no full-text engine known: no passages (the notes still answer)
            return []
        rows = self._db.read(stmt, params)
        return [Found(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]

    def all(self, namespace: str, context_id: str, version: int) -> list[Found]:
        """Every passage of a version, in text order."""
        stmt = (
            select(
                PassageRow.idx,
                PassageRow.start_char,
                PassageRow.end_char,
                PassageRow.n_tokens,
                PassageRow.text,
            )
            .where(
                PassageRow.namespace == namespace,
                PassageRow.context_id == context_id,
                PassageRow.version == version,
            )
            .order_by(PassageRow.idx)
        )
        rows = self._db.read(stmt)
        return [Found(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]

    def embedded(
        self, namespace: str, context_id: str, version: int
    ) -> list[tuple[Found, list[float]]]:
        """Every passage of a version that has an embedding, with it (cached)."""
        key = (namespace, context_id, version)
        with self._lock:
            hit = self._vectors.get(key)
        if hit is not None:
            return hit
        stmt = (
            select(
                PassageRow.idx,
                PassageRow.start_char,
                PassageRow.end_char,
                PassageRow.n_tokens,
                PassageRow.text,
                PassageRow.embedding,
            )
            .where(
                PassageRow.namespace == namespace,
                PassageRow.context_id == context_id,
                PassageRow.version == version,
                PassageRow.embedding.is_not(None),
            )
            .order_by(PassageRow.idx)
        )
        rows = self._db.read(stmt)
        out = [
            (Found(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])), list(r[5]))
            for r in rows
            if r[5]
        ]
        with self._lock:
            self._vectors[key] = out
        return out

    def forget(self, drop: Callable[[tuple[str, str, int]], bool]) -> None:
        """Drop the cached embeddings of deleted or pruned versions."""
        with self._lock:
            for key in [k for k in self._vectors if drop(k)]:
                del self._vectors[key]
