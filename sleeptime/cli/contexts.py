"""``ingest``, ``sleep``, ``ask``, ``show`` and ``delete``: one context's life."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from sleeptime.cli.common import (
    DbOpt,
    JsonOpt,
    ModelOpt,
    alias,
    app,
    console,
    ledger_line,
    open_client,
    progress,
    read_text,
    short,
)
from sleeptime.errors import InvalidInput, SleepTimeError
from sleeptime.models import Budget
from sleeptime.settings import default


@app.command()
def ingest(
    namespace: str,
    context_id: str,
    source: Annotated[str, typer.Argument(help="a text file, or - for stdin")],
    database_url: DbOpt = None,
) -> None:
    """Store a context (a new version when its text changed)."""
    text = read_text(source)
    client = open_client("fake", database_url)  # ingest never calls a model
    # the queue (Redis or the embedded one) gets the job before this command exits, so
    # `sleeptime jobs` lists it at once; if the queue is down, the committed outbox row
    # is relayed by the next worker
    try:
        client.open_queue()
    except SleepTimeError as exc:
        console.print(f"[yellow]queue unavailable ({exc}); a worker will enqueue it[/yellow]")
    try:
        ctx = client.ingest(namespace, context_id, text)
    finally:
        client.close()
    state = "new version" if ctx.created else "unchanged"
    console.print(f"{namespace}/{context_id} v{ctx.version} ({state}, {len(ctx.text):,} chars)")


@app.command()
def sleep(
    namespace: str,
    context_id: str,
    sleep_k: Annotated[
        int | None,
        typer.Option(
            "--sleep-k",
            help=f"independent rethinks of the context (default: {default('sleep_k')}, "
            "$SLEEPTIME_SLEEP_K)",
        ),
    ] = None,
    n_questions: Annotated[
        int | None,
        typer.Option(
            "--n-questions",
            help=f"questions to predict (default: {default('n_questions')}, "
            "$SLEEPTIME_N_QUESTIONS)",
        ),
    ] = None,
    sleep_strategy: Annotated[
        str | None,
        typer.Option(
            "--sleep-strategy",
            help=f"notes or rethink_tools (the paper's loop; default: "
            f"{default('sleep_strategy')}, $SLEEPTIME_SLEEP_STRATEGY)",
        ),
    ] = None,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    k: Annotated[int | None, typer.Option("--k", hidden=True)] = None,
    questions: Annotated[int | None, typer.Option("--questions", hidden=True)] = None,
) -> None:
    """Run sleep-time compute on the current version now."""
    sleep_k = alias(sleep_k, k, "--sleep-k", "--k")
    n_questions = alias(n_questions, questions, "--n-questions", "--questions")
    client = open_client(model, database_url, existing=True)
    with console.status("sleep-time compute") as status:
        report = client.sleep(
            namespace,
            context_id,
            k=sleep_k,
            n_questions=n_questions,
            progress=progress(status),
            strategy=sleep_strategy,
        )
    if report.skipped:
        console.print(f"{namespace}/{context_id} v{report.version}: artifacts already complete")
        for warning in report.warnings:
            console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    else:
        console.print(
            f"{namespace}/{context_id} v{report.version}: learned context + {len(report.qas)} "
            f"predicted answers, {report.usage.total_tokens:,} tokens, {report.seconds:.1f} s"
        )


@app.command()
def ask(
    namespace: str,
    context_id: str,
    question: str,
    verbosity: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=4,
            help="0 answer only ... 4 thorough (default: "
            f"{default('default_verbosity')} from c', {default('cold_verbosity')} cold; "
            "$SLEEPTIME_DEFAULT_VERBOSITY, $SLEEPTIME_COLD_VERBOSITY)",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="cap on answer tokens (default: by verbosity)")
    ] = None,
    think_tokens: Annotated[
        int | None, typer.Option(min=0, help="budget forcing: cap thinking, then force the answer")
    ] = None,
    extend: Annotated[
        int, typer.Option(min=0, help="budget forcing: append 'Wait' up to N times")
    ] = 0,
    stream: Annotated[
        bool, typer.Option("--stream", help="print the answer as the model writes it")
    ] = False,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Answer a question using whatever sleep-time work exists."""
    if stream and as_json:
        raise InvalidInput("--stream and --json do not go together: --json prints one object")
    client = open_client(model, database_url, existing=True)
    budget = Budget.thinking(
        verbosity=verbosity, max_tokens=max_tokens, think_tokens=think_tokens, extend=extend
    )

    def show(piece: str) -> None:
        print(piece, end="", flush=True)

    answer = client.ask(
        namespace,
        context_id,
        question,
        verbosity=verbosity,
        max_tokens=max_tokens,
        budget=budget,
        on_token=show if stream else None,
    )
    if stream:
        print()
    if as_json:
        print(answer.model_dump_json(indent=2))
        return
    if not stream:
        console.print(answer.text)
    console.print(
        f"[dim]source={answer.source} test-time tokens={answer.usage.total_tokens} "
        f"latency={answer.latency_ms:.0f} ms[/dim]"
    )


