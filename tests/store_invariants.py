"""Checks of what the SQL store holds, shared by the validation and property tests."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict

from sqlalchemy import func, select

from sleeptime.store.schema import ArtifactRow, Base, ContextRow, LedgerRow, QueryRow
from sleeptime.store.sql import SQLStore


def row_counts(store: SQLStore) -> dict[str, int]:
    """Rows per table: equal before and after means nothing was written. The query
    log is written in batches off the answer's path: flush it first (its barrier)."""
    assert store.flush(timeout=30)
    with store.session() as s:
        return {
            name: int(s.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in Base.metadata.tables.items()
        }


def check_invariants(store: SQLStore) -> dict[tuple[str, str], list[str]]:
    """Assert the store's invariants; returns {(namespace, id): [texts by version]}.

    - a context's versions are 1..n without gaps, and consecutive versions differ;
    - every content hash is the SHA-256 of its text;
    - artifacts, ledger and query rows belong to a stored version of a context of
      their own namespace (no rows of unknown versions, none across namespaces).
    """
    assert store.flush(timeout=30)  # the query log's batched rows count too
    with store.session() as s:
        contexts = s.execute(
            select(
                ContextRow.namespace,
                ContextRow.context_id,
                ContextRow.version,
                ContextRow.content_hash,
                ContextRow.text,
            ).order_by(ContextRow.namespace, ContextRow.context_id, ContextRow.version)
        ).all()
        dependants = [
            (table.__tablename__, row)
            for table in (ArtifactRow, LedgerRow, QueryRow)
            for row in s.execute(select(table.namespace, table.context_id, table.version)).all()
        ]
    texts: dict[tuple[str, str], list[str]] = defaultdict(list)
    hashes: dict[tuple[str, str], list[str]] = defaultdict(list)
    versions: set[tuple[str, str, int]] = set()
    for ns, cid, version, digest, text in contexts:
        key = (ns, cid)
        texts[key].append(text)
        hashes[key].append(digest)
        assert version == len(texts[key]), f"{key}: version {version} after {len(texts[key]) - 1}"
        assert digest == hashlib.sha256(text.encode("utf-8")).hexdigest(), f"{key} v{version}"
        versions.add((ns, cid, version))
    for key, digests in hashes.items():
        assert all(a != b for a, b in itertools.pairwise(digests)), (
            f"{key}: a version repeats the text of the one before"
        )
    for table, (ns, cid, version) in dependants:
        assert (ns, cid, version) in versions, f"{table} row for unknown {ns}/{cid} v{version}"
    return dict(texts)
