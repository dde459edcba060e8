"""Report numbers: intervals, zero-token answers, near-miss false serves, cap hits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from sleeptime.bench.paper_prompts import BUILTIN
from sleeptime.bench.report import (
    accuracy_ci,
    bootstrap_ci,
    cluster_bootstrap_ci,
    summarize,
    wilson_ci,
    write_report,
)
from sleeptime.bench.runner import CALLS, RESULTS, RUN, RunConfig, read_jsonl, run


def test_wilson_has_width_at_0_and_100_percent() -> None:
    lo, hi = wilson_ci(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_ci(20, 20)
    assert 0.8 < lo < 0.9 and hi == 1.0
    assert bootstrap_ci([False] * 20) == (0.0, 0.0)  # what a bootstrap would say


def _rows(per_context: list[list[bool]]) -> list[dict[str, Any]]:
    return [
        {"item": f"c{i}", "correct": ok} for i, answers in enumerate(per_context) for ok in answers
    ]


def test_cluster_bootstrap_is_wider_when_queries_on_a_context_agree() -> None:
    """10 contexts x 10 queries, each context all right or all wrong: 10 independent
    units, not 100, so the interval must be much wider than a query bootstrap's."""
    rows = _rows([[i % 2 == 0] * 10 for i in range(10)])
    lo, hi, method = accuracy_ci(rows)
    q_lo, q_hi = bootstrap_ci([r["correct"] for r in rows])
    assert method.startswith("cluster bootstrap over 10 contexts")
    assert (hi - lo) > 1.5 * (q_hi - q_lo)
    assert cluster_bootstrap_ci([(1, 1), (0, 1)] * 10)[0] < 0.5
    lo, hi, method = accuracy_ci(_rows([[False] * 5] * 4))
    assert method.startswith("Wilson") and lo == 0.0 and hi > 0.3  # 4 contexts, not 20 queries
    assert accuracy_ci(_rows([[True, False, True]]))[2].endswith("of 1 context")


def _synthetic_run(out: Path) -> None:
    """A run directory written by hand: every number of the summary is known."""
    out.mkdir()
    (out / RUN).write_text(
        json.dumps(
            {
                "dataset": "x",
                "model": "fake",
                "protocol": "product",
                "scorer": "lenient",
                "n_questions": 2,
                "prompts": "p",
            }
        )
    )
    rows = []

    def row(item: str, q: int, arm: str, k: int, **kw: Any) -> None:
        base = {"item": item, "q": q, "arm": arm, "k": k, "verbosity": 0, "n_queries": 3}
        base.update({"kind": "sleep" if k else "test", "test_prompt_tokens": 100})
        rows.append({**base, **kw})

    for item in ("a", "b"):
        # test-time only: 20 completion tokens each, all right
        for q in range(3):
            row(
                item,
                q,
                "k0-v0",
                0,
                gold="6",
                response="The answer is 6.",
                source="cold",
                test_completion_tokens=20,
            )
        # sleep arm: q0 served right at 0 tokens, q1 on the model path, q2 a near-miss of q0
        row(
            item,
            0,
            "k1-v0",
            1,
            gold="6",
            response="The answer is 6.",
            source="predicted",
            matched_question="How much?",
            test_completion_tokens=0,
            test_prompt_tokens=0,
        )
        row(
            item,
            1,
            "k1-v0",
            1,
            gold="6",
            response="The answer is 6.",
            source="learned",
            test_completion_tokens=10,
        )
        row(
            item,
            2,
            "k1-v0",
            1,
            gold="9",
            response="The answer is 6.",
            source="predicted",
            matched_question="How much?",
            base_question="How much?",
            near_miss_of=0,
            near_miss_category="negation",
            test_completion_tokens=0,
            test_prompt_tokens=0,
        )
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "sleep.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "item": i,
                    "k": 1,
                    "sleep_prompt_tokens": 500,
                    "sleep_completion_tokens": 60,
                    "calls": 2,
                    "predicted": 2,
                    "error": None,
                }
            )
            + "\n"
            for i in ("a", "b")
        )
    )
    calls = [
        {
            "item": "a",
            "arm": "sleep-k1",
            "phase": "sleep",
            "latency_ms": 1.0,
            "completion_tokens": 30,
            "capped": True,
        },
        {
            "item": "a",
            "arm": "sleep-k1",
            "phase": "sleep",
            "latency_ms": 1.0,
            "completion_tokens": 30,
            "capped": False,
        },
        {
            "item": "a",
            "arm": "k1-v0",
            "phase": "test",
            "latency_ms": 1.0,
            "completion_tokens": 10,
            "capped": True,
        },
    ]
    (out / CALLS).write_text("".join(json.dumps(c) + "\n" for c in calls))


