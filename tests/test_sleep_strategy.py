"""The paper's rethink-with-tools loop as a sleep strategy of the library
(``SleepTime.sleep(strategy="rethink_tools")``, ``SLEEPTIME_SLEEP_STRATEGY``): the
benchmark's paper and product protocols run this same code."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.paper import EMPTY_MEMORY, RethinkOptions, rethink_key
from sleeptime.store.kinds import Kind

CONTEXT = "Ann buys 3 pens at $2 each. Bob buys 4 mugs at $5 each."


class ToolScript(BaseChatModel):
    """A scripted tool-calling model: each call returns the next (tool, args) list."""

    script: list[list[tuple[str, dict[str, Any]]]]
    calls: int = 0
    tools_seen: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-script"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=tools)

    def get_num_tokens(self, text: str) -> int:
        return len(text.split())

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.tools_seen.append(kwargs.get("tools"))
        self.calls += 1
        step = self.script.pop(0)
        msg = AIMessage(
            content="",
            tool_calls=[
                {"name": name, "args": args, "id": f"c{i}"} for i, (name, args) in enumerate(step)
            ],
            usage_metadata={"input_tokens": 50, "output_tokens": 10, "total_tokens": 60},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _client(model: BaseChatModel, url: str, settings: Settings) -> SleepTime:
    return SleepTime(model=model, database_url=url, settings=settings)


def test_rethink_tools_strategy_runs_the_papers_loop_and_stores_c_prime(
    sqlite_url: str, settings: Settings
) -> None:
    model = ToolScript(
        script=[
            [("rethink_memory", {"new_memory": "Ann pays 6."})],
            [("rethink_memory", {"new_memory": "Ann pays 6. Bob pays 20."})],
            [("finish_rethinking_memory", {})],
        ]
    )
    st = _client(model, sqlite_url, settings)
    try:
        st.ingest("ns", "shop", CONTEXT)
        report = st.sleep("ns", "shop", n_questions=0, strategy="rethink_tools")
        assert report.learned == "Ann pays 6. Bob pays 20."
        names = {t["function"]["name"] for t in model.tools_seen[0]}
        assert names == {"rethink_memory", "finish_rethinking_memory"}
        draft = st.store.get_artifact("ns", "shop", 1, Kind.DRAFT, rethink_key(0))
        assert draft is not None and draft["text"] == report.learned
        assert draft["rethink"]["stop"] == "finished" and draft["rethink"]["calls"] == 3
        learned = st.store.get_artifact("ns", "shop", 1, Kind.LEARNED, "0")
        assert learned is not None and learned["strategy"] == "rethink_tools"
        # every call through the gateway, in the ledger
        assert st.ledger("ns", "shop").sleep.calls == 3
        # idempotent: a finished version costs nothing again
        again = st.sleep("ns", "shop", n_questions=0, strategy="rethink_tools")
        assert again.skipped and model.calls == 3
    finally:
        st.close()


def test_k_blocks_kept_apart_or_merged(sqlite_url: str, settings: Settings) -> None:
    one = [("rethink_memory", {"new_memory": "block"}), ("finish_rethinking_memory", {})]
    model = ToolScript(script=[one, one])
    st = _client(model, sqlite_url, settings)
    try:
        st.ingest("ns", "a", CONTEXT)
        opts = RethinkOptions(merge=False, fallback=False, temperature=1.0)
        report = st.sleep("ns", "a", k=2, n_questions=0, strategy="rethink_tools", rethink=opts)
        assert report.learned == "block" and model.calls == 2  # no merge call
        for i in range(2):
            assert st.store.get_artifact("ns", "a", 1, Kind.DRAFT, rethink_key(i)) is not None
    finally:
        st.close()


def test_a_loop_that_writes_nothing_leaves_the_block_empty_or_falls_back(
    sqlite_url: str, settings: Settings
) -> None:
    model = ToolScript(script=[[("finish_rethinking_memory", {})]])
    st = _client(model, sqlite_url, settings)
    try:
        st.ingest("ns", "a", CONTEXT)
        opts = RethinkOptions(fallback=False)
        report = st.sleep("ns", "a", n_questions=0, strategy="rethink_tools", rethink=opts)
        assert report.learned == EMPTY_MEMORY
        assert any("wrote nothing" in w for w in report.warnings)
    finally:
        st.close()
    # the text protocol (a model without tool calling), falling back to one notes call
    scripted = FakeChatModel(responses=["FINISHED", "Ann pays 6; Bob pays 20."])
    fake = _client(scripted, sqlite_url, settings)
    try:
        fake.ingest("ns", "b", CONTEXT)
        report = fake.sleep("ns", "b", n_questions=0, strategy="rethink_tools")
        assert report.learned == "Ann pays 6; Bob pays 20."
        assert any("learned c' with one notes call" in w for w in report.warnings)
    finally:
        fake.close()


def test_the_strategy_is_a_setting_and_checked(
    sqlite_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLEEPTIME_SLEEP_STRATEGY", "rethink_tools")
    assert Settings().sleep_strategy == "rethink_tools"
    model = ToolScript(script=[[("rethink_memory", {"new_memory": "m"})], []])
    st = _client(model, sqlite_url, settings.model_copy(update={"sleep_strategy": "rethink_tools"}))
    try:
        st.ingest("ns", "a", CONTEXT)
        with pytest.raises(InvalidInput, match="strategy must be one of"):
            st.sleep("ns", "a", strategy="dream")
        report = st.sleep("ns", "a", n_questions=0)
        assert report.learned == "m"  # the setting's strategy; "no tool call" ends the loop
        draft = st.store.get_artifact("ns", "a", 1, Kind.DRAFT, rethink_key(0))
        assert draft is not None and draft["rethink"]["stop"] == "no_tool_call"
    finally:
        st.close()
    with pytest.raises(InvalidInput, match="max_rounds"):
        RethinkOptions(max_rounds=0)


def test_cli_sleep_takes_the_strategy(sqlite_url: str) -> None:
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": sqlite_url, "SLEEPTIME_MODEL": "fake"}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sleeptime", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert cli("ingest", "acme", "doc", "-", stdin=CONTEXT).returncode == 0
    bad = cli("sleep", "acme", "doc", "--sleep-strategy", "dream")
    assert bad.returncode == 2 and "strategy must be one of" in bad.stderr
    assert "Traceback" not in bad.stderr
    ok = cli("sleep", "acme", "doc", "--sleep-strategy", "rethink_tools", "--n-questions", "0")
    assert ok.returncode == 0, ok.stderr
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url)
    try:
        assert st.store.get_artifact("acme", "doc", 1, Kind.DRAFT, rethink_key(0)) is not None
    finally:
        st.close()
