"""LangGraph / LangChain building blocks, each added in one line.

* :class:`SleepTimeMiddleware` for ``langchain.agents.create_agent``: before the model
  call it puts the learned context in the system prompt, and answers without calling
  the model when a precomputed answer is safe to serve (the serve policy); after the
  agent's turn it stores the grown conversation, which schedules sleep-time work.
* :func:`sleeptime_node` for hand-built ``StateGraph``s: answers the last user message
  with :meth:`SleepTime.ask`.
* :func:`prepared_notes_tool` (``consult_prepared_notes``) for ReAct agents: the
  prepared answer to a question, or the learned notes and related prepared Q&As; it
  never calls a model.

The namespace and context id come from the graph's runtime context (``namespace`` or
``user_id``; ``context_id`` or ``thread_id``) or its config (``configurable``), never
from module globals, so one compiled graph serves every tenant and thread.

Needs ``pip install "sleeptime[agents]"`` (langchain >= 1.0).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.config import get_config

from sleeptime import prompts
from sleeptime.api import SleepTime
from sleeptime.errors import InvalidInput
from sleeptime.llm.gateway import model_name
from sleeptime.models import Answer, Usage
from sleeptime.passages import is_conversation

#: A fixed id, or a function of (runtime context, configurable) that returns one.
IdSpec = str | Callable[[Any, Mapping[str, Any]], str] | None

_NS_KEYS = ("namespace", "user_id", "tenant")
_ID_KEYS = ("context_id", "thread_id")


def _lookup(source: Any, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if isinstance(value, str) and value:
            return value
    return None


def _configurable() -> Mapping[str, Any]:
    try:
        return get_config().get("configurable", {}) or {}
    except RuntimeError:  # called outside a graph run
        return {}


def resolve_ids(
    context: Any,
    namespace: IdSpec = None,
    context_id: IdSpec = None,
    configurable: Mapping[str, Any] | None = None,
    default_namespace: str | None = None,
) -> tuple[str, str]:
    """(namespace, context id) of the current run: the given spec, else the runtime
    context, else the config's ``configurable``, else ``default_namespace``
    (``SLEEPTIME_AGENT_NAMESPACE``). No namespace at all is an error, never a shared
    fallback: two tenants with the same thread id must not share one context. A missing
    context id is an error too (a thread needs an id)."""
    conf = _configurable() if configurable is None else configurable

    def pick(spec: IdSpec, keys: tuple[str, ...]) -> str | None:
        if callable(spec):
            return spec(context, conf)
        if spec is not None:
            return spec
        return _lookup(context, keys) if context is not None else None

    ns = pick(namespace, _NS_KEYS) or _lookup(conf, _NS_KEYS) or default_namespace
    if not ns:
        raise InvalidInput(
            "no namespace for sleeptime: pass namespace=... (a tenant), run the graph with a "
            "runtime context or config holding namespace or user_id, or set "
            "SLEEPTIME_AGENT_NAMESPACE for a single-tenant app"
        )
    cid = pick(context_id, _ID_KEYS) or _lookup(conf, _ID_KEYS)
    if not cid:
        raise InvalidInput(
            "no context id for sleeptime: pass context_id=..., or run the graph with "
            "config={'configurable': {'thread_id': ...}} or a runtime context with thread_id"
        )
    return ns, cid


def _runtime_context() -> Any:
    """The runtime context of the graph run this is called from, if any."""
    from langgraph.runtime import get_runtime

    try:
        runtime = get_runtime()
    except RuntimeError:  # outside a graph run
        return None
    return getattr(runtime, "context", None)


def _last_question(messages: Sequence[BaseMessage]) -> str | None:
    """The user's question when the model is about to answer it (not after a tool)."""
    if messages and isinstance(messages[-1], HumanMessage):
        text = messages[-1].text
        return text if isinstance(text, str) and text.strip() else None
    return None


