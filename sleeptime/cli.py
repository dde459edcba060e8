"""The ``sleeptime`` command line (typer + rich).

Every user error (missing context, empty text, unknown model, database down) ends
with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sleeptime import __version__
from sleeptime.api import SleepTime
from sleeptime.bench.cli import app as bench_app
from sleeptime.errors import InvalidInput, SleepTimeError
from sleeptime.models import Answer, Budget, Ledger, SleepReport
from sleeptime.redact import redact_url
from sleeptime.settings import Settings, default

app = typer.Typer(
    help="Sleep-time compute: think about a context before the user asks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(bench_app, name="bench")
console = Console()
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"sleeptime {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="print the version and exit",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Sleep-time compute: think about a context before the user asks."""


def _print_table(table: Table) -> None:
    """A table fits the terminal's width on a terminal; piped or redirected (a file,
    grep, a CI log) every cell is printed whole, however long the line gets."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=100_000, highlight=False).print(table)


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="model spec (default: $SLEEPTIME_MODEL or 'local')"),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: $SLEEPTIME_DATABASE_URL)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _progress(status: Any) -> Callable[[str], None]:
    """A ``progress=`` callback: updates the spinner on a terminal, and prints one line
    per step (with the seconds since the start) when the output is piped or logged."""
    start = time.perf_counter()

    def update(step: str) -> None:
        status.update(step)
        if not console.is_terminal:
            console.print(f"  [{time.perf_counter() - start:6.1f} s] {step}", highlight=False)

    return update


def client(model: str | None, database_url: str | None, *, existing: bool = False) -> SleepTime:
    """A client of the store; ``existing``: a command that only reads or changes what
    is stored refuses a SQLite file that does not exist instead of creating it."""
    if existing:
        require_database(database_url)
    return SleepTime(model=model, database_url=database_url)


def require_database(database_url: str | None) -> None:
    """Refuse, in one line, a SQLite database file that does not exist (a command run
    in the wrong folder must not leave an empty ``sleeptime.db`` behind)."""
    url = database_url or Settings().database_url
    if not url.startswith("sqlite"):
        return
    try:
        path = make_url(url).database
    except ArgumentError:
        return  # the store reports a bad URL itself
    if not path or path == ":memory:" or path.startswith("file:") or Path(path).exists():
        return
    raise InvalidInput(
        f"no database file {path!r} ({redact_url(url)}): nothing stored there yet; ingest a "
        "context first, or point --database-url or SLEEPTIME_DATABASE_URL at your database"
    )


def _read_text(source: str) -> str:
    """A file's (or stdin's) text, decoded strictly as UTF-8."""
    if source == "-":
        data, name = sys.stdin.buffer.read(), "standard input"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"no such file: {source!r}")
        data, name = path.read_bytes(), repr(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}): convert it, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from None


@app.command()
def ingest(
    namespace: str,
    context_id: str,
    source: Annotated[str, typer.Argument(help="a text file, or - for stdin")],
    database_url: DbOpt = None,
) -> None:
    """Store a context (a new version when its text changed)."""
    text = _read_text(source)
    st = client("fake", database_url)  # ingest never calls a model
    # the queue (Redis or the embedded one) gets the job before this command exits, so
    # `sleeptime jobs` lists it at once; if the queue is down, the committed outbox row
    # is relayed by the next worker
    try:
        st.open_queue()
    except SleepTimeError as exc:
        console.print(f"[yellow]queue unavailable ({exc}); a worker will enqueue it[/yellow]")
    try:
        ctx = st.ingest(namespace, context_id, text)
    finally:
        st.close()
    state = "new version" if ctx.created else "unchanged"
    console.print(f"{namespace}/{context_id} v{ctx.version} ({state}, {len(ctx.text):,} chars)")


def _alias(value: Any, old: Any, name: str, old_name: str) -> Any:
    """An option given under its old, hidden name (scripts keep working)."""
    if old is None:
        return value
    if value is not None and value != old:
        raise InvalidInput(f"{old_name} is the old name of {name}: give one of them")
    return old


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
    sleep_k = _alias(sleep_k, k, "--sleep-k", "--k")
    n_questions = _alias(n_questions, questions, "--n-questions", "--questions")
    st = client(model, database_url, existing=True)
    with console.status("sleep-time compute") as status:
        report = st.sleep(
            namespace,
            context_id,
            k=sleep_k,
            n_questions=n_questions,
            progress=_progress(status),
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
    st = client(model, database_url, existing=True)
    budget = Budget.thinking(
        verbosity=verbosity, max_tokens=max_tokens, think_tokens=think_tokens, extend=extend
    )

    def show(piece: str) -> None:
        print(piece, end="", flush=True)

    answer = st.ask(
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
    st = client("fake", database_url, existing=True)
    ctx = st.context(namespace, context_id)
    arts = st.artifacts(namespace, context_id)
    ledger = st.ledger(namespace, context_id)
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
        table.add_row(str(i), qa.question, _short(qa.answer, 100))
    console.print(table)
    if arts.index is not None and arts.index.passages:
        console.print(
            f"passage index: {arts.index.passages} passages of a {arts.index.text_tokens:,}-token "
            "text (learned answers send the ones a question needs)"
        )
    for warning in ledger.warnings:
        console.print(f"[yellow]degraded: {escape(warning)}[/yellow]")
    console.print(_ledger_line(ledger))


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _ledger_line(ledger: Ledger) -> str:
    line = (
        f"ledger: sleep-time {ledger.sleep.total_tokens:,} tokens in {ledger.sleep.calls} calls; "
        f"test-time {ledger.test.total_tokens:,} tokens in {ledger.test.calls} calls; "
        f"{ledger.queries} queries {ledger.by_source}; "
        f"saved {ledger.saved_prompt_tokens:,} prompt tokens against cold answers"
    )
    if ledger.break_even_queries is not None:
        line += f"; break-even after {ledger.break_even_queries:,} queries"
    if ledger.money is not None:
        m = ledger.money
        line += (
            f"\nmoney: sleep-time ${m.sleep_usd:,.4f}, test-time ${m.test_usd:,.4f}, "
            f"saved ${m.saved_usd:,.4f}"
        )
        if m.break_even_queries is not None:
            line += f", break-even after {m.break_even_queries:,} queries"
    return line


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
    st = SleepTime(model=model or settings.model, database_url=url, settings=settings)
    text = resources.files("sleeptime").joinpath("data/sample_report.txt").read_text("utf-8")
    console.rule("[bold]sleeptime demo")
    with console.status("loading the model"):
        name = st.model_name
    console.print(f"model: {name}    store: {redact_url(url)}")
    small = name.startswith("local:")
    if small:
        console.print(
            "[yellow]The bundled SmolLM2-135M cannot reason (0/10 on grade-school math): its "
            "answers show the mechanism (caching, budgets, accounting), not accuracy.[/yellow]"
        )
    st.ingest("demo", "fair", text)
    st.ingest("demo", "fair-cold", text)  # the control: never gets sleep-time compute
    console.print(
        f"context: a {len(text):,}-character planning file, ingested as demo/fair and "
        "demo/fair-cold (the control, never slept)"
    )

    with console.status("sleep-time compute") as status:
        report = st.sleep("demo", "fair", progress=_progress(status))
    index = st.artifacts("demo", "fair").index
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
        Panel(_short(_plain(report.learned or ""), 600), title="learned context c' (excerpt)")
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
            with console.status(f"asking demo/{path}: {_short(q, 50)}"):
                answers.append(st.ask("demo", path, q, verbosity=verbosity))
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
                _short(ans.text, 90),
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
    ledger = st.ledger("demo", "fair")
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
    console.print(_ledger_line(ledger))
    st.close()
    tmp.cleanup()


RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis URL (default: $SLEEPTIME_REDIS_URL; unset: SQLite queue)"
    ),
]


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="jobs run at once (threads) (default: $SLEEPTIME_WORKER_CONCURRENCY or 1)"
        ),
    ] = None,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    redis_url: RedisOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="serve /metrics on this port (0 = off) (default: $SLEEPTIME_METRICS_PORT or 0)"
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            help="address of /metrics; 0.0.0.0 exposes it (default: $SLEEPTIME_METRICS_HOST "
            "or 127.0.0.1)"
        ),
    ] = None,
    burst: Annotated[bool, typer.Option(help="exit once the queue is empty")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    log_format: Annotated[
        str,
        typer.Option(help="text (key=value lines) or json (one JSON object per line)"),
    ] = "text",
) -> None:
    """Run a sleep-time worker until SIGTERM/SIGINT (drains the jobs in hand first)."""
    from sleeptime.worker.service import serve

    raise typer.Exit(
        serve(
            concurrency=concurrency,
            model=model,
            database_url=database_url,
            redis_url=redis_url,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            burst=burst,
            log_level=log_level,
            log_format=log_format,
        )
    )


jobs_app = typer.Typer(help="Inspect the sleep-time job queue; `jobs retry ID` revives a dead job.")
app.add_typer(jobs_app, name="jobs")


def _queue(redis_url: str | None, database_url: str | None) -> Any:
    from sleeptime.queue import open_queue

    overrides: dict[str, Any] = {"redis_url": redis_url} if redis_url else {}
    settings = Settings(**overrides)
    if not settings.redis_url and not settings.queue_path:  # the queue is in the database
        require_database(database_url)
    return open_queue(settings, database_url)


def _eta(seconds: float) -> str:
    """How long until a waiting job can start: "now", "in 12s", "in 5m", "in 1.5h"."""
    if seconds <= 0:
        return "now"
    if seconds < 90:
        return f"in {math.ceil(seconds)}s"
    if seconds < 90 * 60:
        return f"in {round(seconds / 60)}m"
    return f"in {seconds / 3600:.1f}h"


#: ``--state`` values; "pending" is the earlier name of "waiting" and still accepted.
JOB_STATES = ("waiting", "pending", "running", "dead")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option(help="waiting, running or dead (default: all three)"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonOpt = False,
    redis_url: RedisOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List waiting, running and dead jobs; a waiting job's "ready" is when it can start
    (its backoff and the namespace's idle time, with this process's
    SLEEPTIME_IDLE_AFTER / SLEEPTIME_MAX_DELAY, which should be the workers')."""
    if ctx.invoked_subcommand is not None:
        return
    if state not in (None, *JOB_STATES):
        raise InvalidInput(f"--state must be waiting, running or dead (got {state!r})")
    queue = _queue(redis_url, database_url)
    found = queue.list("waiting" if state == "pending" else state, limit=limit)
    counts = queue.counts()
    live = [w for w in queue.workers() if w.get("state") != "stopped"]
    queue.close()
    if as_json:
        print(
            json.dumps(
                {"counts": counts, "workers": live, "jobs": [j.to_dict() for j in found]}, indent=2
            )
        )
        return
    now = time.time()
    table = Table("state", "context", "v", "tries", "ready", "worker", "error")
    table.add_column("id", no_wrap=True)
    for j in found:
        table.add_row(
            j.state,
            f"{j.namespace}/{j.context_id}",
            str(j.version),
            str(j.deliveries),
            _eta(j.ready_at - now) if j.state == "waiting" else "",
            j.worker or "",
            _short(j.error or "", 60),
            j.id,
        )
    _print_table(table)
    console.print(
        ", ".join(f"{name} {n}" for name, n in counts.items()) + f"; {len(live)} live worker(s)"
    )


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[
        str | None, typer.Argument(help="a dead job's id (`sleeptime jobs --state dead`)")
    ] = None,
    all_dead: Annotated[
        bool,
        typer.Option(
            "--all",
            help="every dead job whose version is still the current one "
            "(dead jobs of older versions stay dead)",
        ),
    ] = False,
    redis_url: RedisOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Put a dead job back in the queue with its delivery count reset."""
    if (job_id is None) == (not all_dead):
        raise InvalidInput("give a job id or --all (not both)")
    queue = _queue(redis_url, database_url)
    if not all_dead:
        assert job_id is not None
        job = queue.retry(job_id)
        queue.close()
        ctx = f"{job.namespace}/{job.context_id} v{job.version}"
        console.print(f"job {job.id} ({ctx}) is waiting again")
        return
    from sleeptime.store.sql import SQLStore

    require_database(database_url)
    store = SQLStore(database_url or Settings().database_url)
    revived = skipped = 0
    try:
        for dead in queue.list("dead", limit=100_000):
            current = store.current_version(dead.namespace, dead.context_id)
            if current != dead.version:
                skipped += 1  # superseded: its version will never be served
                continue
            if queue.enqueue(dead.namespace, dead.context_id, dead.version) is not None:
                revived += 1
    finally:
        queue.close()
        store.dispose()
    console.print(f"{revived} dead job(s) waiting again; {skipped} superseded left dead")


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
    st = client("fake", database_url, existing=True)  # deleting never calls a model
    if context_id is None:
        if not yes:
            raise InvalidInput(
                f"this deletes every context of namespace {namespace!r}: add --yes to confirm"
            )
        counts = st.delete_namespace(namespace)
        what = f"namespace {namespace}"
    else:
        counts = st.delete(namespace, context_id)
        what = f"{namespace}/{context_id}"
    st.close()
    if as_json:
        print(counts.model_dump_json(indent=2))
        return
    console.print(
        f"deleted {what}: {counts.contexts} context(s), {counts.versions} version(s), "
        f"{counts.artifacts} artifact(s), {counts.kv_blobs} KV blob(s), "
        f"{counts.cache_keys} cache key(s); {counts.queries_redacted} logged queries kept "
        "as counts without text"
    )


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to bind; 0.0.0.0 exposes the API to the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="server processes sharing the port (each one its own client of the "
            "database and Redis)",
        ),
    ] = 1,
    worker: Annotated[
        bool, typer.Option(help="also run a sleep-time worker in this process")
    ] = False,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Serve the HTTP API (docs/service.md; OpenAPI docs at /docs). Requests need a key
    from `sleeptime keys create`."""
    try:
        import uvicorn

        from sleeptime.server import create_app
    except ImportError as exc:
        raise InvalidInput(
            f"the HTTP server needs the server extra: pip install 'sleeptime[server]' ({exc})"
        ) from exc
    if workers > 1 and worker:
        raise InvalidInput(
            "--worker runs one sleep-time worker inside a single server process: with "
            "--workers N, run `sleeptime worker` beside the server instead"
        )
    st = SleepTime(model=model, database_url=database_url, background=worker)
    if workers == 1:
        uvicorn.run(create_app(st, close=True), host=host, port=port, log_level=log_level.lower())
        return
    # Each process builds its own client from the environment (uvicorn starts them
    # from an import string); the options reach them through it. The client built
    # above has checked the options and brought the schema up to date once.
    st.close()
    if model is not None:
        os.environ["SLEEPTIME_MODEL"] = model
    if database_url is not None:
        os.environ["SLEEPTIME_DATABASE_URL"] = database_url
    if not st.settings.session_secret:
        # one signing secret for every process: a dashboard sign-in made on one is
        # valid on the others (inherited by the processes, never printed)
        os.environ["SLEEPTIME_SESSION_SECRET"] = secrets.token_urlsafe(32)
    uvicorn.run(
        "sleeptime.server:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level.lower(),
    )


