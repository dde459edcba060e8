"""Faults of the infrastructure around sleeptime: a database or model outage during a
batch of jobs, a Redis that accepts connections but never answers while contexts are
ingested, and a Redis restarted without persistence while an old job finishes.
Every server that is stopped, frozen or restarted here was started by the test."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.errors import StoreUnavailable
from sleeptime.queue.keys import Keys
from sleeptime.queue.sqlite import sqlite_path
from sleeptime.worker.runtime import CircuitBreaker

N_QUESTIONS = 2


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls a condition (never asserts on elapsed time)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def fast_settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "model": "fake",
        "n_questions": N_QUESTIONS,
        "idle_after": 0.0,
        "poll_s": 0.02,
        "relay_s": 0.05,
        "max_deliveries": 2,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.02,
        "breaker_failures": 2,
        "breaker_open_s": 0.05,
        "retry_attempts": 2,
        "retry_wait_s": 0.0,
        "retry_max_wait_s": 0.0,
        "retry_jitter_s": 0.0,
    }
    return Settings(**(base | kw))


# -- circuit breaker ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_probes_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=2, open_s=5.0, clock=clock)
    assert b.allowance(4) == 4 and b.state == "closed"
    assert not b.failure()
    assert b.failure() and b.state == "open"
    assert b.allowance(4) == 0  # open: nothing is claimed
    clock.now += 5.0
    assert b.state == "half-open"
    assert b.allowance(4) == 1 and b.allowance(4) == 0  # one probe at a time
    assert b.failure() and b.state == "open"  # the probe failed: open again
    clock.now += 5.0
    assert b.allowance(4) == 1
    b.success()
    assert b.state == "closed" and b.allowance(4) == 4


# -- database and model outages ----------------------------------------------------------


class Outage:
    """Makes the store unavailable while ``down`` is set: every method the worker uses
    raises StoreUnavailable, as SQLStore does when its server is gone."""

    def __init__(self, st: SleepTime) -> None:
        self.down = threading.Event()
        self.refused = 0
        store = st.store
        for name in ("current_version", "get_context", "put_artifact", "missing_versions"):
            real = getattr(store, name)
            setattr(store, name, self._guard(real))

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                self.refused += 1
                raise StoreUnavailable("database test-db unavailable: connection refused")
            return fn(*args, **kwargs)

        return call


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_database_outage_during_a_batch_kills_no_job(
    backend: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    st = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url,
        settings=fast_settings(redis_url=redis_url),
    )
    st.open_queue()
    ids = [f"doc-{i}" for i in range(12)]
    for i, cid in enumerate(ids):
        st.ingest("acme", cid, f"Ann has {i} apples. Bob has {i + 2} pears.")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    outage = Outage(st)
    outage.down.set()  # the database goes away before the batch runs
    worker = st.start_worker(concurrency=2)
    # far more failed attempts than max_deliveries (2) allows a job
    wait_for(lambda: outage.refused >= 12, 20, "workers to hit the outage")
    wait_for(lambda: worker.breaker.opened >= 1, 20, "the circuit breaker to open")
    assert st.queue is not None and st.queue.counts()["dead"] == 0
    outage.down.clear()  # back: the workers resume by themselves
    wait_for(lambda: st.queue.counts()["done"] == len(ids), 30, "every job after the outage")
    assert st.queue.counts()["dead"] == 0
    assert worker.breaker.state == "closed"
    assert all(st.artifacts("acme", cid).complete for cid in ids)
    st.close()


def test_a_model_provider_outage_kills_no_job(sqlite_url: str) -> None:
    """Transient model errors beyond the gateway's retries (ModelUnavailable) release
    the job without using up deliveries; the breaker waits the outage out."""
    model = FakeChatModel(errors=[TimeoutError("provider timed out")] * 12)
    st = SleepTime(model=model, database_url=sqlite_url, settings=fast_settings())
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    worker = st.start_worker()
    assert st.queue is not None
    wait_for(lambda: st.queue.counts()["done"] == 1, 30, "the job after the model outage")
    assert st.queue.counts()["dead"] == 0 and model.errors == []
    assert worker.breaker.opened >= 1
    st.close()


def test_sweep_revives_a_dead_job_of_a_current_version(sqlite_url: str) -> None:
    """A job that died (before this release, or of a real failure) comes back with the
    worker's catch-up sweep while its version is current: dedup does not block it."""
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=fast_settings())
    q = st.open_queue()
    st.ingest("acme", "doc", "Ann has 3 apples.")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    [job] = q.claim("w0")
    assert q.fail("w0", job, "ValueError: boom", delay=0, permanent=True) == "dead"
    st.start_worker()
    wait_for(lambda: q.counts()["done"] == 1, 20, "the revived job")
    assert q.counts()["dead"] == 0 and st.artifacts("acme", "doc").complete
    st.close()


