"""Conversations as contexts: stable rendering, completed turns only, stale-while-
revalidate answers, and incremental sleep-time on a thread that grew."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.conversation import completed_turn, render_messages


def thread(turns: int) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for i in range(turns):
        out.append(HumanMessage(f"Turn {i}: I bought {i + 2} boxes of {i * 3 + 1} pens today."))
        out.append(AIMessage(f"Noted: {i + 2} boxes with {i * 3 + 1} pens each on day {i}."))
    return out


def client(url: str) -> SleepTime:
    return SleepTime(
        model=FakeChatModel(), database_url=url, settings=Settings(model="fake", n_questions=3)
    )


def test_rendering_grows_by_appending_and_keeps_roles() -> None:
    msgs = thread(3)
    for n in range(1, len(msgs)):
        assert render_messages(msgs[: n + 1]).startswith(render_messages(msgs[:n]))
    text = render_messages([{"role": "user", "content": "hi"}, AIMessage("hello")])
    assert text == "[user] hi\n\n[assistant] hello\n\n"


def test_only_a_completed_assistant_turn_is_stored(sqlite_url: str) -> None:
    st = client(sqlite_url)
    msgs = thread(2)
    assert completed_turn(msgs)
    partial = [*msgs, HumanMessage("And tomorrow?")]
    calling = [*partial, AIMessage("", tool_calls=[{"name": "calc", "args": {}, "id": "1"}])]
    for pending in (partial, calling, [*calling, ToolMessage("42", tool_call_id="1")]):
        assert not completed_turn(pending)
        assert st.ingest_messages("acme", "chat", pending) is None
    assert st.store.get_context("acme", "chat") is None  # nothing stored or scheduled
    ctx = st.ingest_messages("acme", "chat", msgs)
    assert ctx is not None and ctx.version == 1 and ctx.text == render_messages(msgs)
    st.close()


def test_a_grown_thread_is_answered_stale_then_learned_incrementally(sqlite_url: str) -> None:
    st = client(sqlite_url)
    msgs = thread(20)
    st.ingest_messages("acme", "chat", msgs)
    first = st.sleep("acme", "chat")
    # the fake model's notes reach the cap: kept to their last sentence, said so
    assert first.qas and all("truncated" in w for w in first.warnings)
    old_question = first.qas[0].question

    grown = [*msgs, HumanMessage("Turn 20: I returned 5 pens."), AIMessage("Noted: 5 returned.")]
    assert st.ingest_messages("acme", "chat", grown).version == 2  # type: ignore[union-attr]

    # before the new version is learned: v1's notes with the current text, flagged stale;
    # v1's precomputed answers are never served for v2
    stale = st.ask("acme", "chat", old_question)
    assert stale.source == "learned" and stale.stale and stale.learned_version == 1
    assert stale.version == 2 and stale.usage.calls == 1

    second = st.sleep("acme", "chat")
    assert second.learned and second.learned.startswith(first.learned or "")
    sleep_prompt = st.ledger("acme", "chat").sleep.prompt_tokens - first.usage.prompt_tokens
    assert second.usage.prompt_tokens == sleep_prompt
    assert second.usage.prompt_tokens < first.usage.prompt_tokens / 2, (
        second.usage.prompt_tokens,
        first.usage.prompt_tokens,
    )
    # the answers that still hold were rechecked and carried, not recomputed
    carried = [qa.question for qa in second.qas][: len(first.qas)]
    assert carried == [qa.question for qa in first.qas]
    fresh = st.ask("acme", "chat", old_question)
    assert fresh.source == "predicted" and fresh.version == 2 and not fresh.stale
    st.close()


def test_an_unreadable_recheck_keeps_no_old_answer(sqlite_url: str) -> None:
    model = FakeChatModel(
        responses=[
            "Notes: 3 pens.",
            '{"questions": ["How many pens were bought?"]}',
            "The answer is 3.",
            "Notes: 3 pens, 2 returned.",  # revise
            "I cannot tell.",  # recheck: unreadable
            '{"questions": ["How many pens were returned?"]}',
            "The answer is 2.",
            "The answer is 3.",  # the ask below, on the model path
        ]
    )
    st = SleepTime(model=model, database_url=sqlite_url, settings=Settings(n_questions=1))
    st.ingest("acme", "log", "I bought 3 pens.\n")
    st.sleep("acme", "log")
    st.append("acme", "log", "I returned 2 pens.\n")
    report = st.sleep("acme", "log")
    assert [qa.question for qa in report.qas] == ["How many pens were returned?"]
    assert st.ask("acme", "log", "How many pens were bought?").source == "learned"
    st.close()


def test_asks_do_not_postpone_sleep_time_work(sqlite_url: str) -> None:
    st = client(sqlite_url)
    seen: list[tuple[str, str]] = []
    st.on_activity.append(lambda ns, cid: seen.append((ns, cid)))
    st.ingest_messages("acme", "chat", thread(1))  # a completed turn: not activity
    st.ask("acme", "chat", "How many pens?")
    assert seen == []
    st.touch("acme", "chat")  # a turn in progress is
    st.ingest("acme", "doc", "Ann has 3 apples.")  # editing a document is
    assert seen == [("acme", "chat"), ("acme", "doc")]
    st.close()


def test_a_separate_sleep_time_model_is_used_and_booked(sqlite_url: str) -> None:
    answering = FakeChatModel(display_name="small-answerer")
    thinking = FakeChatModel(display_name="big-thinker")
    st = SleepTime(
        model=answering,
        sleep_model=thinking,
        database_url=sqlite_url,
        settings=Settings(model="fake", n_questions=2),
    )
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 apples.")
    st.sleep("acme", "doc")
    st.ask("acme", "doc", "Who has the most apples of all?")
    assert thinking.calls >= 3 and answering.calls == 1
    ledger = st.ledger("acme", "doc")
    assert set(ledger.by_model) == {"small-answerer", "big-thinker"}
    assert set(ledger.by_model["big-thinker"]) == {"sleep"}
    assert ledger.by_model["small-answerer"]["test"].calls == 1
    assert ledger.sleep == ledger.by_model["big-thinker"]["sleep"]
    st.close()