@app.command()
def show(
    namespace: str,
    context_id: str,
    as_json: JsonOpt = False,
    database_url: DbOpt = None,
) -> None:
    """Show a context's current version, its artifacts and its token ledger."""
    client = open_client("fake", database_url, existing=True)
    ctx = client.context(namespace, context_id)
    arts = client.artifacts(namespace, context_id)
    ledger = client.ledger(namespace, context_id)
    if as_json:
        data: dict[str, Any] = {
            "context": ctx.model_dump(mode="json", exclude={"text"}) | {"chars": len(ctx.text)},
            "artifacts": arts.model_dump(mode="json"),
            "ledger": ledger.model_dump(mode="json"),
        }
        print(json.dumps(data, indent=2))
        return
    console.print(f"[bold]{namespace}/{context_id}[/bold] v{ctx.version} ({len(ctx.text):,} chars)")
    console.print(Panel(arts.learned or "[dim](none yet)[/dim]", title="learned context c'"))
    table = Table("#", "predicted question", "precomputed answer")
    for i, qa in enumerate(arts.qas, 1):
        table.add_row(str(i), qa.question, short(qa.answer, 100))
    console.print(table)
    if arts.index is not None and arts.index.passages:
        console.print(
            f"passage index: {arts.index.passages} passages of a {arts.index.text_tokens:,}-token "
            "text (learned answers send the ones a question needs)"
        )
    for warning in ledger.warnings:
        console.print(f"[yellow]degraded: {escape(warning)}[/yellow]")
    console.print(ledger_line(ledger))


@app.command()
def delete(
    namespace: str,
    context_id: Annotated[
        str | None, typer.Argument(help="a context id; without one, the whole namespace")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="confirm deleting a whole namespace")] = False,
    as_json: JsonOpt = False,
    database_url: DbOpt = None,
) -> None:
    """Delete a context (or, with --yes and no ID, a namespace): text, versions,
    artifacts, KV blobs and cache entries. The ledger keeps token counts."""
    client = open_client("fake", database_url, existing=True)  # deleting never calls a model
    if context_id is None:
        if not yes:
            raise InvalidInput(
                f"this deletes every context of namespace {namespace!r}: add --yes to confirm"
            )
        counts = client.delete_namespace(namespace)
        what = f"namespace {namespace}"
    else:
        counts = client.delete(namespace, context_id)
        what = f"{namespace}/{context_id}"
    client.close()
    if as_json:
        print(counts.model_dump_json(indent=2))
        return
    console.print(
        f"deleted {what}: {counts.contexts} context(s), {counts.versions} version(s), "
        f"{counts.artifacts} artifact(s), {counts.kv_blobs} KV blob(s), "
        f"{counts.cache_keys} cache key(s); {counts.queries_redacted} logged queries kept "
        "as counts without text"
    )
