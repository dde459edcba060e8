"""The paper protocol, the rethink loop, budgets and cap accounting, with fake models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from sleeptime import FakeChatModel
from sleeptime.bench.paper_prompts import (
    BUILTIN,
    EMPTY_MEMORY,
    MEMORY_LABEL,
    answer_messages,
    load_prompt_dir,
)
from sleeptime.bench.protocol import parse_text_reply, rethink_loop
from sleeptime.bench.report import write_report
from sleeptime.bench.runner import CALLS, RESULTS, RUN, SLEEP, RunConfig, read_jsonl, run
from sleeptime.errors import InvalidInput
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.retry import RetryPolicy


def _data(tmp_path: Path) -> Path:
    rows = [
        {
            "id": "shop",
            "context": "Ann buys 3 pens at $2 each. Bob buys 4 mugs at $5 each.",
            "queries": [
                {"question": "Is Ann's bill 6?", "answer": "6"},
                {"question": "Is Bob's bill 20?", "answer": "20"},
            ],
        },
        {
            "id": "trip",
            "context": "Cara drives 120 miles at 60 miles per hour.",
            "queries": [{"question": "Does the drive take 2 hours?", "answer": "2"}],
        },
    ]
    p = tmp_path / "user.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


class Recording(FakeChatModel):
    """The rule-based fake, keeping every prompt it was sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, stop, run_manager, **kwargs)


