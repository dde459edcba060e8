"""Benchmark reports: ``summary.json``, ``report.md``, PNG plots and a printed table.

Figures, as in the Sleep-time Compute paper:

- ``pareto.png``: accuracy (bootstrap 95% CI) vs mean test-time tokens per query, one
  curve per arm family (test-time only, sleep-time with k rethinks, parallel sampling),
  one point per verbosity;
- ``amortization.png``: accuracy vs average cost per query, one curve per number of
  queries per context (sleep-time cost is shared by the queries on one context; a
  test-time token costs ``t`` times a sleep-time token, the paper uses t = 10); the
  measured queries-per-context curve is solid with filled markers, the others are
  projections from the same measurements; a second panel prices the tokens in US$;
- ``predictability.png``: accuracy gain of sleep-time over test-time only, per
  predictability quintile, when the run recorded predictability scores.

Tokens are completion tokens (what the paper counts) unless a column says otherwise.
Intervals are 95%: a cluster bootstrap over contexts (queries on one context are not
independent), or the Wilson score interval over contexts when an arm is at 0% or 100%
(where a bootstrap collapses to a point); each arm names its method in ``ci_method``.
A zero-token answer that is wrong is charged, in every cost figure, the mean test-time
tokens of the arm's model-path answers: a wrong precomputed answer is never a saving.
Per arm, ``prompt_vs_cold`` sets test-time prompt tokens against the cold prompt and
``support_coverage`` gives the share of answers whose supporting sentences all reached
the prompt (:mod:`sleeptime.bench.coverage`).
"""

from __future__ import annotations

import json
import math
import operator
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sleeptime.bench.datasets import Item, parse_jsonl
from sleeptime.bench.extract import Scorer, get_scorer
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
MAX_QUERIES_PLOTTED = 10
#: Bootstrap resamples (of contexts) behind each headline interval.
HEADLINE_RESAMPLES = 1000
#: Queries per context of the paper's amortization headline ("2.5x lower cost per query
#: at 10 queries per context, test tokens weighted 10x").
HEADLINE_Q = 10.0


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


