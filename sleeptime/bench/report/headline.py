"""The paper's headline figures: equal-accuracy token ratios on the Pareto fronts and
the amortized cost per query at Q queries per context, with bootstrap intervals."""

from __future__ import annotations

import math
import operator
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sleeptime.bench.report.intervals import HEADLINE_RESAMPLES, _mean

#: Queries per context of the paper's amortization headline ("2.5x lower cost per query
#: at 10 queries per context, test tokens weighted 10x").
HEADLINE_Q = 10.0


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

    ratio, amortized = _ratio_and_amortized(point, fig, ks, has_base, t, method)
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
    details: dict[str, Any] = {"method": method, "t": t, "q": HEADLINE_Q}
    details["by_k"] = {str(k): _details_of_k(point, fig, k, ks, has_base) for k in ks}
    return {
        "headline": {
            "test_tokens_ratio_at_equal_accuracy": ratio,
            "sleep_scaling_gain": gain,
            "amortized_cost_ratio": amortized,
        },
        "headline_details": details,
    }


#: A headline figure of the point estimate's key, with its interval and note.
_Fig = Callable[[str, str], dict[str, Any]]


def _ratio_and_amortized(
    point: dict[str, float | None], fig: _Fig, ks: list[int], has_base: bool, t: float, method: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The equal-accuracy token ratio and the amortized cost ratio of the smallest k."""
    missing = "needs test-time-only (k=0) and sleep-time (k>=1) arms"
    if not (has_base and ks):
        ratio = _figure(None, [], f"not computable: the run {missing}")
        return ratio, _figure(None, [], f"not computable: the run {missing}")
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
    return ratio, amortized


def _details_of_k(
    point: dict[str, float | None], fig: _Fig, k: int, ks: list[int], has_base: bool
) -> dict[str, Any]:
    """``headline_details.by_k[k]``: every figure of one k, per pair and summed over k."""
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
    return row
