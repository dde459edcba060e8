"""The CLI as a user runs it: a real subprocess, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(
    args: list[str], db: str, stdin: str | None = None, model: str = "fake"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SLEEPTIME_DATABASE_URL": db,
        "SLEEPTIME_MODEL": model,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert fragment in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # one line (may soft-wrap once)


def test_full_flow(sqlite_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("Ann buys 3 apples at $2 each. Bob buys 4 pears.", encoding="utf-8")
    out = run(["ingest", "acme", "doc-1", str(doc)], sqlite_url)
    assert out.returncode == 0 and "v1 (new version" in out.stdout
    out = run(["sleep", "acme", "doc-1", "--questions", "2"], sqlite_url)
    assert out.returncode == 0 and "2 predicted answers" in out.stdout, out.stderr
    shown = json.loads(run(["show", "acme", "doc-1", "--json"], sqlite_url).stdout)
    assert len(shown["artifacts"]["qas"]) == 2 and shown["artifacts"]["complete"]
    question = shown["artifacts"]["qas"][0]["question"]
    answer = json.loads(run(["ask", "acme", "doc-1", question, "--json"], sqlite_url).stdout)
    assert answer["source"] == "predicted" and answer["usage"]["completion_tokens"] == 0
    answer = json.loads(
        run(
            ["ask", "acme", "doc-1", "What is Bob's total?", "--json", "--verbosity", "0"],
            sqlite_url,
        ).stdout
    )
    assert answer["source"] == "learned"
    shown = json.loads(run(["show", "acme", "doc-1", "--json"], sqlite_url).stdout)
    assert shown["ledger"]["queries"] == 2 and shown["ledger"]["test"]["calls"] == 1


def test_ingest_from_stdin(sqlite_url: str) -> None:
    out = run(["ingest", "acme", "doc", "-"], sqlite_url, stdin="Some text with 3 numbers.")
    assert out.returncode == 0 and "v1" in out.stdout


def test_missing_context(sqlite_url: str) -> None:
    run(["ingest", "acme", "other", "-"], sqlite_url, stdin="Some text.")  # the database exists
    assert_clean_error(run(["ask", "acme", "nope", "why?"], sqlite_url), "no context 'nope'")
    assert_clean_error(run(["show", "acme", "nope"], sqlite_url), "no context 'nope'")
    assert_clean_error(run(["sleep", "acme", "nope"], sqlite_url), "ingest it first")


def test_empty_text(sqlite_url: str) -> None:
    assert_clean_error(run(["ingest", "acme", "doc", "-"], sqlite_url, stdin="  \n"), "is empty")


def test_missing_file(sqlite_url: str) -> None:
    assert_clean_error(
        run(["ingest", "acme", "doc", "/no/such/file.txt"], sqlite_url), "no such file"
    )


def test_unknown_model(sqlite_url: str) -> None:
    run(["ingest", "acme", "doc", "-"], sqlite_url, stdin="Ann has 3 apples.")
    assert_clean_error(
        run(["ask", "acme", "doc", "how many?"], sqlite_url, model="gpt-nonsense"), "unknown model"
    )


def test_database_down() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    assert_clean_error(run(["ask", "acme", "doc", "q?"], url), "unavailable")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ask", "acme"], "Missing argument 'context_id'"),
        (["ask", "acme", "doc", "q", "--verbosity", "9"], "'--verbosity'"),
        (["ask", "acme", "doc", "q", "--verbosity", "x"], "'--verbosity'"),
        (["ask", "acme", "doc", "q", "--bogus"], "No such option: --bogus"),
        (["nope"], "No such command 'nope'"),
        (["keys"], "Missing command"),
        (["keys", "create", "acme", "--admin", "extra"], "unexpected extra argument"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    sqlite_url: str, args: list[str], fragment: str
) -> None:
    """Before: typer's usage errors were boxes of five lines or more."""
    proc = run(args, sqlite_url)
    assert_clean_error(proc, fragment)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "╭" not in proc.stderr and not proc.stdout


def test_help_still_works(sqlite_url: str) -> None:
    proc = run(["ask", "--help"], sqlite_url)
    assert proc.returncode == 0 and "--max-tokens" in proc.stdout


def test_a_bad_database_url_option_is_one_line() -> None:
    """Before: ``?connect_timeout=abc`` crashed with a traceback of hundreds of lines."""
    url = "postgresql+psycopg://app:cl1-secret@127.0.0.1:5432/db?connect_timeout=abc"
    proc = run(["show", "acme", "doc"], url)
    assert_clean_error(proc, "bad value for connect_timeout")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cl1-secret" not in proc.stderr + proc.stdout


def test_budget_forcing_options(sqlite_url: str) -> None:
    run(["ingest", "acme", "doc", "-"], sqlite_url, stdin="Ann has 3 apples and buys 4 more.")
    out = run(
        ["ask", "acme", "doc", "How many?", "--think-tokens", "8", "--extend", "1", "--json"],
        sqlite_url,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["source"] == "cold"
    bad = run(["ask", "acme", "doc", "How many?", "--think-tokens", "-1"], sqlite_url)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
