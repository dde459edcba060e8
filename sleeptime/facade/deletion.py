"""The facade's deletion: a context or a whole namespace, from SQL, the KV blobs and
the hot cache."""

from __future__ import annotations

import asyncio

from sleeptime.errors import ContextNotFound, QueueUnavailable
from sleeptime.facade.base import FacadeBase
from sleeptime.llm.kv.blobs import KVStore
from sleeptime.models import DeleteCounts
from sleeptime.validation import check_ids


class DeletionMixin(FacadeBase):
    """:class:`~sleeptime.SleepTime`'s deletion (see :mod:`sleeptime.facade.deletion`)."""

    def delete(self, namespace: str, context_id: str) -> DeleteCounts:
        """Delete a context: every version's text, its artifacts, KV-prefill blobs and
        hot-cache entries. The ledger keeps its token counts and the query log its rows
        with the question and answer text blanked. Raises :class:`ContextNotFound` when
        nothing is stored under that id; idempotent otherwise."""
        check_ids(namespace, context_id)
        if not self.store.versions(namespace, context_id):
            raise ContextNotFound(namespace, context_id)
        return self._delete(namespace, context_id)

    def delete_namespace(self, namespace: str) -> DeleteCounts:
        """Delete every context of a namespace (as :meth:`delete`); other namespaces are
        never touched. A namespace with nothing stored deletes nothing."""
        check_ids(namespace, "-")
        return self._delete(namespace, None)

    def _delete(self, namespace: str, context_id: str | None) -> DeleteCounts:
        last = self.store.last_versions(namespace, context_id)
        counts = self.store.delete_context(namespace, context_id)
        blobs = KVStore.from_settings(self.store, self.settings).drop_context(namespace, context_id)
        keys = 0
        if self.cache is not None:
            try:
                keys = self.cache.forget(namespace, last, context_id)
            except Exception as exc:  # the SQL rows are gone; the cache must go too
                raise QueueUnavailable(
                    "Redis hot cache", f"{exc}; run the delete again to remove cached entries"
                ) from exc
        return counts.model_copy(update={"kv_blobs": blobs, "cache_keys": keys})

    async def adelete(self, namespace: str, context_id: str) -> DeleteCounts:
        """:meth:`delete` in a worker thread."""
        return await asyncio.to_thread(self.delete, namespace, context_id)

    async def adelete_namespace(self, namespace: str) -> DeleteCounts:
        """:meth:`delete_namespace` in a worker thread."""
        return await asyncio.to_thread(self.delete_namespace, namespace)
