"""Issue 21's smaller silent failures, each as a new user met it: every path either
does its work or says why not, in one line that says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sleeptime import ContextNotFound, FakeChatModel, Settings, SleepTime


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTIME_")}
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "NO_COLOR": "1", "SLEEPTIME_MODEL": "fake", **(env or {})},
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr  # one line, may soft-wrap
    return proc.stderr


@pytest.fixture
def st(sqlite_url: str) -> SleepTime:
    settings = Settings(model="fake", n_questions=2, idle_after=0.0)
    client = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    yield client
    client.close()


# -- the Python API ------------------------------------------------------------------------


def test_sleep_on_a_version_that_does_not_exist_names_the_versions_that_do(
    st: SleepTime,
) -> None:
    st.ingest("acme", "doc", "Ann has 3 apples.")
    st.ingest("acme", "doc", "Ann has 4 apples.")
    with pytest.raises(ContextNotFound) as err:
        st.sleep("acme", "doc", version=99)
    message = str(err.value)
    assert "no version 99" in message and "versions 1-2" in message, message
    assert "no context" not in message
    assert err.value.version == 99 and "\n" not in message
    with pytest.raises(ContextNotFound, match="no context 'other'"):  # no context at all
        st.sleep("acme", "other", version=1)


def test_sleep_with_more_questions_on_a_finished_version_says_it_was_not_applied(
    st: SleepTime,
) -> None:
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    first = st.sleep("acme", "doc")
    assert not first.skipped and len(first.qas) == 2 and first.warnings == []
    again = st.sleep("acme", "doc", n_questions=8)
    assert again.skipped and len(again.qas) == 2
    [warning] = again.warnings
    assert "already complete with 2 predicted question(s)" in warning
    assert "n_questions=8 was not applied" in warning and "delete the context" in warning
    assert st.sleep("acme", "doc", n_questions=2).warnings == []  # what it has: nothing to say
    assert st.sleep("acme", "doc").warnings == []  # no request: nothing ignored


# -- PostgreSQL: the driver, the URL --------------------------------------------------------


def test_the_postgres_test_skip_says_the_driver_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import conftest

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    reason = conftest.postgres_unavailable()
    assert reason is not None and "not installed" in reason and "not reachable" not in reason
    assert 'pip install "sleeptime[postgres]"' in reason


def test_a_missing_postgres_driver_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sleeptime.errors import StoreUnavailable
    from sleeptime.store.sql import SQLStore

    monkeypatch.setitem(sys.modules, "psycopg", None)
    for url in ("postgresql+psycopg://u:hunter22@127.0.0.1:1/x", "postgres://u:hunter22@h/x"):
        with pytest.raises(StoreUnavailable) as err:
            SQLStore(url, create=False)
        message = str(err.value)
        assert 'pip install "sleeptime[postgres]"' in message, message
        assert "hunter22" not in message and "\n" not in message


def test_postgres_urls_as_providers_write_them_are_accepted() -> None:
    from sleeptime.store.db import sqlalchemy_url
    from sleeptime.store.sql import SQLStore

    assert sqlalchemy_url("postgres://u:p@h:5432/db?sslmode=require") == (
        "postgresql+psycopg://u:p@h:5432/db?sslmode=require"
    )
    assert sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("postgres+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    for same in ("postgresql+psycopg://u@h/db", "sqlite:///x.db", "sqlite://"):
        assert sqlalchemy_url(same) == same
    store = SQLStore("postgres://u:p@127.0.0.1:1/db", create=False)  # no connection yet
    assert store.db.dialect == "postgresql" and store.engine.dialect.driver == "psycopg"
    assert store.url.startswith("postgresql+psycopg://")
    store.dispose()


def test_a_postgres_url_works_end_to_end(database_url: str) -> None:
    if not database_url.startswith("postgresql+psycopg://"):
        pytest.skip("PostgreSQL only")
    url = "postgres://" + database_url.removeprefix("postgresql+psycopg://")
    st = SleepTime(model=FakeChatModel(), database_url=url, settings=Settings(model="fake"))
    st.ingest("acme", "doc", "Ann has 3 apples.")
    assert st.context("acme", "doc").version == 1
    st.close()


# -- the command line -----------------------------------------------------------------------


def test_a_burst_worker_on_a_wrong_redis_port_fails_in_one_line(tmp_path: Path) -> None:
    """It used to retry forever. Its start line names the database, the queue and the
    model, passwords hidden."""
    from redis_server import free_port

    port = free_port()  # nothing listens there
    db = f"sqlite:///{tmp_path / 'st.db'}"
    redis = f"redis://:hunter22@127.0.0.1:{port}/0"
    proc = run(
        ["worker", "--burst", "--redis-url", redis, "--database-url", db],
        tmp_path,
        timeout=90,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gave up after 5 attempts" in errors[0], proc.stderr
    assert f"127.0.0.1:{port}" in errors[0] and "hunter22" not in proc.stderr
    [start] = [line for line in proc.stderr.splitlines() if "concurrency" in line]
    assert f"database {db}" in start and "model fake" in start, start
    assert f"queue redis redis://:***@127.0.0.1:{port}/0" in start, start


def test_show_in_an_empty_folder_creates_no_database(tmp_path: Path) -> None:
    for args in (["show", "acme", "doc"], ["ask", "acme", "doc", "Why?"], ["jobs"]):
        proc = run(args, tmp_path)
        one_line_error(proc, "no database file 'sleeptime.db'")
        assert "ingest a context first" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no sleeptime.db, no .sleeptime/


def test_version_option(tmp_path: Path) -> None:
    import sleeptime

    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sleeptime {sleeptime.__version__}"


def test_jobs_piped_at_80_columns_cuts_no_cell(tmp_path: Path) -> None:
    db = {"SLEEPTIME_DATABASE_URL": f"sqlite:///{tmp_path / 'st.db'}", "COLUMNS": "80"}
    doc = tmp_path / "doc.txt"
    doc.write_text("Ann has 3 apples.", encoding="utf-8")
    context = "a-context-id-long-enough-to-need-room"
    assert run(["ingest", "acme", context, str(doc)], tmp_path, db).returncode == 0
    listed = run(["jobs", "--json"], tmp_path, db)
    [job] = json.loads(listed.stdout)["jobs"]
    table = run(["jobs"], tmp_path, db)
    assert table.returncode == 0, table.stderr
    assert f"acme/{context}" in table.stdout and job["id"] in table.stdout, table.stdout
    assert "…" not in table.stdout


def test_one_name_per_option_the_old_ones_hidden(tmp_path: Path) -> None:
    """`--questions`/`--n-questions`, `--k`/`--sleep-k`, `--redis`/`--redis-url` were
    the same options under two names: each is now named after its setting everywhere,
    and the old names still work (scripts use them) without showing in --help."""
    import typer

    from sleeptime.cli import app

    root = typer.main.get_command(app)

    def shown_and_hidden(*path: str) -> tuple[set[str], set[str]]:
        cmd: Any = root
        for name in path:
            cmd = cmd.commands[name]
        shown = {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts}
        hidden = {o for p in cmd.params if getattr(p, "hidden", False) for o in p.opts}
        return shown, hidden

    shown, hidden = shown_and_hidden("sleep")
    assert {"--sleep-k", "--n-questions"} <= shown and {"--k", "--questions"} == hidden
    assert shown_and_hidden("bench", "run")[0] >= {"--sleep-k", "--n-questions"}
    shown, hidden = shown_and_hidden("bench", "load")
    assert "--redis-url" in shown and hidden == {"--redis"}
    for path in (("worker",), ("jobs",), ("jobs", "retry")):
        assert "--redis-url" in shown_and_hidden(*path)[0]

    env = {"SLEEPTIME_DATABASE_URL": f"sqlite:///{tmp_path / 'st.db'}"}
    doc = tmp_path / "doc.txt"
    doc.write_text("Ann has 3 apples. Bob has 4 pears.", encoding="utf-8")
    assert run(["ingest", "acme", "doc", str(doc)], tmp_path, env).returncode == 0
    both = run(["sleep", "acme", "doc", "--n-questions", "1", "--questions", "2"], tmp_path, env)
    one_line_error(both, "--questions is the old name of --n-questions")
    old = run(["sleep", "acme", "doc", "--k", "1", "--questions", "1"], tmp_path, env)
    assert old.returncode == 0 and "1 predicted answers" in old.stdout, old.stderr
    doc.write_text("Ann has 5 apples. Bob has 4 pears.", encoding="utf-8")
    assert run(["ingest", "acme", "doc", str(doc)], tmp_path, env).returncode == 0
    new = run(["sleep", "acme", "doc", "--sleep-k", "1", "--n-questions", "2"], tmp_path, env)
    assert new.returncode == 0 and "2 predicted answers" in new.stdout, new.stderr
