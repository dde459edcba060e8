"""``summary.json``'s content: one run's answers scored (or re-scored) per arm, with
their intervals, token means, failures, prompt against cold, support coverage and the
predictability gain."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sleeptime.bench.datasets import Item, parse_jsonl
from sleeptime.bench.extract import Scorer, get_scorer
from sleeptime.bench.report.headline import _cells, headline_figures
from sleeptime.bench.report.intervals import (
    HEADLINE_RESAMPLES,
    _cluster_mean_ci,
    _mean,
    accuracy_ci,
)
from sleeptime.bench.runner import (
    CALLS,
    DATASET,
    ERRORS,
    PRED,
    RESULTS,
    RUN,
    SLEEP,
    is_aime,
    read_jsonl,
    vote,
)
from sleeptime.errors import InvalidInput

#: Example list prices, US$ per 1M tokens (input, output). Prices change: check them,
#: or pass your own with ``--prices prices.json`` ({"name": [input, output], ...}).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "o3-mini": (1.10, 4.40),
    "local": (0.0, 0.0),
}


@dataclass
class ArmStats:
    arm: str
    kind: str  # test | sleep | parallel | pass@k
    k: int
    verbosity: int
    n: int
    correct: int
    accuracy: float
    ci: tuple[float, float]
    mean_test_tokens: float
    mean_test_prompt_tokens: float
    mean_sleep_tokens_per_context: float
    mean_sleep_prompt_tokens_per_context: float
    sleep_tokens_per_query: float
    queries_per_context: float
    amortized_cost_per_query: float
    predicted_fraction: float
    ci_method: str = ""
    contexts: int = 0
    charged_test_tokens: float = 0.0
    charged_test_prompt_tokens: float = 0.0
    zero_token: dict[str, Any] = field(default_factory=dict)
    model_path: dict[str, Any] = field(default_factory=dict)
    near_miss: dict[str, Any] = field(default_factory=dict)
    cap_hits: dict[str, Any] = field(default_factory=dict)
    usd_per_query: dict[str, float] = field(default_factory=dict)
    sleep_errors: int = 0
    prompt_vs_cold: dict[str, Any] = field(default_factory=dict)
    support_coverage: dict[str, Any] = field(default_factory=dict)
    #: Sleep/test pairs behind one answer: k for the paper protocol's k sleep agents,
    #: else 1. Per-pair tokens are the summed ones divided by it (the paper counts one).
    pairs: int = 1
    #: Answers whose model call failed (``source: error``), counted as wrong.
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "kind": self.kind,
            "k": self.k,
            "verbosity": self.verbosity,
            "n": self.n,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "ci_method": self.ci_method,
            "contexts": self.contexts,
            "mean_test_tokens": round(self.mean_test_tokens, 2),
            "mean_test_prompt_tokens": round(self.mean_test_prompt_tokens, 2),
            "mean_sleep_tokens": round(self.mean_sleep_tokens_per_context, 2),
            "mean_sleep_prompt_tokens": round(self.mean_sleep_prompt_tokens_per_context, 2),
            "sleep_tokens_per_query": round(self.sleep_tokens_per_query, 2),
            "queries_per_context": round(self.queries_per_context, 3),
            "amortized_cost_per_query": round(self.amortized_cost_per_query, 2),
            "predicted_fraction": round(self.predicted_fraction, 4),
            "charged_test_tokens": round(self.charged_test_tokens, 2),
            "charged_test_prompt_tokens": round(self.charged_test_prompt_tokens, 2),
            "zero_token": self.zero_token,
            "model_path": self.model_path,
            "near_miss": self.near_miss,
            "cap_hits": self.cap_hits,
            "usd_per_query": {k: round(v, 8) for k, v in self.usd_per_query.items()},
            "sleep_errors": self.sleep_errors,
            "prompt_vs_cold": self.prompt_vs_cold,
            "support_coverage": self.support_coverage,
            "pairs": self.pairs,
            "mean_test_tokens_per_pair": round(self.mean_test_tokens / self.pairs, 2),
            "mean_sleep_tokens_per_pair": round(self.mean_sleep_tokens_per_context / self.pairs, 2),
            "errors": self.errors,
        }


def load_prices(path: str | Path | None) -> dict[str, tuple[float, float]]:
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        for name, pair in data.items():
            prices[str(name)] = (float(pair[0]), float(pair[1]))
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise InvalidInput(
            f"--prices {path}: expected JSON "
            f'{{"model": [input_usd_per_1M, output_usd_per_1M]}} ({exc})'
        ) from exc
    return prices


def _arm_order(arm: str) -> tuple[int, int, int]:
    head, _, v = arm.split(":")[0].partition("-v")
    family = 2 if head.startswith("par") else (0 if head == "k0" else 1)
    return (family, int(head.lstrip("kpar") or 0), int(v or 0)) if v.isdigit() else (9, 0, 0)


def _items(out: Path) -> dict[str, Item]:
    path = out / DATASET
    if not path.exists():
        return {}
    return {it.id: it for it in parse_jsonl(path.read_text("utf-8").splitlines(), source=str(path))}


def latest(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (item, query, arm): the last written (a re-run redoes an answer whose
    model call failed, and its row supersedes the error's)."""
    last: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for r in results:
        last[(r["item"], r["q"], r["arm"])] = r
    return list(last.values())


