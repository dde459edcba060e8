"""The :class:`SleepTime` facade: what agent apps embed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from sleeptime.compaction import Compaction, compact
from sleeptime.conversation import completed_turn, render_messages
from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.graphs.sleep import SleepDeps, build_sleep_graph
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.kv import attach_kv
from sleeptime.llm.resolve import ModelSpec, describe_spec, resolve_model
from sleeptime.llm.retry import RetryPolicy
from sleeptime.models import (
    Answer,
    Artifacts,
    Budget,
    ContextVersion,
    DeleteCounts,
    Ledger,
    Notes,
    SleepReport,
    SleepStep,
    Usage,
)
from sleeptime.online import (
    ArtifactSource,
    OnlineDeps,
    answer_question,
    learned_notes,
    serve_prepared,
)
from sleeptime.paper import SLEEP_STRATEGIES, RethinkOptions
from sleeptime.policy import SleepPolicy, SQLHistory, price_weights, queried_versions
from sleeptime.pricing import PriceSheet, ledger_money
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
from sleeptime.store.sql import MANIFEST, SQLStore
from sleeptime.streaming import astream_in_thread, stream_in_thread
from sleeptime.validation import check_ids, validate_ask, validate_ingest, validate_sleep

if TYPE_CHECKING:
    from sleeptime.background import Background, OutboxRelay
    from sleeptime.cache import HotCache
    from sleeptime.queue.base import JobQueue
    from sleeptime.queue.scheduler import ActivityRecorder
    from sleeptime.worker.port import WorkerPort
    from sleeptime.worker.runtime import Worker

_SLEEP_GRAPH = build_sleep_graph()


class _FacadePort:
    """A :class:`SleepTime` as a :class:`~sleeptime.worker.port.WorkerPort`: the worker's
    calls, each a delegation to the client (so a test that patches ``st.sleep`` patches
    what the worker runs)."""

    def __init__(self, st: SleepTime) -> None:
        self._st = st
        self.settings = st.settings

    @property
    def database_url(self) -> str:
        return self._st.store.url

    @property
    def model_label(self) -> str:
        return self._st.model_label

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
        return self._st.sleep(
            namespace,
            context_id,
            version=version,
            on_step=on_step,
            k=k,
            n_questions=n_questions,
            answer_samples=answer_samples,
        )

    def current_version(self, namespace: str, context_id: str) -> int | None:
        return self._st.store.current_version(namespace, context_id)

    def text_chars(self, namespace: str, context_id: str, version: int) -> int:
        ctx = self._st.store.get_context(namespace, context_id, version)
        return len(ctx.text) if ctx is not None else 0

    def warm_cache(self, namespace: str, context_id: str, version: int) -> None:
        """Put the finished artifacts in the hot cache if the version is still the
        current one in SQL. They are read back from SQL (one read, cached in-process),
        not rebuilt from a report, so the cache holds every kind a reader would find
        there (the passage index included). The cache's compare-and-set refuses a
        version older than its key, and a key lost to a Redis restart without
        persistence is left for a reader to re-create from SQL (never at an old
        version)."""
        cache, store = self._st.cache, self._st.store
        if cache is None or store.current_version(namespace, context_id) != version:
            return
        arts = store.load_artifacts(namespace, context_id, version)
        if arts.complete and cache.put(arts, create=False):
            cache.confirm(namespace, context_id, version)

    def missing_versions(self) -> list[tuple[str, str, int]]:
        return self._st.store.missing_versions()

    def relay(self, queue: JobQueue) -> int:
        from sleeptime.background import relay_outbox

        return relay_outbox(self._st.store, queue, self._st.cache)

    def queried_versions(self, after: int) -> tuple[list[tuple[str, str, int]], int]:
        return queried_versions(self._st.store, after)

    def sleep_policy(self) -> SleepPolicy:
        st, settings = self._st, self.settings
        weights = price_weights(st.prices, st.model_name)
        return SleepPolicy(
            settings.sleep_policy,
            settings,
            history=SQLHistory.from_settings(st.store, settings, weights),
            sleep_tokens_left=_sleep_budget(st),
            weights=weights,
        )

    def tokens_by_phase(self) -> dict[str, int]:
        return self._st.store.tokens_by_phase()


def _sleep_budget(st: SleepTime) -> Callable[[str], int | None]:
    """A namespace's sleep-time tokens left today (``SLEEPTIME_QUOTA_SLEEP_TOKENS``)."""
    if st.settings.quota_sleep_tokens is None:
        return lambda _namespace: None
    from sleeptime.quotas import Quotas

    quotas = Quotas.from_settings(st.settings, st.store.accounting)
    return lambda namespace: quotas.sleep_left(namespace)


