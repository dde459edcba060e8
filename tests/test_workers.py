"""Worker runtime against real Redis and real worker processes: kill -9, Redis
restarts, dead letters and `jobs retry`, idle scheduling, SIGTERM drain, metrics."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select
from typer.testing import CliRunner

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.cli import app
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.store.schema import ArtifactRow
from sleeptime.worker import Worker
from sleeptime.worker.logs import JsonFormatter

N_QUESTIONS = 2
#: index + learned + questions + N answers + manifest
ARTIFACTS_PER_JOB = 4 + N_QUESTIONS


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def worker_env(redis_url: str | None, database_url: str, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SLEEPTIME_REDIS_URL", None)
    env.update(
        {
            "SLEEPTIME_DATABASE_URL": database_url,
            "SLEEPTIME_N_QUESTIONS": str(N_QUESTIONS),
            "SLEEPTIME_IDLE_AFTER": "0",
            "SLEEPTIME_POLL_S": "0.05",
            "SLEEPTIME_LEASE_S": "2",
            "SLEEPTIME_HEARTBEAT_S": "0.2",
            "SLEEPTIME_SWEEP_S": "0",
        }
    )
    if redis_url:
        env["SLEEPTIME_REDIS_URL"] = redis_url
    env.update({f"SLEEPTIME_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def spawn(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sleeptime.worker", *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:  # only the processes this test started
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def client(database_url: str, redis_url: str | None = None, **kw: Any) -> SleepTime:
    settings = Settings(
        model="fake", n_questions=N_QUESTIONS, idle_after=0.0, redis_url=redis_url, **kw
    )
    return SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)


def artifact_rows(st: SleepTime) -> dict[tuple[str, int], int]:
    stmt = select(ArtifactRow.context_id, ArtifactRow.version, func.count()).group_by(
        ArtifactRow.context_id, ArtifactRow.version
    )
    with st.store.session() as s:
        return {(cid, v): n for cid, v, n in s.execute(stmt).all()}


def complete(st: SleepTime, ns: str, ids: list[str]) -> int:
    return sum(st.store.get_artifact(ns, cid, 1, "manifest", "0") is not None for cid in ids)


def health(q: RedisStreamsQueue, pid: int) -> dict[str, Any] | None:
    return next((w for w in q.workers() if w["pid"] == pid), None)


def test_kill_9_mid_jobs_every_job_completes_exactly_once(
    redis_server: Any, sqlite_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    st = client(sqlite_url, redis_server.url)
    ids = [f"doc-{i:02d}" for i in range(50)]
    for i, cid in enumerate(ids):
        st.ingest("acme", cid, f"Ann has {i} apples. Bob has {i + 3} pears. They share.")
    q = st.queue
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(30)
    assert q.counts()["waiting"] == 50
    env = worker_env(redis_server.url, sqlite_url)
    for _ in range(2):
        procs.append(
            spawn(env, "--concurrency", "2", "--model", "fake?latency=0.05", log=tmp_path / "w.log")
        )
    victim = procs[0]
    wait_for(lambda: complete(st, "acme", ids) >= 5, 60, "the first jobs")
    wait_for(lambda: bool((h := health(q, victim.pid)) and h["in_hand"]), 20, "a job in hand")
    victim.send_signal(signal.SIGKILL)  # no drain, no ack: its leases must expire
    victim.wait(timeout=10)
    wait_for(lambda: q.counts()["done"] >= 50, 120, "all 50 jobs")

    counts = q.counts()
    assert (counts["waiting"], counts["running"], counts["dead"], counts["done"]) == (0, 0, 0, 50)
    assert complete(st, "acme", ids) == 50
    rows = artifact_rows(st)
    assert rows == {(cid, 1): ARTIFACTS_PER_JOB for cid in ids}  # no duplicate, none missing
    for cid in ids:
        arts = st.artifacts("acme", cid)
        assert arts.complete and len(arts.qas) == N_QUESTIONS
    deliveries = [
        int(q.r.hget(k, "deliveries")) for k in q.r.scan_iter(match=q.keys.job_prefix + "*")
    ]
    assert len(deliveries) == 50 and max(deliveries) >= 2  # the victim's jobs were reclaimed
    log = (tmp_path / "w.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    st.close()


def test_redis_restart_during_a_run_loses_nothing(
    redis_server: Any, sqlite_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    st = client(sqlite_url, redis_server.url)
    ids = [f"doc-{i:02d}" for i in range(30)]
    for i, cid in enumerate(ids):
        st.ingest("acme", cid, f"Ann has {i} apples. Bob has {i + 3} pears.")
    env = worker_env(redis_server.url, sqlite_url)
    for _ in range(2):
        procs.append(
            spawn(env, "--concurrency", "2", "--model", "fake?latency=0.05", log=tmp_path / "w.log")
        )
    wait_for(lambda: complete(st, "acme", ids) >= 4, 60, "the first jobs")
    redis_server.restart()  # AOF (appendfsync always) keeps the queue
    wait_for(lambda: complete(st, "acme", ids) == 30, 120, "all jobs after the restart")
    wait_for(lambda: st.queue.counts()["done"] == 30, 30, "every job acknowledged")
    counts = st.queue.counts()
    assert (counts["waiting"], counts["running"], counts["dead"]) == (0, 0, 0)
    assert artifact_rows(st) == {(cid, 1): ARTIFACTS_PER_JOB for cid in ids}
    assert all(p.poll() is None for p in procs), "a worker died instead of reconnecting"
    st.close()


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_permanent_failure_goes_dead_then_jobs_retry_revives_it(
    backend: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    redis_url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    model = FakeChatModel(errors=[ValueError("provider said 400: bad request")] * 3)
    settings = Settings(
        model="fake",
        n_questions=N_QUESTIONS,
        idle_after=0.0,
        redis_url=redis_url,
        poll_s=0.05,
        max_deliveries=3,
        retry_initial_s=0.05,
        retry_max_s=0.2,
    )
    st = SleepTime(model=model, database_url=sqlite_url, settings=settings, background=True)
    ctx = st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    wait_for(lambda: st.queue.counts()["dead"] == 1, 20, "the dead letter")
    assert model.calls == 3  # exactly N deliveries, then it stopped trying
    st.stop_worker()

    runner = CliRunner()
    env = {"SLEEPTIME_REDIS_URL": redis_url or "", "SLEEPTIME_DATABASE_URL": sqlite_url}
    if redis_url is None:
        env.pop("SLEEPTIME_REDIS_URL")
    out = runner.invoke(app, ["jobs", "--state", "dead", "--json"], env=env)
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    [dead] = listed["jobs"]
    assert (dead["namespace"], dead["context_id"], dead["version"]) == ("acme", "doc", ctx.version)
    assert "provider said 400: bad request" in dead["error"] and dead["deliveries"] == 3
    table = runner.invoke(app, ["jobs"], env=env)
    assert table.exit_code == 0 and "dead 1" in table.output and "0 live worker(s)" in table.output

    bad = runner.invoke(app, ["jobs", "retry", "nope"], env=env)
    assert bad.exit_code != 0 and "no job 'nope'" in str(bad.exception)
    ok = runner.invoke(app, ["jobs", "retry", dead["id"]], env=env)
    assert ok.exit_code == 0 and "waiting again" in ok.output

    st.start_worker()  # the model works now: the revived job completes
    wait_for(lambda: st.queue.counts()["done"] == 1, 20, "the revived job")
    assert st.artifacts("acme", "doc").complete and st.queue.counts()["dead"] == 0
    st.close()


def test_a_failing_model_is_retried_by_the_gateway_only(sqlite_url: str) -> None:
    """One retry layer per failure: the gateway tries a call ``retry_attempts`` times,
    then the job goes back to the queue (the worker does not re-run it in place); a
    provider outage (ModelUnavailable) uses up no delivery, so it never kills the job."""
    model = FakeChatModel(errors=[TimeoutError("provider timed out")] * 9)
    settings = Settings(
        model="fake",
        n_questions=N_QUESTIONS,
        idle_after=0.0,
        poll_s=0.05,
        max_deliveries=2,
        retry_initial_s=0.01,
        retry_max_s=0.05,
        retry_attempts=3,
        retry_wait_s=0.0,
        retry_max_wait_s=0.0,
        retry_jitter_s=0.0,
        breaker_failures=1,
        breaker_open_s=0.05,
    )
    st = SleepTime(model=model, database_url=sqlite_url, settings=settings, background=True)
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    wait_for(lambda: st.queue.counts()["done"] == 1, 30, "the job after the outage")
    assert model.errors == [] and st.queue.counts()["dead"] == 0
    # 3 failed deliveries of 3 attempts each, then one run without errors
    assert model.calls > 9
    assert st.queue.counts()["retried"] == 3  # one release per failed delivery
    st.close()


def test_a_database_outage_delays_a_job_but_never_kills_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sleeptime.errors import StoreUnavailable

    settings = Settings(
        model="fake",
        n_questions=N_QUESTIONS,
        idle_after=0.0,
        poll_s=0.05,
        max_deliveries=2,
        retry_initial_s=0.01,
        retry_max_s=0.05,
    )
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    outages = [StoreUnavailable("database down")] * 5  # more than max_deliveries
    sleep = st.sleep

    def flaky_sleep(*args: Any, **kwargs: Any) -> Any:
        if outages:
            raise outages.pop()
        return sleep(*args, **kwargs)

    monkeypatch.setattr(st, "sleep", flaky_sleep)
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    st.start_worker()
    wait_for(lambda: st.queue.counts()["done"] == 1, 20, "the job after the outage")
    assert outages == [] and st.queue.counts()["dead"] == 0
    assert st.artifacts("acme", "doc").complete
    st.close()


def test_idle_scheduling_in_embedded_mode(sqlite_url: str) -> None:
    """No Redis: the worker runs in-process on the SQLite queue. Activity (a turn in
    progress, an edit) keeps the namespace busy; sleep-time work starts only after
    ``idle_after`` of quiet. The
    queue's clock is stepped by the test, and every check waits until the worker has
    looked for work at that time, so nothing depends on how fast the machine is."""
    import threading

    settings = Settings(
        model="fake",
        n_questions=N_QUESTIONS,
        idle_after=30,
        max_delay=600,
        poll_s=0.01,
        activity_flush_s=3600,  # activity reaches the queue at the test's flush() calls
    )
    st = SleepTime(
        model=FakeChatModel(), database_url=sqlite_url, settings=settings, background=True
    )
    queue, recorder = st.queue, st.activity_recorder
    assert queue is not None and recorder is not None
    now = [1_800_000_000.0]
    queue.clock = lambda: now[0]  # type: ignore[attr-defined]
    looked = threading.Event()
    claim = queue.claim

    def watched_claim(worker: str, count: int = 1) -> list[Any]:
        jobs = claim(worker, count)
        looked.set()
        return jobs

    queue.claim = watched_claim  # type: ignore[method-assign]

    def worker_looked() -> None:
        looked.clear()
        assert looked.wait(30), "the worker stopped looking for work"
        looked.clear()
        assert looked.wait(30)  # a whole claim made after the clock moved

    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    for _ in range(10):  # in use every 20 s for 200 s: never idle for 30 s
        now[0] += 20
        st.touch("acme", "doc")
        st.ask("acme", "doc", "How many apples does Ann have?")  # reading is not activity
        recorder.flush()
        worker_looked()
        assert not st.artifacts("acme", "doc").complete, "sleep-time work ran while busy"
    now[0] += 29.9  # quiet, but not for idle_after yet
    worker_looked()
    assert queue.counts()["waiting"] == 1
    now[0] += 0.2
    wait_for(lambda: st.artifacts("acme", "doc").complete, 30, "work after idleness")
    assert queue.counts()["done"] == 1
    st.close()


def test_sigterm_drains_the_job_in_hand(
    redis_server: Any, sqlite_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    st = client(sqlite_url, redis_server.url)
    for i in range(4):
        st.ingest("acme", f"doc-{i}", f"Ann has {i} apples. Bob has 4 pears.")
    env = worker_env(redis_server.url, sqlite_url, shutdown_grace_s=20)
    p = spawn(env, "--concurrency", "1", "--model", "fake?latency=0.4", log=tmp_path / "w.log")
    procs.append(p)
    wait_for(lambda: bool((h := health(st.queue, p.pid)) and h["in_hand"]), 30, "a job in hand")
    [job_id] = health(st.queue, p.pid)["in_hand"]  # type: ignore[index]
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0
    counts = st.queue.counts()
    assert counts["done"] == 1 and counts["running"] == 0 and counts["waiting"] == 3
    job = st.queue.r.hgetall(st.queue.keys.job(job_id))
    assert job["state"] == "done"
    assert st.artifacts("acme", job["cid"]).complete
    log = (tmp_path / "w.log").read_text()
    assert "draining" in log and "drained" in log
    st.close()


def test_grace_expiry_leaves_the_job_to_be_reclaimed(
    redis_server: Any, sqlite_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    st = client(sqlite_url, redis_server.url)
    st.ingest("acme", "slow", "Ann has 3 apples. Bob has 4 pears.")
    env = worker_env(redis_server.url, sqlite_url, shutdown_grace_s=0.2, lease_s=1)
    p = spawn(env, "--model", "fake?latency=1.0", log=tmp_path / "w.log")
    procs.append(p)
    wait_for(lambda: bool((h := health(st.queue, p.pid)) and h["in_hand"]), 30, "a job in hand")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 1
    assert st.queue.counts()["running"] == 1  # still leased: not lost, not done
    procs.append(spawn(env, "--model", "fake", log=tmp_path / "w.log"))
    wait_for(lambda: st.queue.counts()["done"] == 1, 30, "the reclaimed job")
    assert st.artifacts("acme", "slow").complete
    st.close()


def test_metrics_and_health(redis_server: Any, sqlite_url: str) -> None:
    st = client(sqlite_url, redis_server.url, poll_s=0.05)
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    worker = Worker(st, st.queue, concurrency=2)
    worker.run(burst=True, install_signals=False)
    text = generate_latest(worker.metrics.registry).decode()
    assert "sleeptime_jobs_done_total 1.0" in text
    assert 'sleeptime_queue_depth{state="waiting"} 0.0' in text
    assert 'sleeptime_ledger_tokens{phase="sleep"}' in text
    assert "sleeptime_job_duration_seconds_count 1.0" in text
    tokens = [
        ln for ln in text.splitlines() if ln.startswith("sleeptime_worker_sleep_tokens_total")
    ]
    assert tokens and float(tokens[0].split()[-1]) > 0
    [beat] = [w for w in st.queue.workers() if w["id"] == worker.id]
    assert beat["state"] == "stopped" and beat["done"] == 1 and beat["in_hand"] == []
    assert beat["sleep_s"] > 0
    # the cache was warmed by the worker: the next ask is a hit without touching SQL
    hits = st.cache.hits
    qa = st.artifacts("acme", "doc").qas[0]
    assert st.cache.hits == hits + 1
    assert st.ask("acme", "doc", qa.question).source == "predicted"
    st.close()


def test_token_cap_holds_back_claims(sqlite_url: str) -> None:
    st = client(sqlite_url, None, poll_s=0.05, worker_tokens_per_minute=1)
    st.ingest("acme", "a", "Ann has 3 apples.")
    st.ingest("acme", "b", "Bob has 4 pears.")
    worker = st.start_worker()
    wait_for(lambda: st.queue.counts()["done"] == 1, 10, "the first job")
    assert not worker.tokens.allows() and worker.tokens.wait_s() > 0  # the loop claims nothing
    assert st.queue.counts()["done"] == 1 and st.queue.counts()["waiting"] == 1
    st.close()


def test_ingest_records_activity_before_the_version_is_visible(sqlite_url: str) -> None:
    """A worker's catch-up sweep can enqueue a version the moment it is committed; the
    namespace must already look busy then, or the job would run at once (a race seen
    under CPU load). The version's job goes through the outbox: the sweep leaves an
    unrelayed version alone, and the relay records the activity before it enqueues."""
    import sqlite3

    from sleeptime.queue.sqlite import sqlite_path

    settings = Settings(model="fake", idle_after=30.0, activity_flush_s=10.0)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    st.open_queue()
    ctx = st.ingest("acme", "doc", "Ann has 3 apples.")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    with sqlite3.connect(sqlite_path(sqlite_url)) as db:
        (at,) = db.execute("SELECT at FROM st_job_activity WHERE namespace = 'acme'").fetchone()
    assert ctx.created_at is not None and at >= ctx.created_at.timestamp() - 1
    assert st.queue is not None and st.queue.counts()["waiting"] == 1
    assert st.queue.claim("w1") == []  # busy: not due
    st.close()


def structured(records: list[logging.LogRecord]) -> list[dict[str, str]]:
    """The worker's structured lines (``event=...``), parsed as ``key=value`` pairs."""
    out = []
    for rec in records:
        msg = rec.getMessage()
        if rec.name == "sleeptime.worker" and msg.startswith("event="):
            out.append(dict(pair.split("=", 1) for pair in shlex.split(msg)))
    return out


