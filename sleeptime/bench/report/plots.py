"""The PNG plots (matplotlib, the ``bench`` extra): Pareto, amortization (tokens and
US$), predictability."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleeptime.bench.report.intervals import _mean
from sleeptime.bench.report.tables import _model, _wrap

MAX_QUERIES_PLOTTED = 10


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
        from matplotlib import ticker
    except ImportError:
        return {}
    files = {"pareto": _pareto_plot(plt, out, summary)}
    files["amortization"] = _amortization_plot(plt, ticker, out, summary, price_model)
    pred = summary.get("predictability")
    if pred and pred["gain_by_quintile"]:
        files["predictability"] = _predictability_plot(plt, out, summary, pred)
    return files


def _pareto_plot(plt: Any, out: Path, summary: dict[str, Any]) -> str:
    """Pareto: accuracy vs test-time tokens, one curve per family. Series often coincide
    (e.g. several arms at 0%): each gets its own marker and a smaller size than the one
    drawn before it, so every series stays visible where they overlap."""
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in summary["arms"]:
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
    return "pareto.png"


def _amortization_plot(
    plt: Any, ticker: Any, out: Path, summary: dict[str, Any], price_model: str
) -> str:
    """Amortization: accuracy vs average cost per query, one curve per queries-per-context,
    in tokens and in US$."""
    arms = summary["arms"]
    t = summary["t"]
    p_in, p_out = summary["prices_usd_per_1m"].get(price_model, (0.0, 0.0))
    measured = [a["queries_per_context"] for a in arms if a["kind"] == "sleep"]
    q_measured = round(_mean(measured), 2) if measured else None
    qs = sorted({1.0, 2.0, 5.0, 10.0} | ({q_measured} if q_measured else set()))
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
        _amortization_curves(ax, cost, arms, qs, q_measured, plt.get_cmap("viridis"))
        xs = [x for line in ax.get_lines() for x in line.get_xdata() if x > 0]
        if xs and max(xs) / min(xs) > 20:  # costs span decades: a log axis
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:.3g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
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
    return "amortization.png"


def _amortization_curves(
    ax: Any,
    cost: Callable[[dict[str, Any], float], float],
    arms: list[dict[str, Any]],
    qs: list[float],
    q_measured: float | None,
    cmap: Any,
) -> None:
    """One panel's curves: test-time only, then each k at each Q (measured or projected)."""
    test_rows = sorted(
        (a for a in arms if a["kind"] == "test"), key=lambda a: a["charged_test_tokens"]
    )
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
    sleep_ks = sorted({a["k"] for a in arms if a["kind"] == "sleep"})
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


def _predictability_plot(plt: Any, out: Path, summary: dict[str, Any], pred: dict[str, Any]) -> str:
    """Accuracy gain of sleep-time over test-time only, per predictability quintile."""
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
    return "predictability.png"
