"""The facade's test time: an ask (validated, its one keyed read, answered and booked
in the query log), streamed or not; prepared answers and notes for agents that call
their own model; answers booked for them; chat compaction; the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from sleeptime.compaction import Compaction, compact
from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.facade.base import FacadeBase
from sleeptime.models import Answer, Artifacts, Budget, Ledger, Notes, Usage
from sleeptime.online import answer_question, learned_notes, serve_prepared
from sleeptime.pricing import ledger_money
from sleeptime.store.sql import MANIFEST
from sleeptime.streaming import astream_in_thread, stream_in_thread
from sleeptime.validation import check_ids, validate_ask


@dataclass(frozen=True)
class _Ask:
    """A validated question, its budget and the artifacts it is answered from."""

    namespace: str
    context_id: str
    question: str
    budget: Budget
    explicit: bool
    current: tuple[int, Artifacts]
    start: float


class AskMixin(FacadeBase):
    """:class:`~sleeptime.SleepTime`'s test time (see :mod:`sleeptime.facade.asking`)."""

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
        current = self.artifact_source(namespace, context_id)  # the one keyed read
        if current is None:
            raise ContextNotFound(namespace, context_id)
        return _Ask(namespace, context_id, question, budget, explicit, current, start)

    def _answer(self, q: _Ask, on_token: Callable[[str], None] | None) -> Answer:
        answer = answer_question(
            self._online,
            q.namespace,
            q.context_id,
            q.question.strip(),
            q.budget,
            explicit_budget=q.explicit,
            current=q.current,
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
        current = self.artifact_source(namespace, context_id)
        if current is None:
            return None
        answer = serve_prepared(self._online, question.strip(), current)
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
        current = self.artifact_source(namespace, context_id)
        if current is None:
            return None
        got = learned_notes(self._online, namespace, context_id, current)
        if got is None:
            return None
        text, learned_version, stale = got
        return Notes(
            text=text,
            version=current[0],
            learned_version=learned_version,
            stale=stale,
            prepared=[qa for qa in current[1].qas if qa.servable],
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
        current = self.artifact_source(namespace, context_id)
        got = learned_notes(self._online, namespace, context_id, current) if current else None
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