def bootstrap_ci(
    values: list[bool], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of a mean (queries resampled with replacement)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    data = [1.0 if v else 0.0 for v in values]
    means = sorted(sum(rng.choices(data, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * (resamples - 1))], means[math.ceil(0.975 * (resamples - 1))]


def wilson_ci(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval; unlike a bootstrap it has width at 0% and 100%."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap_ci(
    clusters: list[tuple[int, int]], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of pooled accuracy, resampling whole contexts
    (``clusters`` = (correct, queries) per context) with replacement."""
    m = len(clusters)
    if m == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        pick = rng.choices(clusters, k=m)
        total = sum(n for _, n in pick)
        stats.append(sum(c for c, _ in pick) / total if total else 0.0)
    stats.sort()
    return stats[int(0.025 * (resamples - 1))], stats[math.ceil(0.975 * (resamples - 1))]


def accuracy_ci(rows: list[dict[str, Any]], *, resamples: int = 2000) -> tuple[float, float, str]:
    """(low, high, method) of an arm's accuracy; see the module docstring."""
    by_item: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_item[str(r["item"])].append(bool(r["correct"]))
    clusters = [(sum(v), len(v)) for v in by_item.values()]
    correct, n = sum(c for c, _ in clusters), sum(q for _, q in clusters)
    m = len(clusters)
    if n == 0:
        return math.nan, math.nan, "none"
    if correct in (0, n):
        lo, hi = wilson_ci(m if correct == n else 0, m)
        level = 100 * correct // n
        return lo, hi, f"Wilson score interval over {m} contexts (accuracy {level}%)"
    if m < 2:  # one context: nothing to resample; treat its queries as independent
        lo, hi = wilson_ci(correct, n)
        return lo, hi, f"Wilson score interval over {n} queries of 1 context"
    lo, hi = cluster_bootstrap_ci(clusters, resamples=resamples)
    unit = "contexts" if n > m else "contexts (one query each)"
    return lo, hi, f"cluster bootstrap over {m} {unit}, {resamples} resamples, percentile"


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


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(
    out: Path,
    *,
    t: float = 10.0,
    prices: dict[str, tuple[float, float]] | None = None,
    scorer: str | None = None,
) -> dict[str, Any]:
    """The numbers behind the report (also written as ``summary.json``)."""
    prices = prices or dict(DEFAULT_PRICES)
    run_path = out / RUN
    if not run_path.exists():
        raise InvalidInput(
            f"{out} is not a benchmark run directory (no {RUN}): run 'sleeptime bench run' first"
        )
    meta = json.loads(run_path.read_text("utf-8"))
    meta.setdefault("protocol", "product")
    scorer_name = scorer or meta.get("scorer") or "lenient"
    get_scorer(scorer_name)  # a clear error for an unknown name
    results = rescore(latest(read_jsonl(out / RESULTS)), _items(out), scorer_name)
    sleeps = read_jsonl(out / SLEEP)
    sleep_by = {(r["item"], r["k"]): r for r in sleeps}
    all_calls = read_jsonl(out / CALLS)
    calls = [c for c in all_calls if not c.get("error")]
    failed = [c for c in all_calls if c.get("error")]
    paper = meta.get("protocol") == "paper"
    cells: dict[str, dict[str, tuple[int, int, float, float]]] = {}
    calls_by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        calls_by_arm[str(c.get("arm"))].append(c)
    by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_arm[r["arm"]].append(r)
        if r.get("kind") == "parallel":
            by_arm[f"{r['arm']}:pass@{len(r['samples'])}"].append({**r, "correct": r["pass_at_k"]})
        elif r.get("pairs"):
            by_arm[f"{r['arm']}:pass@{len(r['pairs'])}"].append({**r, "correct": r["pass_at_k"]})
    # mean model-path test tokens per (verbosity): what a wrong zero-token answer is charged
    model_path_by_v: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("kind") == "test":
            model_path_by_v[int(r["verbosity"])].append(r)
    arms = []
    for arm in sorted(by_arm, key=_arm_order):
        rows = by_arm[arm]
        kind = rows[0]["kind"] if ":pass@" not in arm else "pass@k"
        k = int(rows[0].get("k", 0))
        v = int(rows[0]["verbosity"])
        items = sorted({r["item"] for r in rows})
        sleep_rows = (
            [sleep_by[(i, k)] for i in items if (i, k) in sleep_by]
            if kind == "sleep" or (kind == "pass@k" and k > 0)
            else []
        )
        sleep_out = sum(s["sleep_completion_tokens"] for s in sleep_rows)
        sleep_in = sum(s["sleep_prompt_tokens"] for s in sleep_rows)
        n = len(rows)
        zero = [r for r in rows if r.get("source") == "predicted"]
        model = [r for r in rows if r.get("source") != "predicted"]
        base = model or model_path_by_v.get(v, [])
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
            for name, (p_in, p_out) in prices.items()
        }
        lo, hi, method = accuracy_ci(rows)
        if kind in ("test", "sleep"):
            cells[arm] = _cells(rows, sleep_by, k, fill_out)
        near = [r for r in rows if "near_miss_of" in r]
        near_zero = [r for r in near if r.get("source") == "predicted"]
        false_serves = [
            r
            for r in near_zero
            if not r["correct"] or _same(r.get("matched_question"), r.get("base_question"))
        ]
        zero_ok = sum(bool(r["correct"]) for r in zero)
        model_ok = sum(bool(r["correct"]) for r in model)
        arm_calls = calls_by_arm.get(arm.split(":")[0], [])
        sleep_calls = calls_by_arm.get(f"sleep-k{k}", []) if k else []
        if sleep_calls:
            mine = set(items)
            sleep_calls = [c for c in sleep_calls if c.get("item") in mine]
        arms.append(
            ArmStats(
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
                mean_sleep_prompt_tokens_per_context=sleep_in / len(sleep_rows)
                if sleep_rows
                else 0.0,
                sleep_tokens_per_query=sleep_out / n,
                queries_per_context=n / len(items),
                charged_test_tokens=charged_out / n,
                charged_test_prompt_tokens=charged_in / n,
                amortized_cost_per_query=(sleep_out + t * charged_out) / n,
                predicted_fraction=len(zero) / n,
                zero_token={
                    "served": len(zero),
                    "correct": zero_ok,
                    "wrong": len(wrong_zero),
                    "accuracy": round(zero_ok / len(zero), 4) if zero else None,
                    "charged_tokens_per_wrong": round(fill_out, 2),
                    # the target: served answers at least as accurate as the model path
                    "at_least_model_path": (
                        None
                        if not zero or not base
                        else zero_ok / len(zero)
                        >= sum(bool(r["correct"]) for r in base) / len(base)
                    ),
                    "serve_reasons": dict(
                        Counter(str(r.get("serve_reason")) for r in zero if r.get("serve_reason"))
                    ),
                },
                model_path={
                    "n": len(model),
                    "correct": model_ok,
                    "accuracy": round(model_ok / len(model), 4) if model else None,
                },
                near_miss={
                    "n": len(near),
                    "served_zero_token": len(near_zero),
                    "false_serves": len(false_serves),
                    "false_serve_rate": round(len(false_serves) / len(near), 4) if near else None,
                    "by_category": _near_by_category(near, false_serves),
                },
                cap_hits={"test": _rate(arm_calls), "sleep": _rate(sleep_calls)},
                usd_per_query=usd,
                sleep_errors=sum(1 for s in sleep_rows if s.get("error")),
                prompt_vs_cold=prompt_vs_cold(rows),
                support_coverage=support_coverage(rows),
                pairs=k if paper and k > 1 and kind in ("sleep", "pass@k") else 1,
                errors=sum(1 for r in rows if r.get("source") == "error"),
            )
        )
    phase_calls: dict[str, int] = defaultdict(int)
    for c in calls:
        phase_calls[c["phase"]] += 1
    phase_calls["failed"] = len(failed)
    return {
        "run": meta,
        "scorer": scorer_name,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "t": t,
        "items": len({r["item"] for r in results}),
        "results": len(results),
        "model_calls": {
            "total": len(calls),
            **phase_calls,
            "latency_ms_mean": round(sum(c["latency_ms"] for c in calls) / len(calls), 1)
            if calls
            else None,
        },
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


def _cluster_mean_ci(
    clusters: list[tuple[float, int]], *, resamples: int = HEADLINE_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% interval of a pooled mean, resampling whole contexts
    (``clusters`` = (sum, count) per context)."""
    rng = random.Random(seed)
    sums = [x for x, _ in clusters]
    counts = [float(n) for _, n in clusters]
    positions = range(len(clusters))
    stats = []
    for _ in range(resamples):
        pick = operator.itemgetter(*rng.choices(positions, k=len(clusters)))
        got_sums, got_counts = pick(sums), pick(counts)
        if not isinstance(got_counts, tuple):  # one context
            got_sums, got_counts = (got_sums,), (got_counts,)
        total = sum(got_counts)
        stats.append(sum(got_sums) / total if total else 0.0)
    stats.sort()
    return stats[int(0.025 * (resamples - 1))], stats[math.ceil(0.975 * (resamples - 1))]


# -- the paper's headline figures --------------------------------------------------------------

#: (queries, correct, charged test tokens summed over the pairs, the context's sleep
#: tokens summed over the k rethinks) of one arm on one context.
Cell = tuple[int, int, float, float]


def _cells(
    rows: list[dict[str, Any]], sleep_by: dict[tuple[Any, Any], dict[str, Any]], k: int, fill: float
) -> dict[str, Cell]:
    """One arm's rows per context (a wrong zero-token answer charged ``fill`` tokens)."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        c = acc.setdefault(str(r["item"]), [0, 0, 0.0, 0.0])
        c[0] += 1
        c[1] += bool(r["correct"])
        wrong_zero = r.get("source") == "predicted" and not r["correct"]
        c[2] += fill if wrong_zero else float(r["test_completion_tokens"])
    out: dict[str, Cell] = {}
    for item, c in acc.items():
        slept = sleep_by.get((item, k)) if k else None
        sleep = float(slept["sleep_completion_tokens"]) if slept else 0.0
        out[item] = (int(c[0]), int(c[1]), c[2], sleep)
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (tokens, accuracy) points that no other point beats with fewer or as many
    tokens and a higher accuracy, by tokens (accuracy strictly rising along it)."""
    front: list[tuple[float, float]] = []
    for x, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or a > front[-1][1]:
            front.append((x, a))
    return front


def tokens_at(points: list[tuple[float, float]], level: float) -> float | None:
    """The fewest tokens at which the Pareto front of ``points`` reaches accuracy
    ``level``, linear between its points; the cheapest point when it already does;
    None when no point reaches it."""
    front = pareto_front(points)
    if not front or level > front[-1][1]:
        return None
    prev: tuple[float, float] | None = None
    for x, a in front:
        if a >= level:
            if prev is None:
                return x
            x0, a0 = prev
            return x0 + (level - a0) / (a - a0) * (x - x0)
        prev = (x, a)
    return None  # pragma: no cover - the last point reaches the level


def equal_accuracy_ratio(
    test_only: list[tuple[float, float]], sleep: list[tuple[float, float]]
) -> tuple[float | None, float]:
    """(sleep-time tokens / test-time-only tokens at equal accuracy, that accuracy): the
    highest accuracy both Pareto fronts reach. None when it is 0 (nothing to equalise)
    or test-time only needs no tokens for it."""
    level = min(max(a for _, a in test_only), max(a for _, a in sleep))
    if level <= 0:
        return None, level
    base, mine = tokens_at(test_only, level), tokens_at(sleep, level)
    if not base or mine is None:
        return None, level
    return mine / base, level


@dataclass(frozen=True)
class _ArmInfo:
    arm: str
    k: int
    v: int
    pairs: int


def _figures(
    info: list[_ArmInfo], agg: dict[str, tuple[int, int, float, float, int]], t: float
) -> dict[str, float | None]:
    """Every headline number of one (re)sample of contexts, by name. ``agg`` holds per
    arm (queries, correct, test tokens, sleep tokens, contexts) summed over the sample."""
    out: dict[str, float | None] = {}
    here = [a for a in info if a.arm in agg and agg[a.arm][0] > 0]
    base = {a.v: a for a in here if a.k == 0}
    ks = sorted({a.k for a in here if a.k > 0})

    def acc(a: _ArmInfo) -> float:
        n, c, *_ = agg[a.arm]
        return c / n

    def test(a: _ArmInfo, per_pair: bool) -> float:
        n, _c, tok, _s, _m = agg[a.arm]
        return tok / n / (a.pairs if per_pair else 1)

    for k in ks:
        mine = {a.v: a for a in here if a.k == k}
        for per_pair, tag in ((True, ""), (False, "_summed")):
            if base:
                ratio, level = equal_accuracy_ratio(
                    [(test(a, per_pair), acc(a)) for a in base.values()],
                    [(test(a, per_pair), acc(a)) for a in mine.values()],
                )
                out[f"tokens{tag}@{k}"] = ratio
                out[f"level@{k}"] = level
            for q_tag in ("q10", "measured"):
                ratios = []
                for v in sorted(mine.keys() & base.keys()):
                    a = mine[v]
                    n, _c, _tok, sleep, contexts = agg[a.arm]
                    sleep_per_context = sleep / contexts / (a.pairs if per_pair else 1)
                    q = HEADLINE_Q if q_tag == "q10" else n / contexts
                    no_sleep = t * test(base[v], per_pair)
                    if no_sleep > 0:
                        ratios.append((sleep_per_context / q + t * test(a, per_pair)) / no_sleep)
                out[f"amortized{tag}_{q_tag}@{k}"] = _mean(ratios) if ratios else None
    if len(ks) >= 2:
        low = {a.v: a for a in here if a.k == ks[0]}
        for k in ks[1:]:
            mine = {a.v: a for a in here if a.k == k}
            shared = sorted(mine.keys() & low.keys())
            out[f"gain@{k}"] = (
                _mean([acc(mine[v]) - acc(low[v]) for v in shared]) if shared else None
            )
    return out


#: One arm's cells as five columns over the run's contexts (queries, correct, test
#: tokens, sleep tokens, 1 where the arm has the context), 0 where it has not.
Columns = tuple[list[float], list[float], list[float], list[float], list[float]]


def _columns(cells: dict[str, dict[str, Cell]], contexts: list[str]) -> dict[str, Columns]:
    out: dict[str, Columns] = {}
    shared: dict[tuple[float, ...], list[float]] = {}  # equal columns: one list, summed once

    def column(values: list[float]) -> list[float]:
        return shared.setdefault(tuple(values), values)

    for arm, per_item in cells.items():
        rows = [per_item.get(c) for c in contexts]
        out[arm] = (
            column([float(r[0]) if r else 0.0 for r in rows]),
            column([float(r[1]) if r else 0.0 for r in rows]),
            column([r[2] if r else 0.0 for r in rows]),
            column([r[3] if r else 0.0 for r in rows]),
            column([1.0 if r else 0.0 for r in rows]),
        )
    return out


def _aggregate(
    columns: dict[str, Columns], resample: list[int] | None
) -> dict[str, tuple[int, int, float, float, int]]:
    """Per arm (queries, correct, test tokens, sleep tokens, contexts) over the contexts
    at the positions ``resample`` lists (a bootstrap resample), each once when None."""
    pick = None if resample is None else operator.itemgetter(*resample)
    sums: dict[int, float] = {}

    def total(col: list[float]) -> float:
        key = id(col)
        if key not in sums:
            if pick is None:
                sums[key] = sum(col)
            else:
                got = pick(col)
                sums[key] = sum(got) if isinstance(got, tuple) else got
        return sums[key]

    out = {}
    for arm, cols in columns.items():
        n, c, tok, sleep, m = (total(col) for col in cols)
        out[arm] = (round(n), round(c), tok, sleep, round(m))
    return out


def _interval(value: float | None, draws: list[float | None]) -> tuple[float | None, float | None]:
    """Percentile 95% interval of the defined bootstrap values."""
    got = sorted(d for d in draws if d is not None and math.isfinite(d))
    if value is None or len(got) < 2:
        return None, None
    lo = got[int(0.025 * (len(got) - 1))]
    hi = got[math.ceil(0.975 * (len(got) - 1))]
    return lo, hi


def _figure(
    value: float | None, draws: list[float | None], note: str, digits: int = 4
) -> dict[str, Any]:
    lo, hi = _interval(value, draws)
    undefined = sum(d is None for d in draws)
    if value is not None and undefined:
        note += f" ({undefined} of {len(draws)} resamples could not compute it)"
    return {
        "value": None if value is None else round(value, digits),
        "ci_low": None if lo is None else round(lo, digits),
        "ci_high": None if hi is None else round(hi, digits),
        "note": note,
    }


def headline_figures(
    arms: list[dict[str, Any]],
    cells: dict[str, dict[str, Cell]],
    *,
    t: float,
    resamples: int = HEADLINE_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's headline figures, each with a 95% percentile bootstrap interval
    (contexts resampled with replacement, the same resample for every arm):

    - ``test_tokens_ratio_at_equal_accuracy``: test-time completion tokens per query of
      sleep-time compute (the smallest k >= 1) over test-time only, where both Pareto
      fronts (one point per verbosity, linear between points) reach the highest
      accuracy they share; the paper's "~5x fewer" is 1 / value.
    - ``sleep_scaling_gain``: accuracy at the largest k minus the smallest k >= 1, mean
      over the verbosities both ran (absolute: 0.13 = 13 points).
    - ``amortized_cost_ratio``: cost per query (sleep tokens per context / Q + t x test
      tokens per query) of the smallest k >= 1 over test-time only, at Q = 10, mean over
      verbosities; the paper's "2.5x lower" is 1 / value. At the measured Q in details.

    Tokens are per sleep/test pair (the paper's way: k agents' tokens / k); the same
    figures with tokens summed over the k pairs are in ``headline_details``."""
    info = [
        _ArmInfo(a["arm"], int(a["k"]), int(a["verbosity"]), int(a.get("pairs") or 1))
        for a in arms
        if a["kind"] in ("test", "sleep") and a["arm"] in cells
    ]
    contexts = sorted({item for per_item in cells.values() for item in per_item})
    columns = _columns(cells, contexts)
    point = _figures(info, _aggregate(columns, None), t)
    rng = random.Random(seed)
    draws: dict[str, list[float | None]] = defaultdict(list)
    positions = range(len(contexts))
    if contexts:
        for _ in range(resamples):
            got = _figures(info, _aggregate(columns, rng.choices(positions, k=len(contexts))), t)
            for key in point:
                draws[key].append(got.get(key))
    ks = sorted({a.k for a in info if a.k > 0})
    has_base = any(a.k == 0 for a in info)
    method = f"95% percentile bootstrap over {len(contexts)} contexts, {resamples} resamples"

    def fig(key: str, note: str, digits: int = 4) -> dict[str, Any]:
        return _figure(point.get(key), draws.get(key, []), note, digits)

    missing = "needs test-time-only (k=0) and sleep-time (k>=1) arms"
    if not (has_base and ks):
        ratio = _figure(None, [], f"not computable: the run {missing}")
        amortized = _figure(None, [], f"not computable: the run {missing}")
    else:
        k = ks[0]
        level = point.get(f"level@{k}") or 0.0
        value = point.get(f"tokens@{k}")
        if value is None:
            why = (
                "no accuracy above 0% on both fronts: nothing to equalise"
                if level <= 0
                else "test-time only reaches it at 0 tokens"
            )
            ratio = _figure(None, [], f"not computable: {why}")
        else:
            ratio = fig(
                f"tokens@{k}",
                f"k={k} over test-time only, test-time completion tokens per query (per "
                f"pair) on the Pareto fronts over verbosity, linear between points, at "
                f"{100 * level:.1f}% accuracy (the highest both reach); {method}",
            )
        amortized = fig(
            f"amortized_q10@{k}",
            f"k={k} over test-time only, cost per query = sleep tokens per context / Q + "
            f"{t:g} x test tokens per query (per pair), Q = {HEADLINE_Q:g}, mean over the "
            f"verbosities both ran; {method}",
        )
    if len(ks) < 2:
        gain = _figure(
            None,
            [],
            "not computable: needs two sleep-time k values >= 1 (e.g. --sleep-k 0,1,5)",
        )
    else:
        gain = fig(
            f"gain@{ks[-1]}",
            f"accuracy of k={ks[-1]} minus k={ks[0]} (absolute), mean over the verbosities "
            f"both ran; {method}",
        )
    details: dict[str, Any] = {"method": method, "t": t, "q": HEADLINE_Q, "by_k": {}}
    for k in ks:
        row: dict[str, Any] = {}
        if has_base:
            row["accuracy_level"] = point.get(f"level@{k}")
            row["test_tokens_ratio"] = fig(f"tokens@{k}", "per pair")
            row["test_tokens_ratio_summed_over_k"] = fig(f"tokens_summed@{k}", "summed over k")
            row["amortized_cost_ratio_q10"] = fig(f"amortized_q10@{k}", "per pair, Q = 10")
            row["amortized_cost_ratio_q10_summed_over_k"] = fig(
                f"amortized_summed_q10@{k}", "summed over k, Q = 10"
            )
            row["amortized_cost_ratio_measured_q"] = fig(
                f"amortized_measured@{k}", "per pair, the measured queries per context"
            )
            row["amortized_cost_ratio_measured_q_summed_over_k"] = fig(
                f"amortized_summed_measured@{k}", "summed over k, the measured Q"
            )
        if k != ks[0]:
            row["sleep_scaling_gain"] = fig(f"gain@{k}", f"k={k} minus k={ks[0]}")
        details["by_k"][str(k)] = row
    return {
        "headline": {
            "test_tokens_ratio_at_equal_accuracy": ratio,
            "sleep_scaling_gain": gain,
            "amortized_cost_ratio": amortized,
        },
        "headline_details": details,
    }


# -- plots ---------------------------------------------------------------------------------


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _family_label(a: dict[str, Any]) -> str:
    head = a["arm"].split(":")[0].split("-")[0]  # k2 / par3
    if a["kind"] == "test":
        return "test-time only (k=0)"
    if a["kind"] == "sleep":
        return f"sleep-time k={a['k']}"
    if a["kind"] == "parallel":
        return f"parallel sampling {head}, majority"
    which = "parallel sampling" if head.startswith("par") else "sleep-time"
    return f"{which} {head}, {a['arm'].split(':')[1]}"


def _err(rows: list[dict[str, Any]]) -> list[list[float]]:
    return [
        [max(0.0, a["accuracy"] - a["ci95"][0]) for a in rows],
        [max(0.0, a["ci95"][1] - a["accuracy"]) for a in rows],
    ]


def _title(summary: dict[str, Any]) -> str:
    run = summary["run"]
    return (
        f"{run['dataset']} - {_model(run)} - protocol {run.get('protocol', 'product')}, "
        f"scorer {summary.get('scorer', 'lenient')}"
    )


def _cost_q(a: dict[str, Any], q: float, t: float) -> float:
    """Average weighted cost per query with q queries per context."""
    return a["mean_sleep_tokens"] / q + t * a["charged_test_tokens"]


def _usd_q(a: dict[str, Any], q: float, p_in: float, p_out: float) -> float:
    """US$ per 1,000 queries with q queries per context (prompt and completion tokens)."""
    sleep = a["mean_sleep_prompt_tokens"] * p_in + a["mean_sleep_tokens"] * p_out
    test = a["charged_test_prompt_tokens"] * p_in + a["charged_test_tokens"] * p_out
    return (sleep / q + test) / 1e6 * 1000


def _plots(out: Path, summary: dict[str, Any], price_model: str) -> dict[str, str]:
    """Write the PNGs; returns {name: file} (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return {}
    arms = summary["arms"]
    files: dict[str, str] = {}

    # Pareto: accuracy vs test-time tokens, one curve per family. Series often coincide
    # (e.g. several arms at 0%): each gets its own marker and a smaller size than the one
    # drawn before it, so every series stays visible where they overlap.
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in arms:
        families[_family_label(a)].append(a)
    notes: dict[tuple[float, float], list[str]] = {}
    where: dict[tuple[float, float], tuple[float, float]] = {}
    for i, (label, rows) in enumerate(families.items()):
        rows = sorted(rows, key=lambda a: a["charged_test_tokens"])
        hollow = rows[0]["kind"] == "pass@k"
        ax.errorbar(
            [a["charged_test_tokens"] for a in rows],
            [a["accuracy"] for a in rows],
            yerr=_err(rows),
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=max(4.0, 11.0 - 1.5 * i),
            markerfacecolor="none" if hollow else None,
            linestyle=":" if hollow else ("--" if rows[0]["kind"] == "test" else "-"),
            capsize=3,
            alpha=0.85,
            label=label,
            zorder=2 + i,
        )
        for a in rows:
            spot = (round(a["charged_test_tokens"], 1), round(a["accuracy"], 3))
            where.setdefault(spot, (a["charged_test_tokens"], a["accuracy"]))
            notes.setdefault(spot, []).append(a["arm"])
    for spot, names in notes.items():  # one label per spot, naming every arm there
        ax.annotate(
            _wrap(", ".join(names), 28),
            where[spot],
            fontsize=6,
            textcoords="offset points",
            xytext=(6, 6),
            va="bottom",
        )
    ax.set_xlabel(
        "mean test-time completion tokens per query "
        "(a wrong zero-token answer counts the model path's mean)"
    )
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(-0.05, 1.05)
    ax.margins(x=0.12)
    ax.set_title(_wrap(_title(summary), 80), fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8)
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
    files["pareto"] = "pareto.png"

    # Amortization: accuracy vs average cost per query, one curve per queries-per-context
    t = summary["t"]
    p_in, p_out = summary["prices_usd_per_1m"].get(price_model, (0.0, 0.0))
    test_rows = sorted(
        (a for a in arms if a["kind"] == "test"), key=lambda a: a["charged_test_tokens"]
    )
    sleep_ks = sorted({a["k"] for a in arms if a["kind"] == "sleep"})
    measured = [a["queries_per_context"] for a in arms if a["kind"] == "sleep"]
    q_measured = round(_mean(measured), 2) if measured else None
    qs = sorted({1.0, 2.0, 5.0, 10.0} | ({q_measured} if q_measured else set()))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), layout="constrained")
    for ax, cost, xlabel in (
        (
            axes[0],
            lambda a, q: _cost_q(a, q, t),
            f"average cost per query (sleep tokens / Q + {t:g} x test tokens)",
        ),
        (
            axes[1],
            lambda a, q: _usd_q(a, q, p_in, p_out),
            f"US$ per 1,000 queries at {price_model} prices",
        ),
    ):
        if test_rows:
            ax.errorbar(
                [cost(a, 1.0) for a in test_rows],
                [a["accuracy"] for a in test_rows],
                yerr=_err(test_rows),
                color="black",
                linestyle="--",
                marker="o",
                markersize=7,
                capsize=3,
                label="test-time only (any Q)",
                zorder=10,
            )
        for j, k in enumerate(sleep_ks):
            rows = sorted(
                (a for a in arms if a["kind"] == "sleep" and a["k"] == k),
                key=lambda a: a["verbosity"],
            )
            for qi, q in enumerate(qs):
                is_measured = q == q_measured
                color = cmap(qi / max(1, len(qs) - 1) * 0.9)
                ax.errorbar(
                    [cost(a, q) for a in rows],
                    [a["accuracy"] for a in rows],
                    yerr=_err(rows) if is_measured else None,
                    color=color,
                    marker=_MARKERS[(j + 1) % len(_MARKERS)],
                    markersize=8 if is_measured else 5,
                    markerfacecolor=None if is_measured else "none",
                    linestyle="-" if is_measured else ":",
                    linewidth=2 if is_measured else 1,
                    capsize=3,
                    label=(
                        f"k={k}, Q={q:g} queries/context"
                        + (" (measured)" if is_measured else " (projected)")
                    ),
                    zorder=5 if is_measured else 3,
                )
        xs = [x for line in ax.get_lines() for x in line.get_xdata() if x > 0]
        if xs and max(xs) / min(xs) > 20:  # costs span decades: a log axis
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.08)
        ax.set_xlabel(_wrap(xlabel, 60))
        ax.set_ylabel("accuracy (95% CI)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"token-weighted cost, t = {t:g}", fontsize=10)
    axes[1].set_title(
        f"US$ at {price_model} list prices ({p_in:g} in / {p_out:g} out per 1M)", fontsize=10
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(
        _wrap(
            f"{_title(summary)}: accuracy vs amortized cost. Filled markers with intervals are "
            "measured; hollow markers move the same measurements to other Q.",
            110,
        ),
        fontsize=10,
    )
    fig.savefig(out / "amortization.png", dpi=120)
    plt.close(fig)
    files["amortization"] = "amortization.png"

    pred = summary.get("predictability")
    if pred and pred["gain_by_quintile"]:
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        for i, (arm, gains) in enumerate(pred["gain_by_quintile"].items()):
            xs = [b + 1 for b, g in enumerate(gains) if g is not None]
            ax.plot(
                xs,
                [g for g in gains if g is not None],
                marker=_MARKERS[i % len(_MARKERS)],
                markersize=max(4.0, 10.0 - 1.5 * i),
                alpha=0.85,
                label=arm,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks([1, 2, 3, 4, 5])
        ax.set_xlabel("predictability quintile (1 = least predictable query)")
        ax.set_ylabel("accuracy gain over test-time only (same verbosity)")
        ax.set_title(_wrap(_title(summary), 80), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.savefig(out / "predictability.png", dpi=120)
        plt.close(fig)
        files["predictability"] = "predictability.png"
    return files


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# -- tables ----------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _frac(d: dict[str, Any], num: str, den: str) -> str:
    return f"{d[num]}/{d[den]}" if d.get(den) else "-"


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in summary["arms"]:
        zero, model, near = a["zero_token"], a["model_path"], a["near_miss"]
        caps = a["cap_hits"]
        rows.append(
            [
                a["arm"],
                str(a["n"]),
                f"{_pct(a['accuracy'])} [{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}]",
                f"{a['mean_test_tokens']:.1f}",
                f"{a['mean_sleep_tokens']:.1f}",
                f"{zero['served']}"
                + (f" ({_pct(zero['accuracy'])})" if zero["accuracy"] is not None else ""),
                _pct(model["accuracy"]) if model["accuracy"] is not None else "-",
                _frac(near, "false_serves", "n"),
                _frac(caps["test"], "capped", "calls")
                + " / "
                + _frac(caps["sleep"], "capped", "calls"),
                f"{a['amortized_cost_per_query']:.1f}",
                _ratio_cell(a.get("prompt_vs_cold") or {}),
                _coverage_cell(a.get("support_coverage") or {}),
            ]
        )
    return rows


def _ratio_cell(d: dict[str, Any]) -> str:
    return "-" if d.get("ratio") is None else _pct(d["ratio"])


def _coverage_cell(d: dict[str, Any]) -> str:
    if not d.get("n"):
        return "-"
    return f"{_pct(d['rate'])} ({d['covered']}/{d['n']})"


HEADERS = [
    "arm",
    "queries",
    "accuracy [95% CI]",
    "test tok/query",
    "sleep tok/context",
    "zero-token (acc)",
    "model-path acc",
    "near-miss false serves",
    "caps hit test / sleep",
    "cost/query (t)",
    "prompt / cold",
    "support coverage",
]


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _interval_cell(fig: dict[str, Any], *, points: bool = False) -> str:
    """'0.133 [0.100, 0.200]', or '+10.0 pp [...]' for an accuracy difference."""
    if fig.get("value") is None:
        return "n/a"
    fmt = _pp if points else _num
    return f"{fmt(fig['value'])} [{fmt(fig.get('ci_low'))}, {fmt(fig.get('ci_high'))}]"


def _pp(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pp"


def _times(fig: dict[str, Any], word: str) -> str:
    """'7.50x fewer' for a ratio of 0.133, '1.02x more' for 1.02."""
    value = fig.get("value")
    if not value:
        return "-"
    if value > 1:
        return f"{value:.2f}x {'more' if word == 'fewer' else 'higher'}"
    return f"{1 / value:.2f}x {word}"


HEADLINE_HEADERS = ["figure", "value [95% CI]", "reading", "how"]


def headline_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The paper's headline figures, one row each (then per k, and the predictability
    quintiles when the run scored them)."""
    head = summary.get("headline") or {}
    details = summary.get("headline_details") or {}
    if not head:
        return []
    t = summary.get("t", 10.0)
    by_k = details.get("by_k", {})
    ks = sorted(int(k) for k in by_k)
    k1 = ks[0] if ks else 1
    ratio, gain, cost = (
        head["test_tokens_ratio_at_equal_accuracy"],
        head["sleep_scaling_gain"],
        head["amortized_cost_ratio"],
    )
    rows = [
        [
            f"test-time tokens at equal accuracy, k={k1} / test-time only",
            _interval_cell(ratio),
            _times(ratio, "fewer"),
            ratio["note"],
        ],
        [
            f"accuracy gain from more sleep-time compute, k={ks[-1] if ks else '?'} - k={k1}",
            _interval_cell(gain, points=True),
            "-",
            gain["note"],
        ],
        [
            f"amortized cost per query, Q={HEADLINE_Q:g}, t={t:g}, k={k1} / test-time only",
            _interval_cell(cost),
            _times(cost, "lower"),
            cost["note"],
        ],
    ]
    for k in ks:
        row = by_k[str(k)]
        if "amortized_cost_ratio_measured_q" in row and k == k1:
            fig = row["amortized_cost_ratio_measured_q"]
            qs = [
                a["queries_per_context"]
                for a in summary.get("arms", [])
                if a["kind"] == "sleep" and a["k"] == k
            ]
            q = f"{_mean(qs):.3g}" if qs else "?"
            rows.append(
                [
                    f"amortized cost per query, measured Q={q}, t={t:g}, k={k} / test-time only",
                    _interval_cell(fig),
                    _times(fig, "lower"),
                    "the run's own queries per context",
                ]
            )
        if k == k1:
            continue
        if "test_tokens_ratio" in row:
            per_pair, summed = row["test_tokens_ratio"], row["test_tokens_ratio_summed_over_k"]
            rows.append(
                [
                    f"test-time tokens at equal accuracy, k={k} / test-time only",
                    _interval_cell(per_pair),
                    _times(per_pair, "fewer"),
                    f"per pair; summed over the k pairs: {_interval_cell(summed)}",
                ]
            )
            per_pair = row["amortized_cost_ratio_q10"]
            summed = row["amortized_cost_ratio_q10_summed_over_k"]
            rows.append(
                [
                    f"amortized cost per query, Q={HEADLINE_Q:g}, t={t:g}, k={k} / test-time only",
                    _interval_cell(per_pair),
                    _times(per_pair, "lower"),
                    f"per pair; summed over the k pairs: {_interval_cell(summed)}",
                ]
            )
        if "sleep_scaling_gain" in row:
            rows.append(
                [
                    f"accuracy gain, k={k} - k={k1}",
                    _interval_cell(row["sleep_scaling_gain"], points=True),
                    "-",
                    "mean over verbosities",
                ]
            )
    pred = summary.get("predictability")
    if pred and pred.get("gain_by_quintile"):
        cis = pred.get("gain_ci_by_quintile") or {}
        for arm, gains in pred["gain_by_quintile"].items():
            cells = []
            for b, g in enumerate(gains):
                ci = (cis.get(arm) or [None] * 5)[b]
                fig = {
                    "value": g,
                    "ci_low": ci[0] if ci else None,
                    "ci_high": ci[1] if ci else None,
                }
                cells.append(f"Q{b + 1} {_interval_cell(fig, points=True)}")
            rows.append(
                [
                    f"accuracy gain by predictability quintile, {arm} - k0",
                    "; ".join(cells),
                    "-",
                    "Q1 = least predictable (mean log P(q | c)); cluster bootstrap",
                ]
            )
    return rows


TOKEN_HEADERS = [
    "arm",
    "pairs",
    "test tok/query per pair",
    "summed over k",
    "sleep tok/context per pair",
    "summed over k",
]


def token_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Tokens per pair (the paper's way: one sleep/test pair) and summed over the k."""
    rows = []
    for a in summary["arms"]:
        if a["kind"] not in ("test", "sleep"):
            continue
        rows.append(
            [
                a["arm"],
                str(a.get("pairs", 1)),
                f"{a.get('mean_test_tokens_per_pair', a['mean_test_tokens']):.1f}",
                f"{a['mean_test_tokens']:.1f}",
                f"{a.get('mean_sleep_tokens_per_pair', a['mean_sleep_tokens']):.1f}",
                f"{a['mean_sleep_tokens']:.1f}",
            ]
        )
    return rows


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: do not squeeze the table
            console = Console(width=160)
    run = summary["run"]
    table = Table(
        *[h.replace("(t)", f"(t={summary['t']:g})") for h in HEADERS],
        title=f"{run['dataset']} on {_model(run)}: {summary['items']} contexts, "
        f"protocol {run.get('protocol', 'product')}, scorer {summary['scorer']}",
    )
    for row in table_rows(summary):
        table.add_row(*row)
    console.print(table)
    rows = headline_rows(summary)
    if rows:
        head = Table(*HEADLINE_HEADERS, title="headline figures, in the paper's form")
        for row in rows:
            head.add_row(*row)
        console.print(head)
    failed = summary.get("failed_calls") or {}
    if failed.get("total") or failed.get("answers_with_errors"):
        console.print(
            f"[red]{failed['total']} model calls failed[/red] ({failed['sleep']} sleep-time, "
            f"{failed['test']} test-time); {failed['answers_with_errors']} answers stand as "
            f"errors (counted wrong). First: {failed['first']}"
        )


def _model(run: dict[str, Any]) -> str:
    return str(run.get("model_name", run["model"]))


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(summary: dict[str, Any], files: dict[str, str], price_model: str) -> str:
    run = summary["run"]
    t = summary["t"]
    calls = summary["model_calls"]
    parts = [
        f"# Benchmark report: {run['dataset']}",
        "",
        f"- model: `{_model(run)}` (spec `{run['model']}`)",
        f"- contexts: {summary['items']}, answers scored: {summary['results']}, "
        f"arms: {len(summary['arms'])}",
        f"- protocol: **{run.get('protocol', 'product')}**; scorer: **{summary['scorer']}**; "
        f"prompts {run['prompts']}; predicted questions per context: {run['n_questions']}"
        + (" (the dataset's own questions)" if run.get("oracle_questions") else ""),
        f"- calls that hit their token limit: sleep time "
        f"{_frac(summary['cap_hits']['sleep'], 'capped', 'calls')}, test time "
        f"{_frac(summary['cap_hits']['test'], 'capped', 'calls')}; how rethink loops ended: "
        f"{summary['sleep_stops'] or 'no loops'}",
        f"- model calls: {calls['total']} ({calls.get('sleep', 0)} sleep-time, "
        f"{calls.get('test', 0)} test-time), mean latency {calls['latency_ms_mean']} ms",
        f"- run started {run.get('started')}, last updated {run.get('updated')}; "
        f"report {summary['generated']}",
        f"- items that failed and will be retried by a re-run: {summary['errors']}",
        "",
        "Arms: `k0-vV` = test-time only at verbosity V (cold, never slept); `kK-vV` = sleep-time "
        "compute with K rethinks (paper protocol: K sleep agents, each paired with a test "
        "agent, majority vote over their K answers), then answered at verbosity V; "
        "`parK-vV` = K samples at temperature > 0, majority vote (`:pass@K`: any sample or "
        "pair right). Tokens are completion tokens; sleep tokens are per context; "
        "cost/query = (sleep tokens of the contexts + t x test tokens) / queries with "
        f"t = {t:g}, where a wrong zero-token answer is charged the arm's mean model-path "
        "test tokens (never a saving). Zero-token = answers served from a precomputed "
        "answer (0 model tokens), with their accuracy; model-path acc = the other answers. "
        "Near-miss false serves = near-miss queries served at zero tokens with a wrong "
        "answer or their base question's answer. Prompt / cold = test-time prompt tokens "
        "against the cold prompt of the same answers (the whole text, no notes); support "
        "coverage = answers whose supporting sentences all reached the prompt, verbatim or "
        "as facts of the learned notes (queries that know their support; answers served "
        "at zero tokens have no prompt and are not counted). CI: "
        + "; ".join(sorted({a["ci_method"].split(" over ")[0] for a in summary["arms"]}))
        + " (each arm's `ci_method` in summary.json).",
        "",
        _markdown_table([h.replace("(t)", f"(t={t:g})") for h in HEADERS], table_rows(summary)),
        "",
    ]
    failed = summary.get("failed_calls") or {}
    if failed.get("total") or failed.get("answers_with_errors"):
        parts += [
            f"**{failed['total']} model calls failed** ({failed['sleep']} sleep-time, "
            f"{failed['test']} test-time; each is a row of calls.jsonl with its `error`); "
            f"{failed['answers_with_errors']} answers stand as errors and count as wrong. "
            f"First: `{failed['first']}`",
            "",
        ]
    rows = headline_rows(summary)
    if rows:
        parts += [
            "## Headline figures, in the paper's form",
            "",
            "Ratios are sleep-time over test-time only (below 1: sleep-time compute needs "
            "less); tokens are per sleep/test pair, as the paper counts them (the summed "
            "figures are in summary.json's `headline_details`). Intervals: "
            + str((summary.get("headline_details") or {}).get("method", "bootstrap"))
            + ".",
            "",
            _markdown_table(HEADLINE_HEADERS, rows),
            "",
            "Tokens per pair (the paper counts one sleep/test pair) and summed over the k "
            "pairs (what k sleep agents and their k test agents cost):",
            "",
            _markdown_table(TOKEN_HEADERS, token_rows(summary)),
            "",
        ]
    if "pareto" in files:
        parts += ["## Accuracy vs test-time tokens", "", f"![pareto]({files['pareto']})", ""]
    if "amortization" in files:
        parts += [
            "## Accuracy vs amortized cost per query",
            "",
            f"![amortization]({files['amortization']})",
            "",
        ]
    prices = summary["prices_usd_per_1m"]
    names = list(prices)
    price_list = ", ".join(f"{n} {p[0]:g}/{p[1]:g}" for n, p in prices.items())
    parts += [
        "US$ per 1,000 queries, amortized over this dataset's queries per context, if this "
        "run's token counts (prompt and completion, sleep and test) were billed at each "
        f"model's prices (US$ per 1M input/output tokens: {price_list}; "
        "example list prices, check current ones or pass --prices):",
        "",
        _markdown_table(
            ["arm", *names],
            [
                [a["arm"], *(f"{1000 * a['usd_per_query'][n]:.4f}" for n in names)]
                for a in summary["arms"]
            ],
        ),
        "",
        "## Accuracy gain vs predictability",
        "",
    ]
    pred = summary.get("predictability")
    if pred is None:
        parts.append(
            "Not available: no predictability scores were recorded (the run had no "
            "`sleeptime.predictability` module, or it failed on every query). Re-running "
            "`sleeptime bench run` with it installed adds the scores without redoing answers."
        )
    else:
        parts.append(
            f"{pred['scored']} queries scored; quintile lower edges "
            f"{[round(e, 3) for e in pred['quintile_lower_edges']]}."
        )
        if "predictability" in files:
            parts += ["", f"![predictability]({files['predictability']})"]
        rows = [
            [arm, *("n/a" if g is None else f"{100 * g:+.1f} pp" for g in gains)]
            for arm, gains in pred["gain_by_quintile"].items()
        ]
        parts += ["", _markdown_table(["arm", "Q1", "Q2", "Q3", "Q4", "Q5"], rows)]
    parts.append("")
    return "\n".join(parts)


def write_report(
    out: str | Path,
    *,
    t: float = 10.0,
    prices_path: str | Path | None = None,
    price_model: str | None = None,
    console: Console | None = None,
    quiet: bool = False,
    scorer: str | None = None,
) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and the plots into ``out``; print the table."""
    out = Path(out)
    if t <= 0:
        raise InvalidInput(f"t must be > 0 (got {t})")
    prices = load_prices(prices_path)
    summary = summarize(out, t=t, prices=prices, scorer=scorer)
    if not summary["arms"]:
        raise InvalidInput(f"{out} has no finished answers yet: nothing to report")
    if price_model is None:
        spec = str(summary["run"]["model"])
        price_model = next(
            (n for n in prices if spec == n or spec.endswith(":" + n) or spec.startswith(n)),
            "gpt-4o-mini",
        )
        if prices.get(price_model) == (0.0, 0.0):  # a free local model: show a priced one
            price_model = "gpt-4o-mini" if "gpt-4o-mini" in prices else price_model
    if price_model not in prices:
        raise InvalidInput(
            f"no price for {price_model!r}: known {', '.join(prices)} (add it with --prices)"
        )
    summary["price_model"] = price_model
    files = _plots(out, summary, price_model)
    summary["plots"] = files
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(summary, files, price_model), encoding="utf-8")
    if not quiet:
        print_summary(summary, console)
    return summary
