"""Intervals: bootstrap and Wilson 95% intervals of accuracy, and the percentile
cluster bootstrap of a pooled mean (contexts resampled whole)."""

from __future__ import annotations

import math
import operator
import random
from collections import defaultdict
from typing import Any

#: Bootstrap resamples (of contexts) behind each headline interval.
HEADLINE_RESAMPLES = 1000


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


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


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