@app.command("mcp")
def mcp_cmd(
    namespace: Annotated[
        str | None,
        typer.Option(
            help="pin the server to this namespace: its tools then take no namespace argument"
        ),
    ] = None,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="run sleep-time work in this process (default); --no-worker when separate "
            "`sleeptime worker` processes share the queue",
        ),
    ] = True,
) -> None:
    """Serve ingest, ask and show as MCP tools over stdio (for MCP clients), with a
    worker in the same process preparing notes for what is ingested."""
    try:
        from sleeptime.server.mcp_server import create_mcp
    except ImportError as exc:
        raise InvalidInput(
            f"the MCP server needs the mcp extra: pip install 'sleeptime[mcp]' ({exc})"
        ) from exc
    st = SleepTime(model=model, database_url=database_url)
    st.open_queue()  # ingests enqueue sleep-time jobs
    if worker:
        st.start_worker()
    try:
        create_mcp(st, namespace, worker=worker).run("stdio")
    finally:
        st.close()


keys_app = typer.Typer(help="API keys of the HTTP server (`sleeptime serve`).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    namespace: Annotated[
        str | None, typer.Argument(help="the namespace the key opens (omit with --admin)")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="a key for every namespace and the operator routes")
    ] = False,
    database_url: DbOpt = None,
) -> None:
    """Create a key and print it once (the last line); only its hash is stored."""
    from sleeptime.server.auth import create_key

    if admin and namespace:
        raise InvalidInput("an admin key opens every namespace: give --admin or NAMESPACE")
    st = client("fake", database_url)
    key_id, key = create_key(st.store, namespace, admin=admin)
    st.close()
    scope = "admin (every namespace, operator routes)" if admin else f"namespace {namespace}"
    err.print(f"key {key_id} for {scope}; it is shown once, store it now:")
    print(key)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False, database_url: DbOpt = None) -> None:
    """Key ids and their namespaces (never the keys)."""
    st = client("fake", database_url, existing=True)
    rows = st.store.api_keys()
    st.close()
    if as_json:
        out = [{"key_id": k, "namespace": ns, "admin": a} for k, ns, a in rows]
        print(json.dumps(out, indent=2))
        return
    table = Table("key id", "namespace", "admin")
    for k, ns, a in rows:
        table.add_row(k, ns or "*", "yes" if a else "")
    _print_table(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="a key id from `sleeptime keys list`")],
    database_url: DbOpt = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    st = client("fake", database_url, existing=True)
    found = st.store.revoke_api_key(key_id)
    st.close()
    if not found:
        raise InvalidInput(f"no key {key_id!r}: see `sleeptime keys list`")
    console.print(f"key {key_id} revoked")


