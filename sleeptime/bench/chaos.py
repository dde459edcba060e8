"""Chaos benchmark: faults injected on purpose, then count what became of the work.

``sleeptime bench chaos`` runs each scenario on loopback with servers it starts itself
(redis-server, and a throwaway PostgreSQL cluster for the database outages when
``initdb``/``pg_ctl`` are installed), model ``fake``:

* ``kill-9``: a worker process is killed with SIGKILL while it holds jobs;
* ``redis-restart-aof`` / ``redis-restart-no-aof``: Redis restarts mid-run, with its
  append-only file, and without any persistence (every queue key lost);
* ``db-down-5s`` / ``db-down-60s``: the database server stops for that long mid-run
  (``--long-outage`` shortens the second one);
* ``model-flaky-30pct``: 30% of model calls fail transiently;
* ``model-garbage``: the model returns text that is not what was asked for;
* ``redis-blackhole-ingest``: Redis accepts connections and never answers
  (SIGSTOP) while contexts are ingested.

One line per scenario: ``jobs`` (context versions to process), ``done_exactly_once``
(versions with complete artifacts: artifacts are keyed by version, so a second run
writes nothing), ``duplicates`` (acks of work already done beyond one per job, and
artifact sets written twice), ``lost`` (neither done, nor dead-lettered, nor still
pending after the drain), ``dead_lettered``, ``stale_answers`` (answers, from a fresh
client through the cache, for a version older than the current one). ``--json``
prints the same as a JSON list. A benchmark, not a test: times depend on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from sleeptime.api import SleepTime
from sleeptime.bench.redis_server import RedisServer, free_port
from sleeptime.llm.fake import FakeChatModel
from sleeptime.settings import Settings
from sleeptime.store.schema import ArtifactRow

NS = "chaos"
SCENARIOS = (
    "kill-9",
    "redis-restart-aof",
    "redis-restart-no-aof",
    "db-down-5s",
    "db-down-60s",
    "model-flaky-30pct",
    "model-garbage",
    "redis-blackhole-ingest",
)


@dataclass
class Outcome:
    scenario: str
    jobs: int = 0
    done_exactly_once: int = 0
    duplicates: int = 0
    lost: int = 0
    dead_lettered: int = 0
    stale_answers: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _text(i: int, v: int = 1) -> str:
    return f"Ann has {i + v} apples and Bob has {2 * i + v} pears. They share {v} of them."


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "model": "fake",
        "n_questions": 2,
        "idle_after": 0.0,
        "poll_s": 0.05,
        "relay_s": 0.1,
        "sweep_s": 1.0,
        "lease_s": 3.0,
        "heartbeat_s": 0.5,
        "max_deliveries": 3,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        "retry_attempts": 3,
        "retry_wait_s": 0.01,
        "retry_max_wait_s": 0.05,
        "retry_jitter_s": 0.0,
        "breaker_failures": 2,
        "breaker_open_s": 0.5,
        "cache_cooldown_s": 0.2,
    }
    return Settings(**(base | kw))


class FlakyModel(FakeChatModel):
    """Fails ``rate`` of its calls with a transient error (seeded, reproducible)."""

    rate: float = 0.3
    seed: int = 0
    injected: int = 0

    def _next_scripted(self) -> tuple[BaseException | None, str | None]:
        error, text = super()._next_scripted()
        rnd = random.Random(self.seed * 1_000_003 + self.calls)
        if error is None and rnd.random() < self.rate:
            self.injected += 1
            return TimeoutError("chaos: provider timed out"), None
        return error, text


class GarbageModel(FakeChatModel):
    """Answers every call with text that is not what was asked for."""

    def _next_scripted(self) -> tuple[BaseException | None, str | None]:
        super()._next_scripted()
        return None, '}{"questions": [nul' + "\x7f ~~~ ``` </context> " * 3


# -- measuring --------------------------------------------------------------------------


def _drain(st: SleepTime, versions: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = sum(
                st.store.get_artifact(NS, cid, v, "manifest", "0") is not None
                for cid, v in versions.items()
            )
            dead = st.queue.counts()["dead"] if st.queue is not None else 0
            if done + dead >= len(versions):
                return
        except Exception:  # the outage may still be ending
            pass
        time.sleep(0.2)


def _measure(
    out: Outcome,
    st: SleepTime,
    versions: dict[str, int],
    fresh: Callable[[], SleepTime],
    acked_before: int = 0,
) -> Outcome:
    out.jobs = len(versions)
    done = 0
    for cid, v in versions.items():
        done += st.store.get_artifact(NS, cid, v, "manifest", "0") is not None
    out.done_exactly_once = done
    stmt = (
        select(ArtifactRow.context_id, ArtifactRow.version, func.count())
        .where(ArtifactRow.namespace == NS, ArtifactRow.kind == "manifest")
        .group_by(ArtifactRow.context_id, ArtifactRow.version)
    )
    with st.store.session() as s:
        out.duplicates = sum(max(0, int(n) - 1) for _, _, n in s.execute(stmt).all())
    pending = dead = 0
    if st.queue is not None:
        counts = st.queue.counts()
        dead_jobs = st.queue.list("dead", limit=100_000)
        dead = sum(1 for j in dead_jobs if versions.get(j.context_id) == j.version)
        pending = counts["waiting"] + counts["running"]
        acks = counts["done"] - acked_before
        all_versions = _all_versions(st)
        out.duplicates += max(0, acks - all_versions) if acks > 0 else 0
    pending += st.store.outbox_counts()["unsent"]
    out.dead_lettered = dead
    out.lost = max(0, out.jobs - done - dead - pending)
    if pending:
        out.notes.append(f"{pending} still pending after the drain")
    reader = fresh()
    try:
        for cid, v in versions.items():
            with contextlib.suppress(Exception):
                for _ in range(2):  # a miss that fills the cache, then a cached read
                    if reader.artifacts(NS, cid).version != v:
                        out.stale_answers += 1
    finally:
        reader.close()
    return out


def _all_versions(st: SleepTime) -> int:
    """Context versions of the namespace (each is one job when it is ingested)."""
    from sleeptime.store.schema import ContextRow

    with st.store.session() as s:
        return int(s.execute(select(func.count()).where(ContextRow.namespace == NS)).scalar_one())


def _ingest(st: SleepTime, n: int, v: int = 1, start: int = 0) -> dict[str, int]:
    out = {}
    for i in range(start, start + n):
        ctx = st.ingest(NS, f"doc-{i:03d}", _text(i, v))
        out[ctx.context_id] = ctx.version
    return out


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cond():
                return True
        time.sleep(0.05)
    return False


def _done_count(st: SleepTime, versions: dict[str, int]) -> int:
    return sum(
        st.store.get_artifact(NS, cid, v, "manifest", "0") is not None
        for cid, v in versions.items()
    )


# -- servers ------------------------------------------------------------------------------


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (never the shared one)."""

    def __init__(self, workdir: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        found = shutil.which("pg_ctl")
        pg_ctl = Path(found) if found else (bins[-1] if bins else None)
        if pg_ctl is None:
            raise RuntimeError("pg_ctl not found")
        self.bin = pg_ctl.parent
        self.dir = workdir / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self) -> PostgresCluster:
        self.dir.mkdir(parents=True)
        if self.as_user:
            shutil.chown(self.dir.parent, "postgres")
            shutil.chown(self.dir, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        return self.start()

    def start(self) -> PostgresCluster:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def _redis(root: Path, appendfsync: str = "always") -> Iterator[RedisServer]:
    server = RedisServer(root, appendfsync=appendfsync).start()
    try:
        yield server
    finally:
        if server.proc is not None:
            with contextlib.suppress(Exception):
                os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def _restart_without_persistence(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir / "appendonlydir", ignore_errors=True)
    for f in server.workdir.glob("*.aof"):
        f.unlink()
    server.start()


# -- scenarios ----------------------------------------------------------------------------


def _client(db: str, model: Any = None, **kw: Any) -> SleepTime:
    return SleepTime(
        model=model or FakeChatModel(latency_s=0.01), database_url=db, settings=_settings(**kw)
    )


def kill_9(root: Path, n: int) -> Outcome:
    out = Outcome("kill-9")
    db = f"sqlite:///{root / 'st.db'}"
    st = _client(db, queue_path=str(root / "queue.db"))
    st.open_queue()
    versions = _ingest(st, n)
    assert st.outbox_relay is not None
    st.outbox_relay.wait_idle(30)
    env = dict(os.environ)
    env.pop("SLEEPTIME_REDIS_URL", None)
    env.update(
        SLEEPTIME_DATABASE_URL=db,
        SLEEPTIME_QUEUE_PATH=str(root / "queue.db"),
        SLEEPTIME_IDLE_AFTER="0",
        SLEEPTIME_LEASE_S="3",
        SLEEPTIME_HEARTBEAT_S="0.5",
        SLEEPTIME_POLL_S="0.05",
        SLEEPTIME_N_QUESTIONS="2",
    )
    log = (root / "workers.log").open("ab")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sleeptime.worker",
                "--concurrency",
                "2",
                "--model",
                "fake?latency=0.1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        q = st.queue
        assert q is not None
        victim = procs[0]
        if _wait(lambda: any(w["pid"] == victim.pid and w["in_hand"] for w in q.workers()), 60):
            victim.kill()
            victim.wait(timeout=10)
        else:
            out.notes.append("no job in the victim's hands to kill")
        exited = [p.returncode for p in procs if p.poll() is not None and p is not victim]
        if exited:
            out.notes.append(f"a worker exited by itself (rc {exited}): see {root}/workers.log")
        _drain(st, versions, 90)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=15)
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
    try:
        return _measure(out, st, versions, lambda: _client(db, queue_path=str(root / "q2.db")))
    finally:
        st.close()


