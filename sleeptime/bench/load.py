"""Load benchmark: concurrent ``ask`` on a mix of contexts while new contexts are
ingested and a worker runs sleep-time compute on them (model ``fake``).

``sleeptime bench load --duration S --clients C [--redis URL]`` prints JSON:
``requests``, ``errors``, ``asks_per_s``, ``p50_ms``/``p99_ms`` of ``ask``, and the jobs
of the contexts ingested during the run: ``jobs_enqueued`` (new versions), ``jobs_done``
(versions with complete artifacts once the worker drained, waiting at most
``--drain``), ``jobs_lost`` (neither done nor still in the queue, outbox or dead letter).

Without ``--redis`` everything is embedded (SQLite store and queue). With it the queue
and the hot cache are on that Redis, under a fresh key prefix (nothing else there is
touched). Asks are for precomputed questions (no model call, 90%) and other questions
(a ``fake`` model call, 10%). A benchmark, not a test: figures depend on the machine.
"""

from __future__ import annotations

import json
import platform
import random
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import typer

from sleeptime.api import SleepTime
from sleeptime.errors import InvalidInput
from sleeptime.llm.fake import FakeChatModel
from sleeptime.settings import Settings

TEXT = (
    "Rosa bakes {a} muffins at 7:00 and {b} cookies at 8:30. She keeps 6 cookies for "
    "volunteers. The library orders {c} muffins at $2.50 each and pays $4 for delivery."
)


def _text(i: int) -> str:
    return TEXT.format(a=12 + i % 50, b=30 + i % 17, c=5 + i % 23)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _settings(root: Path, redis_url: str | None) -> Settings:
    return Settings(
        model="fake",
        n_questions=3,
        idle_after=0.0,
        poll_s=0.05,
        relay_s=0.2,
        sweep_s=5.0,
        redis_url=redis_url,
        redis_prefix=f"loadbench-{secrets.token_hex(4)}",
        queue_path=str(root / "queue.db"),
    )


def _prepare(st: SleepTime, contexts: int) -> list[tuple[str, list[str]]]:
    """Contexts with precomputed answers (and their questions), then the worker for the
    new ones, and the ask path warmed (and the cache)."""
    questions: list[tuple[str, list[str]]] = []
    for i in range(contexts):
        cid = f"ctx-{i}"
        st.ingest("load", cid, _text(i))
        report = st.sleep("load", cid)
        questions.append((cid, [qa.question for qa in report.qas] or ["How many muffins?"]))
    st.open_queue()
    assert st.outbox_relay is not None
    st.outbox_relay.wait_idle(30)
    st.start_worker(concurrency=1)
    for cid, qs in questions:
        st.ask("load", cid, qs[0])
    return questions


class _Load:
    """The askers and the ingester, and what they measured."""

    def __init__(self, st: SleepTime, questions: list[tuple[str, list[str]]]) -> None:
        self.st, self.questions = st, questions
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.new_ids: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def asker(self, seed: int) -> None:
        rnd = random.Random(seed)
        mine: list[float] = []
        while not self.stop.is_set():
            cid, qs = self.questions[rnd.randrange(len(self.questions))]
            q = rnd.choice(qs) if rnd.random() < 0.9 else f"What is {rnd.randrange(99)} + 1?"
            t0 = time.perf_counter()
            try:
                self.st.ask("load", cid, q)
            except Exception as exc:  # counted, not raised: the figure is the count
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            mine.append((time.perf_counter() - t0) * 1000.0)
        with self.lock:
            self.latencies.extend(mine)

    def ingester(self, every: float) -> None:
        n = 0
        while not self.stop.wait(every):
            cid = f"new-{n}"
            try:
                if self.st.ingest("load", cid, _text(1000 + n)).created:
                    self.new_ids.append(cid)
            except Exception as exc:
                with self.lock:
                    self.errors.append(f"ingest {type(exc).__name__}: {exc}")
            n += 1

    def drive(self, clients: int, duration: float, ingest_every: float) -> float:
        """``clients`` askers and one ingester for ``duration`` s; the seconds it took."""
        threads = [threading.Thread(target=self.asker, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=self.ingester, args=(ingest_every,)))
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        self.stop.wait(duration)
        self.stop.set()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    def drained(self, drain: float) -> int:
        """New contexts with complete artifacts, waiting at most ``drain`` s for them."""
        deadline = time.monotonic() + drain
        done = 0
        while time.monotonic() < deadline:
            done = sum(
                self.st.store.get_artifact("load", cid, 1, "manifest", "0") is not None
                for cid in self.new_ids
            )
            if done == len(self.new_ids):
                break
            time.sleep(0.1)
        return done


