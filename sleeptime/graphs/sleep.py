"""The sleep-time pipeline: context -> learned context c' (k rethinks, merged) ->
predicted questions -> precomputed answers -> persisted.

Every step persists its output idempotently before the next starts, and every step
first looks for its output in the store, so a run killed halfway resumes where it
stopped and re-running a finished version costs nothing.

The steps live in :mod:`~sleeptime.graphs.learn` and :mod:`~sleeptime.graphs.questions`,
their shared state in :mod:`~sleeptime.graphs.state`; this module adds the last steps
(prefill, finish) and wires the graph.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from sleeptime import prompts
from sleeptime.graphs.learn import extends as extends
from sleeptime.graphs.learn import index, merge, plan, rethink, revise, route_plan
from sleeptime.graphs.learn import learn_long as learn_long
from sleeptime.graphs.learn import merge_blocks as merge_blocks
from sleeptime.graphs.learn import rethink_tools as rethink_tools
from sleeptime.graphs.questions import ANSWER_VERBOSITY as ANSWER_VERBOSITY
from sleeptime.graphs.questions import PREDICT_ATTEMPTS as PREDICT_ATTEMPTS
from sleeptime.graphs.questions import answer, predict
from sleeptime.graphs.questions import parse_outdated as parse_outdated
from sleeptime.graphs.questions import recheck as recheck
from sleeptime.graphs.questions import unservable_reason as unservable_reason
from sleeptime.graphs.state import DegenerateOutput as DegenerateOutput
from sleeptime.graphs.state import SleepDeps, SleepState, version_kwargs
from sleeptime.graphs.state import add_usage as add_usage
from sleeptime.llm.kv import sleep_prefill
from sleeptime.models import PassageIndex, SleepStep, Usage
from sleeptime.passages import replaces_text
from sleeptime.store.kinds import Kind


def prefill(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    """Leave the query prompt's prefix (notes + context, everything before the
    question) computed: a saved KV state for a llama.cpp model, a warm prefix cache for
    an OpenAI-compatible server. An optimisation only, so a failure never fails the run."""
    deps = runtime.context
    made = deps.get(state, Kind.INDEX, "0")
    index = PassageIndex.model_validate(made) if made else None
    # with passages, the online prompt's stable prefix is the notes alone
    whole = not replaces_text(index, deps.settings.passage_threshold_tokens)
    try:
        note = sleep_prefill(
            deps.store,
            deps.query_gateway,
            deps.settings,
            **version_kwargs(state),
            context=state["text"] if whole else None,
            learned=state.get("learned"),
        )
    except Exception as exc:  # never fail a run for an optimisation
        note = f"prefill skipped: {exc}"
    deps.say(note)
    return {}


def finish(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    deps = runtime.context
    qas = state.get("qas", [])
    learned = deps.get(state, Kind.LEARNED, "0") or {}
    warnings = list(
        dict.fromkeys([*learned.get("warnings", []), *deps.warnings, *state.get("warnings", [])])
    )
    deps.put(
        state,
        Kind.MANIFEST,
        "0",
        {
            "k": deps.k,
            "questions": len(qas),
            "servable": sum(1 for qa in qas if qa.get("servable", True)),
            "warnings": warnings,
            "prompts": prompts.PROMPT_VERSION,
        },
        Usage(),
    )
    return {"warnings": warnings}


class Node(Protocol):
    """A node of the sleep graph (LangGraph passes ``runtime`` by keyword)."""

    def __call__(self, state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]: ...


def timed(name: str, node: Node) -> Node:
    """``node`` reporting its end to ``SleepDeps.on_step``: duration, tokens, and for a
    failure the exception's class (the exception itself propagates unchanged)."""

    def run(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
        report = runtime.context.on_step
        if report is None:
            return node(state, runtime)
        part = state["rethink"] + 1 if name == "rethink" else None
        t0 = time.perf_counter()
        try:
            out = node(state, runtime)
        except Exception as exc:
            report(
                SleepStep(
                    step=name,
                    status="failed",
                    duration_ms=round((time.perf_counter() - t0) * 1000),
                    part=part,
                    error=type(exc).__name__,
                )
            )
            raise
        usage = out.get("usage") or Usage()
        report(
            SleepStep(
                step=name,
                status="done",
                duration_ms=round((time.perf_counter() - t0) * 1000),
                tokens=usage.total_tokens,
                calls=usage.calls,
                part=part,
            )
        )
        return out

    return run


def build_sleep_graph() -> Any:
    g = StateGraph(SleepState, context_schema=SleepDeps)
    for name, node in (
        ("index", index),
        ("plan", plan),
        ("rethink", rethink),
        ("revise", revise),
        ("merge", merge),
        ("predict", predict),
        ("answer", answer),
        ("prefill", prefill),
        ("finish", finish),
    ):
        g.add_node(name, timed(name, node))
    g.add_edge(START, "index")
    g.add_edge("index", "plan")
    g.add_conditional_edges("plan", route_plan, ["rethink", "revise", "predict", "prefill", END])
    g.add_edge("revise", "predict")
    g.add_edge("rethink", "merge")
    g.add_edge("merge", "predict")
    g.add_edge("predict", "answer")
    g.add_edge("answer", "prefill")
    g.add_edge("prefill", "finish")
    g.add_edge("finish", END)
    return g.compile(name="sleeptime-sleep")
