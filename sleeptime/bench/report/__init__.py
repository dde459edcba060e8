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

One module per concern: ``summary`` (scoring per arm), ``intervals``, ``headline``
(the paper's figures), ``plots``, ``tables`` (printed and Markdown), ``write``
(``write_report``); this package re-exports their public names.
"""

from __future__ import annotations

from sleeptime.bench.report.headline import (
    HEADLINE_Q as HEADLINE_Q,
)
from sleeptime.bench.report.headline import (
    Cell as Cell,
)
from sleeptime.bench.report.headline import (
    Columns as Columns,
)
from sleeptime.bench.report.headline import (
    equal_accuracy_ratio as equal_accuracy_ratio,
)
from sleeptime.bench.report.headline import (
    headline_figures as headline_figures,
)
from sleeptime.bench.report.headline import (
    pareto_front as pareto_front,
)
from sleeptime.bench.report.headline import (
    tokens_at as tokens_at,
)
from sleeptime.bench.report.intervals import (
    HEADLINE_RESAMPLES as HEADLINE_RESAMPLES,
)
from sleeptime.bench.report.intervals import (
    accuracy_ci as accuracy_ci,
)
from sleeptime.bench.report.intervals import (
    bootstrap_ci as bootstrap_ci,
)
from sleeptime.bench.report.intervals import (
    cluster_bootstrap_ci as cluster_bootstrap_ci,
)
from sleeptime.bench.report.intervals import (
    wilson_ci as wilson_ci,
)
from sleeptime.bench.report.plots import (
    MAX_QUERIES_PLOTTED as MAX_QUERIES_PLOTTED,
)
from sleeptime.bench.report.summary import (
    DEFAULT_PRICES as DEFAULT_PRICES,
)
from sleeptime.bench.report.summary import (
    ArmStats as ArmStats,
)
from sleeptime.bench.report.summary import (
    latest as latest,
)
from sleeptime.bench.report.summary import (
    load_prices as load_prices,
)
from sleeptime.bench.report.summary import (
    predictability_gain as predictability_gain,
)
from sleeptime.bench.report.summary import (
    prompt_vs_cold as prompt_vs_cold,
)
from sleeptime.bench.report.summary import (
    rescore as rescore,
)
from sleeptime.bench.report.summary import (
    summarize as summarize,
)
from sleeptime.bench.report.summary import (
    support_coverage as support_coverage,
)
from sleeptime.bench.report.tables import (
    HEADERS as HEADERS,
)
from sleeptime.bench.report.tables import (
    HEADLINE_HEADERS as HEADLINE_HEADERS,
)
from sleeptime.bench.report.tables import (
    TOKEN_HEADERS as TOKEN_HEADERS,
)
from sleeptime.bench.report.tables import (
    headline_rows as headline_rows,
)
from sleeptime.bench.report.tables import (
    print_summary as print_summary,
)
from sleeptime.bench.report.tables import (
    table_rows as table_rows,
)
from sleeptime.bench.report.tables import (
    token_rows as token_rows,
)
from sleeptime.bench.report.write import (
    write_report as write_report,
)
