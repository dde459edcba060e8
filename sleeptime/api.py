"""The :class:`SleepTime` facade: what agent apps embed.

This module wires a client (its store, model gateways, serve policy, queue, cache and
worker) and runs sleep time; the rest of the facade's methods live by concern in
:mod:`sleeptime.facade` (contexts, asking, deletion) and are mixed in here, and
:mod:`sleeptime.facade.port` adapts a client to the worker's port.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.facade.asking import AskMixin
from sleeptime.facade.contexts import ContextsMixin
from sleeptime.facade.deletion import DeletionMixin
from sleeptime.facade.port import FacadePort
from sleeptime.graphs.sleep import SleepDeps, build_sleep_graph
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.kv import attach_kv
from sleeptime.llm.resolve import ModelSpec, describe_spec, resolve_model
from sleeptime.llm.retry import RetryPolicy
from sleeptime.models import (
    ContextVersion,
    SleepReport,
    SleepStep,
    Usage,
)
from sleeptime.online import (
    ArtifactSource,
    OnlineDeps,
)
from sleeptime.paper import SLEEP_STRATEGIES, RethinkOptions
from sleeptime.pricing import PriceSheet
from sleeptime.retrieval import (
    EmbeddingMatcher,
    Judge,
    LexicalMatcher,
    Matcher,
    ServeMode,
    ServePolicy,
    serve_mode,
)
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore
from sleeptime.validation import check_ids, validate_sleep

if TYPE_CHECKING:
    from sleeptime.background import Background, OutboxRelay
    from sleeptime.cache import HotCache
    from sleeptime.queue.base import JobQueue
    from sleeptime.queue.scheduler import ActivityRecorder
    from sleeptime.worker.port import WorkerPort
    from sleeptime.worker.runtime import Worker

_SLEEP_GRAPH = build_sleep_graph()

__all__ = ["SleepTime", "check_ids"]  # check_ids: the server's tenant check uses it


class SleepTime(ContextsMixin, AskMixin, DeletionMixin):
    """Sleep-time compute for one model and one store.

    >>> st = SleepTime(model="fake", database_url="sqlite:///:memory:")
    >>> st.ingest("acme", "doc-1", "Ann has 3 apples. Bob has 4 apples.").version
    1

    ``model`` and ``database_url`` default to ``SLEEPTIME_MODEL`` and
    ``SLEEPTIME_DATABASE_URL``. The model is loaded on first use, so ingesting and
    serving precomputed answers never waits for it.

    ``serve`` is the policy for precomputed answers (``SLEEPTIME_SERVE``): ``"exact"``
    serves one at zero tokens only for the same question after normalisation,
    ``"verified"`` also for a near candidate that ``judge(live, stored)`` (or, without
    a judge, a one-token yes/no call to the model) confirms, ``"off"`` never. Questions
    not served get the most related prepared Q&As as notes for the model.

    With ``SLEEPTIME_REDIS_URL`` set, new versions are enqueued for the worker service
    and answers are read through the Redis hot cache; ``background=True`` also runs a
    worker in this process (on the embedded SQLite queue when there is no Redis).
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        embeddings: Embeddings | None = None,
        retry: RetryPolicy | None = None,
        store: SQLStore | None = None,
        background: bool = False,
        serve: ServeMode | None = None,
        judge: Judge | None = None,
        sleep_model: ModelSpec | None = None,
        answer_samples: int | None = None,
    ) -> None:
        self.settings = settings or Settings()
        if answer_samples is not None:
            # the setting's own bounds, one source of truth for them
            self.settings = Settings(
                **{**self.settings.model_dump(), "answer_samples": answer_samples}
            )
        #: The price sheet (``SLEEPTIME_PRICES``), None when nothing is priced.
        self.prices = PriceSheet.load(self.settings.prices)
        mode = self.settings.serve if serve is None else serve_mode(serve)
        self._model_spec: ModelSpec = model if model is not None else self.settings.model
        self._sleep_spec: ModelSpec | None = (
            sleep_model if sleep_model is not None else self.settings.sleep_model
        )
        self._sleep_gateway: ModelGateway | None = None
        self.store = store or SQLStore(
            database_url or self.settings.database_url, keep_versions=self.settings.keep_versions
        )
        self.retry = retry or RetryPolicy.from_settings(self.settings)
        self.matcher: Matcher = EmbeddingMatcher(embeddings) if embeddings else LexicalMatcher()
        self._embeddings = embeddings
        self.policy = ServePolicy(
            mode,
            matcher=self.matcher,
            threshold=self.settings.match_threshold,
            related=self.settings.related_notes,
        )
        self._online = OnlineDeps(
            store=self.store,
            gateway=lambda: self.gateway,
            policy=self.policy,
            settings=self.settings,
            judge=judge,
            embeddings=embeddings,
        )
        self._gateway: ModelGateway | None = None
        self._gateway_lock = threading.Lock()
        #: Where the online path reads artifacts; the Redis hot cache replaces it.
        self.artifact_source: ArtifactSource = self._artifacts_from_sql
        #: Called with each new context version (the worker queue subscribes here).
        self.on_new_version: list[Callable[[ContextVersion], None]] = []
        #: Called with (namespace, context id) on every ingest and ask, so the idle-time
        #: scheduler can postpone sleep-time work while a namespace is busy.
        self.on_activity: list[Callable[[str, str], None]] = []
        #: Background work: the job queue new versions go to, the Redis hot cache in
        #: front of SQL, the activity recorder of idle-time scheduling, and a worker
        #: running in this process (``background=True``). Opened by :meth:`open_queue`.
        self.queue: JobQueue | None = None
        self.cache: HotCache | None = None
        self.activity_recorder: ActivityRecorder | None = None
        self.worker: Worker | None = None
        #: Moves committed versions' outbox rows to the queue (a thread of this client).
        self.outbox_relay: OutboxRelay | None = None
        self._background: Background | None = None
        if background or self.settings.redis_url:
            self.open_queue()
        if background:
            self.start_worker()

    def open_queue(self) -> JobQueue:
        """This client's job queue, opened on first use together with the hot cache, the
        activity recorder and the outbox relay: from then on new versions are enqueued
        (by the relay, off the online path), ingests and asks postpone idle work, and
        (with Redis) answers are read through the cache."""
        if self._background is None:
            from sleeptime.background import open_background

            bg = self._background = open_background(self.settings, self.store)
            self.queue, self.cache, self.activity_recorder = bg.queue, bg.cache, bg.recorder
            self.outbox_relay = bg.relay
            if bg.cache is not None:
                self.artifact_source = bg.cache.wrap(self.artifact_source)
            self.on_new_version.append(bg.new_version)
            self.on_activity.append(bg.recorder)
        return self._background.queue

    # -- model --------------------------------------------------------------------

    @property
    def gateway(self) -> ModelGateway:
        if self._gateway is None:
            with self._gateway_lock:
                if self._gateway is None:
                    self._gateway = self._new_gateway(self._model_spec, kv=True)
        return self._gateway

    def _new_gateway(self, spec: ModelSpec, *, kv: bool) -> ModelGateway:
        model = resolve_model(spec, self.settings)
        if kv:  # the answering model restores saved prefixes (attached once)
            attach_kv(model, self.store, self.settings)
        return ModelGateway(model=model, retry=self.retry, window=self.settings.context_window)

    @property
    def sleep_gateway(self) -> ModelGateway:
        """The gateway of sleep-time calls: ``sleep_model`` when one is set (a cheaper
        or a stronger model than the one answering), else the test-time one."""
        if self._sleep_spec is None:
            return self.gateway
        if self._sleep_gateway is None:
            with self._gateway_lock:
                if self._sleep_gateway is None:
                    self._sleep_gateway = self._new_gateway(self._sleep_spec, kv=False)
        return self._sleep_gateway

    @property
    def model_name(self) -> str:
        return self.gateway.name

    @property
    def model_label(self) -> str:
        """The model as configured, for log lines, without loading it or calling a
        server: its spec (a server URL's password hidden), plus the sleep-time model's
        when one is set."""
        label = describe_spec(self._model_spec)
        if self._sleep_spec is not None:
            label += f", sleep-time {describe_spec(self._sleep_spec)}"
        return label

    # -- sleep time -----------------------------------------------------------------

    def sleep(
        self,
        namespace: str,
        context_id: str,
        *,
        version: int | None = None,
        k: int | None = None,
        n_questions: int | None = None,
        progress: Callable[[str], None] | None = None,
        on_step: Callable[[SleepStep], None] | None = None,
        strategy: str | None = None,
        rethink: RethinkOptions | None = None,
        answer_samples: int | None = None,
    ) -> SleepReport:
        """Run sleep-time compute on a context version now, in this process.

        Idempotent: a version whose artifacts are complete is skipped, and a run that
        was interrupted resumes from the last persisted step. ``progress`` gets a
        human-readable line as work starts; ``on_step`` gets a :class:`SleepStep` (name,
        duration, tokens; no text) as each step of the run finishes or fails.
        ``strategy`` (``SLEEPTIME_SLEEP_STRATEGY``): ``notes`` learns c' with one call
        per rethink; ``rethink_tools`` runs the Sleep-time Compute paper's loop of
        memory-block rewrites (``rethink`` sets its options: prompts, rounds, block size,
        budget; :class:`~sleeptime.paper.RethinkOptions`). ``answer_samples``: samples
        per precomputed answer for this run (default ``SLEEPTIME_ANSWER_SAMPLES``).
        """
        validate_sleep(
            namespace,
            context_id,
            version=version,
            k=k,
            n_questions=n_questions,
            progress=progress,
            on_step=on_step,
        )
        ctx = self.store.get_context(namespace, context_id, version)
        if ctx is None:
            versions = self.store.versions(namespace, context_id) if version is not None else []
            raise ContextNotFound(namespace, context_id, version=version, versions=versions)
        k = self.settings.sleep_k if k is None else k
        n = self.settings.n_questions if n_questions is None else n_questions
        strategy = self.settings.sleep_strategy if strategy is None else strategy
        if strategy not in SLEEP_STRATEGIES:
            raise InvalidInput(
                f"strategy must be one of {', '.join(SLEEP_STRATEGIES)} (got {strategy!r})"
            )
        if rethink is not None and not isinstance(rethink, RethinkOptions):
            raise InvalidInput(f"rethink must be a RethinkOptions (got {type(rethink).__name__})")
        if k < 1:
            raise InvalidInput(f"k must be >= 1 (got {k}); k=0 means: do not call sleep()")
        if n < 0:
            raise InvalidInput(f"n_questions must be >= 0 (got {n})")
        samples = self.settings.answer_samples if answer_samples is None else answer_samples
        if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= 16:
            raise InvalidInput(f"answer_samples must be an integer 1-16 (got {samples!r})")
        deps = SleepDeps(
            store=self.store,
            gateway=self.sleep_gateway,
            prefill_gateway=self.gateway if self._sleep_spec is not None else None,
            settings=self.settings,
            k=k,
            n_questions=n,
            answer_samples=samples,
            embeddings=self._embeddings,
            progress=progress,
            on_step=on_step,
            strategy=strategy,
            rethink_options=rethink,
        )
        start = time.perf_counter()
        out = _SLEEP_GRAPH.invoke(
            {
                "namespace": namespace,
                "context_id": context_id,
                "version": ctx.version,
                "text": ctx.text,
                "usage": Usage(),
            },
            context=deps,
        )
        warnings = list(out.get("warnings", []))
        qas = out.get("qas", [])
        if out.get("skipped") and n_questions is not None and n_questions != len(qas):
            # a finished version's artifacts are never rewritten: say so, do not ignore it
            warnings.append(
                f"version {ctx.version} was already complete with {len(qas)} predicted "
                f"question(s): n_questions={n_questions} was not applied; to prepare it "
                "again, delete the context and ingest its text again"
            )
        return SleepReport(
            namespace=namespace,
            context_id=context_id,
            version=ctx.version,
            skipped=bool(out.get("skipped")),
            learned=out.get("learned"),
            qas=qas,
            usage=out.get("usage", Usage()),
            seconds=time.perf_counter() - start,
            warnings=warnings,
        )

    # -- async twins ------------------------------------------------------------------

    async def asleep(
        self,
        namespace: str,
        context_id: str,
        *,
        version: int | None = None,
        k: int | None = None,
        n_questions: int | None = None,
        progress: Callable[[str], None] | None = None,
        on_step: Callable[[SleepStep], None] | None = None,
        strategy: str | None = None,
        rethink: RethinkOptions | None = None,
        answer_samples: int | None = None,
    ) -> SleepReport:
        """:meth:`sleep` in a worker thread."""
        return await asyncio.to_thread(
            self.sleep,
            namespace,
            context_id,
            version=version,
            k=k,
            n_questions=n_questions,
            progress=progress,
            on_step=on_step,
            strategy=strategy,
            rethink=rethink,
            answer_samples=answer_samples,
        )

    def worker_port(self) -> WorkerPort:
        """What a worker needs from this client (:class:`~sleeptime.worker.port.WorkerPort`):
        :class:`~sleeptime.worker.runtime.Worker` depends on that, not on the facade."""
        return FacadePort(self)

    def start_worker(self, concurrency: int | None = None) -> Worker:
        """Run the worker runtime in this process (threads) on this client's queue:
        new versions get sleep-time compute in the background, when idle."""
        if self.worker is None:
            from sleeptime.worker.runtime import Worker

            self.worker = Worker(self, self.open_queue(), concurrency=concurrency)
            self.worker.start()
        return self.worker

    def stop_worker(self, grace: float | None = None) -> None:
        if self.worker is not None:
            self.worker.stop(grace)
            self.worker = None

    def close(self) -> None:
        self.stop_worker()
        if self._background is not None:
            self._background.close()
        self.store.dispose()

    def __enter__(self) -> SleepTime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