def rescore(
    results: list[dict[str, Any]], items: dict[str, Item], name: str
) -> list[dict[str, Any]]:
    """Score every stored response again with scorer ``name`` (the runs keep responses,
    so ``bench report --scorer`` can compare the paper's scorer with the lenient one).
    The paper's scorer reads the dataset's raw answer field where the item keeps it
    (Stateful GSM-Symbolic: ``meta.solution``). An answer whose call failed stays wrong."""
    scorers: dict[bool, Scorer] = {}
    out = []
    for r in results:
        item = items.get(r["item"])
        aime = bool(item is not None and is_aime(item))
        scorer = scorers.setdefault(aime, get_scorer(name, aime=aime))
        gold = str(r["gold"])
        qi = r.get("q")
        if item is not None and isinstance(qi, int) and 0 <= qi < len(item.queries):
            gold = scorer.gold(item.queries[qi].answer, item.queries[qi].meta)
        r = dict(r)
        if r.get("source") == "error":
            r["correct"] = False
            if "pass_at_k" in r:
                r["pass_at_k"] = False
            out.append(r)
            continue
        group = r.get("samples") or r.get("pairs")
        if group:
            group = [
                {**s, "key": scorer.key(s["text"]), "correct": scorer.correct(s["text"], gold)}
                for s in group
            ]
            r["extracted"], r["correct"] = vote(group)
            r["pass_at_k"] = any(s["correct"] for s in group)
            r["samples" if r.get("samples") else "pairs"] = group
        else:
            r["correct"] = scorer.correct(str(r.get("response") or ""), gold)
            r["extracted"] = scorer.key(str(r.get("response") or ""))
            if "pass_at_k" in r:
                r["pass_at_k"] = r["correct"]
        out.append(r)
    return out


def _rate(calls: list[dict[str, Any]]) -> dict[str, Any]:
    known = [c for c in calls if "capped" in c]
    capped = sum(bool(c["capped"]) for c in known)
    return {
        "calls": len(known),
        "capped": capped,
        "rate": round(capped / len(known), 4) if known else None,
    }


@dataclass
class _Run:
    """What every arm's statistics read from one run."""

    sleep_by: dict[tuple[Any, Any], dict[str, Any]]
    calls_by_arm: dict[str, list[dict[str, Any]]]
    model_path_by_v: dict[int, list[dict[str, Any]]]
    prices: dict[str, tuple[float, float]]
    t: float
    paper: bool


def _read_meta(out: Path, scorer: str | None) -> tuple[dict[str, Any], str]:
    """The run's ``run.json`` and the scorer's name (checked)."""
    run_path = out / RUN
    if not run_path.exists():
        raise InvalidInput(
            f"{out} is not a benchmark run directory (no {RUN}): run 'sleeptime bench run' first"
        )
    meta = json.loads(run_path.read_text("utf-8"))
    meta.setdefault("protocol", "product")
    scorer_name = scorer or meta.get("scorer") or "lenient"
    get_scorer(scorer_name)  # a clear error for an unknown name
    return meta, scorer_name


