"""Report numbers: intervals, zero-token answers, near-miss false serves, cap hits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
