"""The online query pipeline: retrieve artifacts -> predicted answer (0 tokens) |
answer from c' (+ context) at the requested budget | cold answer from the context.

Two nodes and one keyed lookup, so the framework adds well under a millisecond
around the model call. It never waits for sleep-time work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from sleeptime import prompts
from sleeptime.errors import ContextNotFound, ContextTooLong
from sleeptime.llm.budget import call_max_tokens, with_budget
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.kv import attach_kv
from sleeptime.models import Answer, Artifacts, Budget, Usage
from sleeptime.retrieval import Matcher
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore

#: (namespace, context id) -> (current version, its artifacts) or None if unknown.
ArtifactSource = Callable[[str, str], tuple[int, Artifacts] | None]


class QueryState(TypedDict, total=False):
    namespace: str
    context_id: str
    question: str
    budget: Budget
    explicit_budget: bool
    version: int
    artifacts: Artifacts
    answer: Answer


@dataclass
class QueryDeps:
    store: SQLStore
    gateway: Callable[[], ModelGateway]
    matcher: Matcher
    settings: Settings
    artifacts: ArtifactSource


def retrieve(state: QueryState, runtime: Runtime[QueryDeps]) -> dict[str, Any]:
    deps = runtime.context
    if "artifacts" in state:  # already retrieved (and unmatched) by the caller
        return {}
    ns, cid = state["namespace"], state["context_id"]
    found = deps.artifacts(ns, cid)
    if found is None:
        raise ContextNotFound(ns, cid)
    version, arts = found
    out: dict[str, Any] = {"version": version, "artifacts": arts}
    if arts.qas:
        match = deps.matcher.best(state["question"], [qa.question for qa in arts.qas])
        if match is not None and match.score >= deps.settings.match_threshold:
            qa = arts.qas[match.position]
            out["answer"] = Answer(
                text=qa.answer,
                source="predicted",
                usage=Usage(),
                latency_ms=0.0,
                version=version,
                matched_question=qa.question,
                match_score=round(match.score, 4),
            )
    return out


def route_retrieve(state: QueryState) -> str:
    return END if "answer" in state else "generate"


def generate(state: QueryState, runtime: Runtime[QueryDeps]) -> dict[str, Any]:
    deps = runtime.context
    ns, cid, version = state["namespace"], state["context_id"], state["version"]
    arts, budget = state["artifacts"], state["budget"]
    ctx = deps.store.get_context(ns, cid, version)
    if ctx is None:  # the version vanished between the two reads
        raise ContextNotFound(ns, cid)
    if arts.learned:
        source = "learned"
        context = ctx.text if deps.settings.include_raw_context else None
    else:
        source = "cold"
        if not state.get("explicit_budget"):  # no artifacts to lean on: full budget
            budget = Budget(verbosity=deps.settings.cold_verbosity)
        context = ctx.text
    gateway = with_budget(deps.gateway(), budget)
    attach_kv(gateway.model, deps.store, deps.settings)

    record = deps.store.recorder(ns, cid, version, gateway.name)
    cap = call_max_tokens(gateway.model, budget)
    messages = prompts.query_messages(
        state["question"], context=context, learned=arts.learned, verbosity=budget.verbosity
    )
    if not gateway.fits(messages, cap):
        if source == "cold":
            raise ContextTooLong(
                f"context {ns}/{cid} (~{gateway.count_tokens(ctx.text):,} tokens) does not fit "
                f"the window of {gateway.name} ({gateway.context_window:,} tokens) with a "
                f"{cap}-token answer; run sleep-time on it first (its learned context fits) "
                "or use a model with a larger window"
            )
        # the learned context is what makes a long context answerable: drop the raw text
        messages = prompts.query_messages(
            state["question"], context=None, learned=arts.learned, verbosity=budget.verbosity
        )
    res = gateway.call(
        messages, phase="test", step=source, max_tokens=cap, recorder=record, namespace=ns
    )
    return {
        "answer": Answer(
            text=res.text.strip(), source=source, usage=res.usage, latency_ms=0.0, version=version
        )
    }


def build_query_graph() -> Any:
    g = StateGraph(QueryState, context_schema=QueryDeps)
    g.add_node("retrieve", retrieve)
    g.add_node("generate", generate)
    g.add_edge(START, "retrieve")
    g.add_conditional_edges("retrieve", route_retrieve, ["generate", END])
    g.add_edge("generate", END)
    return g.compile(name="sleeptime-query")
