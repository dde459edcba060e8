"""Sleep-time pre-warming of an OpenAI-compatible server's prefix cache."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field
from sqlalchemy import select

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.store.schema import LedgerRow


class ServerFake(FakeChatModel):
    """Looks like ChatOpenAI pointed at a server (it has ``openai_api_base``) and records
    every request."""

    openai_api_base: str = "http://127.0.0.1:8000/v1"
    requests: list[dict[str, Any]] = Field(default_factory=list)
    fail_on_one_token: bool = False

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.requests.append({"messages": messages, "max_tokens": kwargs.get("max_tokens")})
        if self.fail_on_one_token and kwargs.get("max_tokens") == 1:
            raise ValueError("server rejected the request")
        return super()._generate(messages, stop, run_manager, **kwargs)


TEXT = "Ann has 3 apples. Bob has 4 apples. Carol has twice as many apples as Bob."


def sleeptime(model: ServerFake, url: str, **settings: Any) -> SleepTime:
    return SleepTime(
        model=model, database_url=url, settings=Settings(model="fake", n_questions=2, **settings)
    )


def test_sleep_prewarms_the_query_prefix_and_books_it(sqlite_url: str) -> None:
    model = ServerFake()
    st = sleeptime(model, sqlite_url)
    st.ingest("acme", "d", TEXT)
    notes: list[str] = []
    st.sleep("acme", "d", progress=notes.append)
    assert "pre-warmed the server's prefix cache" in notes
    warm = [r for r in model.requests if r["max_tokens"] == 1]
    assert len(warm) == 1
    prewarm_prompt = str(warm[0]["messages"][-1].content)

    # a real query (not a predicted one) shares everything before the question
    before = len(model.requests)
    answer = st.ask("acme", "d", "Who has the most fruit of all the people?")
    assert answer.source == "learned"
    query = model.requests[before]
    assert [m.content for m in query["messages"][:-1]] == [
        m.content for m in warm[0]["messages"][:-1]
    ]
    stable = prewarm_prompt.split("<question>")[0]
    assert len(stable) > len(TEXT) and str(query["messages"][-1].content).startswith(stable)

    with st.store.session() as s:
        rows = s.scalars(select(LedgerRow).where(LedgerRow.step == "prewarm")).all()
    assert [(r.phase, r.namespace, r.context_id) for r in rows] == [("sleep", "acme", "d")]
    st.close()


def test_prewarm_can_be_switched_off_and_never_fails_a_run(sqlite_url: str) -> None:
    off = ServerFake()
    st = sleeptime(off, sqlite_url, prewarm=False)
    st.ingest("acme", "d", TEXT)
    notes: list[str] = []
    st.sleep("acme", "d", progress=notes.append)
    assert all(r["max_tokens"] != 1 for r in off.requests) and "no prefix cache to fill" in notes
    st.close()

    broken = ServerFake(fail_on_one_token=True)
    st = sleeptime(broken, sqlite_url.replace(".db", "-2.db"))
    st.ingest("acme", "d", TEXT)
    notes = []
    report = st.sleep("acme", "d", progress=notes.append)
    assert report.learned and any(n.startswith("prefill skipped") for n in notes)
    assert st.artifacts("acme", "d").complete  # the run finished despite the failure
    st.close()


def test_plain_fake_model_is_not_prewarmed(sqlite_url: str) -> None:
    model = FakeChatModel()
    st = SleepTime(model=model, database_url=sqlite_url, settings=Settings(model="fake"))
    st.ingest("acme", "d", TEXT)
    calls_before_sleep = model.calls
    st.sleep("acme", "d", n_questions=1)
    # learn + predict + one answer; no extra request
    assert model.calls - calls_before_sleep == 3
    st.close()
