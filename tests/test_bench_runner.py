"""The benchmark runner and report, end to end with the deterministic fake model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field
from rich.console import Console

from sleeptime import FakeChatModel
from sleeptime.bench.report import bootstrap_ci, write_report
from sleeptime.bench.runner import (
    CALLS,
    RESULTS,
    RUN,
    SLEEP,
    BenchRunFailed,
    RunConfig,
    read_jsonl,
    run,
)
from sleeptime.errors import InvalidInput, SleepTimeError


def _dataset(tmp_path: Path) -> Path:
    """FakeChatModel answers 'The answer is N' with N the last number of the prompt, which
    is the number in the question: 3 of these 4 golds match it, 1 does not."""
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
            "queries": [
                {"question": "Does the drive take 2 hours?", "answer": "2"},
                {"question": "Is the distance 100 miles?", "answer": "120"},
            ],
        },
    ]
    p = tmp_path / "tiny.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def _cfg(tmp_path: Path, model: object, **kw: object) -> RunConfig:
    base: dict[str, object] = {
        "dataset": str(_dataset(tmp_path)),
        "model": model,
        "out": tmp_path / "run",
        "verbosity": [0, 2],
        "sleep_k": [0, 1, 2],
        "samples": 3,
        "n_questions": 2,
        "predictability": False,
    }
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


def test_every_arm_runs_and_every_call_is_recorded(tmp_path: Path) -> None:
    model = FakeChatModel()
    stats = run(_cfg(tmp_path, model))
    out = tmp_path / "run"
    results = read_jsonl(out / RESULTS)
    arms = {r["arm"] for r in results}
    assert arms == {"k0-v0", "k0-v2", "k1-v0", "k1-v2", "k2-v0", "k2-v2", "par3-v0", "par3-v2"}
    assert len(results) == 8 * 4 == stats.new_results
    calls = read_jsonl(out / CALLS)
    assert len(calls) == model.calls == stats.new_calls
    assert all(c["item"] in ("shop", "trip") and c["arm"] != "?" for c in calls)
    assert {c["phase"] for c in calls} == {"sleep", "test"}
    # product protocol: k=2 budgeted rethink loops, merged, filed under their arm
    k2 = [c for c in calls if c["arm"] == "sleep-k2"]
    assert {"rethink-0", "rethink-1", "merge"} <= {c["step"] for c in k2}
    assert all(c["max_tokens"] is not None for c in calls)  # product: every call capped
    assert all(c["protocol"] == "product" and c["prompts"] for c in calls)
    assert all(
        c["max_tokens"] == {0: 32, 2: 192}[int(c["arm"][-1])] for c in calls if c["phase"] == "test"
    )
    # test-time only never touches sleep-time artifacts; sleep arms answer from c'
    assert {r["source"] for r in results if r["k"] == 0 and r["kind"] == "test"} == {"cold"}
    assert {r["source"] for r in results if r["k"] > 0} <= {"learned", "predicted"}
    sleeps = read_jsonl(out / SLEEP)
    assert {(s["item"], s["k"]) for s in sleeps} == {
        ("shop", 1),
        ("shop", 2),
        ("trip", 1),
        ("trip", 2),
    }
    for s in sleeps:  # the sleep record matches the calls recorded for it
        mine = [c for c in calls if c["item"] == s["item"] and c["arm"] == f"sleep-k{s['k']}"]
        assert s["sleep_completion_tokens"] == sum(c["completion_tokens"] for c in mine)
    par = [r for r in results if r["kind"] == "parallel"]
    assert all(len(r["samples"]) == 3 for r in par)
    for r in results:  # the tokens of an answer are those of its recorded test-time calls
        mine = [
            c
            for c in calls
            if c["item"] == r["item"] and c["arm"] == r["arm"] and c["phase"] == "test"
        ]
        assert (
            r["test_completion_tokens"]
            == sum(c["completion_tokens"] for c in mine)
            / len([x for x in results if x["item"] == r["item"] and x["arm"] == r["arm"]])
            or r["source"] == "predicted"
        )


def test_resume_makes_no_new_model_calls(tmp_path: Path) -> None:
    first = FakeChatModel()
    run(_cfg(tmp_path, first))
    assert first.calls > 0
    before = (tmp_path / "run" / RESULTS).read_text("utf-8")
    again = FakeChatModel()
    stats = run(_cfg(tmp_path, again))
    assert again.calls == 0 and stats.new_calls == 0 and stats.new_results == 0
    assert stats.skipped_results == 32
    assert (tmp_path / "run" / RESULTS).read_text("utf-8") == before


def test_resume_after_a_torn_write_redoes_only_the_lost_answer(tmp_path: Path) -> None:
    run(_cfg(tmp_path, FakeChatModel(), samples=0, sleep_k=[0]))
    path = tmp_path / "run" / RESULTS
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text(
        "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8"
    )  # crash mid-write
    model = FakeChatModel()
    stats = run(_cfg(tmp_path, model, samples=0, sleep_k=[0]))
    assert stats.new_results == 1 and model.calls == 1
    assert len(read_jsonl(path)) == len(lines)


def test_new_arms_and_items_extend_a_run(tmp_path: Path) -> None:
    run(_cfg(tmp_path, FakeChatModel(), samples=0, sleep_k=[0], verbosity=[0]))
    model = FakeChatModel()
    stats = run(_cfg(tmp_path, model, samples=0, sleep_k=[0, 1], verbosity=[0]))
    assert stats.new_results == 4 and stats.skipped_results == 4
    assert model.calls == stats.new_calls > 4  # sleep calls + 4 answers


def test_a_run_directory_refuses_another_model(tmp_path: Path) -> None:
    run(_cfg(tmp_path, FakeChatModel(), samples=0, sleep_k=[0], verbosity=[0]))
    with pytest.raises(InvalidInput, match="use another --out"):
        run(_cfg(tmp_path, "fake", samples=0, sleep_k=[0], verbosity=[0]))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"verbosity": [5]}, "verbosity"),
        ({"sleep_k": [-1]}, "sleep-k"),
        ({"samples": 1}, "samples"),
        ({"concurrency": 0}, "concurrency"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_config(tmp_path: Path, kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run(_cfg(tmp_path, "fake", **kw))


def test_report_on_a_tiny_fake_run(tmp_path: Path) -> None:
    run(_cfg(tmp_path, "fake", concurrency=2))
    out = tmp_path / "run"
    summary = write_report(out, t=10.0, quiet=True)
    saved = json.loads((out / "summary.json").read_text("utf-8"))
    assert saved["arms"] == summary["arms"]
    arms = {a["arm"]: a for a in saved["arms"]}
    assert set(arms) >= {"k0-v0", "k1-v2", "k2-v0", "par3-v0", "par3-v0:pass@3"}
    results = read_jsonl(out / RESULTS)
    sleeps = read_jsonl(out / SLEEP)
    for name in ("k0-v0", "k1-v0", "k2-v2"):
        rows = [r for r in results if r["arm"] == name]
        a = arms[name]
        acc = sum(r["correct"] for r in rows) / len(rows)
        assert a["accuracy"] == pytest.approx(acc) == pytest.approx(0.75)
        assert a["ci95"][0] <= a["accuracy"] <= a["ci95"][1]
        test_tokens = sum(r["test_completion_tokens"] for r in rows)
        assert a["mean_test_tokens"] == pytest.approx(test_tokens / len(rows), abs=0.01)
        k = int(name[1])
        sleep_tokens = sum(s["sleep_completion_tokens"] for s in sleeps if s["k"] == k)
        assert a["mean_sleep_tokens"] == pytest.approx(sleep_tokens / 2 if k else 0, abs=0.01)
        assert a["amortized_cost_per_query"] == pytest.approx(
            (sleep_tokens * (k > 0) + 10 * test_tokens) / 4, abs=0.01
        )
    assert arms["par3-v0"]["mean_test_tokens"] == pytest.approx(
        3 * arms["k0-v0"]["mean_test_tokens"]
    )
    for png in ("pareto.png", "amortization.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text("utf-8")
    assert "| k1-v0 | 4 | 75.0%" in md and "![pareto](pareto.png)" in md
    assert "Not available" in md  # predictability: no scorer, said plainly
    assert not (out / "predictability.png").exists()
    doubled = write_report(out, t=20.0, quiet=True)
    k1 = next(a for a in doubled["arms"] if a["arm"] == "k1-v0")
    assert k1["amortized_cost_per_query"] > arms["k1-v0"]["amortized_cost_per_query"]


def test_bootstrap_ci() -> None:
    lo, hi = bootstrap_ci([True] * 50 + [False] * 50)
    assert 0.35 < lo < 0.5 < hi < 0.65
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)


def test_cli_run_report_and_errors(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "sleeptime",
        "bench",
        "run",
        "--dataset",
        str(data),
        "--model",
        "fake",
        "--out",
        str(out),
        "--verbosity",
        "0",
        "--sleep-k",
        "0,1",
        "--no-predictability",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "k1-v0" in done.stdout and (out / "report.md").exists()
    rep = subprocess.run(
        [sys.executable, "-m", "sleeptime", "bench", "report", str(out), "--t", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0 and "t=5" in rep.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "context": "c", "queries": []}\n', encoding="utf-8")
    fail = subprocess.run(
        [*cmd[:6], str(bad), *cmd[7:]], capture_output=True, text=True, timeout=120
    )
    assert fail.returncode == 2
    assert "bad.jsonl:1: 'queries' must be a non-empty list" in fail.stderr
    assert "Traceback" not in fail.stderr


def test_predictability_quintiles(tmp_path: Path) -> None:
    """With a scorer, each query gets a score and the report bins the accuracy gain."""
    seen: list[tuple[str, str]] = []

    def scorer(context: str, question: str) -> float:
        seen.append((context, question))
        return -float(len(question))

    run(_cfg(tmp_path, "fake", samples=0, sleep_k=[0, 1], verbosity=[0]), scorer=scorer)
    assert len(seen) == 4
    summary = write_report(tmp_path / "run", quiet=True)
    pred = summary["predictability"]
    assert pred["scored"] == 4 and set(pred["gain_by_quintile"]) == {"k1-v0"}
    assert (tmp_path / "run" / "predictability.png").exists()
    again: list[tuple[str, str]] = []
    run(
        _cfg(tmp_path, "fake", samples=0, sleep_k=[0, 1], verbosity=[0]),
        scorer=lambda c, q: again.append((c, q)),
    )
    assert again == []  # scores are resumable too


def test_example_script_runs_end_to_end(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "multi_query_benchmark.py"
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}  # this checkout's sleeptime
    done = subprocess.run(
        [sys.executable, str(script), "--model", "fake", "--out", str(tmp_path / "ex")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text("utf-8"))
    assert {"k0-v0", "k1-v2", "par3-v0", "par3-v2:pass@3"} <= {a["arm"] for a in summary["arms"]}
    assert (tmp_path / "ex" / "amortization.png").exists()


def test_product_runs_report_prompt_against_cold_and_support_coverage(tmp_path: Path) -> None:
    """On a report long enough for passages, each library answer records the cold
    prompt, the passages it sent and whether its supporting sentences reached the
    prompt; the report gives both per arm (cold: the whole text, all covered)."""
    cfg = RunConfig(
        dataset="multi-query:n=1,families=longdoc,tokens=3000,queries=4-4",
        model="fake",
        out=tmp_path / "run",
        verbosity=[1],
        sleep_k=[0, 1],
        predictability=False,
    )
    run(cfg)
    results = {r["arm"]: [] for r in read_jsonl(tmp_path / "run" / RESULTS)}
    for r in read_jsonl(tmp_path / "run" / RESULTS):
        results[r["arm"]].append(r)
    for r in results["k0-v1"]:
        assert r["source"] == "cold" and r["passages"] == []
        assert r["cold_prompt_tokens"] == r["test_prompt_tokens"]
        assert r["support"]["covered"] and r["support"]["whole_text"]
    learned = [r for r in results["k1-v1"] if r["source"] == "learned"]
    assert learned
    for r in learned:
        assert r["passages"] and all(0 <= a < b for a, b in r["passages"])
        assert r["test_prompt_tokens"] < r["cold_prompt_tokens"] / 2
        assert not r["support"]["whole_text"]
        assert 0 <= r["support"]["reached"] <= r["support"]["sentences"]
    arms = {a["arm"]: a for a in write_report(tmp_path / "run", quiet=True)["arms"]}
    assert arms["k0-v1"]["prompt_vs_cold"]["ratio"] == 1.0
    assert arms["k0-v1"]["support_coverage"]["rate"] == 1.0
    assert arms["k1-v1"]["prompt_vs_cold"]["ratio"] < 0.5
    cov = arms["k1-v1"]["support_coverage"]
    assert cov["n"] == len(learned) == cov["without_whole_text"]
    md = (tmp_path / "run" / "report.md").read_text("utf-8")
    assert "prompt / cold" in md and "support coverage" in md


def test_a_run_made_before_support_was_recorded_resumes(tmp_path: Path) -> None:
    """Supporting sentences describe a query without changing it: a run directory whose
    dataset.jsonl predates them resumes instead of refusing the items as changed."""
    cfg = RunConfig(
        dataset="multi-query:n=2,queries=3-3",
        model="fake",
        out=tmp_path / "run",
        verbosity=[0],
        sleep_k=[0],
        predictability=False,
    )
    run(cfg)
    path = tmp_path / "run" / "dataset.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    for row in rows:
        for q in row["queries"]:
            q["meta"].pop("support")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run(cfg).new_results == 0


# -- errors are errors; temperatures and efforts per phase (issue 20, item 2) ----------------


class RejectsZero(FakeChatModel):
    """A provider that rejects temperature 0, as OpenAI's o1 / o3-mini do."""

    temperatures: list[Any] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.temperatures.append(kwargs.get("temperature"))
        if kwargs.get("temperature") == 0:
            raise ValueError(
                "Error code: 400 - Unsupported value: 'temperature' does not support 0 with "
                "this model. Only the default (1) value is supported."
            )
        return super()._generate(messages, stop, run_manager, **kwargs)


