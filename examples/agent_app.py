"""An agent app with sleep-time compute, offline on the bundled local model.

Part 1: a ``create_agent`` agent with ``SleepTimeMiddleware``. The conversation is the
context: after each completed turn the middleware stores the thread, sleep-time
compute learns it (here in-process; in production a worker does it between turns),
and the next turn gets the learned notes in its system prompt, or a prepared answer
at zero tokens when the question is one sleep-time compute predicted.

Part 2: a hand-built ``StateGraph`` with ``sleeptime_node`` answering from a document,
and the ``consult_prepared_notes`` tool.

    python examples/agent_app.py                 # bundled SmolLM2-135M (llama.cpp), offline
    python examples/agent_app.py --model fake    # deterministic scripted model, instant

The 135M model cannot reason: look at the sources and token counts, not the wording.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from sleeptime import Settings, SleepTime
from sleeptime.agents import SleepTimeMiddleware, prepared_notes_tool, sleeptime_node

FACTS = (
    "I run a bakery. Today I baked 12 dozen muffins and 8 dozen cookies. A dozen "
    "muffins sells for $18 and a dozen cookies for $10."
)


class Chat(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


def tokens(st: SleepTime, ns: str, cid: str) -> dict[str, int]:
    ledger = st.ledger(ns, cid)
    return {
        "sleep_tokens": ledger.sleep.total_tokens,
        "test_tokens": ledger.test.total_tokens,
        "zero_token_answers": ledger.by_source.get("predicted", 0),
    }


def agent_part(st: SleepTime) -> dict[str, Any]:
    model = st.gateway.model  # the agent's own model: the same local model here
    if getattr(model, "max_tokens", None):  # keep the local demo's replies short
        model = model.model_copy(update={"max_tokens": 96})
    agent = create_agent(model, tools=[], middleware=[SleepTimeMiddleware(st)])
    plain = create_agent(model, tools=[])
    conf: Any = {"configurable": {"thread_id": "shop-chat"}}
    ctx = {"user_id": "baker-1"}

    def turn(graph: Any, text: str, messages: list[Any]) -> list[Any]:
        out = graph.invoke({"messages": [*messages, HumanMessage(text)]}, conf, context=ctx)
        return list(out["messages"])

    thread = turn(agent, FACTS, [])  # completed turn: stored, sleep-time scheduled
    report = st.sleep("baker-1", "shop-chat")  # a worker would do this between turns
    print(f"sleep-time: {report.usage.total_tokens} tokens, {len(report.qas)} prepared answers")
    figures: dict[str, Any] = {"sleep_tokens": report.usage.total_tokens, "turns": []}
    questions = [qa.question for qa in report.qas if qa.servable][:1]
    questions.append("How much money do the muffins bring in?")
    for q in questions:
        t0 = time.perf_counter()
        reply = turn(agent, q, thread)[-1]  # the agent's own model call, or none
        t1 = time.perf_counter()
        baseline = turn(plain, q, thread)[-1].usage_metadata or {}
        t2 = time.perf_counter()
        meta = reply.response_metadata.get("sleeptime", {})
        row = {
            "question": q,
            "source": meta.get("source", "model, with the learned notes in its system prompt"),
            "test_tokens_with_sleeptime": (reply.usage_metadata or {}).get("total_tokens", 0),
            "test_tokens_without": baseline.get("total_tokens", 0),
            "seconds_with_sleeptime": round(t1 - t0, 3),
            "seconds_without": round(t2 - t1, 3),
        }
        figures["turns"].append(row)
        print(row)
    return figures


def graph_part(st: SleepTime) -> dict[str, Any]:
    doc = (
        "The library expects 340 visitors on Saturday and 260 on Sunday. It puts out the "
        "same number of muffins each day and keeps 10% of the cookies for volunteers."
    )
    st.ingest("baker-1", "catering", doc)
    st.sleep("baker-1", "catering")
    g = StateGraph(Chat)
    g.add_node("answer", sleeptime_node(st, context_id="catering", verbosity=1))
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    graph = g.compile()
    conf: Any = {"configurable": {"user_id": "baker-1", "thread_id": "any"}}
    tool = prepared_notes_tool(st, context_id="catering")
    out: dict[str, Any] = {"answers": []}
    for q in ["How many visitors does the library expect on Saturday?"]:
        reply = graph.invoke({"messages": [HumanMessage(q)]}, conf)["messages"][-1]
        out["answers"].append({"question": q, **reply.response_metadata["sleeptime"]})
        print("node:", out["answers"][-1])
        notes = tool.invoke({"question": q}, conf)
        print(f"tool: {len(notes)} characters of prepared notes, no model call")
        out["tool_chars"] = len(notes)
    out.update(tokens(st, "baker-1", "catering"))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="local")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary file)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'agent.db'}"
        settings = Settings(model=args.model, n_questions=2, sleep_max_tokens=128)
        with SleepTime(model=args.model, database_url=url, settings=settings) as st:
            return {"agent": agent_part(st), "graph": graph_part(st)}


if __name__ == "__main__":
    main()
