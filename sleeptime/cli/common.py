"""What every command shares: the typer app and its ``--version``, the consoles, the
common options, the store client, reading a text, short lines, and the one-line failure."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sleeptime import __version__
from sleeptime.api import SleepTime
from sleeptime.errors import InvalidInput
from sleeptime.models import Ledger
from sleeptime.redact import redact_url
from sleeptime.settings import Settings
from sleeptime.store.db import is_in_memory

app = typer.Typer(
    help="Sleep-time compute: think about a context before the user asks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
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


def print_table(table: Table) -> None:
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


def progress(status: Any) -> Callable[[str], None]:
    """A ``progress=`` callback: updates the spinner on a terminal, and prints one line
    per step (with the seconds since the start) when the output is piped or logged."""
    start = time.perf_counter()

    def update(step: str) -> None:
        status.update(step)
        if not console.is_terminal:
            console.print(f"  [{time.perf_counter() - start:6.1f} s] {step}", highlight=False)

    return update


def open_client(
    model: str | None, database_url: str | None, *, existing: bool = False
) -> SleepTime:
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
    if not path or is_in_memory(url) or path.startswith("file:") or Path(path).exists():
        return
    raise InvalidInput(
        f"no database file {path!r} ({redact_url(url)}): nothing stored there yet; ingest a "
        "context first, or point --database-url or SLEEPTIME_DATABASE_URL at your database"
    )


def read_text(source: str) -> str:
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


RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis URL (default: $SLEEPTIME_REDIS_URL; unset: SQLite queue)"
    ),
]


def alias(value: Any, old: Any, name: str, old_name: str) -> Any:
    """An option given under its old, hidden name (scripts keep working)."""
    if old is None:
        return value
    if value is not None and value != old:
        raise InvalidInput(f"{old_name} is the old name of {name}: give one of them")
    return old


def short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def ledger_line(ledger: Ledger) -> str:
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


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    line = " ".join(message.split())  # a message that spans lines is joined into one
    err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)
