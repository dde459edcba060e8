"""A job the ``budgeted`` policy deferred because its namespace's daily sleep-time budget
was spent comes back with the next UTC day (the budget resets at 00:00 UTC): the
worker's sweep revives it, without a query on its version; on the same day it stays
deferred, and a job deferred for any other reason waits for demand as before. On an
injected clock (queue, policy and worker share it), on both queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleeptime import Settings, SleepTime
from sleeptime.policy import MemoryHistory, SleepPolicy, budget_deferred
from sleeptime.queue.base import JobQueue, QueueConfig
from sleeptime.quotas import day_start
from sleeptime.worker.revival import BUDGET_RENEWED
from sleeptime.worker.runtime import Worker

DAY = 86400.0
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
TEXT = "Ann has 3 apples. Bob has 4 pears. Cid has 5 plums. " * 300  # about 16k chars


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def queue_on(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    def make(clock: Clock) -> JobQueue:
        config = QueueConfig(idle_after=0.0)
        if request.param == "redis":
            from sleeptime.queue.redis_streams import RedisStreamsQueue

            url = request.getfixturevalue("redis_server").url
            return RedisStreamsQueue(url, config, clock=clock)
        from sleeptime.queue.sqlite import SQLiteQueue

        return SQLiteQueue(str(tmp_path / "queue.db"), config, clock=clock)

    return make


def test_a_spent_budget_is_renewed_the_next_utc_day(tmp_path: Path, queue_on: object) -> None:
    clock = Clock(T0)
    queue: JobQueue = queue_on(clock)  # type: ignore[operator]
    settings = Settings(model="fake", n_questions=2, idle_after=0.0, sleep_policy="budgeted")
    st = SleepTime(database_url=f"sqlite:///{tmp_path / 'st.db'}", settings=settings)
    history = MemoryHistory()
    for _ in range(100):  # demand enough that only the budget holds the sleep back
        history.query("acme", "doc", 1, T0 - 3600)
    left: dict[str, int | None] = {"acme": 10}
    policy = SleepPolicy(
        "budgeted",
        settings,
        history=history,
        sleep_tokens_left=lambda ns: left[ns],
        clock=clock,
    )
    worker = Worker(st, queue, policy=policy, clock=clock)

    st.ingest("acme", "doc", TEXT)
    worker.process_due()  # relays the outbox row, claims, the policy defers
    (job,) = queue.list("deferred")
    assert budget_deferred(job.error), job.error
    assert job.error and job.error.startswith("skipped: sleep-time budget of acme (10 tokens")
    assert job.finished_at == pytest.approx(T0)
    # a job deferred for another reason is left to demand
    queue.enqueue("acme", "other", 1)
    (other,) = [j for j in queue.claim("w", 5) if j.context_id == "other"]
    assert queue.defer("w", other, "skipped: on_demand, no query on v1 yet")

    clock.now = day_start(T0).timestamp() + DAY - 1  # 23:59:59 the same day
    assert worker._sweep() == 0
    assert {j.context_id for j in queue.list("deferred")} == {"doc", "other"}

    clock.now = day_start(T0).timestamp() + DAY + 60  # 00:01 the next day: budget reset
    left["acme"] = None
    assert worker._sweep() == 0  # nothing missing to enqueue; the revival is apart
    (waiting,) = queue.list("waiting")
    assert (waiting.id, waiting.context_id) == (job.id, "doc")
    assert waiting.error == f"revived: {BUDGET_RENEWED} (was {job.error})"
    assert [j.context_id for j in queue.list("deferred")] == ["other"]
    assert worker.metrics.revived._value.get() == 1
    assert worker._sweep() == 0 and len(queue.list("waiting")) == 1  # once only

    # the policy decides again, with the new day's budget: it sleeps the version now
    assert worker.process_due() == 1
    assert st.artifacts("acme", "doc").complete
    assert queue.counts()["deferred"] == 1
    st.close()
    queue.close()
