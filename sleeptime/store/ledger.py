"""The token ledger and the query log: what every model call and every answer cost.

Ledger rows book each model call (sleep or test phase) on a context version; query-log
rows record each answer (its source, tokens, the cold prompt it saved). Both are
written on the online path, so each takes one autocommit round trip, or is batched
off the path (:mod:`~sleeptime.store.querylog`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select

from sleeptime.models import Ledger, Phase, Usage
from sleeptime.store.db import Database
from sleeptime.store.querylog import QueryLog
from sleeptime.store.schema import LedgerRow, QueryRow

_INSERT_QUERY = insert(QueryRow)
_INSERT_LEDGER = insert(LedgerRow)

#: Prompt tokens answers did not send against a cold answer (the query log's rows).
SAVED_SUM = func.coalesce(
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


class LedgerRepo:
    """Ledger rows and the buffered query log, over the store's database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queries = QueryLog(self._write_queries, inline=db.in_memory)

    def close(self) -> None:
        """Write the buffered query-log rows and stop its writer thread."""
        self._queries.close()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write buffered query-log rows now (a barrier for readers of the log)."""
        return self._queries.flush(timeout)

    # -- writes -----------------------------------------------------------------------

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
        db = self._db
        with db.guard(), db.write_turn, db.online_engine.connect() as conn:
            conn.execute(_INSERT_LEDGER, [row])
            if db.online_engine is db.engine:
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
        db = self._db
        with db.guard(), db.write_turn, db.engine.begin() as conn:
            if db.dialect == "postgresql":
                # The query log is telemetry: do not wait for the WAL flush. A *server*
                # crash may drop the last fraction of a second of log rows; it never
                # corrupts them. Artifact writes wait for it; ledger rows do not
                # either (see record_call).
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            conn.execute(_INSERT_QUERY, rows)

    # -- sums -------------------------------------------------------------------------

    def tokens_by_phase(self) -> dict[str, int]:
        """Tokens (prompt + completion) in the whole ledger by phase, for metrics."""
        stmt = select(
            LedgerRow.phase,
            func.coalesce(func.sum(LedgerRow.prompt_tokens + LedgerRow.completion_tokens), 0),
        ).group_by(LedgerRow.phase)
        with self._db.session() as s:
            return {phase: int(n) for phase, n in s.execute(stmt).all()}

    def tokens_since(self, namespace: str, since: datetime, phase: Phase = "sleep") -> int:
        """Tokens (prompt + completion) of ``phase`` booked in ``namespace`` since
        ``since`` (a timezone-aware datetime): the sleep-time quota's count
        (:class:`sleeptime.quotas.Quotas`). One indexed read, no write."""
        stmt = select(
            func.coalesce(func.sum(LedgerRow.prompt_tokens + LedgerRow.completion_tokens), 0)
        ).where(
            LedgerRow.namespace == namespace,
            LedgerRow.phase == phase,
            LedgerRow.created_at >= since,
        )
        with self._db.session() as s:
            return int(s.execute(stmt).scalar_one())

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
            select(QueryRow.source, func.count(), SAVED_SUM)
            .where(QueryRow.namespace == namespace, QueryRow.context_id == context_id)
            .group_by(QueryRow.source)
        )
        by_phase: dict[str, Usage] = {}
        by_model: dict[str, dict[str, Usage]] = {}
        with self._db.session() as s:
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
