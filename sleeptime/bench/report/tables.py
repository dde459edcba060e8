"""The report's tables: the printed summary (rich) and ``report.md``."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from sleeptime.bench.report.headline import HEADLINE_Q
from sleeptime.bench.report.intervals import _mean


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


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
        rows += _rows_of_k(summary, by_k[str(k)], k, k1, t)
    rows += _quintile_rows(summary.get("predictability"))
    return rows


def _rows_of_k(
    summary: dict[str, Any], row: dict[str, Any], k: int, k1: int, t: float
) -> list[list[str]]:
    """The headline rows of one k: the measured Q for the smallest, the ratios and the
    gain for the others."""
    rows: list[list[str]] = []
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
        return rows
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
    return rows


def _quintile_rows(pred: dict[str, Any] | None) -> list[list[str]]:
    """One row per arm: its accuracy gain in each predictability quintile."""
    if not pred or not pred.get("gain_by_quintile"):
        return []
    rows = []
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


def _markdown_intro(summary: dict[str, Any]) -> list[str]:
    """The report's title, the run's facts, how to read the arms, and the arms' table."""
    run = summary["run"]
    t = summary["t"]
    calls = summary["model_calls"]
    return [
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


def _markdown_headline(summary: dict[str, Any], files: dict[str, str]) -> list[str]:
    """Failed calls, the headline figures and the two main plots."""
    parts: list[str] = []
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
    return parts


def _markdown_costs(summary: dict[str, Any], files: dict[str, str]) -> list[str]:
    """US$ per 1,000 queries per arm, and the accuracy gain by predictability."""
    parts: list[str] = []
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
    return parts


def _markdown(summary: dict[str, Any], files: dict[str, str], price_model: str) -> str:
    parts = _markdown_intro(summary)
    parts += _markdown_headline(summary, files)
    parts += _markdown_costs(summary, files)
    parts.append("")
    return "\n".join(parts)
