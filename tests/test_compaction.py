"""Compaction: the turns learned notes cover are replaced by the notes plus the passages
a question needs; the app's system prompt, later turns, the last exchanges and every
tool call with its result stay."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import Field

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.agents import SleepTimeMiddleware
from sleeptime.compaction import cut_point
from sleeptime.conversation import render_messages

NAMES = ["Oriel", "Tamsin", "Bexley", "Corwin", "Isolde", "Lachlan", "Maelis", "Perrin"]
CITIES = ["Tarvel", "Ostrava", "Quillon", "Marrow", "Dunmere", "Halvik", "Sorrento", "Brisk"]
THINGS = ["goats", "kayaks", "violins", "beehives", "bicycles", "lanterns", "looms", "kites"]


def fact(i: int) -> str:
    name = f"{NAMES[i % 8]}{i}"
    return f"My friend {name} lives in {CITIES[(i * 3) % 8]} and owns {i + 2} {THINGS[i % 8]}."


def user_turn(i: int, rng: random.Random) -> str:
    filler = " ".join(
        rng.choice(
            [
                "The weather has been grey all week.",
                "I keep meaning to tidy the garage.",
                "Work was busy but fine.",
                "We watched a film about the sea last night.",
                "The train was late again this morning.",
                "I tried a new soup recipe with lentils.",
            ]
        )
        for _ in range(6)
    )
    return f"{filler} {fact(i)} Please keep that in mind for later."


def thread(n: int, seed: int = 3) -> list[BaseMessage]:
    rng = random.Random(seed)
    out: list[BaseMessage] = []
    for i in range(n):
        out.append(HumanMessage(user_turn(i, rng)))
        out.append(AIMessage(f"Noted, thank you. I will remember item {i} for you."))
    return out


def words(messages: list[BaseMessage]) -> int:
    return sum(len(str(m.content).split()) for m in messages)


def test_the_cut_is_at_an_exchange_and_keeps_the_last_ones() -> None:
    msgs = thread(10)
    text = render_messages(msgs)
    assert cut_point(msgs, len(text), 3) == 14  # 7 exchanges replaced, 3 kept
    assert cut_point(msgs, len(text), 0) == 18
    assert cut_point(msgs, len(text), 10) == 0
    covered = len(render_messages(msgs[:8]))  # the notes cover 4 exchanges
    assert cut_point(msgs, covered, 3) == 8
    assert cut_point(msgs, covered - 1, 3) == 6  # exchange 4 not wholly covered


def test_a_tool_call_is_never_separated_from_its_result() -> None:
    msgs: list[BaseMessage] = []
    for i in range(6):
        msgs.append(HumanMessage(f"question {i} about the weather in town {i}"))
        call = {"name": "weather", "args": {"town": str(i)}, "id": f"c{i}"}
        msgs.append(AIMessage("", tool_calls=[call]))
        msgs.append(ToolMessage(f"sunny, {i} degrees", tool_call_id=f"c{i}"))
        msgs.append(AIMessage(f"It is sunny, {i} degrees."))
    text = render_messages(msgs)
    for covered in range(0, len(text) + 1, 7):
        cut = cut_point(msgs, covered, 1)
        kept = msgs[cut:]
        assert cut == 0 or isinstance(kept[0], HumanMessage)
        calls = {c["id"] for m in kept if isinstance(m, AIMessage) for c in m.tool_calls}
        assert all(m.tool_call_id in calls for m in kept if isinstance(m, ToolMessage))


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"model": "fake", "n_questions": 2, "passage_threshold_tokens": 1000}
    base.update(kw)
    return Settings(**base)


def test_compact_messages_replaces_covered_turns(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings())
    msgs = thread(40)
    # not learned yet: unchanged, the app's system prompt first
    same = st.compact_messages("u1", "t1", msgs, system="Be kind.")
    assert same.replaced == 0 and same.messages[1:] == msgs
    assert same.messages[0].content == "Be kind."
    st.ingest_messages("u1", "t1", msgs[:60])  # 30 exchanges stored
    st.sleep("u1", "t1")
    question = HumanMessage("Where does Isolde12 live, and what does that friend own?")
    out = st.compact_messages("u1", "t1", [SystemMessage("Be kind."), *msgs, question])
    assert out.replaced == 60 and out.learned_version == 1
    head = out.messages[0]
    assert isinstance(head, SystemMessage) and str(head.content).startswith("Be kind.")
    assert "<notes>" in str(head.content) and fact(12) in str(head.content)
    assert out.messages[1:] == [*msgs[60:], question]  # turns after the notes verbatim
    assert out.passages
    # another thread's text never gets these notes
    other = st.compact_messages("u1", "t1", thread(40, seed=9))
    assert other.replaced == 0
    with pytest.raises(InvalidInput):
        st.compact_messages("u1", "t1", msgs, keep_exchanges=-1)
    st.close()


def test_under_the_threshold_nothing_is_compacted(sqlite_url: str) -> None:
    st = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url,
        settings=settings(passage_threshold_tokens=100_000),
    )
    msgs = thread(30)
    st.ingest_messages("u1", "t1", msgs)
    st.sleep("u1", "t1")
    assert st.compact_messages("u1", "t1", msgs).replaced == 0
    st.close()


class OneLineNotes(FakeChatModel):
    """A weak model's notes: one short line, so the passages must carry the facts."""

    def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
        last = str(messages[-1].content)
        if "Write the study notes" in last or "Write the revised notes" in last:
            return "A friendly chat about friends, their homes and what they own."
        return super()._rule_based(messages, structured)