class ToolFake(BaseChatModel):
    """A scripted tool-calling model: each call returns the next (tool, args) list."""

    script: list[list[tuple[str, dict[str, Any]]]]
    tools_seen: list[Any] = Field(default_factory=list)
    tokens_per_call: int = 10

    @property
    def _llm_type(self) -> str:
        return "tool-fake"

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
        step = self.script.pop(0)
        out = min(self.tokens_per_call, kwargs.get("max_tokens") or self.tokens_per_call)
        msg = AIMessage(
            content="",
            tool_calls=[
                {"name": name, "args": args, "id": f"c{i}"} for i, (name, args) in enumerate(step)
            ],
            usage_metadata={"input_tokens": 50, "output_tokens": out, "total_tokens": 50 + out},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _gateway(model: BaseChatModel, calls: list[tuple[str, str]] | None = None) -> ModelGateway:
    def record(phase: Any, step: str, usage: Any, latency: float) -> None:
        if calls is not None:
            calls.append((phase, step))

    return ModelGateway(model=model, retry=RetryPolicy(attempts=1), recorder=record)


# -- the rethink loop -----------------------------------------------------------------------


def test_rethink_loop_with_tool_calls_rewrites_until_finished() -> None:
    model = ToolFake(
        script=[
            [("rethink_memory", {"new_memory": "Ann pays 6."})],
            [("rethink_memory", {"new_memory": "x" * 6000})],  # over the limit: refused
            [("rethink_memory", {"new_memory": "Ann pays 6. Bob pays 20."})],
            [("finish_rethinking_memory", {})],
        ]
    )
    calls: list[tuple[str, str]] = []
    res = rethink_loop(_gateway(model, calls), BUILTIN, "ctx", temperature=0.0)
    assert res.mode == "tools" and res.stop == "finished" and res.finished
    assert res.memory == "Ann pays 6. Bob pays 20."
    assert (res.calls, res.rewrites, res.refused) == (4, 2, 1)
    assert calls == [("sleep", "rethink")] * 4  # every call through the gateway's accounting
    names = {t["function"]["name"] for t in model.tools_seen[0]}
    assert names == {"rethink_memory", "finish_rethinking_memory"}


def test_rethink_loop_stops_at_the_token_budget() -> None:
    model = ToolFake(
        script=[[("rethink_memory", {"new_memory": f"v{i}"})] for i in range(10)],
        tokens_per_call=40,
    )
    res = rethink_loop(_gateway(model), BUILTIN, "ctx", temperature=None, token_budget=100)
    assert res.stop == "budget" and res.calls == 3 and res.capped_calls == 1  # 40 + 40 + 20
    assert res.usage.completion_tokens == 100 and res.memory == "v2"
    capped = rethink_loop(
        _gateway(ToolFake(script=[[("rethink_memory", {"new_memory": "a"})]] * 3)),
        BUILTIN,
        "ctx",
        temperature=None,
        max_rounds=3,
    )
    assert capped.stop == "rounds" and not capped.finished


def test_rethink_loop_text_protocol_for_models_without_tools() -> None:
    model = FakeChatModel(responses=["REWRITE\nAnn pays 6.", "Ann pays 6.\nBob pays 20.\nFINISHED"])
    res = rethink_loop(_gateway(model), BUILTIN, "ctx", temperature=0.0)
    assert (res.mode, res.stop, res.calls) == ("text", "finished", 2)
    assert res.memory == "Ann pays 6.\nBob pays 20."
    same = rethink_loop(
        _gateway(FakeChatModel(responses=["notes", "notes"])), BUILTIN, "ctx", temperature=0.0
    )
    assert same.stop == "unchanged" and same.calls == 2


@pytest.mark.parametrize(
    ("reply", "memory", "finished"),
    [
        ("REWRITE\nA = 3", "A = 3", False),
        ("**REWRITE**:\nA = 3\nFINISHED.", "A = 3", True),
        ("FINISHED", None, True),
        ("A = 3", "A = 3", False),  # a small model forgetting the header still rewrites
        ("", None, False),
    ],
)
def test_parse_text_reply(reply: str, memory: str | None, finished: bool) -> None:
    assert parse_text_reply(reply) == (memory, finished)


# -- prompts --------------------------------------------------------------------------------


def test_builtin_paper_prompts_carry_the_papers_instructions() -> None:
    for level in range(4):
        assert "Do not recompute anything the notes already hold" in BUILTIN.test_system[level]
    assert "recompute it and double-check it" in BUILTIN.test_system[4]
    assert "double-check" in BUILTIN.sleep_system and "remove" in BUILTIN.sleep_system
    assert "replaces the whole block" in BUILTIN.sleep_system
    msgs = answer_messages(BUILTIN, 2, context="C.", question="Q?", memory="")
    assert EMPTY_MEMORY in str(msgs[0].content) and MEMORY_LABEL in str(msgs[0].content)
    assert BUILTIN.test_persona[2] in str(msgs[0].content)
    assert BUILTIN.test_human[2] in str(msgs[0].content)
    assert str(msgs[1].content) == "C. Q?"


def test_sleep_persona_asks_to_be_verbose_and_brainstorm_many_kinds_of_questions() -> None:
    # the paper's sleep agent persona: "I am verbose and brainstorm ... many different
    # types of potential questions and the reasoning required for answering them"
    assert "verbose" in BUILTIN.sleep_persona
    assert "many different kinds of questions" in BUILTIN.sleep_persona
    assert "reasoning needed to answer" in BUILTIN.sleep_persona


def test_prompt_files_lose_the_send_message_instruction(tmp_path: Path) -> None:
    """The paper's test-time files ask for Letta's send_message tool, which is not bound:
    the sentences naming it are left out, the rest of each line is kept."""
    root = _prompt_dir(tmp_path / "repo")
    (root / "prompts/system/convo_verbosity_0.txt").write_text(
        "Answer concisely.\nTo send a visible message to the user, use the send_message "
        "function.\n'send_message' is how you send your answer to the user.\nCheck the "
        "block. Use send_message to reply. Then stop.\n"
    )
    p = load_prompt_dir(root)
    assert "send_message" not in p.test_system[0]
    assert p.test_system[0] == "Answer concisely.\nCheck the block. Then stop.\n"
    assert all("send_message" not in t for t in p.test_system.values())
    assert "system/convo_verbosity_0.txt" in p.files  # the file's own hash is recorded


def _prompt_dir(root: Path) -> Path:
    """A stand-in for a checkout of the paper's repository (our own placeholder texts)."""
    for sub in ("system", "persona", "human"):
        (root / "prompts" / sub).mkdir(parents=True)
    (root / "prompts/system/sleep_time_base.txt").write_text("SLEEP-SYSTEM-TEXT")
    for n in range(5):
        (root / f"prompts/system/convo_verbosity_{n}.txt").write_text(f"SYSTEM-{n}")
        (root / f"prompts/persona/persona_verbosity_{n}.txt").write_text(f"PERSONA-{n}")
        (root / f"prompts/human/human_verbosity_{n}.txt").write_text(f"HUMAN-{n}")
    return root


def test_prompts_dir_is_loaded_and_checked(tmp_path: Path) -> None:
    p = load_prompt_dir(_prompt_dir(tmp_path / "repo"))
    assert p.sleep_system == "SLEEP-SYSTEM-TEXT" and p.test_system[3] == "SYSTEM-3"
    assert p.test_persona[0] == "PERSONA-0" and p.version.startswith("paper-dir-")
    assert load_prompt_dir(tmp_path / "repo" / "prompts").version == p.version
    (tmp_path / "repo/prompts/human/human_verbosity_4.txt").unlink()
    with pytest.raises(InvalidInput, match="human_verbosity_4"):
        load_prompt_dir(tmp_path / "repo")
    with pytest.raises(InvalidInput, match="not a directory"):
        load_prompt_dir(tmp_path / "nowhere")


# -- runs ---------------------------------------------------------------------------------


def _paper_cfg(tmp_path: Path, model: object, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "dataset": str(_data(tmp_path)),
        "model": model,
        "out": tmp_path / "paper",
        "verbosity": [0, 3],
        "sleep_k": [0, 1, 2],
        "predictability": False,
        "protocol": "paper",
    }
    base.update(kw)
    return RunConfig(**base)


def test_paper_protocol_run(tmp_path: Path) -> None:
    model = Recording()
    run(_paper_cfg(tmp_path, model))
    out = tmp_path / "paper"
    calls = read_jsonl(out / CALLS)
    assert calls and len(calls) == model.calls
    assert all(c["max_tokens"] is None for c in calls)
    # the paper's temperatures: 0, but 1.0 for the k > 1 sleep agents (the paper's k runs)
    assert {c["temperature"] for c in calls if c["arm"] == "sleep-k2"} == {1.0}
    assert {c["temperature"] for c in calls if c["arm"] != "sleep-k2"} == {0.0}
    assert {c["prompts"] for c in calls} == {BUILTIN.version}
    assert not any(c["step"] in ("merge", "predict", "answer") for c in calls)
    results = read_jsonl(out / RESULTS)
    k2 = [r for r in results if r["k"] == 2]
    assert k2 and all(len(r["pairs"]) == 2 for r in k2)  # 1:1 pairs, no merge
    assert all(
        r["test_completion_tokens"] == sum(p["completion_tokens"] for p in r["pairs"]) for r in k2
    )
    assert {r["source"] for r in results} == {"cold", "learned"}  # no predicted questions
    sleeps = read_jsonl(out / SLEEP)
    assert all(len(s["rethinks"]) == s["k"] for s in sleeps)
    # the test agent of a sleep arm reads its own sleep agent's block in its system prompt
    memory = next(s for s in sleeps if s["k"] == 1 and s["item"] == "trip")["rethinks"][0]
    test_prompts = [m for m in model.seen if "Does the drive take" in str(m[-1].content)]
    assert any(memory["memory"] in str(m[0].content) for m in test_prompts)
    assert any(EMPTY_MEMORY in str(m[0].content) for m in test_prompts)  # k0: empty block
    summary = write_report(out, quiet=True)
    assert summary["run"]["protocol"] == "paper" and summary["scorer"] == "paper"
    assert all("ci_method" in a for a in summary["arms"])
    assert {"k2-v0:pass@2", "k2-v3:pass@2"} <= {a["arm"] for a in summary["arms"]}


def test_both_protocols_sleep_through_the_library(tmp_path: Path) -> None:
    """Issue 20, item 1: the benchmark runs SleepTime.sleep with the rethink_tools
    strategy, so its figures describe the shipped sleep step: the library's store holds
    each loop's block (draft) and c' (learned), and a re-run is a no-op."""
    from sleeptime.bench.runner import DB
    from sleeptime.paper import rethink_key
    from sleeptime.store.kinds import Kind
    from sleeptime.store.sql import SQLStore

    for protocol, ns in (("paper", "paper-k2"), ("product", "bench-k2")):
        model = Recording()
        (tmp_path / protocol).mkdir()
        cfg = _paper_cfg(tmp_path / protocol, model, sleep_k=[2], verbosity=[0], protocol=protocol)
        run(cfg)
        store = SQLStore(f"sqlite:///{cfg.out / DB}")
        try:
            learned = store.get_artifact(ns, "trip", 1, Kind.LEARNED, "0")
            assert learned is not None and learned["strategy"] == "rethink_tools"
            sleeps = {s["item"]: s for s in read_jsonl(cfg.out / SLEEP)}
            for i in range(2):
                draft = store.get_artifact(ns, "trip", 1, Kind.DRAFT, rethink_key(i))
                assert draft is not None
                assert sleeps["trip"]["rethinks"][i]["memory"] == draft["text"]
            # paper: the k blocks stay apart (no merge call); product: merged
            assert learned.get("merged", True) is (protocol == "product")
        finally:
            store.dispose()
        before = len(read_jsonl(cfg.out / CALLS))
        run(cfg)
        assert len(read_jsonl(cfg.out / CALLS)) == before


def test_paper_protocol_with_prompts_dir(tmp_path: Path) -> None:
    model = Recording()
    cfg = _paper_cfg(tmp_path, model, prompts_dir=_prompt_dir(tmp_path / "repo"), sleep_k=[1])
    run(cfg)
    systems = [str(m[0].content) for m in model.seen]
    assert any(s.startswith("SLEEP-SYSTEM-TEXT") for s in systems)
    assert any(s.startswith("SYSTEM-3") and "PERSONA-3" in s and "HUMAN-3" in s for s in systems)
    meta = json.loads((tmp_path / "paper" / RUN).read_text())
    assert meta["prompts"].startswith("paper-dir-")
    with pytest.raises(InvalidInput, match="use another --out"):  # other prompts, other run
        run(_paper_cfg(tmp_path, FakeChatModel(), sleep_k=[1]))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n_questions": 2}, "no predicted questions"),
        ({"protocol": "product", "prompts_dir": Path(".")}, "--protocol paper"),
        ({"protocol": "exact"}, "--protocol"),
        ({"scorer": "fuzzy"}, "--scorer"),
        ({"rethink_mode": "psychic"}, "--rethink-mode"),
    ],
)
def test_bad_protocol_options(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run(_paper_cfg(tmp_path, "fake", **kw))


def test_product_sleep_is_a_budget_and_caps_are_counted(tmp_path: Path) -> None:
    """A tool-calling model that never finishes: the product rethink loop stops at its
    token budget (not after one truncated call), and the report counts capped calls."""
    script = [[("rethink_memory", {"new_memory": f"notes {i}"})] for i in range(50)]
    model = ToolFake(script=script, tokens_per_call=30)
    cfg = RunConfig(
        dataset=str(_data(tmp_path)),
        model=model,
        out=tmp_path / "product",
        verbosity=[0],
        sleep_k=[1],
        n_questions=0,
        predictability=False,
        sleep_budget=100,
    )
    run(cfg)
    sleeps = read_jsonl(tmp_path / "product" / SLEEP)
    assert sleeps and sleeps[0]["rethinks"][0]["stop"] == "budget"
    assert sleeps[0]["rethinks"][0]["calls"] == 4  # 30 + 30 + 30 + 10 (capped) = 100
    calls = read_jsonl(tmp_path / "product" / CALLS)
    sleep_calls = [c for c in calls if c["phase"] == "sleep" and c["item"] == "shop"]
    assert [c["max_tokens"] for c in sleep_calls] == [100, 70, 40, 10]
    assert [c["capped"] for c in sleep_calls] == [False, False, False, True]
    summary = write_report(tmp_path / "product", quiet=True)
    assert summary["cap_hits"]["sleep"] == {"calls": 8, "capped": 2, "rate": 0.25}


def test_cli_paper_run_then_report(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "sleeptime",
        "bench",
        "run",
        "--protocol",
        "paper",
        "--model",
        "fake",
        "--dataset",
        str(_data(tmp_path)),
        "--out",
        str(out),
        "--verbosity",
        "0,4",
        "--sleep-k",
        "0,1",
        "--no-predictability",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rep = subprocess.run(
        [sys.executable, "-m", "sleeptime", "bench", "report", str(out), "--scorer", "lenient"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rep.returncode == 0, rep.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["protocol"] == "paper" and summary["scorer"] == "lenient"
    assert (out / "amortization.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [*cmd[:-1], "--n-questions", "3"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no predicted questions" in bad.stderr


def test_rethink_loop_stops_when_the_block_fills_the_window() -> None:
    """An uncapped call asks for what is left of a known window, and the loop stops
    (instead of failing) once the block leaves no room for another rewrite."""
    from sleeptime.bench.paper_prompts import sleep_messages

    model = FakeChatModel(responses=["word " * 300, "never sent"])
    probe = ModelGateway(model=FakeChatModel(), retry=RetryPolicy(attempts=1))
    first = probe.prompt_tokens(sleep_messages(BUILTIN, "ctx", "", tools=False))
    gateway = ModelGateway(model=model, retry=RetryPolicy(attempts=1), window=first + 24 + 310)
    res = rethink_loop(gateway, BUILTIN, "ctx", temperature=0.0)
    assert res.stop == "window" and res.calls == 1 and res.memory.startswith("word")
    assert model.calls == 1


class EffortTools(ToolFake):
    """The scripted tool-calling model, with a reasoning effort (as ChatOpenAI has)."""

    reasoning_effort: str | None = None
    efforts: list[Any] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.efforts.append((self.reasoning_effort, kwargs.get("temperature")))
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_bench_gateway_applies_phase_options_and_reports_failures() -> None:
    """The tool-calling rethink loop keeps the benchmark's gateway: its calls get the
    sleep phase's effort and temperature; a failing call is reported, then raised."""
    from sleeptime.bench.protocol import ON_FAILURE, BenchGateway, PhaseOptions, phase_options
    from sleeptime.errors import ModelCallError

    model = EffortTools(
        script=[
            [("rethink_memory", {"new_memory": "Ann pays 6."})],
            [("finish_rethinking_memory", {})],
        ]
    )
    gateway = BenchGateway(model=model, retry=RetryPolicy(attempts=1))
    with phase_options(sleep=PhaseOptions(temperature=0.5, effort="high")):
        res = rethink_loop(gateway, BUILTIN, "ctx", temperature=None)
    assert res.mode == "tools" and res.memory == "Ann pays 6."
    assert model.efforts == [("high", 0.5), ("high", 0.5)]
    failures: list[tuple[str, str, str]] = []
    token = ON_FAILURE.set(lambda phase, step, exc: failures.append((phase, step, str(exc))))
    try:
        broken = BenchGateway(
            model=FakeChatModel(errors=[ValueError("400 bad temperature")]),
            retry=RetryPolicy(attempts=1),
        )
        with pytest.raises(ModelCallError, match="bad temperature"):
            rethink_loop(broken, BUILTIN, "ctx", temperature=0.0, mode="text")
    finally:
        ON_FAILURE.reset(token)
    assert len(failures) == 1 and failures[0][:2] == ("sleep", "rethink")
