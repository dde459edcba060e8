"""One contract, two backends: every test runs on the embedded SQLite queue and on
Redis Streams (a real redis-server from the ``redis_server`` fixture).

Time is a :class:`Clock` the test steps forward, never a sleep: leases, backoffs, idle
scheduling and heartbeats are checked exactly and at no cost, however loaded the
machine is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sleeptime.queue import JobNotFound, JobQueue, QueueConfig, retry_delay
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.queue.scheduler import ActivityRecorder, TokenWindow, due, eta
from sleeptime.queue.sqlite import SQLiteQueue

MakeQueue = Callable[..., JobQueue]


class Clock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[MakeQueue]:
    made: list[JobQueue] = []

    def make(**cfg: Any) -> JobQueue:
        config = QueueConfig(**({"idle_after": 0.0, "lease_s": 1.0, "max_deliveries": 3} | cfg))
        if request.param == "sqlite":
            q: JobQueue = SQLiteQueue(str(tmp_path / "queue.db"), config, clock=clock)
        else:
            server = request.getfixturevalue("redis_server")
            q = RedisStreamsQueue(server.url, config, prefix="t", clock=clock)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


def test_burst_of_identical_enqueues_is_one_job(make_queue: MakeQueue) -> None:
    q = make_queue()
    created = [q.enqueue("acme", "doc", 1) for _ in range(20)]
    assert sum(j is not None for j in created) == 1
    assert q.enqueue("acme", "doc", 2) is not None  # a new version is a new job
    assert q.counts()["waiting"] == 2
    jobs = q.claim("w1", 10)
    assert sorted(j.version for j in jobs) == [1, 2]
    for j in jobs:
        assert q.ack("w1", j)
    # a late duplicate of finished work (e.g. a sweep racing the ack) adds nothing
    assert q.enqueue("acme", "doc", 1) is None
    assert q.counts()["waiting"] == 0


def test_context_keys_do_not_collide_across_namespaces(make_queue: MakeQueue) -> None:
    q = make_queue()
    assert q.enqueue("a:b", "c", 1) is not None
    assert q.enqueue("a", "b:c", 1) is not None
    assert q.enqueue("a", "b/c", 1) is not None
    jobs = q.claim("w", 10)
    assert {(j.namespace, j.context_id) for j in jobs} >= {("a:b", "c"), ("a", "b:c"), ("a", "b/c")}


def test_claim_leases_and_ack_completes(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.enqueue("acme", "doc", 3)
    [job] = q.claim("w1", 5)
    assert (job.namespace, job.context_id, job.version, job.deliveries) == ("acme", "doc", 3, 1)
    assert job.state == "running" and job.worker == "w1"
    assert q.claim("w2", 5) == []
    assert q.counts()["running"] == 1
    assert [j.id for j in q.list("running")] == [job.id]
    assert q.ack("w1", job) is True
    assert q.ack("w1", job) is False  # a second ack is a no-op, not a second completion
    counts = q.counts()
    assert (counts["waiting"], counts["running"], counts["done"]) == (0, 0, 1)


def test_expired_lease_is_reclaimed_by_another_worker(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(lease_s=0.5)
    q.enqueue("acme", "doc", 1)
    [job] = q.claim("dead-worker", 1)
    clock.advance(0.49)
    assert q.reclaim("w2", 5) == []  # lease still valid
    clock.advance(0.02)
    [again] = q.reclaim("w2", 5)
    assert again.id == job.id and again.deliveries == 2 and again.worker == "w2"
    assert q.renew("dead-worker", [job]) == [job.id]  # the old holder learns it lost it
    assert q.fail("dead-worker", job, "late failure", delay=0) == "lost"
    assert q.ack("w2", again)
    assert q.counts()["done"] == 1


def test_renewed_lease_is_not_reclaimed(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(lease_s=0.5)
    q.enqueue("acme", "doc", 1)
    [job] = q.claim("w1", 1)
    for _ in range(6):  # 1.2 s in all: the lease lives on because it is renewed
        clock.advance(0.2)
        assert q.renew("w1", [job]) == []
        assert q.reclaim("w2", 5) == []
    clock.advance(0.6)  # renewals stop: the lease runs out
    assert [j.id for j in q.reclaim("w2", 5)] == [job.id]


def test_failure_is_retried_after_backoff(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue()
    q.enqueue("acme", "doc", 1)
    [job] = q.claim("w1", 1)
    assert q.fail("w1", job, "TimeoutError: slow", delay=0.5) == "retry"
    assert q.claim("w1", 1) == []  # backing off
    [pending] = q.list("pending")
    assert pending.error == "TimeoutError: slow"
    clock.advance(0.49)
    assert q.claim("w1", 1) == []
    clock.advance(0.02)
    [again] = q.claim("w1", 1)
    assert again.id == job.id and again.deliveries == 2
    assert q.counts()["retried"] == 1


def test_dead_letter_after_max_deliveries_then_retry(make_queue: MakeQueue) -> None:
    q = make_queue(max_deliveries=3)
    q.enqueue("acme", "doc", 1)
    outcomes = []
    for _ in range(3):
        [job] = q.claim("w1", 1)
        outcomes.append(q.fail("w1", job, f"ValueError: boom #{job.deliveries}", delay=0))
    assert outcomes == ["retry", "retry", "dead"]
    assert q.claim("w1", 1) == []
    [dead] = q.list("dead")
    assert dead.id == job.id and dead.error == "ValueError: boom #3" and dead.deliveries == 3
    assert q.counts()["dead"] == 1
    with pytest.raises(JobNotFound):
        q.retry("no-such-job")
    revived = q.retry(job.id)
    assert revived.deliveries == 0 and revived.state == "waiting"
    assert q.list("dead") == [] and q.counts()["dead"] == 0
    [again] = q.claim("w1", 1)
    assert again.id == job.id and again.deliveries == 1
    with pytest.raises(JobNotFound, match="it is running"):
        q.retry(job.id)
    assert q.ack("w1", again)


def test_enqueue_revives_a_dead_job_and_dedups_a_live_one(make_queue: MakeQueue) -> None:
    """A catch-up sweep (or ``jobs retry --all``) re-enqueues a current version whose
    job died; the dedup must not treat the dead job as existing work."""
    q = make_queue(max_deliveries=1)
    first = q.enqueue("acme", "doc", 1)
    assert first is not None
    [job] = q.claim("w1", 1)
    assert q.fail("w1", job, "ValueError: boom", delay=0) == "dead"
    revived = q.enqueue("acme", "doc", 1)
    assert revived is not None and revived.id == first.id
    assert q.list("dead") == [] and q.counts()["dead"] == 0
    assert q.enqueue("acme", "doc", 1) is None  # a waiting job is deduplicated
    [again] = q.claim("w1", 1)
    assert again.id == first.id and again.deliveries == 1
    assert q.enqueue("acme", "doc", 1) is None  # so is a running one
    assert q.ack("w1", again)
    assert q.enqueue("acme", "doc", 1) is None  # and a done one


def test_infrastructure_failure_does_not_use_up_deliveries(make_queue: MakeQueue) -> None:
    q = make_queue(max_deliveries=2)
    q.enqueue("acme", "doc", 1)
    for _ in range(5):  # more failures than deliveries: the database was down, not the job
        [job] = q.claim("w1", 1)
        assert job.deliveries == 1
        assert q.fail("w1", job, "StoreUnavailable: down", delay=0, consume=False) == "retry"
    assert q.counts()["dead"] == 0
    [job] = q.claim("w1", 1)
    assert q.fail("w1", job, "ValueError: bad", delay=0) == "retry"  # a real failure counts
    [job] = q.claim("w1", 1)
    assert job.deliveries == 2
    assert q.fail("w1", job, "ValueError: bad", delay=0) == "dead"


def test_permanent_failure_is_dead_at_once(make_queue: MakeQueue) -> None:
    q = make_queue(max_deliveries=5)
    q.enqueue("acme", "gone", 1)
    [job] = q.claim("w1", 1)
    assert q.fail("w1", job, "ContextNotFound: no context", delay=0, permanent=True) == "dead"
    assert q.list("dead")[0].error == "ContextNotFound: no context"


def test_job_that_keeps_losing_its_worker_goes_dead(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(lease_s=0.2, max_deliveries=2)
    q.enqueue("acme", "poison", 1)
    q.claim("w1", 1)
    clock.advance(0.3)
    assert len(q.reclaim("w2", 1)) == 1
    clock.advance(0.3)
    assert q.reclaim("w3", 1) == []
    [dead] = q.list("dead")
    assert "gave up after 2 deliveries" in (dead.error or "")


def test_activity_postpones_until_idle(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(idle_after=0.6, max_delay=60)
    q.touch({"busy/doc": 1})
    q.enqueue("busy", "doc", 1)
    q.enqueue("quiet", "doc", 1)
    [first] = q.claim("w", 5)
    assert first.namespace == "quiet"  # idleness is per namespace
    for _ in range(12):  # 1.2 s of activity every 0.1 s: postponed
        clock.advance(0.1)
        q.touch({"busy/doc": 1})
        assert q.claim("w", 5) == []
    clock.advance(0.59)  # quiet, but not for idle_after yet
    assert q.claim("w", 5) == []
    clock.advance(0.02)
    [got] = q.claim("w", 5)
    assert got.namespace == "busy"


def test_max_delay_bounds_the_wait(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(idle_after=30, max_delay=0.8)
    q.touch({"busy/doc": 1})
    q.enqueue("busy", "doc", 1)
    for _ in range(7):  # never idle
        clock.advance(0.1)
        q.touch({"busy/doc": 1})
        assert q.claim("w", 1) == []
    clock.advance(0.11)  # 0.81 s after the enqueue
    q.touch({"busy/doc": 1})
    [got] = q.claim("w", 1)
    assert got.namespace == "busy"


def test_ready_at_is_when_an_idle_namespace_lets_the_job_start(
    make_queue: MakeQueue, clock: Clock
) -> None:
    """A waiting job's listed ``ready_at`` is its earliest start under the idle rule,
    and a claim succeeds exactly then, not a moment before."""
    q = make_queue(idle_after=10, max_delay=60)
    start = clock.now
    q.enqueue("acme", "doc", 1)
    clock.advance(3)
    q.touch({"acme/doc": 1})
    [job] = q.list("waiting")
    assert job.enqueued_at == pytest.approx(start, abs=1e-3)
    assert job.ready_at == pytest.approx(start + 3 + 10, abs=1e-3)
    clock.now = job.ready_at - 0.01
    assert q.claim("w", 1) == []
    clock.now = job.ready_at + 0.001
    assert [j.id for j in q.claim("w", 1)] == [job.id]


def test_ready_at_is_capped_by_max_delay(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(idle_after=10, max_delay=30)
    start = clock.now
    q.enqueue("busy", "doc", 1)
    for _ in range(8):  # activity every 5 s, past enqueued_at + max_delay
        clock.advance(5)
        q.touch({"busy/doc": 1})
        [job] = q.list("waiting")
        assert job.ready_at == pytest.approx(min(clock.now + 10, start + 30), abs=1e-3)
    assert job.ready_at == pytest.approx(start + 30, abs=1e-3)
    assert [j.id for j in q.claim("w", 1)] == [job.id]  # overdue: due despite the activity


def test_ready_at_without_idle_time_is_the_enqueue_time(
    make_queue: MakeQueue, clock: Clock
) -> None:
    q = make_queue(idle_after=0)
    q.touch({"acme/doc": 1})
    q.enqueue("acme", "doc", 1)
    enqueued = clock.now
    clock.advance(1)
    q.touch({"acme/doc": 1})
    [job] = q.list(None)
    assert job.state == "waiting"
    assert job.ready_at == pytest.approx(enqueued, abs=1e-3) == job.enqueued_at


def test_ready_at_after_a_failure_waits_for_backoff_and_idleness(
    make_queue: MakeQueue, clock: Clock
) -> None:
    q = make_queue(idle_after=10, max_delay=600)
    start = clock.now
    q.enqueue("acme", "doc", 1)
    clock.advance(10)
    [job] = q.claim("w", 1)
    assert q.fail("w", job, "ValueError: boom", delay=20) == "retry"
    backoff = start + 10 + 20
    [waiting] = q.list("waiting")
    assert waiting.ready_at == pytest.approx(backoff, abs=1e-3)  # idle already: the backoff
    clock.advance(15)
    q.touch({"acme/doc": 1})  # activity during the backoff: idle only at start + 35
    [waiting] = q.list("waiting")
    assert waiting.ready_at == pytest.approx(start + 25 + 10, abs=1e-3)
    assert waiting.ready_at >= backoff
    clock.now = backoff + 1  # the backoff is over, the namespace is still busy
    assert q.claim("w", 1) == []
    clock.now = waiting.ready_at + 0.001
    assert [j.id for j in q.claim("w", 1)] == [job.id]


def test_ready_at_of_a_revived_dead_job(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue(idle_after=10, max_delay=600, max_deliveries=1)
    q.enqueue("acme", "doc", 1)
    clock.advance(10)
    [job] = q.claim("w", 1)
    assert q.fail("w", job, "ValueError: boom", delay=0) == "dead"
    q.touch({"acme/doc": 1})
    revived = q.retry(job.id)
    assert revived.state == "waiting"
    assert revived.ready_at == pytest.approx(clock.now + 10, abs=1e-3)
    assert [j.ready_at for j in q.list("waiting")] == [revived.ready_at]


def test_priority_prefers_the_busiest_context(make_queue: MakeQueue) -> None:
    q = make_queue()
    for cid in ("cold", "hot", "warm"):
        q.enqueue("acme", cid, 1)
    q.touch({"acme/hot": 9, "acme/warm": 3})
    order = []
    while jobs := q.claim("w", 1):
        order.append(jobs[0].context_id)
        q.ack("w", jobs[0])
    assert order == ["hot", "warm", "cold"]
    q.enqueue("acme", "vip", 1, priority=100.0)
    q.enqueue("acme", "plain", 1)
    assert q.claim("w", 1)[0].context_id == "vip"


def test_heartbeat_lists_live_workers(make_queue: MakeQueue, clock: Clock) -> None:
    q = make_queue()
    q.heartbeat("w1", {"id": "w1", "in_hand": []}, ttl=30)
    assert q.workers() == [{"id": "w1", "in_hand": []}]
    clock.advance(29)
    assert [w["id"] for w in q.workers()] == ["w1"]
    clock.advance(2)
    assert q.workers() == []


def test_due_rule_and_backoff() -> None:
    assert due(10, 0, 9, idle_after=0, max_delay=100)
    assert not due(10, 5, 9, idle_after=5, max_delay=100)
    assert due(10, 5, 4, idle_after=5, max_delay=100)
    assert due(10, 0, 9.9, idle_after=5, max_delay=10)
    delays = [retry_delay(n, 1.0, 30.0, jitter=0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert 1.0 <= retry_delay(1, 1.0, 30.0) <= 2.0


def test_eta_rule() -> None:
    # backoff ready_at, enqueued_at, last activity, idle_after, max_delay
    assert eta(5, 0, 100, idle_after=0, max_delay=60) == 5  # no idle time: the backoff
    assert eta(0, 0, 12, idle_after=10, max_delay=60) == 22  # idle 10 s after the activity
    assert eta(0, 0, 100, idle_after=10, max_delay=60) == 60  # never later than max_delay
    assert eta(70, 0, 12, idle_after=10, max_delay=60) == 70  # never before the backoff
    for now in (21.9, 22.0, 22.1):  # due() agrees: due from the eta on, not before
        assert due(now, 0, 12, idle_after=10, max_delay=60) == (now >= eta(0, 0, 12, 10, 60))


def test_token_window_caps_admission(clock: Clock) -> None:
    w = TokenWindow(per_minute=100, window=60, clock=clock)
    assert w.allows()
    w.add(150)
    assert not w.allows() and w.wait_s() == 60
    clock.advance(59)
    assert not w.allows() and w.wait_s() == pytest.approx(1)
    clock.advance(1.01)
    assert w.allows() and w.used() == 0
    assert TokenWindow(0).allows()


def test_activity_recorder_batches_and_never_raises() -> None:
    sent: list[dict[str, int]] = []
    rec = ActivityRecorder(sent.append, interval=3600)  # only explicit flushes send
    for _ in range(5):
        rec("acme", "doc")
    rec("other", "x")
    assert sent == []  # recording is a dict update, nothing is sent on the caller's thread
    rec.flush()
    assert sent == [{"acme/doc": 5, "other/x": 1}]  # one batch
    rec.flush()
    assert len(sent) == 1  # nothing new: nothing sent

    def broken(_: dict[str, int]) -> None:
        raise ConnectionError("redis down")

    rec2 = ActivityRecorder(broken, interval=3600)
    rec2("acme", "doc")
    rec2.flush()  # must not raise on the caller's thread
    rec2.close()
    rec.close()


def test_activity_recorder_flushes_in_the_background() -> None:
    import threading

    arrived = threading.Event()
    sent: list[dict[str, int]] = []

    def flush(batch: dict[str, int]) -> None:
        sent.append(batch)
        arrived.set()

    rec = ActivityRecorder(flush, interval=0.01)
    rec("acme", "doc")
    assert arrived.wait(30), "the background thread never sent the batch"
    assert sent[0] == {"acme/doc": 1}
    rec.close()