class Recording(FakeChatModel):
    sent: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.sent.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@pytest.mark.parametrize("compact", [True, False])
def test_a_long_agent_thread_is_compacted(sqlite_url: str, compact: bool) -> None:
    """60 exchanges through create_agent + SleepTimeMiddleware, learned after 50, with
    one-line notes: questions about facts of the compacted turns still find them in the
    prompt (the passages carry them), and the prompt is a fraction of the uncompacted one."""
    st = SleepTime(model=OneLineNotes(), database_url=sqlite_url, settings=settings())
    model = Recording()
    agent = create_agent(
        model,
        tools=[],
        system_prompt="You are a helpful assistant.",
        middleware=[SleepTimeMiddleware(st, compact=compact)],
    )
    conf: dict[str, Any] = {"configurable": {"thread_id": "chat"}}
    rng = random.Random(5)
    history: list[BaseMessage] = []
    for i in range(60):
        out = agent.invoke(
            {"messages": [*history, HumanMessage(user_turn(i, rng))]},
            conf,
            context={"user_id": "u1"},
        )
        history = list(out["messages"])
        if i == 49:
            st.sleep("u1", "chat")
    model.sent.clear()
    ratios, found = [], 0
    asked = random.Random(11).sample(range(45), 20)
    for i in asked:
        q = HumanMessage(f"Remind me: where does {NAMES[i % 8]}{i} live?")
        agent.invoke({"messages": [*history, q]}, conf, context={"user_id": "u1"})
        received = model.sent[-1]
        full = 5 + words([*history, q])  # the system prompt and every message
        ratios.append(words(received) / full)
        found += fact(i) in "\n".join(str(m.content) for m in received)
    if compact:
        assert max(ratios) <= 0.35, max(ratios)
        assert found >= 19
    else:
        assert min(ratios) > 1.0  # notes on top of the whole history
        assert found == 20
    st.close()


def test_notes_and_passages_take_at_most_the_compact_share(sqlite_url: str) -> None:
    """The compacted head (notes + passages) stays within ``compact_share`` of the
    replaced turns, the notes counted first: short notes leave room for more passages."""
    msgs = thread(40)
    question = HumanMessage("How many kayaks does Tamsin9 own?")

    def head_and_passages(share: float) -> tuple[int, int]:
        st = SleepTime(
            model=FakeChatModel(),
            database_url=sqlite_url.replace(".db", f"-{share}.db"),
            settings=settings(compact_share=share),
        )
        try:
            st.ingest_messages("u1", "t1", msgs[:60])
            st.sleep("u1", "t1")
            out = st.compact_messages("u1", "t1", [*msgs, question])
            covered = st.store.get_context("u1", "t1", 1)
            notes = st.notes("u1", "t1")
            assert covered is not None and notes is not None and out.replaced == 60
            text = covered.text
            passages = sum(len(text[p.start : p.end].split()) for p in out.passages)
            room = int(len(text.split()) * share) - len(notes.text.split())
            assert passages <= max(room, st.settings.passage_tokens)
            # the fact the question asks about is brought back verbatim
            assert fact(9) in str(out.messages[0].content)
            return passages, len(out.passages)
        finally:
            st.close()

    small, few = head_and_passages(0.1)
    large, many = head_and_passages(0.3)
    assert large > small and many > few
