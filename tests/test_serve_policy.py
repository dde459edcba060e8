"""The serve policy: a precomputed answer is returned at zero tokens only for the
question it answers.

The near-miss suite pairs a stored (predicted) question with a live one that shares
most of its words but asks something else, in every category that fooled the old
similarity threshold, in both directions. Every near-miss must go to the model, in
``exact`` mode and in ``verified`` mode even with a judge that always says yes (the
structural guard alone must refuse them). Exact re-asks must be served.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import Field

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.bench.near_miss import (
    EXACT_REASKS,
    NEAR_MISSES,
    PARAPHRASES,
    both_ways,
    policy_table,
)
from sleeptime.retrieval import ServePolicy, conflict, equivalent, normalise
from sleeptime.store.sql import LEARNED, MANIFEST, QA

ALWAYS_YES = ServePolicy("verified", threshold=0.01)


@pytest.mark.parametrize(("category", "stored", "live"), list(both_ways()))
def test_a_near_miss_is_never_served(category: str, stored: str, live: str) -> None:
    assert not equivalent(live, stored), (category, normalise(live), normalise(stored))
    assert ServePolicy("exact").decide(live, [stored]).serve is None
    assert conflict(live, stored) is not None, category
    # even with the lowest threshold, the guard refuses before any verifier is asked
    decision = ALWAYS_YES.decide(live, [stored])
    assert decision.serve is None and decision.verify is None, category


@pytest.mark.parametrize(("stored", "live"), EXACT_REASKS)
def test_an_exact_reask_is_served(stored: str, live: str) -> None:
    for a, b in ((stored, live), (live, stored)):
        decision = ServePolicy("exact").decide(a, ["Something else entirely?", b])
        assert decision.serve == 1 and decision.reason.startswith("exact"), (a, b)


def test_the_near_miss_table_serves_nothing_and_covers_every_category() -> None:
    table = policy_table()
    assert {row["category"] for row in table} >= {
        "negation",
        "opposite",
        "entity",
        "period",
        "place",
        "unit",
        "number",
        "direction",
        "part",
        "total vs per-item",
    }
    assert all(row["served_exact"] == 0 for row in table)
    assert all(row["served_verified_yes_judge"] == 0 for row in table)


@pytest.mark.parametrize(("stored", "live"), PARAPHRASES)
def test_paraphrases_are_left_to_the_model(stored: str, live: str) -> None:
    decision = ServePolicy("exact").decide(live, [stored])
    assert decision.serve is None and decision.related == (0,)


def test_off_never_serves_and_unrelated_questions_get_no_notes() -> None:
    stored = ["How many apples does Ann have?", "Where does Bob live?"]
    assert ServePolicy("off").decide(stored[0], stored).serve is None
    decision = ServePolicy("exact").decide("What colour is the sky?", stored)
    assert decision.serve is None and decision.related == ()


def test_a_paraphrase_passes_the_guard_and_only_a_verifier_may_serve_it() -> None:
    stored, live = "How many apples does Ann have?", "What number of apples does Ann have?"
    assert conflict(live, stored) is None
    assert ServePolicy("exact").decide(live, [stored]).serve is None
    assert ServePolicy("verified").decide(live, [stored]).verify == 0


# -- through SleepTime: artifacts seeded in the store, the model path observed -----------


class Recording(FakeChatModel):
    """The fake model, keeping the prompts it was sent."""

    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def seed(st: SleepTime, cid: str, qas: list[dict[str, Any]]) -> None:
    """A finished version of ``cid`` whose predicted Q&As are ``qas``."""
    st.ingest("acme", cid, "Ann has 3 apples. Bob has 4 apples. Tom had $20 before the trip.")
    for kind, key, payload in [
        (LEARNED, "0", {"text": "Ann: 3 apples. Bob: 4 apples."}),
        *[(QA, str(i), qa) for i, qa in enumerate(qas)],
        (MANIFEST, "0", {"questions": len(qas)}),
    ]:
        st.store.put_artifact("acme", cid, 1, kind, key, payload)


def seeded(url: str, qas: list[dict[str, Any]], **kw: Any) -> tuple[SleepTime, Recording]:
    model = Recording(prompts=[])
    st = SleepTime(model=model, database_url=url, settings=Settings(model="fake"), **kw)
    seed(st, "doc", qas)
    return st, model


def test_near_misses_go_to_the_model_with_the_stored_answer_as_a_note(sqlite_url: str) -> None:
    model = Recording(prompts=[])
    st = SleepTime(model=model, database_url=sqlite_url, settings=Settings(model="fake"))
    served = []
    for i, (category, stored_q, live) in enumerate(NEAR_MISSES):
        seed(st, f"doc-{i}", [{"question": stored_q, "answer": f"The answer is {i}."}])
        ans = st.ask("acme", f"doc-{i}", live)
        if ans.source == "predicted":
            served.append((category, live, ans.matched_question))
            continue
        assert ans.usage.calls == 1 and ans.serve_reason is None
        assert ans.related_questions == [stored_q]  # offered as a note, not served
        prompt = str(model.prompts[-1][-1].content)
        assert f"Q: {stored_q}" in prompt and "use one only if it answers exactly" in prompt
        assert st.ledger("acme", f"doc-{i}").by_source == {"learned": 1}
    assert served == []
    st.close()


def test_exact_reasks_are_served_at_zero_tokens_and_say_why(sqlite_url: str) -> None:
    stored = [
        {"question": s, "answer": "The answer is 7.", "servable": True} for s, _ in EXACT_REASKS
    ]
    st, model = seeded(sqlite_url, stored)
    for stored_q, live in EXACT_REASKS:
        ans = st.ask("acme", "doc", live)
        assert ans.source == "predicted" and ans.usage.total_tokens == 0, live
        assert ans.matched_question == stored_q and ans.serve_reason == "exact: same question"
    assert model.prompts == []  # no model call at all
    st.close()


def test_an_unservable_answer_is_never_served(sqlite_url: str) -> None:
    qas = [
        {
            "question": "How many apples does Ann have?",
            "answer": "Ann has",
            "servable": False,
            "reason": "hit its token cap (may be cut off)",
        }
    ]
    st, _ = seeded(sqlite_url, qas)
    ans = st.ask("acme", "doc", "How many apples does Ann have?")
    assert ans.source == "learned" and ans.related_questions == []
    st.close()


def test_verified_mode_serves_what_the_judge_confirms(sqlite_url: str) -> None:
    qas = [{"question": "How many apples does Ann have?", "answer": "The answer is 3."}]
    asked: list[tuple[str, str]] = []

    def judge(live: str, stored: str) -> bool:
        asked.append((live, stored))
        return True

    st, model = seeded(sqlite_url, qas, serve="verified", judge=judge)
    ans = st.ask("acme", "doc", "What number of apples does Ann have?")
    assert ans.source == "predicted" and ans.serve_reason == "verified by judge"
    assert ans.usage.total_tokens == 0 and model.prompts == []
    # a near-miss never reaches the judge
    ans = st.ask("acme", "doc", "What number of apples does Bob have?")
    assert ans.source == "learned" and len(asked) == 1
    st.close()


def test_verified_mode_without_a_judge_asks_the_model_and_bills_it(sqlite_url: str) -> None:
    qas = [{"question": "How many apples does Ann have?", "answer": "The answer is 3."}]
    st, model = seeded(sqlite_url, qas, serve="verified")
    ans = st.ask("acme", "doc", "What number of apples does Ann have?")
    # the scripted model says "no": the question is answered by the model, and the
    # verification call is part of this answer's cost and of the ledger
    assert ans.source == "learned" and ans.usage.calls == 2
    verify_prompt = str(model.prompts[0][-1].content)
    assert "<candidate>" in verify_prompt and "Answer yes or no" in verify_prompt
    assert st.ledger("acme", "doc").test.calls == 2
    st.close()


def test_a_bad_serve_mode_is_rejected(sqlite_url: str) -> None:
    with pytest.raises(InvalidInput, match="serve must be one of"):
        SleepTime(model="fake", database_url=sqlite_url, serve="sometimes")  # type: ignore[arg-type]


def test_sleep_marks_cut_off_and_final_less_answers_unservable(sqlite_url: str) -> None:
    long_answer = " ".join(f"Step {i}: add {i} to {i * 7}." for i in range(300))  # no loop
    model = FakeChatModel(
        responses=[
            "Notes: Ann has 3 apples.",
            '{"questions": ["How many apples does Ann have?", "How many does Bob have?",'
            ' "Who has more apples?"]}',
            "The answer is 3.",
            long_answer,  # cut at sleep_max_tokens
            "Bob, probably.",  # no final answer line
            "The answer is 4.",  # the model path, for the unservable one
        ]
    )
    st = SleepTime(
        model=model, database_url=sqlite_url, settings=Settings(model="fake", n_questions=3)
    )
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 apples.")
    report = st.sleep("acme", "doc")
    assert [qa.servable for qa in report.qas] == [True, False, False]
    assert report.qas[1].reason == "hit its token cap (may be cut off)"
    assert report.qas[2].reason == "no final answer line"
    assert st.ask("acme", "doc", "How many apples does Ann have?").source == "predicted"
    assert st.ask("acme", "doc", "How many does Bob have?").source == "learned"
    st.close()
