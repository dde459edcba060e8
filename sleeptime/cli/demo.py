"""``sleeptime demo``: sleep-time compute end to end on a bundled context, offline."""

from __future__ import annotations

import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from sleeptime.api import SleepTime
from sleeptime.cli.common import (
    ModelOpt,
    app,
    console,
    ledger_line,
    progress,
    short,
)
from sleeptime.models import Answer, SleepReport
from sleeptime.redact import redact_url
from sleeptime.settings import Settings

DEMO_QUESTIONS = [
    "How much does the library pay for the whole order, including delivery?",
    "At what time does Rosa finish baking the muffins?",
    "How many cookies are kept aside for volunteers?",
    "How many parking spaces does the church lend, and on which day?",
]
_MARKUP = re.compile(r"<[^>\n]{1,40}>|^\s*[|#*-]+\s*|\s*\|\s*", re.MULTILINE)


def _plain(text: str) -> str:
    """Notes as plain lines for a terminal panel: a small model often writes HTML or
    Markdown tables, whose source is noise at a glance."""
    return "\n".join(
        line for line in (_MARKUP.sub(" ", raw).strip() for raw in text.splitlines()) if line
    )


def _predicted_line(report: SleepReport) -> str:
    servable = [qa for qa in report.qas if qa.servable]
    line = f"{len(report.qas)} predicted questions, {len(servable)} with a whole precomputed answer"
    held = [qa.reason for qa in report.qas if not qa.servable and qa.reason]
    if held:
        line += f" (not served at zero tokens: {'; '.join(sorted(set(held)))})"
    return line


@app.command()
def demo(
    model: ModelOpt = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="default: a fresh temporary SQLite file")
    ] = None,
    verbosity: Annotated[int, typer.Option(min=0, max=4)] = 1,
) -> None:
    """Sleep-time compute end to end on a bundled context, offline."""
    settings = Settings()
    tmp = tempfile.TemporaryDirectory(prefix="sleeptime-demo-")
    url = database_url or f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    client = SleepTime(model=model or settings.model, database_url=url, settings=settings)
    text = resources.files("sleeptime").joinpath("data/sample_report.txt").read_text("utf-8")
    console.rule("[bold]sleeptime demo")
    with console.status("loading the model"):
        name = client.model_name
    console.print(f"model: {name}    store: {redact_url(url)}")
    small = name.startswith("local:")
    if small:
        console.print(
            "[yellow]The bundled SmolLM2-135M cannot reason (0/10 on grade-school math): its "
            "answers show the mechanism (caching, budgets, accounting), not accuracy.[/yellow]"
        )
    client.ingest("demo", "fair", text)
    client.ingest("demo", "fair-cold", text)  # the control: never gets sleep-time compute
    console.print(
        f"context: a {len(text):,}-character planning file, ingested as demo/fair and "
        "demo/fair-cold (the control, never slept)"
    )

    with console.status("sleep-time compute") as status:
        report = client.sleep("demo", "fair", progress=progress(status))
    index = client.artifacts("demo", "fair").index
    console.print(
        f"sleep time: {report.usage.total_tokens:,} tokens in {report.usage.calls} calls, "
        f"{report.seconds:.1f} s -> learned context c' and {_predicted_line(report)}"
    )
    if index is not None and index.passages:
        console.print(
            f"passage index: {index.passages} passages of whole sentences; learned answers "
            f"send c' and the passages a question needs instead of the whole "
            f"{index.text_tokens:,}-token text"
        )
    console.print(
        Panel(short(_plain(report.learned or ""), 600), title="learned context c' (excerpt)")
    )

    questions = list(DEMO_QUESTIONS)
    served = next((qa for qa in report.qas if qa.servable), None)
    if served is not None:
        questions.append(served.question)  # a question the model itself predicted
    # every question on one context, then on the other: a model with a prompt cache
    # (llama.cpp's, a server's prefix cache) keeps one context's prefix between asks
    warm_answers: list[Answer] = []
    cold_answers: list[Answer] = []
    for path, answers in (("fair", warm_answers), ("fair-cold", cold_answers)):
        for q in questions:
            with console.status(f"asking demo/{path}: {short(q, 50)}"):
                answers.append(client.ask("demo", path, q, verbosity=verbosity))
    rows = list(zip(questions, warm_answers, cold_answers, strict=True))
    for q, warm, cold in rows:
        table = Table(title=q, title_justify="left", expand=True)
        table.add_column("path", no_wrap=True)
        table.add_column("source")
        table.add_column("test-time tokens\nprompt + completion", justify="right")
        table.add_column("latency", justify="right")
        table.add_column("answer", ratio=1)
        for label, ans in (("with sleep-time", warm), ("cold (no sleep-time)", cold)):
            table.add_row(
                label,
                ans.source + (f"\n{len(ans.passages)} passages" if ans.passages else ""),
                f"{ans.usage.prompt_tokens:,} + {ans.usage.completion_tokens:,}",
                f"{ans.latency_ms:,.0f} ms",
                short(ans.text, 90),
            )
        console.print(table)
        if warm.source == "predicted":
            console.print(
                "[dim]served at zero tokens from the answer precomputed at sleep time: it is as "
                "right as the sleep-time model was"
                + (" (the bundled 135M model often is not)" if small else "")
                + "[/dim]"
            )

    summary = Table(title="summary over the demo questions", title_justify="left")
    summary.add_column("path")
    summary.add_column("test-time tokens (total)", justify="right")
    summary.add_column("prompt tokens", justify="right")
    summary.add_column("completion tokens", justify="right")
    summary.add_column("latency (total)", justify="right")
    for label, answers in (
        ("with sleep-time", [w for _, w, _ in rows]),
        ("cold", [c for _, _, c in rows]),
    ):
        summary.add_row(
            label,
            f"{sum(a.usage.total_tokens for a in answers):,}",
            f"{sum(a.usage.prompt_tokens for a in answers):,}",
            f"{sum(a.usage.completion_tokens for a in answers):,}",
            f"{sum(a.latency_ms for a in answers) / 1000:,.2f} s",
        )
    console.print(summary)
    ledger = client.ledger("demo", "fair")
    warm_total = sum(w.usage.total_tokens for _, w, _ in rows)
    cold_total = sum(c.usage.total_tokens for _, _, c in rows)
    if cold_total:
        console.print(
            f"test-time tokens with sleep-time: {warm_total:,} against {cold_total:,} cold "
            f"({warm_total / cold_total:.0%})"
        )
    if ledger.break_even_queries is not None:
        console.print(
            f"break-even: the {ledger.sleep.total_tokens:,} sleep-time tokens are repaid after "
            f"{ledger.break_even_queries:,} queries at the "
            f"{ledger.saved_prompt_tokens // max(1, ledger.queries):,} prompt tokens saved per "
            "query so far"
        )
    console.print(ledger_line(ledger))
    client.close()
    tmp.cleanup()
