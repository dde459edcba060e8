"""Operability of the command line: defaults in --help, the worker's metrics server on
loopback by default, the same job state names in the table and the JSON, and progress
lines when output is piped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.queue import open_queue
from sleeptime.worker.metrics import WorkerMetrics


def run(
    args: list[str], db: str, stdin: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SLEEPTIME_DATABASE_URL": db,
        "SLEEPTIME_MODEL": "fake",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **{f"SLEEPTIME_{k.upper()}": v for k, v in settings.items()},
    }
    env.pop("SLEEPTIME_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _flat(text: str) -> str:
    return re.sub(r"[\s│|]+", " ", text)


def test_help_shows_defaults(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    sleep = _flat(run(["sleep", "--help"], db).stdout)
    assert "(default: 1, $SLEEPTIME_SLEEP_K)" in sleep
    assert "(default: 5, $SLEEPTIME_N_QUESTIONS)" in sleep
    ask = _flat(run(["ask", "--help"], db).stdout)
    assert "(default: 1 from c', 3 cold" in ask
    worker = _flat(run(["worker", "--help"], db).stdout)
    assert "--metrics-host" in worker and "127.0.0.1" in worker
    serve = _flat(run(["serve", "--help"], db).stdout)
    assert "[default: 127.0.0.1]" in serve and "[default: 8080]" in serve


def test_metrics_server_binds_loopback_by_default(sqlite_url: str) -> None:
    assert Settings().metrics_host == "127.0.0.1"
    with SleepTime(model=FakeChatModel(), database_url=sqlite_url) as st:
        queue = open_queue(Settings(), sqlite_url)
        server, _thread = WorkerMetrics(queue, st.store).serve(0)
        try:
            assert server.server_address[0] == "127.0.0.1"
        finally:
            server.shutdown()
            server.server_close()
            queue.close()


def test_job_state_names_match_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'j.db'}"
    settings = Settings(model="fake", idle_after=3600.0)
    with SleepTime(model=FakeChatModel(), database_url=db, settings=settings) as st:
        st.open_queue()
        st.ingest("acme", "doc", "Ann has 3 apples.")
    as_json = json.loads(run(["jobs", "--json"], db).stdout)
    states = {j["state"] for j in as_json["jobs"]}
    assert states == {"waiting"}
    table = run(["jobs"], db).stdout
    assert "waiting" in table and "pending" not in table
    assert f"waiting {as_json['counts']['waiting']}" in table


def test_jobs_shows_when_a_waiting_job_can_start(tmp_path: Path) -> None:
    """A job waits for its namespace to be idle: ``ready_at`` is then, not the enqueue
    time, and the table says how long that is; ``--state waiting`` is the state's own
    name (``pending``, its earlier name, still works)."""
    db = f"sqlite:///{tmp_path / 'eta.db'}"
    quiet = {"idle_after": "3600", "max_delay": "7200"}
    settings = Settings(model="fake", idle_after=3600.0, max_delay=7200.0)
    with SleepTime(model=FakeChatModel(), database_url=db, settings=settings) as st:
        st.open_queue()
        st.ingest("acme", "doc", "Ann has 3 apples.")
        assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    listed = json.loads(run(["jobs", "--state", "waiting", "--json"], db, **quiet).stdout)
    [job] = listed["jobs"]
    assert job["state"] == "waiting"
    assert 3600 - 60 < job["ready_at"] - job["enqueued_at"] <= 3600  # activity, then enqueue
    old_name = json.loads(run(["jobs", "--state", "pending", "--json"], db, **quiet).stdout)
    assert [j["id"] for j in old_name["jobs"]] == [job["id"]]
    table = _flat(run(["jobs"], db, **quiet).stdout)
    assert re.search(r" waiting acme/doc 1 0 in (59|60)m ", table), table
    now = _flat(run(["jobs"], db, idle_after="0").stdout)  # no idle time: it could run now
    assert " waiting acme/doc 1 0 now " in now, now
    bad = run(["jobs", "--state", "queued"], db)
    assert bad.returncode == 2
    assert "--state must be waiting, running, dead or deferred" in bad.stderr


def test_cli_ingest_enqueues_on_the_embedded_queue_before_it_exits(tmp_path: Path) -> None:
    # with Redis the job was in the queue at once, with the embedded queue only after a
    # worker's next outbox pass; now both list it as soon as the command returns
    db = f"sqlite:///{tmp_path / 'i.db'}"
    done = run(["ingest", "acme", "doc", "-"], db, stdin="Ann has 3 apples.", idle_after="3600")
    assert done.returncode == 0, done.stderr
    listed = json.loads(run(["jobs", "--json"], db).stdout)
    assert [(j["context_id"], j["version"], j["state"]) for j in listed["jobs"]] == [
        ("doc", 1, "waiting")
    ]
    again = run(["ingest", "acme", "doc", "-"], db, stdin="Ann has 3 apples.")
    assert "unchanged" in again.stdout  # an unchanged text enqueues nothing new
    assert len(json.loads(run(["jobs", "--json"], db).stdout)["jobs"]) == 1


def test_sleep_prints_progress_when_piped(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert run(["ingest", "acme", "doc", "-"], db, stdin="Ann has 3 apples.").returncode == 0
    out = run(["sleep", "acme", "doc"], db)
    assert out.returncode == 0, out.stderr
    steps = [ln for ln in out.stdout.splitlines() if re.match(r"\s+\[\s*\d+\.\d s\] ", ln)]
    assert len(steps) >= 3, out.stdout  # one line per sleep-time step
