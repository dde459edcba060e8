"""The scheduling rules each have one home (``sleeptime/queue/scheduler.py``): the idle
rule in Python and its Lua twin decide alike on a table of cases (the Lua run by a real
Redis), both backends list jobs through one ``with_eta``, and the redelivery backoff is
tenacity's wait strategy asked of a real retry state, with the same distribution as
before."""

from __future__ import annotations

import random
from itertools import product

import pytest
import redis as redis_lib
from redis_server import RedisServer

from sleeptime.queue.base import Job, QueueConfig
from sleeptime.queue.redis_lua import CLAIM
from sleeptime.queue.scheduler import DUE_LUA, due, eta, retry_delay, with_eta

#: now, enqueued_at, last activity, idle_after, max_delay: every mix of the edges (idle
#: off, exactly idle, just busy, exactly at max_delay, never any activity).
CASES = [
    (now, enqueued, last, idle_after, max_delay)
    for now, enqueued, last, idle_after, max_delay in product(
        (100.0, 130.5),
        (0.0, 70.0, 100.0),
        (0.0, 90.0, 95.0, 99.9, 100.0),
        (0.0, 5.0, 10.0),
        (30.0, 60.0),
    )
]


def test_the_claim_script_uses_the_one_lua_rule() -> None:
    assert DUE_LUA in CLAIM
    assert "due(now, enq, last, idle_after, max_delay)" in CLAIM
    # the rule is spelled once: no second copy of its comparisons in the script
    assert CLAIM.count("idle_after <= 0") == DUE_LUA.count("idle_after <= 0") == 1


def test_python_and_lua_idle_rules_agree(redis_server: RedisServer) -> None:
    r = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    script = r.register_script(
        DUE_LUA
        + "local a = {}\n"
        + "for i = 1, #ARGV do a[i] = tonumber(ARGV[i]) end\n"
        + "if due(a[1], a[2], a[3], a[4], a[5]) then return 1 else return 0 end\n"
    )
    assert len(CASES) > 100
    for case in CASES:
        lua = bool(script(keys=[], args=[repr(x) for x in case]))
        now, enqueued, last, idle_after, max_delay = case
        assert lua == due(now, enqueued, last, idle_after, max_delay), case
    assert {due(*c) for c in CASES} == {True, False}  # the table has both answers
    r.close()


def test_with_eta_sets_the_earliest_start_of_waiting_jobs_only() -> None:
    config = QueueConfig(idle_after=10.0, max_delay=60.0)
    jobs = [
        Job("a", "acme", "doc", 1, state="waiting", enqueued_at=0.0, ready_at=0.0),
        Job("b", "beta", "doc", 1, state="waiting", enqueued_at=0.0, ready_at=70.0),
        Job("c", "acme", "doc", 2, state="dead", enqueued_at=0.0, ready_at=5.0),
    ]
    asked: list[list[str]] = []

    def last_activity(namespaces: list[str]) -> dict[str, float]:
        asked.append(namespaces)
        return {"acme": 12.0}  # beta: never active

    out = with_eta(jobs, config, last_activity)
    assert [j.ready_at for j in out] == [22.0, 70.0, 5.0]
    assert out[0].ready_at == eta(0.0, 0.0, 12.0, 10.0, 60.0)
    assert asked == [["acme", "beta"]]
    # nothing waiting: the backend is not asked at all
    assert with_eta([jobs[2]], config, last_activity) == [jobs[2]] and len(asked) == 1


@pytest.mark.parametrize("deliveries", [0, 1, 2, 3, 5, 6, 9])
def test_retry_delay_keeps_its_distribution(deliveries: int) -> None:
    """min(initial * 2^(n-1), maximum) plus a uniform jitter in [0, jitter]."""
    for seed in range(20):
        random.seed(seed)
        got = retry_delay(deliveries, 1.5, 30.0)
        random.seed(seed)
        base = min(1.5 * 2 ** (max(1, deliveries) - 1), 30.0)
        assert got == pytest.approx(base + random.uniform(0, 1.5))
        assert base <= got <= base + 1.5
    assert retry_delay(deliveries, 1.0, 30.0, jitter=0) == min(2 ** (max(1, deliveries) - 1), 30)