# -- the online path never waits on Redis ------------------------------------------------


def outbox_rows(url: str) -> list[tuple[int, str | None]]:
    with sqlite3.connect(sqlite_path(url)) as db:
        return db.execute("SELECT version, sent_at FROM st_outbox ORDER BY id").fetchall()


def test_ingest_never_waits_on_a_frozen_redis(redis_server: Any, sqlite_url: str) -> None:
    """Redis accepts connections but never answers (SIGSTOP of the server this test
    started): ingest commits the version and its outbox row and returns at once; once
    Redis answers, the relay enqueues the job. Nothing is lost."""
    settings = fast_settings(redis_url=redis_server.url, cache_timeout_s=5.0)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    assert st.queue is not None
    st.queue.counts()  # connected
    pid = redis_server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        durations = []
        for i in range(5):
            t0 = time.perf_counter()
            ctx = st.ingest("acme", f"doc-{i}", f"Ann has {i} apples.")
            durations.append(time.perf_counter() - t0)
            assert ctx.created
        again = st.ingest("acme", "doc-0", "Ann has 0 apples.")  # unchanged text
        assert not again.created
        # the socket timeout is 5 s (x3 retries): well under it means no Redis call
        assert max(durations) < 0.5, durations
        assert [v for v, _ in outbox_rows(sqlite_url)] == [1] * 5
    finally:
        os.kill(pid, signal.SIGCONT)
    assert st.outbox_relay is not None
    wait_for(lambda: all(sent for _, sent in outbox_rows(sqlite_url)), 60, "the relay after Redis")
    assert st.queue.counts()["waiting"] == 5
    st.close()


def test_embedded_queue_gets_its_jobs_through_the_outbox(sqlite_url: str) -> None:
    """A client without a queue of its own still records the job; a worker process
    (here: a second client with a worker) relays it."""
    writer = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=fast_settings())
    writer.ingest("acme", "doc", "Ann has 3 apples.")
    assert writer.queue is None and outbox_rows(sqlite_url) == [(1, None)]
    runner = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=fast_settings())
    runner.start_worker()
    assert runner.queue is not None
    wait_for(lambda: runner.queue.counts()["done"] == 1, 20, "the relayed job")
    assert outbox_rows(sqlite_url)[0][1] is not None
    writer.close()
    runner.close()


def test_sweep_leaves_unrelayed_versions_to_the_relay(sqlite_url: str) -> None:
    """The relay records the ingesting namespace as busy before it enqueues; the
    sweep must not enqueue the version first (as if the namespace were idle)."""
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=fast_settings())
    st.ingest("acme", "doc", "Ann has 3 apples.")
    assert st.store.missing_versions() == []
    settings = fast_settings(idle_after=30.0)
    busy = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    q = busy.open_queue()
    assert busy.outbox_relay is not None and busy.outbox_relay.wait_idle(20)
    assert q.counts()["waiting"] == 1
    assert q.claim("w1") == []  # busy namespace: not due yet
    assert st.store.missing_versions() == [("acme", "doc", 1)]  # relayed: the sweep's now
    st.close()
    busy.close()


# -- the cache never goes back in time ---------------------------------------------------


def restart_without_persistence(server: Any) -> None:
    server.stop()
    shutil.rmtree(Path(server.workdir) / "appendonlydir", ignore_errors=True)
    for f in Path(server.workdir).glob("*.aof"):
        f.unlink()
    server.start()


def test_a_queue_notices_when_redis_lost_it(redis_server: Any) -> None:
    """The consumer group gone (the next claim hits NOGROUP), or the queue re-created
    by another process first (its epoch token changed): ``lost()`` is True once."""
    from sleeptime.queue.redis_streams import RedisStreamsQueue

    q = RedisStreamsQueue(redis_server.url, prefix="t")
    assert q.claim("w1") == [] and q.counts()["waiting"] == 0
    assert q.lost() is False
    restart_without_persistence(redis_server)
    assert q.claim("w1") == []
    assert q.lost() is True and q.lost() is False  # once per loss
    # another process re-creates the queue before this one claims: no NOGROUP here
    restart_without_persistence(redis_server)
    other = RedisStreamsQueue(redis_server.url, prefix="t")
    assert other.enqueue("acme", "doc", 1) is not None
    [job] = q.claim("w1")
    assert (job.context_id, job.version) == ("doc", 1)
    assert q.lost() is True and q.lost() is False
    assert other.claim("w2") == [] and other.lost() is False  # its first sight
    # counts() (a burst worker's drain check) notices a lost group too
    restart_without_persistence(redis_server)
    assert q.counts()["running"] == 0 and q.lost() is True
    q.close()
    other.close()