@dataclass(frozen=True)
class _Ask:
    """A validated question, its budget and the artifacts it is answered from."""

    namespace: str
    context_id: str
    question: str
    budget: Budget
    explicit: bool
    found: tuple[int, Artifacts]
    start: float


class SleepTime:
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

    def _known_window(self) -> int | None:
        """The answering model's window when it is known without loading the model or
        asking its server (an ask's token budget must fit it): the configured window, a
        local model's ``n_ctx``; None otherwise (the ceiling alone bounds it)."""
        if self.settings.context_window is not None:
            return self.settings.context_window
        spec = self._model_spec
        if isinstance(spec, str):
            local = spec == "local" or spec.startswith("local:")
            return self.settings.local_n_ctx if local else None
        # a model object: a plain field (a llama.cpp model's), never a property that
        # would probe a server
        n_ctx = getattr(spec, "__dict__", {}).get("n_ctx")
        return n_ctx if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) else None

    # -- contexts -----------------------------------------------------------------

    def ingest(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        """Store ``text`` as the current version (a no-op if it is unchanged).

        ``activity=False`` stores it without postponing sleep-time work: a completed
        chat turn is the moment to prepare for the next one, not a sign of editing."""
        validate_ingest(namespace, context_id, text, max_chars=self.settings.max_context_chars)
        # The version and its outbox row (its sleep-time job) commit together; the relay
        # moves the row to the queue (recording the activity first, so the job waits
        # for quiet), and the online path never waits on Redis: a queue outage loses
        # nothing. Without a queue in this process, a worker's loop relays the row.
        if activity:
            self._touch(namespace, context_id)
        ctx = self.store.put_context(namespace, context_id, text, outbox=True, activity=activity)
        if ctx.created:
            for hook in self.on_new_version:
                hook(ctx)
        return ctx

    def append(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        """Store the current text plus ``text`` as a new version (a growing context:
        a log, a thread). Sleep-time work on it is incremental."""
        check_ids(namespace, context_id)
        if not isinstance(text, str) or not text:
            raise InvalidInput("appended text must be a non-empty string")
        current = self.store.get_context(namespace, context_id)
        return self.ingest(
            namespace, context_id, (current.text if current else "") + text, activity=activity
        )

    def ingest_messages(
        self,
        namespace: str,
        context_id: str,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
    ) -> ContextVersion | None:
        """Store a chat thread as a context (``conversation.render_messages``) once it
        ends with a completed assistant turn; None (nothing stored or scheduled) while
        a turn is still in progress. Storing a completed turn does not postpone
        sleep-time work: between turns is when a chat is idle."""
        check_ids(namespace, context_id)
        if not completed_turn(messages):
            return None
        return self.ingest(namespace, context_id, render_messages(messages), activity=False)

    def touch(self, namespace: str, context_id: str) -> None:
        """Mark a context as in use (a turn in progress): sleep-time work waits for
        ``SLEEPTIME_IDLE_AFTER`` seconds of quiet."""
        check_ids(namespace, context_id)
        self._touch(namespace, context_id)

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
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question about a context with whatever sleep-time work exists.

        The budget is ``budget``, else ``verbosity``/``max_tokens``. When none is given,
        answers from c' use ``default_verbosity`` and cold answers (no artifacts yet)
        the full ``cold_verbosity``; an explicit budget is honoured on every path (one
        that sets only ``think_tokens``/``extend`` keeps those defaults for its size).
        ``on_token`` receives the answer's text piece by piece as the model writes it
        (a precomputed answer in one piece); see also :meth:`ask_stream`.
        """
        if on_token is not None and not callable(on_token):
            raise InvalidInput(f"on_token must be callable, not {type(on_token).__name__}")
        prepared = self._prepare_ask(namespace, context_id, question, verbosity, max_tokens, budget)
        return self._answer(prepared, on_token)

    def ask_stream(
        self,
        namespace: str,
        context_id: str,
        question: str,
        *,
        verbosity: int | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
    ) -> Iterator[str | Answer]:
        """:meth:`ask`, streamed: yields the answer's text in pieces as the model
        writes it, then the :class:`Answer` (with usage and source). Bad input and an
        unknown context raise here, before anything is yielded or any model is called.

        >>> for item in st.ask_stream("acme", "doc-1", "How much?"):  # doctest: +SKIP
        ...     print(item if isinstance(item, str) else f"\n[{item.source}]", end="")
        """
        prepared = self._prepare_ask(namespace, context_id, question, verbosity, max_tokens, budget)
        return stream_in_thread(lambda sink: self._answer(prepared, sink))

    def _prepare_ask(
        self,
        namespace: str,
        context_id: str,
        question: str,
        verbosity: int | None,
        max_tokens: int | None,
        budget: Budget | None,
    ) -> _Ask:
        """Everything an ask refuses, checked, and its one keyed read done: a stream
        raises here, before it starts."""
        validate_ask(
            namespace,
            context_id,
            question,
            verbosity=verbosity,
            max_tokens=max_tokens,
            budget=budget,
            max_question_chars=self.settings.max_question_chars,
            max_tokens_ceiling=self.settings.max_tokens_ceiling,
            window=self._known_window(),
        )
        explicit = (
            verbosity is not None
            or max_tokens is not None
            or (budget is not None and budget.sets_size)
        )
        if budget is None:
            # validate_ask has checked both: ranges and strict types
            v = self.settings.default_verbosity if verbosity is None else verbosity
            budget = Budget(verbosity=v, max_tokens=max_tokens)
        elif "verbosity" not in budget.model_fields_set:
            budget = budget.model_copy(update={"verbosity": self.settings.default_verbosity})
        start = time.perf_counter()
        found = self.artifact_source(namespace, context_id)  # the one keyed read
        if found is None:
            raise ContextNotFound(namespace, context_id)
        return _Ask(namespace, context_id, question, budget, explicit, found, start)

    def _answer(self, q: _Ask, on_token: Callable[[str], None] | None) -> Answer:
        answer = answer_question(
            self._online,
            q.namespace,
            q.context_id,
            q.question.strip(),
            q.budget,
            explicit_budget=q.explicit,
            found=q.found,
            on_token=on_token,
        )
        # reading is not editing: an ask never postpones sleep-time work
        return self._logged(q.namespace, q.context_id, q.question, answer, q.start)

    def prepared_answer(self, namespace: str, context_id: str, question: str) -> Answer | None:
        """The precomputed answer the serve policy allows for ``question`` at zero
        tokens, or None; never calls a model. For agents that call their own model
        otherwise (the LangGraph middleware, node and tool). A served answer is logged
        as a query like any other."""
        validate_ask(
            namespace, context_id, question, max_question_chars=self.settings.max_question_chars
        )
        start = time.perf_counter()
        found = self.artifact_source(namespace, context_id)
        if found is None:
            return None
        answer = serve_prepared(self._online, question.strip(), found)
        if answer is None:
            return None
        return self._logged(namespace, context_id, question, answer, start)

    def _logged(
        self, namespace: str, context_id: str, question: str, answer: Answer, start: float
    ) -> Answer:
        """``answer`` with its latency, booked in the query log (batched off the
        critical path; ledger() and close() flush it)."""
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
            cold_prompt_tokens=answer.cold_prompt_tokens,
        )
        return answer

    def notes(self, namespace: str, context_id: str) -> Notes | None:
        """The learned context an agent's own model should see, or None before any
        sleep-time work: the current version's, else an older version's (``stale``)."""
        check_ids(namespace, context_id)
        found = self.artifact_source(namespace, context_id)
        if found is None:
            return None
        got = learned_notes(self._online, namespace, context_id, found)
        if got is None:
            return None
        text, learned_version, stale = got
        return Notes(
            text=text,
            version=found[0],
            learned_version=learned_version,
            stale=stale,
            prepared=[qa for qa in found[1].qas if qa.servable],
        )

    def record_answer(
        self,
        namespace: str,
        context_id: str,
        *,
        model: str,
        usage: Usage,
        source: str,
        question: str = "",
        answer: str = "",
        latency_ms: float = 0.0,
    ) -> None:
        """Book an answer that another model gave with this context's notes (an agent's
        own model, behind :class:`~sleeptime.agents.SleepTimeMiddleware`): a test-time
        ledger row under that model's name, and a query-log row, so the ledger counts
        every answer about the context, not only the ones sleeptime's model gave."""
        check_ids(namespace, context_id)
        version = self.store.current_version(namespace, context_id)
        if version is None:
            return
        record = self.store.recorder(namespace, context_id, version, model)
        record("test", "agent", usage, latency_ms)
        self.store.log_query(
            namespace,
            context_id,
            version,
            question=question,
            answer=answer,
            source=source,
            usage=usage,
            latency_ms=latency_ms,
        )

    def compact_messages(
        self,
        namespace: str,
        context_id: str,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
        *,
        question: str | None = None,
        system: str | None = None,
        keep_exchanges: int | None = None,
    ) -> Compaction:
        """A chat thread as a model should see it: the turns that the newest learned
        version covers replaced by its notes plus the passages of those turns that the
        question needs (default: the last user message), the rest verbatim. For agent
        frameworks other than LangChain; :class:`~sleeptime.agents.SleepTimeMiddleware`
        does it on its own. Applies when the covered turns pass
        ``passage_threshold_tokens`` and were indexed; otherwise returns the messages
        unchanged (with ``system`` first). Never calls a model."""
        check_ids(namespace, context_id)
        if keep_exchanges is not None and (
            not isinstance(keep_exchanges, int)
            or isinstance(keep_exchanges, bool)
            or keep_exchanges < 0
        ):
            raise InvalidInput(f"keep_exchanges must be an int >= 0 (got {keep_exchanges!r})")
        found = self.artifact_source(namespace, context_id)
        got = learned_notes(self._online, namespace, context_id, found) if found else None
        return compact(
            self._online,
            namespace,
            context_id,
            messages,
            (got[0], got[1]) if got else None,
            question=question,
            system=system,
            keep_exchanges=keep_exchanges,
        )

    def ledger(self, namespace: str, context_id: str) -> Ledger:
        """Sleep-time vs test-time tokens spent on a context so far, and queries answered."""
        check_ids(namespace, context_id)
        ledger = self.store.ledger(namespace, context_id)
        version = self.store.current_version(namespace, context_id)
        if version is not None:
            manifest = self.store.get_artifact(namespace, context_id, version, MANIFEST, "0")
            if manifest:
                ledger = ledger.model_copy(update={"warnings": manifest.get("warnings", [])})
        if self.prices is not None:
            money = ledger_money(self.prices, ledger)
            ledger = ledger.model_copy(update={"money": money})
        return ledger

    # -- async twins ------------------------------------------------------------------

    async def aingest(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        return await asyncio.to_thread(self.ingest, namespace, context_id, text, activity=activity)

    async def aappend(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        return await asyncio.to_thread(self.append, namespace, context_id, text, activity=activity)

    async def aingest_messages(
        self,
        namespace: str,
        context_id: str,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
    ) -> ContextVersion | None:
        return await asyncio.to_thread(self.ingest_messages, namespace, context_id, messages)

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

    async def aask(
        self,
        namespace: str,
        context_id: str,
        question: str,
        *,
        verbosity: int | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """:meth:`ask` in a worker thread (``on_token`` is called from that thread)."""
        return await asyncio.to_thread(
            self.ask,
            namespace,
            context_id,
            question,
            verbosity=verbosity,
            max_tokens=max_tokens,
            budget=budget,
            on_token=on_token,
        )

    async def aask_stream(
        self,
        namespace: str,
        context_id: str,
        question: str,
        *,
        verbosity: int | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
    ) -> AsyncIterator[str | Answer]:
        """:meth:`ask_stream` for asyncio: ``async for item in st.aask_stream(...)``.
        The answer is produced in a worker thread; the event loop only awaits pieces."""
        prepared = await asyncio.to_thread(
            self._prepare_ask, namespace, context_id, question, verbosity, max_tokens, budget
        )
        async for item in astream_in_thread(lambda sink: self._answer(prepared, sink)):
            yield item

    async def aledger(self, namespace: str, context_id: str) -> Ledger:
        return await asyncio.to_thread(self.ledger, namespace, context_id)

    def worker_port(self) -> WorkerPort:
        """What a worker needs from this client (:class:`~sleeptime.worker.port.WorkerPort`):
        :class:`~sleeptime.worker.runtime.Worker` depends on that, not on the facade."""
        return _FacadePort(self)

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

    # -- deletion -----------------------------------------------------------------------

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
        from sleeptime.errors import QueueUnavailable
        from sleeptime.llm.kv.blobs import KVStore

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
