"""The quality gate on sleep-time output: loops and empty output are never stored or
served, cut-off output is kept to its last sentence, and every degradation is named in
the report, the ledger and the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.quality import check, complete_part, is_loop, repeated_share

LOOP = "the " * 2000
PARAGRAPH = "Ann bought three apples at the market and paid two dollars for them. "


def test_repetition_is_measured_on_word_ngrams() -> None:
    assert repeated_share(LOOP) > 0.99 and is_loop(LOOP)
    assert is_loop(PARAGRAPH * 4)  # a repeated paragraph, not only a repeated word
    normal = " ".join(f"Item {i} costs {i * 3} dollars and weighs {i + 1} kg." for i in range(30))
    assert not is_loop(normal)
    assert not is_loop("Total: 12 apples.")  # short is not degenerate
    assert not is_loop("the the the the the")  # too short to call a loop


def test_the_gate_rejects_keeps_and_cuts() -> None:
    assert check("  \n", False).cause == "empty" and check(" ", False).text is None
    assert check(LOOP, True).cause == "repetition" and check(LOOP, True).text is None
    cut = check("Ann has 3 apples. Bob has 4 pears. Carol has", True)
    assert cut.cause == "truncated" and cut.text == "Ann has 3 apples. Bob has 4 pears."
    assert check("Ann has 3 apples.", False).cause is None
    assert complete_part("no sentence end here") == "no sentence end here"


class Scripted(FakeChatModel):
    """The fake model, with chosen steps replaced by a loop (and a cap it ignores)."""

    loop_on: tuple[str, ...] = ()
    ignore_cap: bool = False

    def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
        last = str(messages[-1].content)
        if any(marker in last for marker in self.loop_on):
            return LOOP
        return super()._rule_based(messages, structured)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        if self.ignore_cap:
            kwargs.pop("max_tokens", None)  # a provider that stops "normally" much later
        return super()._generate(messages, *args, **kwargs)


def settings() -> Settings:
    return Settings(model="fake", n_questions=2)


def test_a_looping_revision_keeps_the_previous_notes(database_url: str) -> None:
    model = Scripted(loop_on=("Write the revised notes",))
    st = SleepTime(model=model, database_url=database_url, settings=settings())
    st.ingest("acme", "log", "Day 1: the pump moved 40 litres. Day 2: it moved 55 litres.")
    good = st.sleep("acme", "log").learned
    st.append("acme", "log", " Day 3: the pump moved 61 litres.")
    report = st.sleep("acme", "log")
    assert report.learned == good  # the good notes of v1 stay in use
    assert any("revise: repetition" in w for w in report.warnings)
    assert any("repetition" in w for w in st.ledger("acme", "log").warnings)
    assert "the the the" not in str(st.artifacts("acme", "log").learned)
    st.close()


def test_looping_notes_are_never_stored(database_url: str) -> None:
    model = Scripted(loop_on=("Write the study notes",))
    st = SleepTime(model=model, database_url=database_url, settings=settings())
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    with pytest.raises(Exception, match="repetition output twice on learn"):
        st.sleep("acme", "doc")
    assert st.artifacts("acme", "doc").learned is None
    st.close()


def test_a_looping_answer_past_its_cap_is_not_served(database_url: str) -> None:
    model = Scripted(loop_on=("<question>",), ignore_cap=True)
    st = SleepTime(model=model, database_url=database_url, settings=settings())
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    report = st.sleep("acme", "doc")
    assert report.qas and not any(qa.servable for qa in report.qas)
    assert {qa.reason for qa in report.qas} == {"repetition (a loop)"}
    assert any("not served" in w for w in report.warnings)
    q = report.qas[0].question
    assert st.ask("acme", "doc", q, max_tokens=8).source != "predicted"
    st.close()


def test_notes_cut_at_the_cap_end_on_a_sentence(database_url: str) -> None:
    text = " ".join(f"Crate {i} holds {i * 3} apples." for i in range(200))
    st = SleepTime(
        model=FakeChatModel(),
        database_url=database_url,
        settings=Settings(model="fake", n_questions=1, sleep_max_tokens=50),
    )
    st.ingest("acme", "doc", text)
    report = st.sleep("acme", "doc")
    assert report.learned is not None and report.learned.rstrip().endswith(".")
    assert any("learn: truncated" in w for w in report.warnings)
    assert any("truncated" in w for w in st.ledger("acme", "doc").warnings)
    st.close()


def test_what_came_before_a_loop_is_kept(database_url: str) -> None:
    """A small model often writes a good line, then repeats itself: the line is kept
    (short is not degenerate), the loop is not, and the report says so."""

    class GoodThenLoop(FakeChatModel):
        def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
            if "Write the study notes" in str(messages[-1].content):
                return "Ann has 3 apples and Bob has 4 pears.\n\n" + PARAGRAPH * 30
            return super()._rule_based(messages, structured)

    st = SleepTime(model=GoodThenLoop(), database_url=database_url, settings=settings())
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    report = st.sleep("acme", "doc")
    learned = str(report.learned)
    assert learned.startswith("Ann has 3 apples and Bob has 4 pears.")
    assert learned.count(PARAGRAPH.strip()) == 1  # its first saying, not the loop
    assert any("learn: repetition; kept the part before the loop" in w for w in report.warnings)
    st.close()
