"""Overhead benchmark: what the framework adds around the model, online and in workers.

``sleeptime bench overhead`` (or ``python -m sleeptime.bench.overhead``) prints JSON:

* ``online_ms``: latency of ``SleepTime.ask`` excluding model time (model ``fake``),
  p50/p99 over many calls, for the plain SQLite store, the embedded queue attached
  (activity recording on the path), and the Redis hot cache. ``predicted`` is the
  path with no model call at all (a precomputed answer: the full call is overhead);
  ``learned`` answers from c' and subtracts the model call's own wall time.
* ``passages_ms``: the passage path of a learned answer (issue 17), per store (SQLite;
  PostgreSQL too with a ``postgresql+psycopg://`` ``--worker-database-url``, in a fresh
  schema dropped after): ``lookup`` is ``PassageRepo.search`` alone (the one full-text
  query an ask about a long text runs), ``learned_with_passages`` /
  ``learned_without_passages`` the learned answer's overhead (model time subtracted)
  about a long indexed text and about a short one, and ``added_p50`` their difference.
* ``workers``: jobs/s for 1 and 2 worker processes on Redis (from the first claim to
  the last ack, Redis clock, so process start-up is excluded), the direct
  ``SleepTime.sleep`` time per job, and the difference: the worker overhead per job.

A benchmark script, not a test: numbers depend on the machine; run it on a quiet one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from sleeptime.api import SleepTime
from sleeptime.bench.redis_server import RedisServer
from sleeptime.llm.fake import FakeChatModel
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.settings import Settings

TEXT = (
    "Rosa bakes 24 muffins at 7:00 and 36 cookies at 8:30. She keeps 6 cookies for volunteers. "
    "The library orders 18 muffins at $2.50 each and pays $4 for delivery. "
    "Tom brings 3 more trays of 12 rolls."
)


def _report(i: int) -> str:
    """One paragraph of the long document of the passage path; the paragraphs share
    most of their words (long posting lists for the common terms)."""
    return (
        f"Depot {i} in the district of Vale{i} shipped {i * 7 + 3} crates on day {i % 28 + 1}. "
        f"Its manager, Ms. Quill{i}, said the forklift fleet needs {i % 5 + 2} repairs. "
        f"The ramp at gate {i} is cracked, so trucks wait {i % 9 + 3} minutes to unload."
    )


#: Well over ``passage_threshold_tokens`` (~9,000 tokens, 80 paragraphs of about one
#: passage each): learned answers about it send passages, not the text.
LONG_TEXT = "\n\n".join(" ".join(_report(i + j) for j in range(3)) for i in range(0, 240, 3))
#: Questions no predicted answer matches: each one is answered from the notes.
PASSAGE_QUESTIONS = [
    f"What did manager Quill{i} say about the forklift repairs at that depot?"
    for i in range(0, 240, 7)
]


#: Issue 17: what the passage lookup may add to an ask at p50, per store (ms).
PASSAGE_TARGETS = {"sqlite": 1.0, "postgresql": 2.0}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(_pct(values, 0.50), 4),
        "p99": round(_pct(values, 0.99), 4),
        "mean": round(statistics.fmean(values), 4),
    }


def _client(db: str, redis_url: str | None = None, background: bool = False) -> SleepTime:
    settings = Settings(model="fake", n_questions=3, idle_after=0.0, redis_url=redis_url)
    return SleepTime(
        model=FakeChatModel(), database_url=db, settings=settings, background=background
    )


def online(
    db: str, calls: int, redis_url: str | None = None, background: bool = False
) -> dict[str, Any]:
    st = _client(db, redis_url, background)
    st.ingest("bench", "ctx", TEXT)
    st.sleep("bench", "ctx")
    predicted_q = st.artifacts("bench", "ctx").qas[0].question
    model_ms: list[float] = []
    st.gateway.recorder = lambda _phase, _step, _usage, ms: model_ms.append(ms)

    def measure(question: str, n: int) -> list[float]:
        out = []
        for _ in range(n):
            model_ms.clear()
            t0 = time.perf_counter()
            st.ask("bench", "ctx", question)
            total = (time.perf_counter() - t0) * 1000.0
            out.append(total - sum(model_ms))
        return out

    measure(predicted_q, 200)  # warm-up: caches, SQLite pages, Redis connection
    predicted = measure(predicted_q, calls)
    measure("Which tray is the heaviest one?", 50)
    learned = measure("Which tray is the heaviest one?", max(200, calls // 5))
    result: dict[str, Any] = {
        "predicted": _summary(predicted),
        "learned_excl_model": _summary(learned),
    }
    if st.cache is not None:
        result["cache_hits"] = st.cache.hits
    st.close()
    return result


def passages(db: str, calls: int) -> dict[str, Any]:
    """The passage path's cost on the online path: the full-text lookup alone, and a
    learned answer about a long indexed text against one about a short text (model
    time subtracted from both; same questions, same store, same process)."""
    st = _client(db)
    st.ingest("bench", "long", LONG_TEXT)
    st.ingest("bench", "short", TEXT)
    st.sleep("bench", "long")
    st.sleep("bench", "short")
    index = st.artifacts("bench", "long").index
    if index is None or not index.passages or index.ids is None:
        raise RuntimeError("the long benchmark text was not indexed into passages")
    version = st.store.current_version("bench", "long") or 1
    model_ms: list[float] = []
    st.gateway.recorder = lambda _phase, _step, _usage, ms: model_ms.append(ms)
    n = max(200, calls // 5)
    questions = PASSAGE_QUESTIONS
    # the limit a learned answer searches with (online.pick_passages)
    cfg = st.settings
    budget = min(
        cfg.passage_budget_tokens,
        max(cfg.passage_tokens, int(index.text_tokens * cfg.passage_share)),
    )
    limit = 4 + 2 * budget // max(1, cfg.passage_tokens)

    def ask(cid: str, count: int) -> list[float]:
        out = []
        for i in range(count):
            model_ms.clear()
            t0 = time.perf_counter()
            ans = st.ask("bench", cid, questions[i % len(questions)])
            total = (time.perf_counter() - t0) * 1000.0
            if ans.source != "learned" or bool(ans.passages) != (cid == "long"):
                raise RuntimeError(f"{cid}: a {ans.source} answer, {len(ans.passages)} passages")
            out.append(total - sum(model_ms))
        return out

    def lookup(count: int) -> list[float]:
        out = []
        for i in range(count):
            q = questions[i % len(questions)]
            t0 = time.perf_counter()
            found = st.store.passages.search(
                "bench", "long", version, q, limit=limit, ids=index.ids
            )
            out.append((time.perf_counter() - t0) * 1000.0)
            if not found:
                raise RuntimeError(f"no passage found for {q!r}")
        return out

    lookup(100)  # warm-up
    ask("long", 50)
    ask("short", 50)
    searched = lookup(calls)
    # interleaved rounds, so a burst of load on the machine hits both alike
    with_p: list[float] = []
    without_p: list[float] = []
    for _ in range(4):
        with_p += ask("long", n // 4)
        without_p += ask("short", n // 4)
    st.close()
    with_s, without_s = _summary(with_p), _summary(without_p)
    return {
        "passages_indexed": index.passages,
        "text_tokens": index.text_tokens,
        "lookup": _summary(searched),
        "learned_with_passages": with_s,
        "learned_without_passages": without_s,
        "added_p50": round(with_s["p50"] - without_s["p50"], 4),
    }


def direct_sleep(db: str, jobs: int) -> float:
    """ms per ``SleepTime.sleep`` run, in this process, no queue at all."""
    st = _client(db)
    for i in range(jobs):
        st.ingest("direct", f"c{i}", f"{TEXT} Note {i}: {i * 7} extra rolls.")
    t0 = time.perf_counter()
    for i in range(jobs):
        st.sleep("direct", f"c{i}")
    ms = (time.perf_counter() - t0) * 1000.0 / jobs
    st.close()
    return ms


def _database(base: str | None, tmp: Path, tag: str) -> tuple[str, Any]:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL schema."""
    if not base or base.startswith("sqlite"):
        return f"sqlite:///{tmp / f'{tag}.db'}", lambda: None
    import psycopg

    schema = f"bench_{tag}_{os.getpid()}"
    raw = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def worker_run(
    tmp: Path, redis_url: str, processes: int, jobs: int, tag: str, db: str
) -> dict[str, Any]:
    prefix = f"bench{tag}"
    settings = Settings(
        model="fake", n_questions=3, idle_after=0.0, redis_url=redis_url, redis_prefix=prefix
    )
    st = SleepTime(model=FakeChatModel(), database_url=db, settings=settings)
    for i in range(jobs):
        st.ingest("bench", f"c{i}", f"{TEXT} Note {i}: {i * 7} extra rolls.")
    # the jobs reach Redis through the outbox relay: wait until they are all there
    if st.outbox_relay is not None and not st.outbox_relay.wait_idle(60):
        raise RuntimeError("the outbox relay did not enqueue the benchmark's jobs in 60 s")
    env = dict(os.environ) | {
        "SLEEPTIME_DATABASE_URL": db,
        "SLEEPTIME_REDIS_URL": redis_url,
        "SLEEPTIME_REDIS_PREFIX": prefix,
        "SLEEPTIME_N_QUESTIONS": "3",
        "SLEEPTIME_IDLE_AFTER": "0",
        "SLEEPTIME_POLL_S": "0.01",
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sleeptime.worker",
                "--concurrency",
                "1",
                "--model",
                "fake",
                "--burst",
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    for p in procs:
        p.wait(timeout=600)
    q = st.queue
    assert isinstance(q, RedisStreamsQueue), "the worker benchmark runs on Redis"
    started, finished = [], []
    for key in q.r.scan_iter(match=q.keys.job_prefix + "*", count=1000):
        s, f = q.r.hmget(key, "started_at", "finished_at")
        if s and f:
            started.append(float(s))
            finished.append(float(f))
    counts = q.counts()
    sleep_s = sum(float(w.get("sleep_s", 0.0)) for w in q.workers())
    st.close()
    span = max(finished) - min(started)
    done = max(1, counts["done"])
    return {
        "processes": processes,
        "jobs": jobs,
        "done": counts["done"],
        "dead": counts["dead"],
        "seconds": round(span, 3),
        "jobs_per_s": round(counts["done"] / span, 2),
        "ms_per_job_per_process": round(span * 1000.0 * processes / done, 3),
        # measured inside the workers: time in SleepTime.sleep vs everything else
        "sleep_ms_per_job": round(sleep_s * 1000.0 / done, 3),
        "overhead_ms_per_job": round((span * processes - sleep_s) * 1000.0 / done, 3),
        "exit_codes": [p.returncode for p in procs],
    }


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pg(url: str | None) -> str | None:
    """The workers' database URL when it is PostgreSQL (the PostgreSQL rows need one)."""
    return url if url and url.startswith("postgresql") else None


def _online_and_passages(out: dict[str, Any], tmp: Path, calls: int, pg_url: str | None) -> None:
    """The online path on SQLite (alone and with the embedded queue) and the passage path
    (SQLite, and PostgreSQL when given)."""
    _say("online path: SQLite")
    out["online_ms"]["sqlite"] = online(f"sqlite:///{tmp / 'a.db'}", calls)
    _say("online path: SQLite + embedded queue (activity recording, idle in-process worker)")
    out["online_ms"]["sqlite_embedded_queue"] = online(
        f"sqlite:///{tmp / 'b.db'}", calls, background=True
    )
    _say("passage path: SQLite")
    out["passages_ms"] = {"sqlite": passages(f"sqlite:///{tmp / 'p.db'}", calls)}
    if pg_url:
        _say("passage path: PostgreSQL")
        pg, drop_pg = _database(pg_url, tmp, "passages")
        try:
            out["passages_ms"]["postgresql"] = passages(pg, calls)
        finally:
            drop_pg()


def _with_redis(
    out: dict[str, Any], tmp: Path, redis_url: str, calls: int, pg_url: str | None
) -> None:
    """The online path with the Redis hot cache (on SQLite, and on PostgreSQL with and
    without it when given)."""
    _say("online path: Redis hot cache")
    out["online_ms"]["redis_cache"] = online(f"sqlite:///{tmp / 'c.db'}", calls, redis_url)
    if pg_url:
        # where the hot cache pays off: the store is a server, not a local file
        for name, url in (("postgresql", None), ("postgresql_redis_cache", redis_url)):
            _say(f"online path: {name}")
            pg, drop_pg = _database(pg_url, tmp, f"online_{name}")
            try:
                out["online_ms"][name] = online(pg, calls, url)
            finally:
                drop_pg()


def _workers(tmp: Path, redis_url: str, jobs: int, db_url: str | None) -> dict[str, Any]:
    """Direct ``sleep()`` against one and two worker processes on the Redis queue."""
    runs = []
    for tag in ("direct", "p1", "p2"):
        runs.append(_database(db_url, tmp, tag))
    try:
        _say(f"workers: direct sleep() baseline, {jobs} jobs")
        base = direct_sleep(runs[0][0], jobs)
        _say(f"workers: 1 process, {jobs} jobs")
        one = worker_run(tmp, redis_url, 1, jobs, "1", runs[1][0])
        _say(f"workers: 2 processes, {jobs} jobs")
        two = worker_run(tmp, redis_url, 2, jobs, "2", runs[2][0])
    finally:
        for _, drop in runs:
            drop()
    return {
        "queue": "redis streams",
        "store": "postgresql" if "postgresql" in runs[0][0] else "sqlite",
        "direct_sleep_ms_per_job": round(base, 3),
        "one_process": one,
        "two_processes": two,
        "speedup_2_vs_1": round(two["jobs_per_s"] / one["jobs_per_s"], 2),
        # claim + ack + lease/heartbeat + cache warm + idle gaps, per job, 1 process
        "overhead_ms_per_job": one["overhead_ms_per_job"],
    }


def _targets(out: dict[str, Any]) -> None:
    """The targets, and whether each measured setup meets them."""
    out["targets"] = {
        "p50_ms": 1.0,
        "p99_ms": 5.0,
        "worker_overhead_ms_per_job": 5.0,
        "passage_lookup_p50_ms": dict(PASSAGE_TARGETS),
    }
    out["meets_targets"] = {
        name: r["predicted"]["p50"] <= 1.0 and r["predicted"]["p99"] <= 5.0
        for name, r in out["online_ms"].items()
        if "predicted" in r
    }
    for name, r in out["passages_ms"].items():
        # the lookup adds at most its target at p50: alone, and as the learned answer's
        # difference between a long indexed text and a short one
        limit = PASSAGE_TARGETS[name]
        out["meets_targets"][f"passages_{name}"] = (
            r["lookup"]["p50"] <= limit and r["added_p50"] <= limit
        )
    if "workers" in out:
        out["meets_targets"]["workers"] = out["workers"]["overhead_ms_per_job"] <= 5.0


def run(
    calls: int = 2000, jobs: int = 200, worker_database_url: str | None = None
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sleeptime-overhead-"))
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "model": "fake (deterministic, no inference); model call time subtracted",
        "online_ms": {},
    }
    pg_url = _pg(worker_database_url)
    _online_and_passages(out, tmp, calls, pg_url)
    redis: RedisServer | None = None
    try:
        redis = RedisServer(tmp).start()
    except RuntimeError as exc:
        out["online_ms"]["redis_cache"] = {"skipped": str(exc)}
    if redis is not None:
        try:
            _with_redis(out, tmp, redis.url, calls, pg_url)
            out["workers"] = _workers(tmp, redis.url, jobs, worker_database_url)
        finally:
            redis.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    _targets(out)
    return out


def overhead(
    calls: int = typer.Option(2000, "--calls", min=100, help="online calls measured per setup"),
    jobs: int = typer.Option(200, "--jobs", min=10, help="sleep-time jobs per worker run"),
    worker_database_url: str = typer.Option(
        None,
        "--worker-database-url",
        help="store of the worker runs (default: SQLite files; "
        "a postgresql+psycopg:// URL gets a fresh schema per run)",
    ),
) -> None:
    """Online-path and worker overhead of the framework (model `fake`), as JSON."""
    print(
        json.dumps(run(calls=calls, jobs=jobs, worker_database_url=worker_database_url), indent=2)
    )


if __name__ == "__main__":
    typer.run(overhead)