class Effortful(FakeChatModel):
    """A rule-based fake that takes a reasoning effort and notes what each call got."""

    reasoning_effort: str | None = None
    got: list[tuple[str | None, Any]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.got.append((self.reasoning_effort, kwargs.get("temperature")))
        return super()._generate(messages, stop, run_manager, **kwargs)


def _paper(tmp_path: Path, model: object, out: str = "paper", **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "dataset": str(_dataset(tmp_path)),
        "model": model,
        "out": tmp_path / out,
        "verbosity": [0],
        "sleep_k": [0],
        "predictability": False,
        "protocol": "paper",
    }
    base.update(kw)
    return RunConfig(**base)


def test_a_provider_that_rejects_temperature_0_fails_the_run(tmp_path: Path) -> None:
    """Every paper-protocol answer at temperature 0 is rejected: each failed call is a
    row of calls.jsonl with its error and temperature, each answer an error (not an
    empty wrong answer), and the run raises; nothing is retried without the temperature."""
    model = RejectsZero()
    with pytest.raises(SleepTimeError, match="4 model calls failed") as failed:
        run(_paper(tmp_path, model))
    assert isinstance(failed.value, BenchRunFailed) and failed.value.stats.failed_calls == 4
    assert model.temperatures == [0.0] * 4  # one call per answer: no silent fallback
    out = tmp_path / "paper"
    calls = read_jsonl(out / CALLS)
    assert len(calls) == 4 and all("Unsupported value" in c["error"] for c in calls)
    assert {(c["phase"], c["temperature"], c["arm"]) for c in calls} == {("test", 0.0, "k0-v0")}
    results = read_jsonl(out / RESULTS)
    assert {r["source"] for r in results} == {"error"} and all(r["error"] for r in results)
    summary = write_report(out, quiet=True)
    assert summary["failed_calls"]["total"] == 4 and summary["failed_calls"]["test"] == 4
    assert summary["failed_calls"]["answers_with_errors"] == 4
    assert summary["arms"][0]["errors"] == 4 and summary["model_calls"]["failed"] == 4
    assert "4 model calls failed" in (out / "report.md").read_text()
    # accepted on request; the temperature the provider takes is an option
    stats = run(_paper(tmp_path, RejectsZero(), out="allowed", allow_errors=True))
    assert stats.failed_calls == 4
    fixed = RejectsZero()
    run(_paper(tmp_path, fixed, out="t1", test_temperature=1.0))
    assert fixed.temperatures == [1.0] * 4
    assert {c["temperature"] for c in read_jsonl(tmp_path / "t1" / CALLS)} == {1.0}


def test_a_failed_answer_is_redone_by_the_next_run(tmp_path: Path) -> None:
    model = FakeChatModel(errors=[ValueError("400 bad request")])
    cfg = _cfg(tmp_path, model, samples=0, sleep_k=[0], verbosity=[0])
    with pytest.raises(BenchRunFailed, match="1 model call failed"):
        run(cfg)
    rows = read_jsonl(tmp_path / "run" / RESULTS)
    assert [r["source"] for r in rows].count("error") == 1
    again = FakeChatModel()
    stats = run(_cfg(tmp_path, again, samples=0, sleep_k=[0], verbosity=[0]))
    assert again.calls == 1 and stats.new_results == 1 and stats.failed_calls == 0
    summary = write_report(tmp_path / "run", quiet=True)
    assert summary["failed_calls"]["total"] == 1  # it happened, and stays recorded
    assert summary["failed_calls"]["answers_with_errors"] == 0  # the redone answer counts
    assert summary["arms"][0]["n"] == 4 and summary["arms"][0]["errors"] == 0


def test_run_json_shows_each_temperature_used_and_no_other(tmp_path: Path) -> None:
    run(_cfg(tmp_path, "fake", samples=0, sleep_k=[0, 1, 2], verbosity=[0]))
    meta = json.loads((tmp_path / "run" / RUN).read_text())
    assert "temperature" not in meta and "parallel" not in meta  # no baseline, no 0.7
    assert meta["sleep"]["temperature_by_k"] == {"1": None, "2": 0.7}
    assert meta["test"]["temperature"] is None and meta["test"]["effort"] is None
    run(_cfg(tmp_path, "fake", out=tmp_path / "par", samples=3, sleep_k=[0], verbosity=[0]))
    assert json.loads((tmp_path / "par" / RUN).read_text())["parallel"] == {"temperature": 0.7}
    run(_paper(tmp_path, "fake", sleep_k=[0, 1, 2]))
    meta = json.loads((tmp_path / "paper" / RUN).read_text())
    assert meta["test"]["temperature"] == 0.0 and "parallel" not in meta
    assert meta["sleep"]["temperature_by_k"] == {"1": 0.0, "2": 1.0}
    assert "warnings" not in meta


def test_k_above_1_at_temperature_0_warns(tmp_path: Path) -> None:
    """At temperature 0 the k sleep agents write the same memory k times (paid k times):
    allowed when asked for, with a warning on the console and in run.json."""
    console = Console(record=True, width=200)
    run(_paper(tmp_path, "fake", sleep_k=[0, 2], sleep_temperature=0.0), console=console)
    meta = json.loads((tmp_path / "paper" / RUN).read_text())
    assert any("k=2" in w and "temperature 0" in w for w in meta["warnings"])
    assert "the same memory 2 times" in console.export_text()
    sleeps = read_jsonl(tmp_path / "paper" / SLEEP)
    blocks = [r["memory"] for r in sleeps[0]["rethinks"]]
    assert len(blocks) == 2 and blocks[0] == blocks[1]  # what the warning is about


def test_temperature_and_effort_per_phase_are_sent_and_recorded(tmp_path: Path) -> None:
    model = Effortful()
    run(
        _paper(
            tmp_path,
            model,
            sleep_k=[0, 1],
            test_temperature=1.0,
            sleep_temperature=0.5,
            test_effort="medium",
            sleep_effort="high",
        )
    )
    calls = read_jsonl(tmp_path / "paper" / CALLS)
    assert calls and all("effort" in c and "temperature" in c for c in calls)
    assert {(c["effort"], c["temperature"]) for c in calls if c["phase"] == "sleep"} == {
        ("high", 0.5)
    }
    assert {(c["effort"], c["temperature"]) for c in calls if c["phase"] == "test"} == {
        ("medium", 1.0)
    }
    assert sorted(model.got, key=str) == sorted(
        ((c["effort"], c["temperature"]) for c in calls), key=str
    )
    meta = json.loads((tmp_path / "paper" / RUN).read_text())
    assert meta["test"] == {"token_caps": None, "temperature": 1.0, "effort": "medium"}
    assert meta["sleep"]["effort"] == "high"
    # product: the library's calls get the phase's options where it leaves the default
    product = Effortful()
    run(
        _cfg(
            tmp_path,
            product,
            samples=0,
            sleep_k=[0, 1],
            verbosity=[0],
            test_temperature=0.3,
            sleep_effort="low",
        )
    )
    calls = read_jsonl(tmp_path / "run" / CALLS)
    answers = [c for c in calls if c["phase"] == "test"]
    assert answers and {c["temperature"] for c in answers} == {0.3}
    assert {c["effort"] for c in calls if c["phase"] == "sleep"} == {"low"}
    assert {c["effort"] for c in answers} == {None}
    assert (None, 0.3) in product.got and ("low", None) in product.got
    with pytest.raises(InvalidInput, match="takes no reasoning effort"):
        run(_paper(tmp_path, FakeChatModel(), out="plain", test_effort="high"))
    with pytest.raises(InvalidInput, match="--sleep-effort"):
        run(_paper(tmp_path, "fake", out="bad", sleep_effort="extreme"))


def test_cli_exits_1_on_failed_calls_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import sleeptime.api
    from sleeptime.cli import app

    monkeypatch.setattr(sleeptime.api, "resolve_model", lambda spec, settings: RejectsZero())
    args = ["bench", "run", "--protocol", "paper", "--dataset", str(_dataset(tmp_path))]
    args += ["--model", "fake", "--verbosity", "0", "--sleep-k", "0", "--no-predictability"]
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert done.exit_code == 1, done.output
    assert "4 model calls failed" in done.output and "--allow-errors" in done.output
    assert (tmp_path / "a" / "report.md").exists()  # the report says so too
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--allow-errors"])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c"), "--test-temperature", "1"])
    assert done.exit_code == 0, done.output


