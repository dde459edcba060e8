"""An explicit sleep that arrives while the version's job is running (claimed by a
worker that has not asked its sleep policy yet) is never lost, on the embedded queue
and on a real Redis: ``promote`` raises the running job's stored priority, ``defer``
then refuses atomically (``"explicit"``, the job stays running and held), and the
worker sleeps the job instead of deferring it. A job nobody promoted is deferred as
before, and a worker that no longer holds its job hears ``"lost"``, not ``"explicit"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sleeptime import Settings, SleepTime
from sleeptime.policy import Decision, SleepPolicy
from sleeptime.queue import JobQueue, QueueConfig
from sleeptime.queue.base import EXPLICIT_PRIORITY
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.queue.sqlite import SQLiteQueue
from sleeptime.server import create_app
from sleeptime.server.auth import create_key
from sleeptime.worker.runtime import Worker

TEXT = "Ann has 3 apples. Bob has 4 pears. Cid has 5 plums."

MakeQueue = Callable[..., JobQueue]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MakeQueue, Clock]]:
    clock = Clock()
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

    yield make, clock
    for q in made:
        q.close()


# -- the queue's contract --------------------------------------------------------------


def test_a_running_job_promoted_is_refused_deferral_and_stays_held(
    make_queue: tuple[MakeQueue, Clock],
) -> None:
    q = make_queue[0]()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    assert job.state == "running" and job.priority < EXPLICIT_PRIORITY

    promoted = q.promote(job.id, EXPLICIT_PRIORITY)
    assert promoted is not None
    assert promoted.state == "running" and promoted.priority == EXPLICIT_PRIORITY

    # the worker's copy still says priority 0: the queue reads the stored one
    assert q.defer("w1", job, "skipped: on_demand, no query on v1 yet") == "explicit"
    counts = q.counts()
    assert counts["running"] == 1 and counts["deferred"] == 0
    assert q.renew("w1", [job]) == []  # still held by w1
    (running,) = q.list("running")
    assert running.id == job.id and running.priority == EXPLICIT_PRIORITY
    assert q.ack("w1", job)
    counts = q.counts()
    assert counts["running"] == 0 and counts["deferred"] == 0 and counts["done"] == 1


def test_a_job_nobody_promoted_is_still_deferred(make_queue: tuple[MakeQueue, Clock]) -> None:
    q = make_queue[0]()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    assert q.defer("w1", job, "skipped: on_demand, no query on v1 yet") == "deferred"
    assert q.defer("w1", job, "again") == "lost"
    counts = q.counts()
    assert counts["deferred"] == 1 and counts["running"] == 0
    # promote does not touch a deferred job (the explicit sleep revives it first)
    assert q.promote(job.id, EXPLICIT_PRIORITY) is None
    revived = q.revive("acme", "doc", 1, "explicit sleep")
    assert revived is not None and revived.state == "waiting"
    promoted = q.promote(revived.id, EXPLICIT_PRIORITY)
    assert promoted is not None and promoted.priority == EXPLICIT_PRIORITY
    (again,) = q.claim("w2")
    assert again.priority == EXPLICIT_PRIORITY
    assert q.defer("w2", again, "skipped") == "explicit"


def test_a_worker_that_lost_its_promoted_job_hears_lost(
    make_queue: tuple[MakeQueue, Clock],
) -> None:
    make, clock = make_queue
    q = make()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    assert q.promote(job.id, EXPLICIT_PRIORITY) is not None
    clock.now += 5  # w1's lease is over; w2 takes the job
    (taken,) = q.reclaim("w2")
    assert taken.id == job.id and taken.priority == EXPLICIT_PRIORITY
    assert q.defer("w1", job, "skipped") == "lost"
    assert q.defer("w2", taken, "skipped") == "explicit"
    assert q.counts()["running"] == 1


def test_a_dead_job_brought_back_by_an_explicit_enqueue_is_explicit(
    make_queue: tuple[MakeQueue, Clock],
) -> None:
    q = make_queue[0]()
    q.enqueue("acme", "doc", 1)
    (job,) = q.claim("w1")
    assert q.fail("w1", job, "boom", delay=0.0, permanent=True) == "dead"
    assert q.enqueue("acme", "doc", 1, priority=EXPLICIT_PRIORITY) is not None
    (again,) = q.claim("w1")
    assert again.priority == EXPLICIT_PRIORITY
    assert q.defer("w1", again, "skipped") == "explicit"


# -- end to end: the HTTP route and a worker under a policy that would defer -----------


class ExplicitArrives(SleepPolicy):
    """``on_demand`` (no query yet: it defers), but before it answers, the explicit
    sleep arrives over HTTP for the version this worker is holding."""

    def __init__(self, inner: SleepPolicy, api: TestClient, key: str) -> None:
        assert inner.name == "on_demand"
        super().__init__(
            inner.name,
            inner.settings,
            history=inner.history,
            sleep_tokens_left=inner.sleep_tokens_left,
            weights=inner.weights,
        )
        self.api, self.key = api, key
        self.answers: list[tuple[int, dict[str, Any]]] = []

    def decide(self, namespace: str, context_id: str, version: int, *, chars: int) -> Decision:
        if not self.answers:
            r = self.api.post(
                f"/v1/{namespace}/contexts/{context_id}/sleep",
                headers={"Authorization": f"Bearer {self.key}"},
            )
            self.answers.append((r.status_code, r.json()))
        return super().decide(namespace, context_id, version, chars=chars)


def test_an_explicit_sleep_while_the_job_runs_is_slept_not_deferred(
    tmp_path: Path, policy_settings: Callable[[str], Settings]
) -> None:
    st = SleepTime(
        database_url=f"sqlite:///{tmp_path / 'st.db'}", settings=policy_settings("on_demand")
    )
    queue = st.open_queue()
    key = create_key(st.store, "acme")[1]
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    with TestClient(create_app(st, close=False)) as api:
        inner = st.worker_port().sleep_policy()
        # the policy alone would defer this version: no query on it yet
        assert not inner.decide("acme", "doc", 1, chars=len(TEXT)).sleep
        policy = ExplicitArrives(inner, api, key)
        Worker(st, queue, policy=policy).run(burst=True, install_signals=False)

    ((status, body),) = policy.answers
    assert status == 202
    assert body["job"]["state"] == "running" and body["job"]["priority"] == EXPLICIT_PRIORITY
    assert st.artifacts("acme", "doc").complete  # slept, not deferred
    counts = queue.counts()
    assert counts["deferred"] == 0 and counts["running"] == 0 and counts["waiting"] == 0
    assert counts["done"] == 1
    st.close()


def test_without_the_explicit_sleep_the_policy_still_defers(
    tmp_path: Path, policy_settings: Callable[[str], Settings]
) -> None:
    st = SleepTime(
        database_url=f"sqlite:///{tmp_path / 'st.db'}", settings=policy_settings("on_demand")
    )
    queue = st.open_queue()
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    Worker(st, queue).run(burst=True, install_signals=False)
    (job,) = queue.list("deferred")
    assert job.version == 1 and job.error == "skipped: on_demand, no query on v1 yet"
    assert not st.artifacts("acme", "doc").complete
    st.close()
