"""Benchmark reports: ``summary.json``, ``report.md``, PNG plots and a printed table.

Figures, as in the Sleep-time Compute paper:

- ``pareto.png``: accuracy (bootstrap 95% CI) vs mean test-time tokens per query, one
  curve per arm family (test-time only, sleep-time with k rethinks, parallel sampling),
  one point per verbosity;
- ``amortization.png``: average cost per query vs queries per context, where sleep-time
  cost is shared by the queries on one context and a test-time token costs ``t`` times a
  sleep-time token (the paper uses t = 10); a second panel prices the same tokens in US$;
- ``predictability.png``: accuracy gain of sleep-time over test-time only, per
  predictability quintile, when the run recorded predictability scores.

Tokens are completion tokens (what the paper counts) unless a column says otherwise.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sleeptime.bench.runner import CALLS, ERRORS, PRED, RESULTS, RUN, SLEEP, read_jsonl
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
    usd_per_query: dict[str, float] = field(default_factory=dict)
    sleep_errors: int = 0

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
            "mean_test_tokens": round(self.mean_test_tokens, 2),
            "mean_test_prompt_tokens": round(self.mean_test_prompt_tokens, 2),
            "mean_sleep_tokens": round(self.mean_sleep_tokens_per_context, 2),
            "mean_sleep_prompt_tokens": round(self.mean_sleep_prompt_tokens_per_context, 2),
            "sleep_tokens_per_query": round(self.sleep_tokens_per_query, 2),
            "queries_per_context": round(self.queries_per_context, 3),
            "amortized_cost_per_query": round(self.amortized_cost_per_query, 2),
            "predicted_fraction": round(self.predicted_fraction, 4),
            "usd_per_query": {k: round(v, 8) for k, v in self.usd_per_query.items()},
            "sleep_errors": self.sleep_errors,
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


def summarize(
    out: Path, *, t: float = 10.0, prices: dict[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """The numbers behind the report (also written as ``summary.json``)."""
    prices = prices or dict(DEFAULT_PRICES)
    run_path = out / RUN
    if not run_path.exists():
        raise InvalidInput(
            f"{out} is not a benchmark run directory (no {RUN}): run 'sleeptime bench run' first"
        )
    meta = json.loads(run_path.read_text("utf-8"))
    results = read_jsonl(out / RESULTS)
    sleeps = read_jsonl(out / SLEEP)
    sleep_by = {(r["item"], r["k"]): r for r in sleeps}
    by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_arm[r["arm"]].append(r)
        if r.get("kind") == "parallel":
            by_arm[f"{r['arm']}:pass@{len(r['samples'])}"].append({**r, "correct": r["pass_at_k"]})
    arms = []
    for arm in sorted(by_arm, key=_arm_order):
        rows = by_arm[arm]
        kind = rows[0]["kind"] if ":pass@" not in arm else "pass@k"
        k = int(rows[0].get("k", 0))
        items = sorted({r["item"] for r in rows})
        sleep_rows = (
            [sleep_by[(i, k)] for i in items if (i, k) in sleep_by] if kind == "sleep" else []
        )
        sleep_out = sum(s["sleep_completion_tokens"] for s in sleep_rows)
        sleep_in = sum(s["sleep_prompt_tokens"] for s in sleep_rows)
        n = len(rows)
        test_out = sum(r["test_completion_tokens"] for r in rows)
        test_in = sum(r["test_prompt_tokens"] for r in rows)
        correct = sum(bool(r["correct"]) for r in rows)
        usd = {
            name: (sleep_in * p_in + sleep_out * p_out + test_in * p_in + test_out * p_out)
            / 1e6
            / n
            for name, (p_in, p_out) in prices.items()
        }
        arms.append(
            ArmStats(
                arm=arm,
                kind=kind,
                k=k,
                verbosity=int(rows[0]["verbosity"]),
                n=n,
                correct=correct,
                accuracy=correct / n,
                ci=bootstrap_ci([bool(r["correct"]) for r in rows]),
                mean_test_tokens=test_out / n,
                mean_test_prompt_tokens=test_in / n,
                mean_sleep_tokens_per_context=sleep_out / len(sleep_rows) if sleep_rows else 0.0,
                mean_sleep_prompt_tokens_per_context=sleep_in / len(sleep_rows)
                if sleep_rows
                else 0.0,
                sleep_tokens_per_query=sleep_out / n,
                queries_per_context=n / len(items),
                amortized_cost_per_query=(sleep_out + t * test_out) / n,
                predicted_fraction=sum(r.get("source") == "predicted" for r in rows) / n,
                usd_per_query=usd,
                sleep_errors=sum(1 for s in sleep_rows if s.get("error")),
            )
        )
    calls = read_jsonl(out / CALLS)
    phase_calls: dict[str, int] = defaultdict(int)
    for c in calls:
        phase_calls[c["phase"]] += 1
    return {
        "run": meta,
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
        "errors": len(read_jsonl(out / ERRORS)),
        "prices_usd_per_1m": {k: list(v) for k, v in prices.items()},
        "arms": [a.to_json() for a in arms],
        "predictability": predictability_gain(out, results),
    }


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
    for arm, (k, v) in sorted(arms_seen.items()):
        base = f"k0-v{v}"
        if k == 0 or base not in arms_seen:
            continue
        per_bin: list[float | None] = []
        for b in range(5):
            diffs = [
                float(c[(arm, 0)]) - float(c[(base, 0)])
                for key, c in correct.items()
                if quintile.get(key) == b and (arm, 0) in c and (base, 0) in c
            ]
            per_bin.append(sum(diffs) / len(diffs) if diffs else None)
        gains[arm] = per_bin
    edges = [scores[ranked[min(len(ranked) - 1, b * len(ranked) // 5)]] for b in range(5)]
    return {"scored": len(scores), "quintile_lower_edges": edges, "gain_by_quintile": gains}


# -- plots ---------------------------------------------------------------------------------


def _plots(out: Path, summary: dict[str, Any], price_model: str) -> dict[str, str]:
    """Write the PNGs; returns {name: file} (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    arms = summary["arms"]
    files: dict[str, str] = {}

    # Pareto: accuracy vs test-time tokens, one curve per family
    fig, ax = plt.subplots(figsize=(7, 4.5))
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in arms:
        label = {
            "test": "test-time only (k=0)",
            "sleep": f"sleep-time k={a['k']}",
            "parallel": "parallel sampling (majority)",
            "pass@k": "parallel sampling (pass@K)",
        }[a["kind"]]
        families[label].append(a)
    for label, rows in families.items():
        rows = sorted(rows, key=lambda a: a["mean_test_tokens"])
        x = [a["mean_test_tokens"] for a in rows]
        y = [a["accuracy"] for a in rows]
        err = [
            [a["accuracy"] - a["ci95"][0] for a in rows],
            [a["ci95"][1] - a["accuracy"] for a in rows],
        ]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        for a in rows:
            ax.annotate(
                f"v{a['verbosity']}",
                (a["mean_test_tokens"], a["accuracy"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax.set_xlabel("mean test-time tokens per query (completion)")
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{summary['run']['dataset']} - {summary['run'].get('model_name', summary['run']['model'])}"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
    files["pareto"] = "pareto.png"

    # Amortization: cost per query vs queries per context
    t = summary["t"]
    ns = list(range(1, MAX_QUERIES_PLOTTED + 1))
    p_in, p_out = summary["prices_usd_per_1m"].get(price_model, (0.0, 0.0))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for a in arms:
        if a["kind"] not in ("test", "sleep"):
            continue
        style = "--" if a["kind"] == "test" else "-"
        weighted = [(a["mean_sleep_tokens"] + t * n * a["mean_test_tokens"]) / n for n in ns]
        usd = [
            (
                (a["mean_sleep_prompt_tokens"] * p_in + a["mean_sleep_tokens"] * p_out) / n
                + a["mean_test_prompt_tokens"] * p_in
                + a["mean_test_tokens"] * p_out
            )
            / 1e6
            * 1000
            for n in ns
        ]
        ax1.plot(ns, weighted, style, marker=".", label=a["arm"])
        ax2.plot(ns, usd, style, marker=".", label=a["arm"])
    ax1.set_xlabel("queries per context")
    ax1.set_ylabel(f"cost per query (sleep tokens + {t:g} x test tokens)")
    ax1.set_title(f"amortized token cost, t = {t:g}")
    ax2.set_xlabel("queries per context")
    ax2.set_ylabel("US$ per 1,000 queries")
    ax2.set_title(
        f"this run's tokens at {price_model} prices (US\\${p_in:g} / US\\${p_out:g} per 1M)"
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "amortization.png", dpi=120)
    plt.close(fig)
    files["amortization"] = "amortization.png"

    pred = summary.get("predictability")
    if pred and pred["gain_by_quintile"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for arm, gains in pred["gain_by_quintile"].items():
            xs = [i + 1 for i, g in enumerate(gains) if g is not None]
            ax.plot(xs, [g for g in gains if g is not None], marker="o", label=arm)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks([1, 2, 3, 4, 5])
        ax.set_xlabel("predictability quintile (1 = least predictable query)")
        ax.set_ylabel("accuracy gain over test-time only (same verbosity)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "predictability.png", dpi=120)
        plt.close(fig)
        files["predictability"] = "predictability.png"
    return files


# -- tables ----------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in summary["arms"]:
        rows.append(
            [
                a["arm"],
                str(a["n"]),
                f"{_pct(a['accuracy'])} [{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}]",
                f"{a['mean_test_tokens']:.1f}",
                f"{a['mean_sleep_tokens']:.1f}",
                _pct(a["predicted_fraction"]),
                f"{a['amortized_cost_per_query']:.1f}",
            ]
        )
    return rows


HEADERS = [
    "arm",
    "queries",
    "accuracy [95% CI]",
    "test tok/query",
    "sleep tok/context",
    "predicted",
    "cost/query (t)",
]


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: do not squeeze the table
            console = Console(width=160)
    run = summary["run"]
    table = Table(
        *[h.replace("(t)", f"(t={summary['t']:g})") for h in HEADERS],
        title=f"{run['dataset']} on {_model(run)}: {summary['items']} contexts",
    )
    for row in table_rows(summary):
        table.add_row(*row)
    console.print(table)


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
        f"- predicted questions per context (sleep time): {run['n_questions']}; "
        f"prompts {run['prompts']}",
        f"- model calls: {calls['total']} ({calls.get('sleep', 0)} sleep-time, "
        f"{calls.get('test', 0)} test-time), mean latency {calls['latency_ms_mean']} ms",
        f"- run started {run.get('started')}, last updated {run.get('updated')}; "
        f"report {summary['generated']}",
        f"- items that failed and will be retried by a re-run: {summary['errors']}",
        "",
        "Arms: `k0-vV` = test-time only at verbosity V (cold, never slept); `kK-vV` = sleep-time "
        "compute with K rethinks, then answered at verbosity V; `parK-vV` = K samples at "
        "temperature > 0, majority vote (`:pass@K`: any sample right). Tokens are completion "
        "tokens; sleep tokens are per context; cost/query = (sleep tokens of the contexts + "
        f"t x test tokens) / queries with t = {t:g}. CI: percentile bootstrap over queries "
        "(2,000 resamples).",
        "",
        _markdown_table([h.replace("(t)", f"(t={t:g})") for h in HEADERS], table_rows(summary)),
        "",
    ]
    if "pareto" in files:
        parts += ["## Accuracy vs test-time tokens", "", f"![pareto]({files['pareto']})", ""]
    if "amortization" in files:
        parts += [
            "## Cost per query vs queries per context",
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
) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and the plots into ``out``; print the table."""
    out = Path(out)
    if t <= 0:
        raise InvalidInput(f"t must be > 0 (got {t})")
    prices = load_prices(prices_path)
    summary = summarize(out, t=t, prices=prices)
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