def _rows_by_arm(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each arm's rows, plus a ``ARM:pass@N`` arm for sampled or paired answers."""
    by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_arm[r["arm"]].append(r)
        if r.get("kind") == "parallel":
            by_arm[f"{r['arm']}:pass@{len(r['samples'])}"].append({**r, "correct": r["pass_at_k"]})
        elif r.get("pairs"):
            by_arm[f"{r['arm']}:pass@{len(r['pairs'])}"].append({**r, "correct": r["pass_at_k"]})
    return by_arm


def _zero_token(
    zero: list[dict[str, Any]],
    wrong_zero: list[dict[str, Any]],
    base: list[dict[str, Any]],
    fill_out: float,
) -> dict[str, Any]:
    zero_ok = sum(bool(r["correct"]) for r in zero)
    return {
        "served": len(zero),
        "correct": zero_ok,
        "wrong": len(wrong_zero),
        "accuracy": round(zero_ok / len(zero), 4) if zero else None,
        "charged_tokens_per_wrong": round(fill_out, 2),
        # the target: served answers at least as accurate as the model path
        "at_least_model_path": (
            None
            if not zero or not base
            else zero_ok / len(zero) >= sum(bool(r["correct"]) for r in base) / len(base)
        ),
        "serve_reasons": dict(
            Counter(str(r.get("serve_reason")) for r in zero if r.get("serve_reason"))
        ),
    }


def _near_miss(rows: list[dict[str, Any]]) -> dict[str, Any]:
    near = [r for r in rows if "near_miss_of" in r]
    near_zero = [r for r in near if r.get("source") == "predicted"]
    false_serves = [
        r
        for r in near_zero
        if not r["correct"] or _same(r.get("matched_question"), r.get("base_question"))
    ]
    return {
        "n": len(near),
        "served_zero_token": len(near_zero),
        "false_serves": len(false_serves),
        "false_serve_rate": round(len(false_serves) / len(near), 4) if near else None,
        "by_category": _near_by_category(near, false_serves),
    }


def _cap_hits(run: _Run, arm: str, k: int, items: list[str]) -> dict[str, Any]:
    arm_calls = run.calls_by_arm.get(arm.split(":")[0], [])
    sleep_calls = run.calls_by_arm.get(f"sleep-k{k}", []) if k else []
    if sleep_calls:
        mine = set(items)
        sleep_calls = [c for c in sleep_calls if c.get("item") in mine]
    return {"test": _rate(arm_calls), "sleep": _rate(sleep_calls)}


def _arm_stats(run: _Run, arm: str, rows: list[dict[str, Any]]) -> tuple[ArmStats, float]:
    """One arm's statistics, and the test tokens a wrong zero-token answer is charged."""
    kind = rows[0]["kind"] if ":pass@" not in arm else "pass@k"
    k = int(rows[0].get("k", 0))
    v = int(rows[0]["verbosity"])
    items = sorted({r["item"] for r in rows})
    sleep_rows = (
        [run.sleep_by[(i, k)] for i in items if (i, k) in run.sleep_by]
        if kind == "sleep" or (kind == "pass@k" and k > 0)
        else []
    )
    sleep_out = sum(s["sleep_completion_tokens"] for s in sleep_rows)
    sleep_in = sum(s["sleep_prompt_tokens"] for s in sleep_rows)
    n = len(rows)
    zero = [r for r in rows if r.get("source") == "predicted"]
    model = [r for r in rows if r.get("source") != "predicted"]
    base = model or run.model_path_by_v.get(v, [])
    fill_out = _mean([float(r["test_completion_tokens"]) for r in base])
    fill_in = _mean([float(r["test_prompt_tokens"]) for r in base])
    wrong_zero = [r for r in zero if not r["correct"]]
    test_out = sum(r["test_completion_tokens"] for r in rows)
    test_in = sum(r["test_prompt_tokens"] for r in rows)
    charged_out = test_out + fill_out * len(wrong_zero)
    charged_in = test_in + fill_in * len(wrong_zero)
    correct = sum(bool(r["correct"]) for r in rows)
    usd = {
        name: (sleep_in * p_in + sleep_out * p_out + charged_in * p_in + charged_out * p_out)
        / 1e6
        / n
        for name, (p_in, p_out) in run.prices.items()
    }
    lo, hi, method = accuracy_ci(rows)
    model_ok = sum(bool(r["correct"]) for r in model)
    stats = ArmStats(
        arm=arm,
        kind=kind,
        k=k,
        verbosity=v,
        n=n,
        correct=correct,
        accuracy=correct / n,
        ci=(lo, hi),
        ci_method=method,
        contexts=len(items),
        mean_test_tokens=test_out / n,
        mean_test_prompt_tokens=test_in / n,
        mean_sleep_tokens_per_context=sleep_out / len(sleep_rows) if sleep_rows else 0.0,
        mean_sleep_prompt_tokens_per_context=sleep_in / len(sleep_rows) if sleep_rows else 0.0,
        sleep_tokens_per_query=sleep_out / n,
        queries_per_context=n / len(items),
        charged_test_tokens=charged_out / n,
        charged_test_prompt_tokens=charged_in / n,
        amortized_cost_per_query=(sleep_out + run.t * charged_out) / n,
        predicted_fraction=len(zero) / n,
        zero_token=_zero_token(zero, wrong_zero, base, fill_out),
        model_path={
            "n": len(model),
            "correct": model_ok,
            "accuracy": round(model_ok / len(model), 4) if model else None,
        },
        near_miss=_near_miss(rows),
        cap_hits=_cap_hits(run, arm, k, items),
        usd_per_query=usd,
        sleep_errors=sum(1 for s in sleep_rows if s.get("error")),
        prompt_vs_cold=prompt_vs_cold(rows),
        support_coverage=support_coverage(rows),
        pairs=k if run.paper and k > 1 and kind in ("sleep", "pass@k") else 1,
        errors=sum(1 for r in rows if r.get("source") == "error"),
    )
    return stats, fill_out


def _model_calls(calls: list[dict[str, Any]], failed: list[dict[str, Any]]) -> dict[str, Any]:
    phase_calls: dict[str, int] = defaultdict(int)
    for c in calls:
        phase_calls[c["phase"]] += 1
    phase_calls["failed"] = len(failed)
    return {
        "total": len(calls),
        **phase_calls,
        "latency_ms_mean": round(sum(c["latency_ms"] for c in calls) / len(calls), 1)
        if calls
        else None,
    }


def summarize(
    out: Path,
    *,
    t: float = 10.0,
    prices: dict[str, tuple[float, float]] | None = None,
    scorer: str | None = None,
) -> dict[str, Any]:
    """The numbers behind the report (also written as ``summary.json``)."""
    prices = prices or dict(DEFAULT_PRICES)
    meta, scorer_name = _read_meta(out, scorer)
    results = rescore(latest(read_jsonl(out / RESULTS)), _items(out), scorer_name)
    sleeps = read_jsonl(out / SLEEP)
    all_calls = read_jsonl(out / CALLS)
    calls = [c for c in all_calls if not c.get("error")]
    failed = [c for c in all_calls if c.get("error")]
    calls_by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        calls_by_arm[str(c.get("arm"))].append(c)
    # mean model-path test tokens per (verbosity): what a wrong zero-token answer is charged
    model_path_by_v: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("kind") == "test":
            model_path_by_v[int(r["verbosity"])].append(r)
    run = _Run(
        sleep_by={(r["item"], r["k"]): r for r in sleeps},
        calls_by_arm=calls_by_arm,
        model_path_by_v=model_path_by_v,
        prices=prices,
        t=t,
        paper=meta.get("protocol") == "paper",
    )
    by_arm = _rows_by_arm(results)
    cells: dict[str, dict[str, tuple[int, int, float, float]]] = {}
    arms = []
    for arm in sorted(by_arm, key=_arm_order):
        stats, fill_out = _arm_stats(run, arm, by_arm[arm])
        if stats.kind in ("test", "sleep"):
            cells[arm] = _cells(by_arm[arm], run.sleep_by, stats.k, fill_out)
        arms.append(stats)
    return {
        "run": meta,
        "scorer": scorer_name,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "t": t,
        "items": len({r["item"] for r in results}),
        "results": len(results),
        "model_calls": _model_calls(calls, failed),
        "cap_hits": {
            "sleep": _rate([c for c in calls if c["phase"] == "sleep"]),
            "test": _rate([c for c in calls if c["phase"] == "test"]),
        },
        "sleep_stops": dict(
            Counter(r.get("stop") for s in sleeps for r in s.get("rethinks") or [])
        ),
        "errors": len(read_jsonl(out / ERRORS)),
        "failed_calls": _failures(failed, results),
        "prices_usd_per_1m": {k: list(v) for k, v in prices.items()},
        "arms": [a.to_json() for a in arms],
        "predictability": predictability_gain(out, results),
        **headline_figures([a.to_json() for a in arms], cells, t=t, resamples=HEADLINE_RESAMPLES),
    }


def _failures(failed: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Model calls that failed (every one recorded in calls.jsonl, also those a re-run
    then redid) and the answers that still stand as errors."""
    phases = Counter(str(c.get("phase")) for c in failed)
    return {
        "total": len(failed),
        "sleep": phases.get("sleep", 0),
        "test": phases.get("test", 0),
        "answers_with_errors": sum(1 for r in results if r.get("source") == "error"),
        "first": failed[0]["error"] if failed else None,
    }


def prompt_vs_cold(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Test-time prompt tokens against the cold prompt of the same answers (those whose
    cold prompt is known: every library answer but one about a version that was never
    indexed). A zero-token answer counts with its 0 prompt tokens."""
    known = [r for r in rows if r.get("cold_prompt_tokens")]
    sent = sum(int(r["test_prompt_tokens"]) for r in known)
    cold = sum(int(r["cold_prompt_tokens"]) for r in known)
    return {
        "answers": len(known),
        "mean_test_prompt_tokens": round(sent / len(known), 2) if known else None,
        "mean_cold_prompt_tokens": round(cold / len(known), 2) if known else None,
        "ratio": round(sent / cold, 4) if cold else None,
    }


def support_coverage(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The share of answers whose supporting sentences all reached the prompt, over
    the answers where it was measured (queries that know their support, answered with
    a prompt by the library; ``sleeptime.bench.coverage``)."""
    measured = [r["support"] for r in rows if isinstance(r.get("support"), dict)]
    covered = sum(bool(m.get("covered")) for m in measured)
    passages = [m for m in measured if not m.get("whole_text")]
    return {
        "n": len(measured),
        "covered": covered,
        "rate": round(covered / len(measured), 4) if measured else None,
        "without_whole_text": len(passages),
        "covered_without_whole_text": sum(bool(m.get("covered")) for m in passages),
    }


def _same(a: Any, b: Any) -> bool:
    if not a or not b:
        return False
    return " ".join(str(a).lower().split()) == " ".join(str(b).lower().split())


def _near_by_category(
    near: list[dict[str, Any]], false_serves: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in near:
        cat = str(r.get("near_miss_category") or "other")
        entry = out.setdefault(cat, {"n": 0, "false_serves": 0})
        entry["n"] += 1
        entry["false_serves"] += any(r is f for f in false_serves)
    return out


def predictability_gain(out: Path, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy of each sleep arm minus the test-time arm at the same verbosity, per
    predictability quintile (of the scored queries). None when nothing was scored."""
    scores = {
        (r["item"], r["q"]): r["predictability"]
        for r in read_jsonl(out / PRED)
        if r.get("predictability") is not None
    }
    if not scores:
        return None
    ranked = sorted(scores, key=lambda key: scores[key])
    quintile = {key: min(4, i * 5 // len(ranked)) for i, key in enumerate(ranked)}
    correct: dict[tuple[str, int], dict[tuple[str, int], bool]] = defaultdict(dict)
    arms_seen: dict[str, tuple[int, int]] = {}
    for r in results:
        if r.get("kind") in ("test", "sleep"):
            correct[(r["item"], r["q"])][(r["arm"], 0)] = bool(r["correct"])
            arms_seen[r["arm"]] = (int(r["k"]), int(r["verbosity"]))
    gains: dict[str, list[float | None]] = {}
    intervals: dict[str, list[list[float] | None]] = {}
    for arm, (k, v) in sorted(arms_seen.items()):
        base = f"k0-v{v}"
        if k == 0 or base not in arms_seen:
            continue
        per_bin: list[float | None] = []
        ci_bin: list[list[float] | None] = []
        for b in range(5):
            by_item: dict[str, list[float]] = defaultdict(list)
            for key, c in correct.items():
                if quintile.get(key) == b and (arm, 0) in c and (base, 0) in c:
                    by_item[str(key[0])].append(float(c[(arm, 0)]) - float(c[(base, 0)]))
            diffs = [d for ds in by_item.values() for d in ds]
            per_bin.append(sum(diffs) / len(diffs) if diffs else None)
            clusters = [(sum(ds), len(ds)) for ds in by_item.values()]
            ci = _cluster_mean_ci(clusters) if clusters else None
            ci_bin.append(None if ci is None else [round(ci[0], 4), round(ci[1], 4)])
        gains[arm] = per_bin
        intervals[arm] = ci_bin
    edges = [scores[ranked[min(len(ranked) - 1, b * len(ranked) // 5)]] for b in range(5)]
    return {
        "scored": len(scores),
        "quintile_lower_edges": edges,
        "gain_by_quintile": gains,
        # 95% percentile cluster bootstrap over the contexts of each quintile
        "gain_ci_by_quintile": intervals,
    }
