"""The :class:`SleepTime` facade: what agent apps embed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langgraph.runtime import Runtime

from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.graphs.query import ArtifactSource, QueryDeps, build_query_graph, retrieve
from sleeptime.graphs.sleep import SleepDeps, build_sleep_graph
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.resolve import ModelSpec, resolve_model
from sleeptime.llm.retry import RetryPolicy
from sleeptime.models import Answer, Artifacts, Budget, ContextVersion, Ledger, SleepReport, Usage
from sleeptime.retrieval import EmbeddingMatcher, LexicalMatcher, Matcher
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore
from sleeptime.validation import check_ids, validate_ask, validate_ingest, validate_sleep

if TYPE_CHECKING:
    from sleeptime.cache import HotCache
    from sleeptime.queue.base import JobQueue
    from sleeptime.queue.scheduler import ActivityRecorder
    from workers.runtime import Worker

_SLEEP_GRAPH = build_sleep_graph()
_QUERY_GRAPH = build_query_graph()


class SleepTime:
    """Sleep-time compute for one model and one store.

    >>> st = SleepTime(model="fake", database_url="sqlite:///:memory:")
    >>> st.ingest("acme", "doc-1", "Ann has 3 apples. Bob has 4 apples.").version
    1

    ``model`` and ``database_url`` default to ``SLEEPTIME_MODEL`` and
    ``SLEEPTIME_DATABASE_URL``. The model is loaded on first use, so ingesting and
    serving precomputed answers never waits for it.

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
    ) -> None:
        self.settings = settings or Settings()
        self._model_spec: ModelSpec = model if model is not None else self.settings.model
        self.store = store or SQLStore(database_url or self.settings.database_url)
        self.retry = retry or RetryPolicy()
        self.matcher: Matcher = EmbeddingMatcher(embeddings) if embeddings else LexicalMatcher()
        self._gateway: ModelGateway | None = None
        self._gateway_lock = threading.Lock()
        #: Where the online path reads artifacts; the Redis hot cache replaces it.
        self.artifact_source: ArtifactSource = self._artifacts_from_sql
        #: Called with each new context version (the worker queue subscribes here).
        self.on_new_version: list[Callable[[ContextVersion], None]] = []
        #: Called with (namespace, context id) on every ingest and ask, so the idle-time
        #: scheduler can postpone sleep-time work while a namespace is busy.
        self.on_activity: list[Callable[[str, str], None]] = []
        #: Background work (issue #3): the job queue, Redis hot cache, in-process worker.
        self.queue: JobQueue | None = None
        self.cache: HotCache | None = None
        self.activity_recorder: ActivityRecorder | None = None
        self.worker: Worker | None = None
        if background or self.settings.redis_url:
            from sleeptime.queue import attach

            attach(self)
        if background:
            self.start_worker()

    # -- model --------------------------------------------------------------------

    @property
    def gateway(self) -> ModelGateway:
        if self._gateway is None:
            with self._gateway_lock:
                if self._gateway is None:
                    model = resolve_model(self._model_spec, self.settings)
                    self._gateway = ModelGateway(
                        model=model, retry=self.retry, window=self.settings.context_window
                    )
        return self._gateway

    @property
    def model_name(self) -> str:
        return self.gateway.name

    # -- contexts -----------------------------------------------------------------

    def ingest(self, namespace: str, context_id: str, text: str) -> ContextVersion:
        """Store ``text`` as the current version (a no-op if it is unchanged)."""
        validate_ingest(namespace, context_id, text, max_chars=self.settings.max_context_chars)
        # Activity first, persisted before the new version becomes visible: a worker's
        # catch-up sweep may enqueue the version the moment it is committed, and must
        # then see a busy namespace, not an idle one.
        self._touch(namespace, context_id)
        if self.activity_recorder is not None:
            self.activity_recorder.flush()
        ctx = self.store.put_context(namespace, context_id, text)
        if ctx.created:
            for hook in self.on_new_version:
                hook(ctx)
        return ctx

    def _touch(self, namespace: str, context_id: str) -> None:
        for hook in self.on_activity:
            hook(namespace, context_id)

    def context(self, namespace: str, context_id: str) -> ContextVersion:
        check_ids(namespace, context_id)
        ctx = self.store.get_context(namespace, context_id)
        if ctx is None:
            raise ContextNotFound(namespace, context_id)
        return ctx

    def artifacts(self, namespace: str, context_id: str) -> Artifacts:
        """What sleep-time compute has stored for the current version."""
        check_ids(namespace, context_id)
        found = self.artifact_source(namespace, context_id)
        if found is None:
            raise ContextNotFound(namespace, context_id)
        return found[1]

    def _artifacts_from_sql(self, namespace: str, context_id: str) -> tuple[int, Artifacts] | None:
        version = self.store.current_version(namespace, context_id)
        if version is None:
            return None
        return version, self.store.load_artifacts(namespace, context_id, version)

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
    ) -> SleepReport:
        """Run sleep-time compute on a context version now, in this process.

        Idempotent: a version whose artifacts are complete is skipped, and a run that
        was interrupted resumes from the last persisted step.
        """
        validate_sleep(
            namespace, context_id, version=version, k=k, n_questions=n_questions, progress=progress
        )
        ctx = self.store.get_context(namespace, context_id, version)
        if ctx is None:
            raise ContextNotFound(namespace, context_id)
        k = self.settings.sleep_k if k is None else k
        n = self.settings.n_questions if n_questions is None else n_questions
        if k < 1:
            raise InvalidInput(f"k must be >= 1 (got {k}); k=0 means: do not call sleep()")
        if n < 0:
            raise InvalidInput(f"n_questions must be >= 0 (got {n})")
        deps = SleepDeps(
            store=self.store,
            gateway=self.gateway,
            settings=self.settings,
            k=k,
            n_questions=n,
            progress=progress,
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
        return SleepReport(
            namespace=namespace,
            context_id=context_id,
            version=ctx.version,
            skipped=bool(out.get("skipped")),
            learned=out.get("learned"),
            qas=out.get("qas", []),
            usage=out.get("usage", Usage()),
            seconds=time.perf_counter() - start,
        )

    # -- test time ------------------------------------------------------------------

    def ask(
        self,
        namespace: str,
        context_id: str,
        question: str,
        *,
        verbosity: int | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
    ) -> Answer:
        """Answer a question about a context with whatever sleep-time work exists.

        The budget is ``budget``, else ``verbosity``/``max_tokens``. When none is given,
        answers from c' use ``default_verbosity`` and cold answers (no artifacts yet)
        the full ``cold_verbosity``; an explicit budget is honoured on every path.
        """
        validate_ask(
            namespace,
            context_id,
            question,
            verbosity=verbosity,
            max_tokens=max_tokens,
            budget=budget,
            max_question_chars=self.settings.max_question_chars,
        )
        explicit = budget is not None or verbosity is not None or max_tokens is not None
        if budget is None:
            v = self.settings.default_verbosity if verbosity is None else verbosity
            if not isinstance(v, int) or not 0 <= v <= 4:
                raise InvalidInput(f"verbosity must be 0-4 (got {v!r})")
            if max_tokens is not None and max_tokens < 1:
                raise InvalidInput(f"max_tokens must be >= 1 (got {max_tokens})")
            budget = Budget(verbosity=v, max_tokens=max_tokens)
        start = time.perf_counter()
        found = self.artifact_source(namespace, context_id)  # read once, used by both paths
        deps = QueryDeps(
            store=self.store,
            gateway=lambda: self.gateway,
            matcher=self.matcher,
            settings=self.settings,
            artifacts=lambda _ns, _cid: found,
        )
        state: dict[str, Any] = {
            "namespace": namespace,
            "context_id": context_id,
            "question": question.strip(),
            "budget": budget,
            "explicit_budget": explicit,
        }
        # A precomputed answer needs only the graph's first node: calling it directly
        # skips ~1 ms of LangGraph run overhead on the hot path (issue #3 benchmark).
        out = retrieve(state, Runtime(context=deps))  # type: ignore[arg-type]
        if "answer" not in out:  # the graph's retrieve sees the version/artifacts: no rework
            out = _QUERY_GRAPH.invoke({**state, **out}, context=deps)
        self._touch(namespace, context_id)
        answer: Answer = out["answer"]
        answer = answer.model_copy(update={"latency_ms": (time.perf_counter() - start) * 1000.0})
        self.store.log_query(
            namespace,
            context_id,
            answer.version,
            question=question,
            answer=answer.text,
            source=answer.source,
            usage=answer.usage,
            latency_ms=answer.latency_ms,
        )
        return answer

    def ledger(self, namespace: str, context_id: str) -> Ledger:
        """Sleep-time vs test-time tokens spent on a context so far, and queries answered."""
        check_ids(namespace, context_id)
        return self.store.ledger(namespace, context_id)

    # -- async twins ------------------------------------------------------------------

    async def aingest(self, namespace: str, context_id: str, text: str) -> ContextVersion:
        return await asyncio.to_thread(self.ingest, namespace, context_id, text)

    async def asleep(self, namespace: str, context_id: str, **kwargs: Any) -> SleepReport:
        return await asyncio.to_thread(lambda: self.sleep(namespace, context_id, **kwargs))

    async def aask(self, namespace: str, context_id: str, question: str, **kwargs: Any) -> Answer:
        return await asyncio.to_thread(lambda: self.ask(namespace, context_id, question, **kwargs))

    async def aledger(self, namespace: str, context_id: str) -> Ledger:
        return await asyncio.to_thread(self.ledger, namespace, context_id)

    def start_worker(self, concurrency: int | None = None) -> Any:
        """Run the worker runtime in this process (threads) on this client's queue:
        new versions get sleep-time compute in the background, when idle."""
        if self.worker is None:
            from sleeptime.queue import attach
            from workers.runtime import Worker

            queue = self.queue or attach(self)
            self.worker = Worker(self, queue, concurrency=concurrency)
            self.worker.start()
        return self.worker

    def stop_worker(self, grace: float | None = None) -> None:
        if self.worker is not None:
            self.worker.stop(grace)
            self.worker = None

    def close(self) -> None:
        self.stop_worker()
        if self.activity_recorder is not None:
            self.activity_recorder.close()
        for part in (self.queue, self.cache):
            if part is not None:
                part.close()
        self.store.dispose()

    def __enter__(self) -> SleepTime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
