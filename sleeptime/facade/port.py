"""A :class:`~sleeptime.SleepTime` as the worker's port
(:class:`~sleeptime.worker.port.WorkerPort`): each of the worker's calls a delegation
to the client, so the worker never imports the facade."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sleeptime.models import SleepReport, SleepStep
from sleeptime.policy import SleepPolicy, SQLHistory, price_weights, queried_versions
from sleeptime.pricing import PriceSheet
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore

if TYPE_CHECKING:
    from sleeptime.cache import HotCache
    from sleeptime.queue.base import JobQueue


class Client(Protocol):
    """What the port uses of a client (:class:`~sleeptime.SleepTime` has it all)."""

    settings: Settings
    store: SQLStore
    prices: PriceSheet | None

    @property
    def cache(self) -> HotCache | None: ...

    @property
    def model_name(self) -> str: ...

    @property
    def model_label(self) -> str: ...

    def sleep(
        self,
        namespace: str,
        context_id: str,
        *,
        version: int | None = None,
        k: int | None = None,
        n_questions: int | None = None,
        on_step: Callable[[SleepStep], None] | None = None,
        answer_samples: int | None = None,
    ) -> SleepReport: ...


class FacadePort:
    """A :class:`SleepTime` as a :class:`~sleeptime.worker.port.WorkerPort`: the worker's
    calls, each a delegation to the client (so a test that patches ``client.sleep`` patches
    what the worker runs)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.settings = client.settings

    @property
    def database_url(self) -> str:
        return self._client.store.url

    @property
    def model_label(self) -> str:
        return self._client.model_label

    def sleep_version(
        self,
        namespace: str,
        context_id: str,
        version: int,
        *,
        on_step: Callable[[SleepStep], None] | None = None,
        k: int | None = None,
        n_questions: int | None = None,
        answer_samples: int | None = None,
    ) -> SleepReport:
        return self._client.sleep(
            namespace,
            context_id,
            version=version,
            on_step=on_step,
            k=k,
            n_questions=n_questions,
            answer_samples=answer_samples,
        )

    def current_version(self, namespace: str, context_id: str) -> int | None:
        return self._client.store.current_version(namespace, context_id)

    def text_chars(self, namespace: str, context_id: str, version: int) -> int:
        ctx = self._client.store.get_context(namespace, context_id, version)
        return len(ctx.text) if ctx is not None else 0

    def warm_cache(self, namespace: str, context_id: str, version: int) -> None:
        """Put the finished artifacts in the hot cache if the version is still the
        current one in SQL. They are read back from SQL (one read, cached in-process),
        not rebuilt from a report, so the cache holds every kind a reader would find
        there (the passage index included). The cache's compare-and-set refuses a
        version older than its key, and a key lost to a Redis restart without
        persistence is left for a reader to re-create from SQL (never at an old
        version)."""
        cache, store = self._client.cache, self._client.store
        if cache is None or store.current_version(namespace, context_id) != version:
            return
        arts = store.load_artifacts(namespace, context_id, version)
        if arts.complete and cache.put(arts, create=False):
            cache.confirm(namespace, context_id, version)

    def missing_versions(self) -> list[tuple[str, str, int]]:
        return self._client.store.missing_versions()

    def relay(self, queue: JobQueue) -> int:
        from sleeptime.background import relay_outbox

        return relay_outbox(self._client.store, queue, self._client.cache)

    def queried_versions(self, after: int) -> tuple[list[tuple[str, str, int]], int]:
        return queried_versions(self._client.store, after)

    def sleep_policy(self) -> SleepPolicy:
        client, settings = self._client, self.settings
        weights = price_weights(client.prices, client.model_name)
        return SleepPolicy(
            settings.sleep_policy,
            settings,
            history=SQLHistory.from_settings(client.store, settings, weights),
            sleep_tokens_left=sleep_budget(client),
            weights=weights,
        )

    def tokens_by_phase(self) -> dict[str, int]:
        return self._client.store.tokens_by_phase()


def sleep_budget(client: Client) -> Callable[[str], int | None]:
    """A namespace's sleep-time tokens left today (``SLEEPTIME_QUOTA_SLEEP_TOKENS``)."""
    if client.settings.quota_sleep_tokens is None:
        return lambda _namespace: None
    from sleeptime.quotas import Quotas

    quotas = Quotas.from_settings(client.settings, client.store.accounting)
    return lambda namespace: quotas.sleep_left(namespace)