def test_zero_token_answers_near_misses_and_charged_costs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _synthetic_run(out)
    summary = summarize(out, t=10.0)
    arms = {a["arm"]: a for a in summary["arms"]}
    k1 = arms["k1-v0"]
    assert k1["zero_token"]["served"] == 4 and k1["zero_token"]["correct"] == 2
    assert k1["zero_token"]["accuracy"] == 0.5 and k1["model_path"]["accuracy"] == 1.0
    assert k1["near_miss"] == {
        "n": 2,
        "served_zero_token": 2,
        "false_serves": 2,
        "false_serve_rate": 1.0,
        "by_category": {"negation": {"n": 2, "false_serves": 2}},
    }
    # the 2 wrong zero-token answers are charged the arm's model-path mean (10 tokens)
    assert k1["charged_test_tokens"] == pytest.approx((10 + 10 + 10 + 10) / 6, abs=0.01)
    assert k1["amortized_cost_per_query"] == pytest.approx((120 + 10 * 40) / 6, abs=0.01)
    assert k1["mean_test_tokens"] == pytest.approx(20 / 6, abs=0.01)  # what was measured, unchanged
    assert k1["cap_hits"] == {
        "test": {"calls": 1, "capped": 1, "rate": 1.0},
        "sleep": {"calls": 2, "capped": 1, "rate": 0.5},
    }
    assert summary["cap_hits"]["sleep"]["rate"] == 0.5
    assert "cluster bootstrap" in arms["k1-v0"]["ci_method"]
    assert arms["k0-v0"]["ci_method"].startswith("Wilson")  # 100%: an interval anyway
    assert arms["k0-v0"]["ci95"][0] < 1.0
    md_summary = write_report(out, quiet=True)
    md = (out / "report.md").read_text()
    assert "near-miss false serves" in md and "| k1-v0 | 6 |" in md
    assert [a["arm"] for a in md_summary["arms"]] == list(arms)