def _served_message(answer: Answer) -> AIMessage:
    return AIMessage(
        answer.text,
        response_metadata={
            "sleeptime": {
                "source": answer.source,
                "serve_reason": answer.serve_reason,
                "matched_question": answer.matched_question,
                "version": answer.version,
            }
        },
        usage_metadata={"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    )


def notes_system_message(base: SystemMessage | None, notes: str, stale: bool) -> SystemMessage:
    """The agent's system prompt plus the learned context, fenced as data."""
    head = f"{base.text}\n\n" if base is not None and base.text else ""
    when = " (prepared before the latest messages)" if stale else ""
    return SystemMessage(
        f"{head}Notes prepared in advance about this conversation{when}:\n"
        f"{prompts.fence('notes', notes)}\n{prompts.DATA_RULE}"
    )


class SleepTimeMiddleware(AgentMiddleware):
    """Sleep-time compute for a ``create_agent`` agent::

        agent = create_agent(model, tools, middleware=[SleepTimeMiddleware(st)])
        agent.invoke({"messages": [...]}, {"configurable": {"thread_id": "t-1"}})

    ``serve=False`` never answers without the model; ``ingest=False`` leaves storing
    the conversation to the app (e.g. when the context is a document, not the chat:
    then pass ``context_id="doc-1"``).

    Once notes exist for an older version of the thread and the turns they cover pass
    ``passage_threshold_tokens``, those turns are replaced by the notes plus the
    passages of them the question needs (:meth:`SleepTime.compact_messages`); the
    turns after that version and the last ``compact_keep_exchanges`` exchanges stay
    verbatim. ``compact=False`` keeps every message (the notes are then added to the
    system prompt on top of the history).
    """

    def __init__(
        self,
        client: SleepTime,
        *,
        namespace: IdSpec = None,
        context_id: IdSpec = None,
        serve: bool = True,
        ingest: bool = True,
        compact: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        self.namespace = namespace
        self.context_id = context_id
        self.serve = serve
        self.ingest = ingest
        self.compact = compact

    def _ids(self, runtime: Any) -> tuple[str, str]:
        return resolve_ids(
            getattr(runtime, "context", None),
            self.namespace,
            self.context_id,
            default_namespace=self.client.settings.agent_namespace,
        )

    def _prepare(self, request: ModelRequest) -> AIMessage | ModelRequest:
        ns, cid = self._ids(request.runtime)
        question = _last_question(request.messages)
        if self.serve and question is not None:
            answer = self.client.prepared_answer(ns, cid, question)
            if answer is not None:
                return _served_message(answer)
        notes = self.client.notes(ns, cid)
        if notes is None:
            return request
        if self.compact:
            base = request.system_message
            done = self.client.compact_messages(
                ns, cid, request.messages, system=str(base.text) if base is not None else None
            )
            if done.replaced:
                head, *rest = done.messages
                assert isinstance(head, SystemMessage)
                return request.override(system_message=head, messages=rest)  # type: ignore[arg-type]
        return request.override(
            system_message=notes_system_message(request.system_message, notes.text, notes.stale)
        )

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage:
        prepared = self._prepare(request)
        if isinstance(prepared, AIMessage):
            return prepared
        start = time.perf_counter()
        response = handler(prepared)
        self._book(request, prepared, response, start)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        prepared = await asyncio.to_thread(self._prepare, request)
        if isinstance(prepared, AIMessage):
            return prepared
        start = time.perf_counter()
        response = await handler(prepared)
        await asyncio.to_thread(self._book, request, prepared, response, start)
        return response

    def _book(self, request: ModelRequest, sent: ModelRequest, response: Any, start: float) -> None:
        """The agent's own model answered: its tokens go in this context's ledger (as
        ``learned`` when it saw notes, else ``cold``), so the ledger counts every answer."""
        messages = getattr(response, "result", None) or [response]
        reply = next((m for m in messages if isinstance(m, AIMessage)), None)
        if reply is None:
            return
        meta: Mapping[str, Any] = reply.usage_metadata or {}
        usage = Usage(
            prompt_tokens=int(meta.get("input_tokens", 0)),
            completion_tokens=int(meta.get("output_tokens", 0)),
            calls=1,
        )
        ns, cid = self._ids(request.runtime)
        with_notes = sent is not request
        question = _last_question(request.messages) or ""
        self.client.record_answer(
            ns,
            cid,
            model=model_name(request.model),
            usage=usage,
            source="learned" if with_notes else "cold",
            question=question,
            answer=str(reply.text) if isinstance(reply.text, str) else "",
            latency_ms=(time.perf_counter() - start) * 1000.0,
        )

    def after_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        if self.ingest:
            ns, cid = self._ids(runtime)
            if self._is_document(ns, cid):
                return None  # a document's notes are read, never overwritten by the chat
            self.client.ingest_messages(ns, cid, state["messages"])  # completed turns only
        return None

    def _is_document(self, namespace: str, context_id: str) -> bool:
        """Whether the context exists and was not made from chat: its text is not a
        rendered thread (``ingest(text)`` of a document, a log grown by ``append``).
        Such a context is read-only to the middleware; a new one, or a thread, is a chat."""
        current = self.client.store.get_context(namespace, context_id)
        return current is not None and not is_conversation(current.text)

    async def aafter_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.after_agent, state, runtime)


def sleeptime_node(
    client: SleepTime,
    *,
    namespace: IdSpec = None,
    context_id: IdSpec = None,
    **ask: Any,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A node for a ``StateGraph`` with a ``messages`` channel: answers the last user
    message with :meth:`SleepTime.ask` (zero tokens when a prepared answer is safe to
    serve, else the learned context at the budget in ``ask``)."""

    def node(state: Mapping[str, Any]) -> dict[str, Any]:
        ns, cid = resolve_ids(
            _runtime_context(),
            namespace,
            context_id,
            default_namespace=client.settings.agent_namespace,
        )
        question = _last_question(list(state["messages"]))
        if question is None:
            return {}
        answer = client.ask(ns, cid, question, **ask)
        return {"messages": [_served_message(answer)]}

    return node


def prepared_notes_tool(
    client: SleepTime, *, namespace: IdSpec = None, context_id: IdSpec = None
) -> BaseTool:
    """``consult_prepared_notes(question)``: what sleep-time compute prepared, for a
    ReAct agent to read before it answers. No model call."""

    def consult_prepared_notes(question: str) -> str:
        ns, cid = resolve_ids(
            _runtime_context(),
            namespace,
            context_id,
            default_namespace=client.settings.agent_namespace,
        )
        answer = client.prepared_answer(ns, cid, question)
        if answer is not None:
            return f"Prepared answer to this exact question: {answer.text}"
        notes = client.notes(ns, cid)
        if notes is None:
            return "No notes have been prepared for this context yet."
        scores = client.matcher.scores(question, [qa.question for qa in notes.prepared])
        related = [
            qa for s, qa in sorted(zip(scores, notes.prepared, strict=True), key=lambda x: -x[0])
        ][: client.settings.related_notes]
        parts = [prompts.fence("notes", notes.text)]
        if related:
            parts.append(prompts.prepared_block([(qa.question, qa.answer) for qa in related]))
        return "\n\n".join(parts)

    return StructuredTool.from_function(
        consult_prepared_notes,
        name="consult_prepared_notes",
        description=(
            "Read the notes prepared in advance about this conversation or document, "
            "and a prepared answer when one answers exactly this question."
        ),
    )
