"""What the sleep policy reads of the query log, the ledger and the contexts.

The ``budgeted`` policy (:mod:`sleeptime.policy`) weighs a version's expected queries
against its sleep cost; the figures it needs come from here, as plain numbers, so the
policy holds no SQL. Every read is keyed by namespace first, and runs in a worker
(never on the online path).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select

from sleeptime.store.db import Database
from sleeptime.store.schema import ContextRow, LedgerRow, QueryRow

#: Query-log rows one ``queried_versions`` call reads at most.
QUERIED_BATCH = 5000


def epoch(value: datetime) -> float:
    """A stored timestamp (naive on SQLite: UTC) as seconds since the epoch."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class DemandRepo:
    """The policy's reads, over the store's database. ``flush`` writes the buffered
    query-log rows first, so the reads see the queries answered so far."""

    def __init__(self, db: Database, flush: Callable[[], object]) -> None:
        self._db = db
        self._flush = flush

    def query_times(self, namespace: str, context_id: str, since: float) -> list[tuple[int, float]]:
        """(version, time) of each query on a context since ``since``."""
        self._flush()
        rows = self._db.read(
            select(QueryRow.version, QueryRow.created_at).where(
                QueryRow.namespace == namespace,
                QueryRow.context_id == context_id,
                QueryRow.created_at >= datetime.fromtimestamp(since, UTC),
            )
        )
        return [(int(v), epoch(at)) for v, at in rows]

    def first_seen(self, namespace: str, since: float) -> dict[str, float]:
        """Each context of the namespace first stored since ``since``, with when."""
        rows = self._db.read(
            select(ContextRow.context_id, func.min(ContextRow.created_at))
            .where(ContextRow.namespace == namespace)
            .group_by(ContextRow.context_id)
            .having(func.min(ContextRow.created_at) >= datetime.fromtimestamp(since, UTC))
        )
        return {cid: epoch(first) for cid, first in rows}

    def queries_per_context(self, namespace: str, since: float) -> dict[str, int]:
        """Queries on each context of the namespace since ``since``."""
        rows = self._db.read(
            select(QueryRow.context_id, func.count())
            .where(
                QueryRow.namespace == namespace,
                QueryRow.created_at >= datetime.fromtimestamp(since, UTC),
            )
            .group_by(QueryRow.context_id)
        )
        return {cid: int(n) for cid, n in rows}

    def mean_saving(
        self, namespace: str, since: float, weights: tuple[float, float]
    ) -> float | None:
        """Mean price-weighted tokens a non-cold answer saved against its cold prompt
        (``weights``: input, output), None without such answers."""
        w_in, w_out = weights
        rows = self._db.read(
            select(
                func.avg(
                    (QueryRow.cold_prompt_tokens - QueryRow.prompt_tokens) * w_in
                    - QueryRow.completion_tokens * w_out
                ),
                func.count(),
            ).where(
                QueryRow.namespace == namespace,
                QueryRow.created_at >= datetime.fromtimestamp(since, UTC),
                QueryRow.source != "cold",
                QueryRow.cold_prompt_tokens > 0,
            )
        )
        return float(rows[0][0]) if rows and rows[0][1] else None

    def recent_sleeps(
        self, namespace: str, since: float, weights: tuple[float, float], limit: int
    ) -> list[tuple[float, int]]:
        """(price-weighted sleep tokens, characters of its text) of the namespace's
        ``limit`` most recently slept versions since ``since``."""
        w_in, w_out = weights
        slept = self._db.read(
            select(
                LedgerRow.context_id,
                LedgerRow.version,
                func.sum(LedgerRow.prompt_tokens * w_in + LedgerRow.completion_tokens * w_out),
            )
            .where(
                LedgerRow.namespace == namespace,
                LedgerRow.phase == "sleep",
                LedgerRow.created_at >= datetime.fromtimestamp(since, UTC),
            )
            .group_by(LedgerRow.context_id, LedgerRow.version)
            .order_by(func.max(LedgerRow.id).desc())
            .limit(limit)
        )
        if not slept:
            return []
        lengths = self._db.read(
            select(ContextRow.context_id, ContextRow.version, func.length(ContextRow.text)).where(
                ContextRow.namespace == namespace,
                or_(
                    *(
                        and_(ContextRow.context_id == cid, ContextRow.version == v)
                        for cid, v, _ in slept
                    )
                ),
            )
        )
        chars = {(cid, int(v)): int(n or 0) for cid, v, n in lengths}
        return [
            (float(cost or 0), chars[(cid, int(v))])
            for cid, v, cost in slept
            if chars.get((cid, int(v)))
        ]

    def queried_versions(self, after: int) -> tuple[list[tuple[str, str, int]], int]:
        """Versions with query-log rows after row id ``after`` (at most
        :data:`QUERIED_BATCH` rows a call) and the last row id read; ``after`` -1:
        nothing, and the log's last row id."""
        self._flush()
        if after < 0:
            top = self._db.read(select(func.max(QueryRow.id)))
            return [], int(top[0][0] or 0) if top else 0
        rows = self._db.read(
            select(QueryRow.id, QueryRow.namespace, QueryRow.context_id, QueryRow.version)
            .where(QueryRow.id > after)
            .order_by(QueryRow.id)
            .limit(QUERIED_BATCH)
        )
        if not rows:
            return [], after
        seen = dict.fromkeys((ns, cid, int(v)) for _, ns, cid, v in rows)
        return list(seen), int(rows[-1][0])
