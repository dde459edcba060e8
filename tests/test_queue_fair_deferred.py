"""Deferred jobs and fair share between namespaces, on both queue backends (the
embedded SQLite queue and Redis Streams, a real redis-server): a job a sleep policy put
aside stays visible with its reason, blocks re-enqueueing, and comes back on demand,
once, whichever worker asks; a claim shares capacity between namespaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sleeptime.queue import JobQueue, QueueConfig
from sleeptime.queue.base import fair_pick
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.queue.sqlite import SQLiteQueue

MakeQueue = Callable[..., JobQueue]


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeQueue]:
    made: list[JobQueue] = []
    clock = Clock()

    def make(**cfg: Any) -> JobQueue:
        config = QueueConfig(**({"idle_after": 0.0, "lease_s": 30.0} | cfg))
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


def test_a_deferred_job_is_kept_with_its_reason_and_blocks_enqueue(make_queue: MakeQueue) -> None:
    q = make_queue()
    assert q.enqueue("acme", "doc", 1) is not None
    (job,) = q.claim("w1")
    assert q.defer("w1", job, "skipped: expected 0.1 queries") == "deferred"
    assert q.defer("w1", job, "again") == "lost"  # no longer held
    counts = q.counts()
    assert counts["deferred"] == 1 and counts["waiting"] == 0 and counts["running"] == 0
    (listed,) = q.list("deferred")
    assert listed.state == "deferred" and listed.error == "skipped: expected 0.1 queries"
    assert any(j.state == "deferred" for j in q.list())  # `sleeptime jobs` shows it
    assert listed.to_dict()["error"] == "skipped: expected 0.1 queries"  # and the dashboard
    # a sweep (enqueue of a version without artifacts) does not bring it back
    assert q.enqueue("acme", "doc", 1) is None
    assert q.claim("w1") == []


def test_demand_revives_a_deferred_job_once(make_queue: MakeQueue) -> None:
    q = make_queue()
    other = make_queue()  # a second worker's handle on the same queue
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    q.defer("w1", job, "skipped: on_demand, no query yet")
    assert q.revive("acme", "doc", 2) is None  # no such deferred version
    revived = q.revive("acme", "doc", 1, reason="1 query")
    assert revived is not None and revived.state == "waiting"
    assert revived.error is not None and revived.error.startswith("revived: 1 query")
    assert other.revive("acme", "doc", 1) is None  # idempotent across workers
    assert q.counts()["deferred"] == 0
    (again,) = other.claim("w2")
    assert again.id == job.id and again.version == 1
    assert other.ack("w2", again)


def test_revive_without_a_version_takes_the_newest_deferred(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    q.defer("w1", job, "skipped")
    revived = q.revive("acme", "doc")
    assert revived is not None and revived.version == 1
    assert q.revive("acme", "doc") is None


def test_a_new_version_supersedes_a_deferred_one(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    q.defer("w1", job, "skipped")
    assert q.enqueue("acme", "doc", 2) is not None
    assert q.counts()["deferred"] == 0  # v1 will never be wanted: done, not deferred
    assert q.revive("acme", "doc", 1) is None
    assert [j.version for j in q.claim("w1", 5)] == [2]


def test_retry_brings_back_a_deferred_job(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    q.defer("w1", job, "skipped")
    assert q.retry(job.id).state == "waiting"
    assert [j.id for j in q.claim("w1")] == [job.id]


def test_a_backlog_does_not_starve_another_namespace(make_queue: MakeQueue) -> None:
    q = make_queue(scan=50)
    for i in range(300):  # tenant A floods first
        q.enqueue("tenant-a", f"doc-{i}", 1)
    q.enqueue("tenant-b", "doc", 1)
    first = q.claim("w1", 1)
    # A's oldest job went first (nothing of A's in flight yet)...
    assert first[0].namespace == "tenant-a"
    # ...but with A holding a slot, B's job is next, long before A's backlog drains
    second = q.claim("w1", 1)
    assert second[0].namespace == "tenant-b"
    rest = q.claim("w1", 4)
    assert {j.namespace for j in rest} == {"tenant-a"}


def test_one_claim_spreads_over_namespaces(make_queue: MakeQueue) -> None:
    q = make_queue()
    for i in range(20):
        q.enqueue("a", f"d{i}", 1)
    for i in range(3):
        q.enqueue("b", f"d{i}", 1)
    q.enqueue("c", "d0", 1)
    jobs = q.claim("w1", 6)
    by_ns = [j.namespace for j in jobs]
    assert by_ns.count("b") == 2 and by_ns.count("c") == 1 and by_ns.count("a") == 3


def test_fair_pick_prefers_the_namespace_with_least_in_flight() -> None:
    cands = {
        "a": [(0.0, 1.0, "a1"), (0.0, 2.0, "a2")],
        "b": [(0.0, 5.0, "b1")],
    }
    assert fair_pick(cands, {}, 3) == ["a1", "b1", "a2"]
    assert fair_pick(cands, {"a": 2}, 2) == ["b1", "a1"]
    assert fair_pick({}, {}, 3) == []


def test_a_redis_queue_from_before_fair_share_is_indexed_at_its_first_claim(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("redis_server")
    q = RedisStreamsQueue(server.url, QueueConfig(idle_after=0.0), prefix="old", clock=Clock())
    q.enqueue("a", "doc", 1)
    q.enqueue("b", "doc", 1)
    # what an older version left: the global waiting ZSET only
    q.r.delete("old:fair", "old:wnss", "old:wns:a", "old:wns:b")
    jobs = q.claim("w1", 5)
    assert sorted(j.namespace for j in jobs) == ["a", "b"]
    assert q.r.get("old:fair") == "1"
    q.close()
