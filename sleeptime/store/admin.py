"""What operators see and hold: the dashboard's overview of every context and the
HTTP API's keys (only a key's hash is stored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from sleeptime.store.db import Database
from sleeptime.store.kinds import Kind
from sleeptime.store.ledger import SAVED_SUM
from sleeptime.store.retention import rowcount
from sleeptime.store.schema import ApiKeyRow, ArtifactRow, ContextRow, LedgerRow, QueryRow

_FIND_API_KEY = select(ApiKeyRow.namespace, ApiKeyRow.admin).where(
    ApiKeyRow.key_hash == bindparam("h")
)


class AdminRepo:
    """The overview and API keys; ``flush`` writes the buffered query log first, so
    the overview counts every answer given so far."""

    def __init__(self, db: Database, *, flush: Callable[[float], bool]) -> None:
        self._db = db
        self._flush = flush

    # -- the dashboard's overview -----------------------------------------------------

    def overview(self, limit: int = 200) -> list[dict[str, Any]]:
        """One row per context (newest first, at most ``limit``) for the operator
        dashboard: versions stored, whether the current one has complete artifacts, and
        its ledger (sleep/test tokens, queries by source)."""
        self._flush(5.0)
        latest = (
            select(
                ContextRow.namespace,
                ContextRow.context_id,
                func.max(ContextRow.version),
                func.count(),
                func.max(ContextRow.created_at),
            )
            .group_by(ContextRow.namespace, ContextRow.context_id)
            .order_by(func.max(ContextRow.created_at).desc())
            .limit(limit)
        )
        with self._db.session() as s:
            rows = s.execute(latest).all()
            namespaces = sorted({ns for ns, *_ in rows})
            done = _complete(s, namespaces)
            tokens = _tokens(s, namespaces)
            sources, saved = _answers(s, namespaces)
        out = []
        for ns, cid, version, n_versions, created in rows:
            by_source = sources.get((ns, cid), {})
            out.append(
                {
                    "namespace": ns,
                    "context_id": cid,
                    "version": int(version),
                    "versions": int(n_versions),
                    "complete": (ns, cid, int(version)) in done,
                    "updated_at": created,
                    "sleep_tokens": tokens.get((ns, cid), {}).get("sleep", 0),
                    "test_tokens": tokens.get((ns, cid), {}).get("test", 0),
                    "queries": sum(by_source.values()),
                    "zero_token_answers": by_source.get("predicted", 0),
                    "saved_tokens": saved.get((ns, cid), 0),
                }
            )
        return out

    # -- API keys ---------------------------------------------------------------------

    def add_api_key(self, key_hash: str, key_id: str, namespace: str, *, admin: bool) -> None:
        with self._db.session() as s:
            s.add(ApiKeyRow(key_hash=key_hash, key_id=key_id, namespace=namespace, admin=admin))

    def find_api_key(self, key_hash: str) -> tuple[str, bool] | None:
        """(namespace, admin) of the key with this hash, or None. It runs on every HTTP
        request, so it takes the online path's fast read, never an ORM session; a
        revoked key is gone from the next request on."""
        row = self._db.read_row(_FIND_API_KEY, {"h": key_hash})
        return (str(row[0]), bool(row[1])) if row is not None else None

    def api_keys(self) -> list[tuple[str, str, bool]]:
        """(key id, namespace, admin) of every key; never the key or its hash."""
        with self._db.session() as s:
            rows = s.execute(
                select(ApiKeyRow.key_id, ApiKeyRow.namespace, ApiKeyRow.admin).order_by(
                    ApiKeyRow.created_at
                )
            ).all()
        return [(k, ns, bool(a)) for k, ns, a in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        with self._db.session() as s:
            return bool(rowcount(s.execute(delete(ApiKeyRow).where(ApiKeyRow.key_id == key_id))))


def _complete(s: Session, namespaces: list[str]) -> set[tuple[str, str, int]]:
    """(namespace, context id, version) of every finished version in ``namespaces``."""
    return {
        (ns, cid, int(v))
        for ns, cid, v in s.execute(
            select(ArtifactRow.namespace, ArtifactRow.context_id, ArtifactRow.version).where(
                ArtifactRow.kind == Kind.MANIFEST, ArtifactRow.namespace.in_(namespaces)
            )
        ).all()
    }


def _tokens(s: Session, namespaces: list[str]) -> dict[tuple[str, str], dict[str, int]]:
    """(namespace, context id) -> phase -> tokens booked in the ledger."""
    tokens: dict[tuple[str, str], dict[str, int]] = {}
    for ns, cid, phase, n in s.execute(
        select(
            LedgerRow.namespace,
            LedgerRow.context_id,
            LedgerRow.phase,
            func.sum(LedgerRow.prompt_tokens + LedgerRow.completion_tokens),
        )
        .where(LedgerRow.namespace.in_(namespaces))
        .group_by(LedgerRow.namespace, LedgerRow.context_id, LedgerRow.phase)
    ).all():
        tokens.setdefault((ns, cid), {})[phase] = int(n or 0)
    return tokens


def _answers(
    s: Session, namespaces: list[str]
) -> tuple[dict[tuple[str, str], dict[str, int]], dict[tuple[str, str], int]]:
    """(namespace, context id) -> answers by source, and -> prompt tokens they saved."""
    sources: dict[tuple[str, str], dict[str, int]] = {}
    saved: dict[tuple[str, str], int] = {}
    for ns, cid, src, n, sv in s.execute(
        select(
            QueryRow.namespace,
            QueryRow.context_id,
            QueryRow.source,
            func.count(),
            SAVED_SUM,
        )
        .where(QueryRow.namespace.in_(namespaces))
        .group_by(QueryRow.namespace, QueryRow.context_id, QueryRow.source)
    ).all():
        sources.setdefault((ns, cid), {})[src] = int(n)
        saved[(ns, cid)] = saved.get((ns, cid), 0) + int(sv)
    return sources, saved