FULL_RUN = ["index", "plan", "rethink", "merge", "predict", "answer", "prefill", "finish"]


def test_worker_logs_each_step_and_each_job_end(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One line per finished step of a job (with its duration) and one per job end
    (done or superseded, with total duration and tokens): ids only, never text."""
    settings = Settings(model="fake", n_questions=N_QUESTIONS, idle_after=0.0, poll_s=0.05)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    queue = st.open_queue()
    st.ingest("acme", "doc 1", "Cid has 5 plums.")
    st.ingest("acme", "doc 1", "Ann has 3 apples. Bob has 4 pears.")  # v1 is superseded
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    job_of = {j.version: j.id for j in queue.list("waiting")}
    caplog.set_level(logging.INFO, logger="sleeptime.worker")
    Worker(st, queue).run(burst=True, install_signals=False)

    lines = structured(caplog.records)
    steps = [ln for ln in lines if ln["event"] == "step"]
    assert [ln["step"] for ln in steps] == FULL_RUN  # the superseded job ran no step
    for ln in steps:
        assert (ln["job"], ln["ns"], ln["ctx"], ln["v"]) == (job_of[2], "acme", "doc 1", "2")
        assert ln["status"] == "done" and ln["duration_ms"].isdigit()
    ends = {ln["job"]: ln for ln in lines if ln["event"] == "job"}
    assert set(ends) == {job_of[1], job_of[2]}
    assert ends[job_of[1]]["status"] == "superseded" and ends[job_of[1]]["by_v"] == "2"
    done = ends[job_of[2]]
    assert done["status"] == "done" and done["duration_ms"].isdigit()
    assert int(done["tokens"]) == sum(int(ln["tokens"]) for ln in steps) > 0
    assert lines.index(done) > max(lines.index(ln) for ln in steps)

    texts = [qa.question for qa in st.artifacts("acme", "doc 1").qas] + ["apples", "plums"]
    for rec in caplog.records:
        assert not any(t in rec.getMessage() for t in texts), rec.getMessage()
    for rec in caplog.records:  # --log-format json: the same fields, typed
        if rec.getMessage().startswith("event="):
            obj = json.loads(JsonFormatter().format(rec))
            assert obj["level"] == "INFO" and obj["logger"] == "sleeptime.worker"
            assert obj["job"] in job_of.values() and isinstance(obj["duration_ms"], int)
    st.close()


def test_worker_logs_a_failed_step_and_the_retry(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = FakeChatModel(errors=[ValueError("provider said 400: secret prompt")])
    settings = Settings(
        model="fake",
        n_questions=N_QUESTIONS,
        idle_after=0.0,
        poll_s=0.05,
        retry_initial_s=0.01,
        retry_max_s=0.02,
    )
    st = SleepTime(model=model, database_url=sqlite_url, settings=settings)
    queue = st.open_queue()
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    caplog.set_level(logging.INFO, logger="sleeptime.worker")
    Worker(st, queue).run(burst=True, install_signals=False)

    lines = structured(caplog.records)
    ends = [ln for ln in lines if ln["event"] == "job"]
    assert [(e["status"], e["delivery"]) for e in ends] == [("failed", "1"), ("done", "2")]
    assert ends[0]["error"] == "ModelCallError" and ends[0]["outcome"] == "retry"
    first = lines[: lines.index(ends[0])]
    assert [(ln["step"], ln["status"]) for ln in first] == [
        ("index", "done"),
        ("plan", "done"),
        ("rethink", "failed"),
    ]
    assert first[2]["error"] == "ModelCallError" and first[2]["duration_ms"].isdigit()
    assert "tokens" not in first[2]  # a failed step's spend is in the ledger, not here
    second = lines[lines.index(ends[0]) + 1 : lines.index(ends[1])]
    assert [ln["step"] for ln in second] == FULL_RUN
    assert all("secret prompt" not in str(ln) for ln in lines)  # the error's class only
    st.close()


JSON_LOGS = ("--log-format", "json")


def test_worker_process_writes_json_lines(sqlite_url: str, tmp_path: Path) -> None:
    st = client(sqlite_url)
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    st.close()
    out = subprocess.run(
        [sys.executable, "-m", "sleeptime.worker", "--model", "fake", "--burst", *JSON_LOGS],
        env=worker_env(None, sqlite_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines()]  # every line is JSON
    steps = [r["step"] for r in records if r.get("event") == "step"]
    assert steps == FULL_RUN
    [end] = [r for r in records if r.get("event") == "job"]
    assert end["status"] == "done" and end["tokens"] > 0 and end["duration_ms"] >= 0
    assert any("drained" in r.get("msg", "") for r in records)  # plain lines are JSON too

    bad = CliRunner().invoke(app, ["worker", "--log-format", "xml"])
    assert isinstance(bad.exception, InvalidInput) and "text or json" in str(bad.exception)
