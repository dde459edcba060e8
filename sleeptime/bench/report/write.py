"""``write_report``: ``summary.json``, ``report.md`` and the plots of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeptime.bench.report.plots import _plots
from sleeptime.bench.report.summary import load_prices, summarize
from sleeptime.bench.report.tables import _markdown, print_summary
from sleeptime.errors import InvalidInput


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
