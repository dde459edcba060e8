"""The ``sleeptime`` command line (typer + rich), one module per command group.

Every user error (missing context, empty text, unknown model, database down) ends
with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

# importing a command module registers its commands on ``app``
from sleeptime.cli import admin, bench, contexts, demo, jobs, predictability, services  # noqa: F401
from sleeptime.cli.common import app, fail, open_client, require_database
from sleeptime.errors import SleepTimeError

#: The name ``open_client`` had before (kept for scripts that import it).
client = open_client

__all__ = ["app", "client", "main", "open_client", "require_database"]


def _undecodable_argument() -> str | None:
    """Arguments that were not valid UTF-8 reach Python as lone surrogates."""
    for i, arg in enumerate(sys.argv[1:], 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return f"argument {i} is not valid UTF-8 text ({ascii(arg)[:60]})"
    return None


def main() -> None:
    """The entry point: a user error (bad input, a usage error such as a missing
    argument or an unknown option, a database that is down or a bad URL) is one line
    on stderr and exit code 2; ``--help`` and a bare ``sleeptime`` print the help."""
    bad = _undecodable_argument()
    if bad is not None:
        fail(bad)
    try:
        # standalone_mode=False: usage errors come here instead of typer's boxes
        code = app(standalone_mode=False)
    except SleepTimeError as exc:
        fail(str(exc))
    except typer.TyperException as exc:  # click's usage errors (vendored by typer)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
            print(exc.message)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        show = getattr(exc, "format_message", None)
        fail((show() if callable(show) else str(exc)) + hint, exc.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)  # typer.Exit(code) raised by a command
