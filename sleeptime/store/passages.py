"""The passage index: write a version's passages once, search them by a question.

The search runs in the database's own full-text engine (no new service): FTS5 on
SQLite, ``tsvector`` with ``ts_rank`` on PostgreSQL. Every search is keyed by
(namespace, context id, version) first, so one tenant's passages are never ranked,
returned or counted for another.

On SQLite each query term is matched within the version's rowid range (its passages
are inserted in one transaction, so their ids are consecutive): FTS5 then reads only
that slice of each term's posting list, however many contexts the database holds.
Passages are ranked by BM25 over the version's own passages, not by FTS5's
``bm25()``/``rank``: those count each term's documents over the whole table on every
query (every posting list read in full: at 100,000 contexts / 500,000 passages the
lookup took 58 ms that way, about 1 ms this way; ``scripts/ask_scale.py``), and would
rank one tenant's passages by every tenant's statistics. Two steps: SQL ranks the
version's passages by the summed weights ``ln(1 + (N - df + 0.5) / (df + 0.5))`` of
the terms each contains and returns the best ``limit`` with the terms they matched
(``pick_passages`` asks for about twice what its budget holds); those are re-ranked
here by BM25 proper (term frequency saturated, length normalised; FTS5's k1 = 1.2,
b = 0.75), a term's frequency being the occurrences of its word start in the
passage's text (FTS5 found it at least once).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from cachetools import LRUCache
from sqlalchemy import Engine, TextClause, func, insert, select
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


@cache
def _sqlite_has_ln() -> bool:
    """Whether this SQLite library has the math functions (a compile-time option)."""
    try:
        sqlite3.connect(":memory:").execute("SELECT ln(2.0)").close()
    except sqlite3.Error:
        return False
    return True


@cache
def _sqlite_search(n_terms: int, ln: bool) -> TextClause:
    """The SQLite search's first step, for ``n_terms`` terms (``:t0``...): each term
    matched once, within the version's rowid range ``:lo``..``:hi`` (``:size``
    passages), and weighted by its document frequency among those hits; the ``:n``
    passages with the largest sum of their terms' weights (ties in text order), joined
    to their rows (in no order: the second step sorts) and still keyed by (namespace,
    context id, version), each with the bit mask of the terms it matched and, on every
    row, each term's document frequency (``t:df,...``). Without ``ln`` (an SQLite built
    without the math functions) the product of ``1 + (N - df + 0.5) / (df + 0.5)`` over
    a passage's terms picks the same passages.

    One FTS5 cursor per term is the cost that matters (a seek into each term's posting
    list, ~0.1 ms for a common term in a large index), so the hits are collected once
    and counted from there (``hits`` and ``df`` are named more than once, so SQLite
    3.35+ computes each once)."""
    hits = " UNION ALL ".join(
        f"SELECT {i} AS t, rowid AS id FROM st_passages_fts "
        f"WHERE st_passages_fts MATCH :t{i} AND rowid BETWEEN :lo AND :hi"
        for i in range(n_terms)
    )
    odds = "1.0 + (:size - n + 0.5) / (n + 0.5)"

    def weight(i: int) -> str:
        # uncorrelated: evaluated once per search
        return f"(SELECT {f'ln({odds})' if ln else odds} FROM df WHERE t = {i})"

    if ln:
        cases = " ".join(f"WHEN {i} THEN {weight(i)}" for i in range(n_terms))
        score = f"sum(CASE t {cases} END)"
    else:
        score = " * ".join(
            f"(CASE WHEN max(t = {i}) THEN {weight(i)} ELSE 1.0 END)" for i in range(n_terms)
        )
    return sql_text(
        f"WITH hits(t, id) AS ({hits}), df(t, n) AS (SELECT t, count(*) FROM hits GROUP BY t) "
        "SELECT p.idx, p.start_char, p.end_char, p.n_tokens, p.text, best.m, "
        "(SELECT group_concat(t || ':' || n) FROM df) "
        f"FROM (SELECT id, round({score}, 9) AS s, sum(1 << t) AS m FROM hits GROUP BY id "
        "ORDER BY s DESC, id LIMIT :n) AS best "
        "JOIN st_passages AS p ON p.id = best.id "
        "WHERE p.namespace = :ns AND p.context_id = :cid AND p.version = :v"
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


#: BM25's parameters (FTS5's defaults).
_K1, _B = 1.2, 0.75
_SUFFIXES = ("ies", "es", "s", "ed", "ing", "ly")


def _word_start(term: str) -> str:
    """A space and ``term`` without a common suffix (three letters kept at least): how
    its inflected forms start as words (" repair" for *repairs*)."""
    for suffix in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            return " " + term[: -len(suffix)]
    return " " + term


def _bm25(rows: Sequence[Any], terms: Sequence[str], size: int, limit: int) -> list[Found]:
    """The second step: ``rows`` (the first step's) re-ranked by BM25 over the version
    (``size`` passages; the rows' mean length stands for the version's), best first,
    at most ``limit``; ties in text order."""
    if not rows or not rows[0][6]:
        return []
    df = {int(t): int(n) for t, n in (part.split(":") for part in str(rows[0][6]).split(","))}
    idf = [
        math.log(1.0 + (size - df.get(i, 0) + 0.5) / (df.get(i, 0) + 0.5))
        for i in range(len(terms))
    ]
    starts = [_word_start(t) for t in terms]
    hits = [Found(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]
    avg = max(1.0, sum(f.n_tokens for f in hits) / len(hits))
    ranked = []
    for f, r in zip(hits, rows, strict=True):
        words = " " + f.text.lower().replace("\n", " ")  # a word starts after a space
        norm = _K1 * (1.0 - _B + _B * f.n_tokens / avg)
        score, mask, i = 0.0, int(r[5]), 0
        while mask:
            if mask & 1:
                tf = max(1, words.count(starts[i]))
                score += idf[i] * tf * (_K1 + 1.0) / (tf + norm)
            mask >>= 1
            i += 1
        ranked.append((-round(score, 9), f.idx, f))
    ranked.sort(key=lambda x: (x[0], x[1]))
    return [f for _, _, f in ranked[:limit]]


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
        of_version = (
            PassageRow.namespace == namespace,
            PassageRow.context_id == context_id,
            PassageRow.version == version,
        )
        with self._db.session() as s:
            have = s.execute(
                select(func.min(PassageRow.id), func.max(PassageRow.id)).where(*of_version)
            )
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
                    select(func.min(PassageRow.id), func.max(PassageRow.id)).where(*of_version)
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
            if ids is None:  # an index manifest without the range: read it (one lookup)
                ids = self._range(namespace, context_id, version)
                if ids is None:
                    return []
            params.update({f"t{i}": f'"{t}"' for i, t in enumerate(terms)})
            params["lo"], params["hi"] = ids
            params["size"] = size = ids[1] - ids[0] + 1
            rows = self._db.read(_sqlite_search(len(terms), _sqlite_has_ln()), params)
            return _bm25(rows, terms, size, limit)
        if self._dialect == "postgresql":
            stmt = _PG_SEARCH
            params["q"] = " | ".join(terms)
        else:  # no full-text engine known: no passages (the notes still answer)
            return []
        rows = self._db.read(stmt, params)
        return [Found(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]

    def _range(self, namespace: str, context_id: str, version: int) -> tuple[int, int] | None:
        """The (first, last) row ids of a version's passages, or None for none."""
        stmt = select(func.min(PassageRow.id), func.max(PassageRow.id)).where(
            PassageRow.namespace == namespace,
            PassageRow.context_id == context_id,
            PassageRow.version == version,
        )
        rows = self._db.read(stmt)
        if not rows or rows[0][0] is None:
            return None
        return int(rows[0][0]), int(rows[0][1])

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