def test_report_rescores_with_either_scorer(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _synthetic_run(out)
    rows = read_jsonl(out / RESULTS)
    rows[0]["response"] = "The answer is 6.0"
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    lenient = {a["arm"]: a for a in summarize(out, scorer="lenient")["arms"]}
    paper = {a["arm"]: a for a in summarize(out, scorer="paper")["arms"]}
    assert lenient["k0-v0"]["correct"] == 6 and paper["k0-v0"]["correct"] == 5


def test_oracle_questions_exercise_the_serve_policy_end_to_end(tmp_path: Path) -> None:
    """Sleep time answers the dataset's own questions; near-miss variants are asked too.
    Whatever the serve policy decides, the report's counts match the results."""
    cfg = RunConfig(
        dataset="multi-query:n=4,seed=0,difficulty=1,queries=3-4,near_misses=2",
        model="fake",
        out=tmp_path / "oracle",
        verbosity=[0],
        sleep_k=[0, 1],
        n_questions=4,
        oracle_questions=True,
        predictability=False,
    )
    run(cfg)
    results = read_jsonl(tmp_path / "oracle" / RESULTS)
    summary = write_report(tmp_path / "oracle", quiet=True)
    k1 = next(a for a in summary["arms"] if a["arm"] == "k1-v0")
    rows = [r for r in results if r["arm"] == "k1-v0"]
    zero = [r for r in rows if r["source"] == "predicted"]
    near = [r for r in rows if "near_miss_of" in r]
    assert near and all(r["base_question"] for r in near)
    assert zero  # exact re-asks of the oracle questions are served at zero tokens
    assert k1["zero_token"]["served"] == len(zero)
    assert k1["near_miss"]["n"] == len(near)
    false = [
        r
        for r in near
        if r["source"] == "predicted"
        and (not r["correct"] or r.get("matched_question") == r["base_question"])
    ]
    assert k1["near_miss"]["false_serves"] == len(false)
    assert (tmp_path / "oracle" / "amortization.png").exists()


def test_prompt_against_cold_and_support_coverage_per_arm() -> None:
    from sleeptime.bench.report import prompt_vs_cold, support_coverage

    rows: list[dict[str, Any]] = [
        {"test_prompt_tokens": 100, "cold_prompt_tokens": 1000, "support": {"covered": True}},
        {"test_prompt_tokens": 0, "cold_prompt_tokens": 1000, "source": "predicted"},
        {"test_prompt_tokens": 200, "cold_prompt_tokens": 1000, "support": {"covered": False}},
        {"test_prompt_tokens": 50},  # an answer from before these were recorded
        {
            "test_prompt_tokens": 1000,
            "cold_prompt_tokens": 1000,
            "support": {"covered": True, "whole_text": True},
        },
    ]
    assert prompt_vs_cold(rows) == {
        "answers": 4,
        "mean_test_prompt_tokens": 325.0,
        "mean_cold_prompt_tokens": 1000.0,
        "ratio": 0.325,
    }
    assert support_coverage(rows) == {
        "n": 3,
        "covered": 2,
        "rate": 0.6667,
        "without_whole_text": 2,
        "covered_without_whole_text": 1,
    }
    assert prompt_vs_cold([{"test_prompt_tokens": 5}])["ratio"] is None
    assert support_coverage([])["rate"] is None


# -- the paper's headline figures ------------------------------------------------------------


class KnownAccuracy(BaseChatModel):
    """A scripted paper-protocol model whose accuracy and tokens are fixed by design.

    Sleep time: one rewrite ("notes s=S", 50 tokens) then FINISHED; S is 0 at temperature
    0, else 1, 2, 3 ... per context (k sleep agents at temperature > 0 write different
    blocks). Test time, item i ("Question i"), verbosity v:

    - empty block: right iff i % 10 < 4 / 6 / 8 (v = 0 / 2 / 4), 20 / 100 / 300 tokens;
    - block "notes s=S": right iff (i + S) % 10 < 6 / 8 / 8, 10 / 40 / 80 tokens;
      a wrong answer is gold + 1 + S, so wrong answers of different blocks differ.
    """

    seeds: dict[str, int] = Field(default_factory=dict)
    received: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "known-accuracy"

    def get_num_tokens(self, text: str) -> int:
        return len(text.split())

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(dict(kwargs))
        system, human = str(messages[0].content), str(messages[-1].content)
        if human.startswith("New situation:"):
            seed = 0
            if kwargs.get("temperature"):
                seed = self.seeds[human] = self.seeds.get(human, 0) + 1
            text, tokens = f"REWRITE\nnotes s={seed}\nFINISHED", 50
        else:
            v = next(
                lv for lv in (4, 3, 2, 1, 0) if system.startswith(BUILTIN.test_system[lv].strip())
            )
            i = int(re.search(r"Question (\d+)", human).group(1))  # type: ignore[union-attr]
            gold = 10 + i
            block = re.search(r"notes s=(\d+)", system)
            if block is None:
                right, tokens, seed = i % 10 < {0: 4, 2: 6, 4: 8}[v], {0: 20, 2: 100, 4: 300}[v], 0
            else:
                seed = int(block.group(1))
                right = (i + seed) % 10 < {0: 6, 2: 8, 4: 8}[v]
                tokens = {0: 10, 2: 40, 4: 80}[v]
            text = f"The answer is {gold if right else gold + 1 + seed}."
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": 100,
                "output_tokens": tokens,
                "total_tokens": 100 + tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _known_data(tmp_path: Path, n: int = 10) -> Path:
    rows = [
        {
            "id": f"c{i}",
            "context": f"Item {i}: Ann has {i + 2} apples and buys 8 more.",
            "queries": [{"question": f"Question {i}: how many apples now?", "answer": str(10 + i)}],
        }
        for i in range(n)
    ]
    p = tmp_path / "known.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def _known_run(tmp_path: Path, sleep_k: list[int]) -> Path:
    out = tmp_path / "known"
    run(
        RunConfig(
            dataset=str(_known_data(tmp_path)),
            model=KnownAccuracy(),
            out=out,
            verbosity=[0, 2, 4],
            sleep_k=sleep_k,
            protocol="paper",
            predictability=False,
        )
    )
    return out


FIGURE_KEYS = {"value", "ci_low", "ci_high", "note"}


def test_headline_figures_of_a_scripted_model_match_the_hand_computation(tmp_path: Path) -> None:
    """Test-time only: (20 tok, 40%), (100, 60%), (300, 80%). k=1 per pair: (10, 60%),
    (40, 80%), (80, 80%). k=3 (blocks s=1,2,3, majority of 3): 70% / 90% / 90% at 10 / 40
    / 80 tokens per pair (30 / 120 / 240 summed). By hand:
    - tokens at equal accuracy (80%, the highest both reach), k=1: 40 / 300 = 0.1333;
      k=3: (10 + 0.5 x 30) / 300 = 25 / 300 = 0.0833 per pair, 75 / 300 = 0.25 summed;
    - gain k=3 - k=1: +10 points at every verbosity;
    - amortized, Q = 10, t = 10, k=1: mean of (5 + 100) / 200, (5 + 400) / 1000,
      (5 + 800) / 3000 = 0.3994; at the measured Q = 1: mean of 150/200, 450/1000,
      850/3000 = 0.4944."""
    out = _known_run(tmp_path, [0, 1, 3])
    summary = write_report(out, quiet=True)
    arms = {a["arm"]: a for a in summary["arms"]}
    assert [arms[f"k0-v{v}"]["accuracy"] for v in (0, 2, 4)] == [0.4, 0.6, 0.8]
    assert [arms[f"k1-v{v}"]["accuracy"] for v in (0, 2, 4)] == [0.6, 0.8, 0.8]
    assert [arms[f"k3-v{v}"]["accuracy"] for v in (0, 2, 4)] == [0.7, 0.9, 0.9]
    k3 = arms["k3-v0"]  # tokens per pair (the paper's way) and summed over the k pairs
    assert (k3["pairs"], k3["mean_test_tokens_per_pair"], k3["mean_test_tokens"]) == (3, 10, 30)
    assert (k3["mean_sleep_tokens_per_pair"], k3["mean_sleep_tokens"]) == (50, 150)
    assert arms["k1-v0"]["pairs"] == 1 and arms["k1-v0"]["mean_test_tokens_per_pair"] == 10
    head = summary["headline"]
    assert set(head) == {
        "test_tokens_ratio_at_equal_accuracy",
        "sleep_scaling_gain",
        "amortized_cost_ratio",
    }
    for fig in head.values():
        assert set(fig) == FIGURE_KEYS and fig["ci_low"] <= fig["value"] <= fig["ci_high"]
    assert head["test_tokens_ratio_at_equal_accuracy"]["value"] == pytest.approx(40 / 300, abs=1e-4)
    assert "80.0% accuracy" in head["test_tokens_ratio_at_equal_accuracy"]["note"]
    assert head["sleep_scaling_gain"]["value"] == pytest.approx(0.10, abs=1e-4)
    amortized = (105 / 200 + 405 / 1000 + 805 / 3000) / 3
    assert head["amortized_cost_ratio"]["value"] == pytest.approx(amortized, abs=1e-4)
    by_k = summary["headline_details"]["by_k"]
    measured = (150 / 200 + 450 / 1000 + 850 / 3000) / 3
    assert by_k["1"]["amortized_cost_ratio_measured_q"]["value"] == pytest.approx(
        measured, abs=1e-4
    )
    assert by_k["3"]["test_tokens_ratio"]["value"] == pytest.approx(25 / 300, abs=1e-4)
    assert by_k["3"]["test_tokens_ratio_summed_over_k"]["value"] == pytest.approx(0.25, abs=1e-4)
    assert by_k["3"]["sleep_scaling_gain"]["value"] == pytest.approx(0.10, abs=1e-4)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["headline"] == head
    md = (out / "report.md").read_text()
    assert "## Headline figures, in the paper's form" in md and "7.50x fewer" in md
    assert "| k3-v0 | 3 | 10.0 | 30.0 | 50.0 | 150.0 |" in md


def test_headline_figures_say_why_they_are_missing(tmp_path: Path) -> None:
    """One sleep-time k: no scaling gain (null, and the note says why); the amortized
    ratio is computed whatever the accuracy."""
    out = _known_run(tmp_path, [0, 1])
    head = write_report(out, quiet=True)["headline"]
    assert head["sleep_scaling_gain"]["value"] is None
    assert "two sleep-time k values" in head["sleep_scaling_gain"]["note"]
    assert head["amortized_cost_ratio"]["value"] is not None
    rows = read_jsonl(out / RESULTS)  # every answer wrong: nothing to equalise
    for r in rows:
        r["response"] = "I do not know."
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = summarize(out)["headline"]
    assert head["test_tokens_ratio_at_equal_accuracy"]["value"] is None
    assert "nothing to equalise" in head["test_tokens_ratio_at_equal_accuracy"]["note"]
    assert head["amortized_cost_ratio"]["value"] is not None


def test_pareto_front_and_interpolation() -> None:
    from sleeptime.bench.report import equal_accuracy_ratio, pareto_front, tokens_at

    pts = [(10.0, 0.6), (40.0, 0.8), (80.0, 0.8), (5.0, 0.2)]
    assert pareto_front(pts) == [(5.0, 0.2), (10.0, 0.6), (40.0, 0.8)]
    assert tokens_at(pts, 0.7) == pytest.approx(25.0)
    assert tokens_at(pts, 0.1) == 5.0 and tokens_at(pts, 0.9) is None
    ratio, level = equal_accuracy_ratio([(100.0, 0.5), (300.0, 0.9)], pts)
    assert level == 0.8 and ratio == pytest.approx(40 / 250)
    assert equal_accuracy_ratio([(100.0, 0.0)], [(10.0, 0.0)]) == (None, 0.0)