def redis_restart(root: Path, n: int, aof: bool) -> Outcome:
    out = Outcome("redis-restart-aof" if aof else "redis-restart-no-aof")
    db = f"sqlite:///{root / 'st.db'}"
    with _redis(root) as server:
        st = _client(db, model=FakeChatModel(latency_s=0.05), redis_url=server.url)
        versions = _ingest(st, n)
        st.start_worker(concurrency=2)
        _wait(lambda: _done_count(st, versions) >= max(1, n // 4), 60)
        if aof:
            server.restart()
        else:
            _restart_without_persistence(server)
        versions |= _ingest(st, n // 2, v=2)  # new versions of half the contexts
        _drain(st, versions, 90)
        try:
            return _measure(out, st, versions, lambda: _client(db, redis_url=server.url))
        finally:
            st.close()


def db_down(root: Path, n: int, seconds: float, name: str) -> Outcome:
    out = Outcome(name)
    try:
        pg = PostgresCluster(root).init()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        out.notes.append(f"skipped: no throwaway PostgreSQL ({exc})")
        return out
    try:
        st = _client(pg.url, model=FakeChatModel(latency_s=0.05), queue_path=str(root / "q.db"))
        versions = _ingest(st, n)
        worker = st.start_worker(concurrency=2)
        _wait(lambda: _done_count(st, versions) >= 1, 60)
        pg.stop()
        time.sleep(seconds)  # the outage itself: real, bounded
        pg.start()
        _drain(st, versions, 120)
        out.notes.append(f"breaker opened or re-opened {worker.breaker.opened}x")
        try:
            return _measure(
                out, st, versions, lambda: _client(pg.url, queue_path=str(root / "q2.db"))
            )
        finally:
            st.close()
    finally:
        with contextlib.suppress(Exception):
            pg.stop()


def model_fault(root: Path, n: int, model: FakeChatModel, name: str) -> Outcome:
    out = Outcome(name)
    db = f"sqlite:///{root / 'st.db'}"
    st = _client(db, model=model, queue_path=str(root / "q.db"))
    versions = _ingest(st, n)
    st.start_worker(concurrency=2)
    _drain(st, versions, 120)
    if isinstance(model, FlakyModel):
        out.notes.append(f"{model.injected} of {model.calls} model calls failed")
    try:
        return _measure(out, st, versions, lambda: _client(db, queue_path=str(root / "q2.db")))
    finally:
        st.close()


def redis_blackhole(root: Path, n: int) -> Outcome:
    out = Outcome("redis-blackhole-ingest")
    db = f"sqlite:///{root / 'st.db'}"
    with _redis(root) as server:
        st = _client(db, redis_url=server.url)
        assert st.queue is not None and server.proc is not None
        st.queue.counts()
        os.kill(server.proc.pid, signal.SIGSTOP)
        worst = 0.0
        try:
            versions: dict[str, int] = {}
            for i in range(n):
                t0 = time.perf_counter()
                versions |= _ingest(st, 1, start=i)
                worst = max(worst, time.perf_counter() - t0)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        out.notes.append(f"slowest ingest {worst * 1000:.1f} ms while Redis was frozen")
        st.start_worker(concurrency=2)
        _drain(st, versions, 90)
        try:
            return _measure(out, st, versions, lambda: _client(db, redis_url=server.url))
        finally:
            st.close()


def run_chaos(
    scenarios: list[str] | None = None, *, jobs: int = 12, long_outage: float = 60.0
) -> list[Outcome]:
    chosen = list(scenarios or SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        from sleeptime.errors import InvalidInput

        raise InvalidInput(f"unknown scenario(s) {', '.join(unknown)}: use {', '.join(SCENARIOS)}")
    results = []
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"sleeptime-chaos-{name}-") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            if name == "kill-9":
                res = kill_9(root, jobs)
            elif name.startswith("redis-restart"):
                res = redis_restart(root, jobs, aof=name == "redis-restart-aof")
            elif name == "db-down-5s":
                res = db_down(root, jobs, 5.0, name)
            elif name == "db-down-60s":
                res = db_down(root, jobs, long_outage, name)
                if long_outage != 60.0:
                    res.notes.append(f"outage shortened to {long_outage:g} s")
            elif name == "model-flaky-30pct":
                res = model_fault(root, jobs, FlakyModel(latency_s=0.01), name)
            elif name == "model-garbage":
                res = model_fault(root, jobs, GarbageModel(), name)
            else:
                res = redis_blackhole(root, jobs)
            res.seconds = round(time.perf_counter() - t0, 1)
            results.append(res)
    return results


def chaos(
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help="run only these (repeatable); default: all"),
    ] = None,
    jobs: int = typer.Option(12, "--jobs", min=1, help="contexts per scenario"),
    long_outage: float = typer.Option(
        60.0, "--long-outage", min=0.0, help="seconds of the long database outage"
    ),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
) -> None:
    """Inject faults (kill -9, Redis restarts, database and model outages, a frozen
    Redis) and print, per scenario: jobs, done exactly once, duplicates, lost,
    dead-lettered, stale answers served."""
    import logging

    unknown = [s for s in scenario or [] if s not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(
            f"unknown scenario(s) {', '.join(unknown)}: use {', '.join(SCENARIOS)}",
            param_hint="--scenario",
        )
    # the faults are on purpose: their warnings would drown the table
    logger = logging.getLogger("sleeptime")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        results = run_chaos(scenario, jobs=jobs, long_outage=long_outage)
    finally:
        logger.setLevel(level)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    for r in results:
        notes = f"  ({'; '.join(r.notes)})" if r.notes else ""
        print(
            f"{r.scenario:24s} jobs {r.jobs:3d}  done exactly once {r.done_exactly_once:3d}  "
            f"duplicates {r.duplicates}  lost {r.lost}  dead-lettered {r.dead_lettered}  "
            f"stale answers {r.stale_answers}  {r.seconds:.1f} s{notes}"
        )


if __name__ == "__main__":
    typer.run(chaos)
