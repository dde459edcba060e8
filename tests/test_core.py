"""The core contract: versions, idempotent artifacts, invalidation,
namespace isolation, the three answer sources, malformed output and the ledger."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from sleeptime import (
    ContextNotFound,
    FakeChatModel,
    InvalidInput,
    ModelOutputError,
    Settings,
    SleepTime,
)
from sleeptime.store.schema import ArtifactRow, LedgerRow

TEXT = (
    "Ann buys 3 apples at $2 each. Bob buys 4 pears at $1.50 each. "
    "They split the bill equally. The shop closes at 6 p.m."
)


def artifact_count(st: SleepTime, ns: str | None = None) -> int:
    stmt = select(func.count()).select_from(ArtifactRow)
    if ns is not None:
        stmt = stmt.where(ArtifactRow.namespace == ns)
    with st.store.session() as s:
        return int(s.execute(stmt).scalar_one())


def test_ingest_versions_by_content(st: SleepTime) -> None:
    v1 = st.ingest("acme", "doc", TEXT)
    assert (v1.version, v1.created) == (1, True)
    again = st.ingest("acme", "doc", TEXT)
    assert (again.version, again.created) == (1, False)
    v2 = st.ingest("acme", "doc", TEXT + " New sentence.")
    assert (v2.version, v2.created) == (2, True)
    assert st.context("acme", "doc").text.endswith("New sentence.")
    assert st.store.get_context("acme", "doc", 1).text == TEXT  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_context_rejected(st: SleepTime, text: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        st.ingest("acme", "doc", text)
    with pytest.raises(ContextNotFound):
        st.context("acme", "doc")


def test_huge_context_rejected_with_limit_in_message(database_url: str) -> None:
    st = SleepTime(
        model="fake", database_url=database_url, settings=Settings(max_context_chars=1000)
    )
    with pytest.raises(InvalidInput, match="1,000"):
        st.ingest("acme", "doc", "x" * 1001)
    st.ingest("acme", "doc", "x" * 1000)


@pytest.mark.parametrize(
    "ns,cid", [("", "doc"), ("has space", "doc"), ("ok", ""), ("ok", "a\x00b"), ("ok", "x" * 300)]
)
def test_bad_identifiers(st: SleepTime, ns: str, cid: str) -> None:
    with pytest.raises(InvalidInput):
        st.ingest(ns, cid, TEXT)


def test_sleep_is_idempotent(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    model = st.gateway.model
    assert isinstance(model, FakeChatModel)
    first = st.sleep("acme", "doc")
    assert not first.skipped and first.learned and first.qas
    calls, rows = model.calls, artifact_count(st)
    second = st.sleep("acme", "doc")
    assert second.skipped
    assert second.qas == first.qas and second.learned == first.learned
    assert model.calls == calls  # no model call for a finished version
    assert artifact_count(st) == rows


def test_interrupted_sleep_resumes_without_duplicates(
    database_url: str, settings: Settings
) -> None:
    # learn, predict, then the first answer call fails permanently
    model = FakeChatModel()
    st = SleepTime(model=model, database_url=database_url, settings=settings)
    st.ingest("acme", "doc", TEXT)
    model.errors = []

    class Boom(ValueError):
        status_code = 400

    real = model._generate
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:  # learn, predict, answer 1 ok, answer 2 fails
            raise Boom("bad request")
        return real(*args, **kwargs)

    object.__setattr__(model, "_generate", flaky)
    with pytest.raises(Exception, match="bad request"):
        st.sleep("acme", "doc")
    partial = artifact_count(st)
    assert partial == 4  # index, learned, questions, one answer; no manifest
    assert not st.artifacts("acme", "doc").complete
    report = st.sleep("acme", "doc")
    assert len(report.qas) == settings.n_questions
    assert calls["n"] == 4 + settings.n_questions - 1  # only the missing answers were computed
    # index, learned, questions, qas, manifest
    assert artifact_count(st) == 4 + settings.n_questions
    assert st.artifacts("acme", "doc").complete


def test_three_sources(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    cold = st.ask("acme", "doc", "How much does Ann pay?")
    assert cold.source == "cold" and cold.usage.completion_tokens > 0
    report = st.sleep("acme", "doc")
    predicted_q = report.qas[1].question
    hit = st.ask("acme", "doc", predicted_q.upper())
    assert hit.source == "predicted"
    assert hit.usage.total_tokens == 0 and hit.usage.calls == 0
    assert hit.text == report.qas[1].answer and hit.matched_question == predicted_q
    learned = st.ask("acme", "doc", "How much does Ann pay?")
    assert learned.source == "learned" and learned.usage.completion_tokens > 0


def test_predicted_answers_need_the_same_numbers(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    st.store.put_artifact(
        "acme", "doc", 1, "qa", "0", {"question": "What do 3 apples cost?", "answer": "$6"}
    )
    st.store.put_artifact("acme", "doc", 1, "learned", "0", {"text": "notes"})
    assert st.ask("acme", "doc", "What do 3 apples cost?").source == "predicted"
    assert st.ask("acme", "doc", "What do 5 apples cost?").source == "learned"


def test_new_version_makes_old_artifacts_unservable(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    report = st.sleep("acme", "doc")
    q = report.qas[0].question
    assert st.ask("acme", "doc", q).source == "predicted"
    st.ingest("acme", "doc", TEXT.replace("3 apples", "7 apples"))
    after = st.ask("acme", "doc", q)
    # v1's precomputed answer is never served for v2; its notes may be, flagged stale
    assert after.source == "learned" and after.version == 2
    assert after.stale and after.learned_version == 1 and after.usage.calls == 1
    assert st.artifacts("acme", "doc").empty
    st.sleep("acme", "doc")
    assert st.artifacts("acme", "doc").version == 2


def test_namespaces_are_isolated(st: SleepTime) -> None:
    st.ingest("tenant-a", "doc", TEXT)
    st.ingest("tenant-b", "doc", TEXT)  # same id, same text, never slept
    report = st.sleep("tenant-a", "doc")
    for qa in report.qas:
        answer = st.ask("tenant-b", "doc", qa.question)
        assert answer.source == "cold"
    assert st.artifacts("tenant-b", "doc").empty
    assert artifact_count(st, "tenant-b") == 0
    with pytest.raises(ContextNotFound):
        st.ask("tenant-c", "doc", report.qas[0].question)
    assert st.ledger("tenant-b", "doc").sleep.calls == 0


def test_unparseable_questions_degrade_to_the_learned_context(
    database_url: str, settings: Settings
) -> None:
    """A model that never yields a question list does not fail the job: the version
    completes with zero predictions, its learned context is served, and the report,
    the manifest and the ledger say what happened."""
    garbage = "I am sorry, I cannot do that."
    model = FakeChatModel(
        responses=["Notes: Ann has 3 apples.", garbage, garbage, garbage, "The answer is 3."]
    )
    st = SleepTime(model=model, database_url=database_url, settings=settings)
    st.ingest("acme", "doc", TEXT)
    report = st.sleep("acme", "doc")
    assert report.qas == [] and report.learned == "Notes: Ann has 3 apples."
    assert len(report.warnings) == 1 and "no predicted questions" in report.warnings[0]
    arts = st.artifacts("acme", "doc")
    assert arts.learned == "Notes: Ann has 3 apples." and not arts.qas and arts.complete
    assert st.ledger("acme", "doc").warnings == report.warnings
    assert st.sleep("acme", "doc").skipped  # complete: a worker neither retries nor dead-letters
    assert model.calls == 4
    ans = st.ask("acme", "doc", "How many apples does Ann have?")
    assert ans.source == "learned" and ans.usage.calls == 1
    st.close()


def test_malformed_questions_are_repaired(database_url: str, settings: Settings) -> None:
    model = FakeChatModel(
        responses=[
            "Notes.",
            "Sure! Here you go.",
            "1. How many apples does Ann buy?\n2) What does Bob pay?",
            "Ann buys 3. The answer is 3.",
            "The answer is 6.",
        ]
    )
    st = SleepTime(model=model, database_url=database_url, settings=settings)
    st.ingest("acme", "doc", TEXT)
    report = st.sleep("acme", "doc")
    assert [qa.question for qa in report.qas] == [
        "How many apples does Ann buy?",
        "What does Bob pay?",
    ]
    assert [qa.answer for qa in report.qas] == ["Ann buys 3. The answer is 3.", "The answer is 6."]


def test_empty_model_output_is_never_stored(database_url: str, settings: Settings) -> None:
    st = SleepTime(
        model=FakeChatModel(responses=["", "  "]), database_url=database_url, settings=settings
    )
    st.ingest("acme", "doc", TEXT)
    with pytest.raises(ModelOutputError, match="empty output"):
        st.sleep("acme", "doc")
    assert st.artifacts("acme", "doc").empty


def test_ledger_separates_sleep_and_test_tokens(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    report = st.sleep("acme", "doc")
    answers = [st.ask("acme", "doc", q) for q in ("How much does Ann pay?", report.qas[0].question)]
    ledger = st.ledger("acme", "doc")
    assert ledger.sleep == report.usage
    assert ledger.test.completion_tokens == sum(a.usage.completion_tokens for a in answers)
    assert ledger.test.calls == 1  # the predicted answer made no call
    assert ledger.queries == 2 and ledger.by_source == {"learned": 1, "predicted": 1}
    with st.store.session() as s:
        phases = set(s.scalars(select(LedgerRow.phase)).all())
    assert phases == {"sleep", "test"}


def test_budget_caps_completion_tokens(st: SleepTime) -> None:
    st.ingest("acme", "doc", "word " * 50 + "Ann has 3 apples.")
    answer = st.ask("acme", "doc", "How many?", max_tokens=2)
    assert answer.usage.completion_tokens <= 2
    with pytest.raises(InvalidInput):
        st.ask("acme", "doc", "How many?", verbosity=7)
    with pytest.raises(InvalidInput):
        st.ask("acme", "doc", "   ")


def test_k_rethinks_are_merged(st: SleepTime) -> None:
    st.ingest("acme", "doc", TEXT)
    report = st.sleep("acme", "doc", k=3)
    steps = {}
    with st.store.session() as s:
        for step, n in s.execute(select(LedgerRow.step, func.count()).group_by(LedgerRow.step)):
            steps[step] = n
    assert steps["learn"] == 3 and steps["merge"] == 1
    assert report.learned


def test_async_twins(st: SleepTime) -> None:
    async def flow() -> str:
        await st.aingest("acme", "doc", TEXT)
        report = await st.asleep("acme", "doc")
        answer = await st.aask("acme", "doc", report.qas[0].question)
        ledger = await st.aledger("acme", "doc")
        assert ledger.queries == 1
        return answer.source

    assert asyncio.run(flow()) == "predicted"


def test_a_concurrent_run_of_the_same_version_keeps_the_first_write(st: SleepTime) -> None:
    """Two workers on one version (a reclaimed lease): the second builds on what the
    first persisted, so questions and answers always belong together."""
    from sleeptime.graphs.sleep import SleepDeps
    from sleeptime.models import Usage

    ctx = st.ingest("acme", "doc", TEXT)
    deps = SleepDeps(store=st.store, gateway=st.gateway, settings=st.settings, k=1, n_questions=2)
    state = {"namespace": "acme", "context_id": "doc", "version": ctx.version, "text": TEXT}
    first = deps.put(state, "questions", "0", {"questions": ["Q from run A?"]}, Usage())  # type: ignore[arg-type]
    second = deps.put(state, "questions", "0", {"questions": ["Q from run B?"]}, Usage())  # type: ignore[arg-type]
    assert first == second == {"questions": ["Q from run A?"]}
    report = st.sleep("acme", "doc")
    assert [qa.question for qa in report.qas] == ["Q from run A?"]


def test_an_in_memory_database_is_one_database_for_every_thread() -> None:
    # the k rethinks run in parallel threads; each used to get its own empty
    # in-memory database ("no such table")
    st = SleepTime(model=FakeChatModel(), database_url="sqlite:///:memory:")
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 apples.")
    report = st.sleep("acme", "doc", k=3)
    assert report.usage.calls >= 4  # three rethinks and their merge
    assert st.artifacts("acme", "doc").complete
    assert st.ask("acme", "doc", "How many apples are there in all?").version == 1
    st.close()