db_app = typer.Typer(help="The SQL schema: `db upgrade` applies its migrations (Alembic).")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(database_url: DbOpt = None) -> None:
    """Bring the schema to the newest revision (also done on start; safe to run from
    many processes at once)."""
    from sleeptime.store.sql import SQLStore

    url = database_url or Settings().database_url
    store = SQLStore(url, create=False)
    before, after = store.migrate()
    store.dispose()
    console.print(f"{redact_url(url)}: {before or '(unversioned)'} -> {after}", highlight=False)


@db_app.command("current")
def db_current(database_url: DbOpt = None) -> None:
    """Print the schema revision of the database and the newest one this version ships."""
    from sleeptime.store import migrate
    from sleeptime.store.sql import SQLStore

    url = database_url or Settings().database_url
    require_database(url)
    store = SQLStore(url, create=False)
    revision = store.schema_revision()
    store.dispose()
    console.print(
        f"{redact_url(url)}: revision {revision or '(none)'}, newest {migrate.head()}",
        highlight=False,
    )


@app.command("predictability")
def predictability_cmd(
    namespace: str,
    context_id: str,
    question: str,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="a llama.cpp model: 'local' or 'local:PATH' (default: bundled)"
        ),
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Mean log P(question | context) on the local model (closer to 0 = more predictable)."""
    from sleeptime.llm.local import LocalChatModel
    from sleeptime.llm.resolve import resolve_model
    from sleeptime.predictability import score

    st = client("fake", database_url, existing=True)  # the context comes from the store
    ctx = st.context(namespace, context_id)
    spec = model or (st.settings.model if st.settings.model.startswith("local") else "local")
    llm = resolve_model(spec, st.settings)
    if not isinstance(llm, LocalChatModel):
        raise InvalidInput(
            f"predictability needs a llama.cpp model ('local' or 'local:PATH'), not {spec!r}"
        )
    res = score(ctx.text, question, llm, namespace=namespace)
    out = {"namespace": namespace, "context_id": context_id, "version": ctx.version}
    out |= {"question": question, "model": llm.display_name, **res.__dict__}
    print(json.dumps(out, indent=2))


def _undecodable_argument() -> str | None:
    """Arguments that were not valid UTF-8 reach Python as lone surrogates."""
    for i, arg in enumerate(sys.argv[1:], 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return f"argument {i} is not valid UTF-8 text ({ascii(arg)[:60]})"
    return None


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    line = " ".join(message.split())  # a message that spans lines is joined into one
    err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """The entry point: a user error (bad input, a usage error such as a missing
    argument or an unknown option, a database that is down or a bad URL) is one line
    on stderr and exit code 2; ``--help`` and a bare ``sleeptime`` print the help."""
    bad = _undecodable_argument()
    if bad is not None:
        _fail(bad)
    try:
        # standalone_mode=False: usage errors come here instead of typer's boxes
        code = app(standalone_mode=False)
    except SleepTimeError as exc:
        _fail(str(exc))
    except typer.TyperException as exc:  # click's usage errors (vendored by typer)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
            print(exc.message)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        show = getattr(exc, "format_message", None)
        _fail((show() if callable(show) else str(exc)) + hint, exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)  # typer.Exit(code) raised by a command


if __name__ == "__main__":
    main()
