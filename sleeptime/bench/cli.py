"""``sleeptime bench ...`` commands. Each benchmark lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks: multi-query accuracy/cost runs, overhead, prefill.", no_args_is_help=True)