def test_paper_scoring_reads_the_raw_gsm_answer_field(tmp_path: Path) -> None:
    """The loader keeps a Stateful GSM-Symbolic solution as it is; the paper's scorer
    reads it as its evaluator does ('####42' and '#### 42 ' never match), the lenient
    one the normalised gold."""
    fields = ["She has 42.\n#### 42", "She has 42.\n####42", "She has 42.\n#### 42 "]
    data = tmp_path / "p2.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "id": i,
                    "stateful_gsm_symbolic_context": f"Ann {i} has 40 apples. She buys 2.",
                    "stateful_gsm_symbolic_question": "How many apples does she have?",
                    "answer": field,
                }
            )
            + "\n"
            for i, field in enumerate(fields)
        )
    )
    model = FakeChatModel(responses=["The answer is 42."] * 3)
    run(_paper(tmp_path, model, dataset=f"stateful-gsm-symbolic:{data}"))
    rows = read_jsonl(tmp_path / "paper" / RESULTS)
    assert [r["gold"] for r in rows] == ["42"] * 3
    assert [r["correct"] for r in rows] == [True, False, False]
    lenient = write_report(tmp_path / "paper", quiet=True, scorer="lenient")
    assert lenient["arms"][0]["correct"] == 3
    paper = write_report(tmp_path / "paper", quiet=True, scorer="paper")
    assert paper["arms"][0]["correct"] == 1


def test_a_run_on_another_model_never_loads_the_local_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Predictability is scored with the local model: by default only when that is the
    model under test (`bench run --model fake` crashed where llama.cpp's build did)."""
    import sleeptime.bench.runner as runner_mod

    def boom() -> None:
        raise AssertionError("the local predictability scorer was loaded")

    monkeypatch.setattr(runner_mod, "_predictability_fn", boom)
    run(_cfg(tmp_path, "fake", predictability=None, sleep_k=[0, 1], verbosity=[0], samples=0))