def test_a_worker_sweeps_at_once_when_redis_lost_the_queue(
    redis_server: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted without persistence while a job waits: the job is gone with the
    queue. The worker notices at its next claim and re-enqueues the version at once
    with a warning, instead of at the next periodic sweep (``sweep_s``, 300 s here;
    the wait below is bounded far under it and never measured)."""
    caplog.set_level(logging.WARNING, logger="sleeptime.worker")
    settings = fast_settings(redis_url=redis_server.url, idle_after=30.0, sweep_s=300.0)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    q = st.open_queue()
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    assert q.counts()["waiting"] == 1  # the namespace is busy: not due for 30 s
    claimed = threading.Event()
    claim = q.claim

    def claim_and_tell(worker: str, count: int = 1) -> Any:
        jobs = claim(worker, count)
        claimed.set()
        return jobs

    q.claim = claim_and_tell  # type: ignore[method-assign]
    st.start_worker()  # its start-up sweep and first claims: nothing due
    assert claimed.wait(20)
    restart_without_persistence(redis_server)
    assert st.cache is not None and st.cache.r.zcard(Keys().waiting) == 0  # gone with it
    wait_for(lambda: st.store.load_artifacts("acme", "doc", 1).complete, 60, "the swept job")
    lost = [r for r in caplog.records if "job queue was lost" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    st.close()


def test_old_job_after_redis_restart_cannot_serve_the_old_version(
    redis_server: Any, sqlite_url: str
) -> None:
    settings = fast_settings(redis_url=redis_server.url, cache_cooldown_s=0.01)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    old = st.sleep("acme", "doc")
    assert old.version == 1
    st.ingest("acme", "doc", "Ann has 30 apples. Bob has 40 pears.")
    new = st.sleep("acme", "doc")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    restart_without_persistence(redis_server)
    # a worker that was running the v1 job finishes it now
    from sleeptime.queue.base import Job
    from sleeptime.worker.runtime import Worker

    worker = Worker(st, st.open_queue())
    worker._warm_cache(Job("j1", "acme", "doc", 1))
    assert st.cache is not None
    assert st.cache.r.get(st.cache.keys.version("acme", "doc")) is None  # not re-created
    worker._warm_cache(Job("j2", "acme", "doc", 2))  # current, but no key to trust
    assert st.cache.r.get(st.cache.keys.version("acme", "doc")) is None
    # even a direct write of v1 cannot go past a version key at v2
    fresh = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    for _ in range(3):  # miss (fill from SQL), then hits
        assert fresh.artifacts("acme", "doc").version == new.version == 2
    assert fresh.cache is not None and fresh.cache.hits >= 1
    from sleeptime.models import Artifacts

    stale = Artifacts(
        namespace="acme", context_id="doc", version=1, qas=tuple(old.qas), complete=True
    )
    assert fresh.cache.put(stale) is False
    assert fresh.artifacts("acme", "doc").version == 2
    fresh.close()
    st.close()


def test_cache_without_version_key_is_not_served(redis_server: Any, sqlite_url: str) -> None:
    """Artifacts whose version key is gone (restart, eviction) are a miss, not a hit."""
    settings = fast_settings(redis_url=redis_server.url)
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    st.ingest("acme", "doc", "Ann has 3 apples.")
    st.sleep("acme", "doc")
    assert st.artifacts("acme", "doc").version == 1  # fills the cache
    assert st.cache is not None
    st.cache.r.delete(st.cache.keys.version("acme", "doc"))
    _, arts = st.cache.get("acme", "doc")
    assert arts is None
    st.close()


def test_jobs_retry_all_revives_dead_jobs_of_current_versions(sqlite_url: str) -> None:
    from typer.testing import CliRunner

    from sleeptime.cli import app

    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=fast_settings())
    q = st.open_queue()
    st.ingest("acme", "old", "Ann has 3 apples.")
    st.ingest("acme", "cur", "Bob has 4 pears.")
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    for job in q.claim("w0", 2):
        assert q.fail("w0", job, "ValueError: boom", delay=0, permanent=True) == "dead"
    st.ingest("acme", "old", "Ann has 5 apples.")  # v1 of "old" is superseded
    res = CliRunner().invoke(app, ["jobs", "retry", "--all", "--database-url", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "1 dead job(s) waiting again; 1 superseded left dead" in res.output
    [dead] = q.list("dead")
    assert (dead.context_id, dead.version) == ("old", 1)
    assert [(j.context_id, j.deliveries) for j in q.list("waiting")][:1] == [("cur", 0)]
    bad = CliRunner().invoke(app, ["jobs", "retry", "--database-url", sqlite_url])
    assert bad.exit_code != 0
    st.close()