def _figures(load: _Load, elapsed: float, done: int) -> dict[str, Any]:
    """The request and job figures of a finished load."""
    st, latencies, new_ids = load.st, load.latencies, load.new_ids
    queue = st.queue
    assert queue is not None
    counts = queue.counts()
    outbox = st.store.outbox_counts()
    in_flight = counts["waiting"] + counts["running"] + counts["dead"] + outbox["unsent"]
    return {
        "duration_s": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(load.errors),
        "error_samples": sorted(set(load.errors))[:3],
        "asks_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(_pct(latencies, 0.50), 3),
        "p99_ms": round(_pct(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else 0.0,
        "jobs_enqueued": len(new_ids),
        "jobs_done": done,
        "jobs_pending": counts["waiting"] + counts["running"] + outbox["unsent"],
        "jobs_dead": counts["dead"],
        "jobs_lost": max(0, len(new_ids) - done - in_flight),
        "cache_hits": st.cache.hits if st.cache is not None else None,
    }


def run_load(
    duration: float,
    clients: int,
    redis_url: str | None = None,
    *,
    contexts: int = 20,
    ingest_every: float = 0.05,
    drain: float = 60.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the load and return the figures (see the module docstring)."""
    tmp = tempfile.TemporaryDirectory(prefix="sleeptime-load-") if workdir is None else None
    root = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    st = SleepTime(
        model=FakeChatModel(),
        database_url=f"sqlite:///{root / 'load.db'}",
        settings=_settings(root, redis_url),
    )
    try:
        load = _Load(st, _prepare(st, contexts))
        elapsed = load.drive(clients, duration, ingest_every)
        figures = _figures(load, elapsed, load.drained(drain))
        return {
            "backend": "redis" if redis_url else "embedded",
            "duration_s": figures.pop("duration_s"),
            "clients": clients,
            "contexts": contexts,
            **figures,
            "machine": (
                f"{platform.machine()}, {_cpus()} CPU(s), Python {platform.python_version()}"
            ),
        }
    finally:
        st.close()
        if tmp is not None:
            tmp.cleanup()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load(
    duration: float = typer.Option(10.0, "--duration", min=0.1, help="seconds of load"),
    clients: int = typer.Option(4, "--clients", min=1, help="concurrent askers (threads)"),
    redis_url: str = typer.Option(
        None, "--redis-url", help="Redis URL for the queue and hot cache (default: embedded)"
    ),
    contexts: int = typer.Option(20, "--contexts", min=1, help="contexts asked about"),
    drain: float = typer.Option(60.0, "--drain", min=0.0, help="seconds to wait for the jobs"),
    redis: str = typer.Option(None, "--redis", hidden=True),  # the old name of --redis-url
) -> None:
    """Concurrent asks while contexts are ingested and a worker runs; prints JSON."""
    if redis is not None and redis_url is not None and redis != redis_url:
        raise InvalidInput("--redis is the old name of --redis-url: give one of them")
    url = redis_url or redis
    print(json.dumps(run_load(duration, clients, url, contexts=contexts, drain=drain), indent=2))


if __name__ == "__main__":
    typer.run(load)
