"""Issue 19, item 3: per-key rate limits and per-namespace daily token quotas over
HTTP, with and without Redis (a real redis-server), and the explicit sleep queued
(202 with its job) or run in the request (wait=true). Clocks are injected: nothing
waits for a window or for midnight."""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the server extra (the README test command)")
pytest.importorskip("limits", reason="needs the server extra (the README test command)")
from fastapi.testclient import TestClient
from redis_server import RedisServer

from sleeptime import FakeChatModel, QuotaExceeded, RateLimited, Settings, SleepTime
from sleeptime.errors import InvalidSettings
from sleeptime.quotas import Quotas, day_start, seconds_to_midnight
from sleeptime.server import create_app
from sleeptime.server.auth import create_key
from sleeptime.server.ratelimit import RateLimit

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."
Q = "How many apples are there?"
NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _client(url: str, redis_url: str | None = None, **values: Any) -> SleepTime:
    values = {"model": "fake", "n_questions": 2, "idle_after": 3600.0, **values}
    settings = Settings(redis_url=redis_url, **values)
    return SleepTime(model=FakeChatModel(), database_url=url, settings=settings)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str | None]:
    """None: counters in the server process; else the URL of a real redis-server."""
    if request.param == "memory":
        yield None
        return
    server = RedisServer(tmp_path).start()
    yield server.url
    server.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- rate limits ----------------------------------------------------------------------


def test_rate_limit_setting_is_checked() -> None:
    assert Settings(rate_limit="100/second").rate_limit == "100/second"
    assert Settings(rate_limit="10 per 5 minutes").rate_limit == "10 per 5 minutes"
    assert Settings(rate_limit="").rate_limit is None
    with pytest.raises(InvalidSettings, match="SLEEPTIME_RATE_LIMIT"):
        Settings(rate_limit="lots")


def test_rate_limit_per_key(
    backend: str | None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = _client(sqlite_url, backend, rate_limit="3/minute")
    st.ingest("a", "doc", TEXT)
    a, a2 = create_key(st.store, "a")[1], create_key(st.store, "a")[1]
    app = create_app(st, close=False)
    assert app.state.limiter.storage == ("redis" if backend else "memory")
    with TestClient(app) as api:
        for _ in range(3):
            assert api.get("/v1/a/contexts", headers=_auth(a)).status_code == 200
        r = api.get("/v1/a/contexts", headers=_auth(a))
        assert r.status_code == 429
        assert r.json()["error"] == "RateLimited"
        assert "SLEEPTIME_RATE_LIMIT" in r.json()["message"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # another key of the same namespace has its own window
        assert api.get("/v1/a/contexts", headers=_auth(a2)).status_code == 200
        # a refusal is counted in the metrics
        assert "sleeptime_http_rate_limited_total 1.0" in api.get("/metrics").text
        # no key: 401 before any counting
        assert api.get("/v1/a/contexts").status_code == 401
    if backend:
        # a second server process shares the count through Redis
        with TestClient(create_app(st, close=False)) as other:
            assert other.get("/v1/a/contexts", headers=_auth(a)).status_code == 429
    st.close()


def test_rate_limit_window_resets_with_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import limits.storage.memory as memory

    clock = Clock(NOON)
    monkeypatch.setattr(memory, "time", types.SimpleNamespace(time=clock))
    limit = RateLimit("2/second", clock=clock)
    limit.hit("k")
    limit.hit("k")
    with pytest.raises(RateLimited) as refused:
        limit.hit("k")
    assert refused.value.retry_after == 1
    limit.hit("other")  # keys are apart
    clock.now += 1.5
    limit.hit("k")  # a new window


def test_rate_limit_survives_a_redis_outage(tmp_path: Any) -> None:
    server = RedisServer(tmp_path).start()
    limit = RateLimit("2/minute", redis_url=server.url)
    limit.hit("k")
    server.stop()
    # counted in this process while Redis is gone: requests are not refused for it
    limit.hit("k")
    limit.hit("k")
    with pytest.raises(RateLimited):
        limit.hit("k")


# -- quotas ---------------------------------------------------------------------------


def test_seconds_to_midnight() -> None:
    assert seconds_to_midnight(NOON) == 12 * 3600
    assert seconds_to_midnight(NOON + 12 * 3600 - 0.5) == 1
    assert day_start(NOON) == datetime(2026, 12, 5, tzinfo=UTC)


def test_test_quota_over_http(backend: str | None, sqlite_url: str) -> None:
    st = _client(sqlite_url, backend, quota_test_tokens=10)
    st.ingest("a", "doc", TEXT)
    st.ingest("b", "doc", TEXT)
    a, b = create_key(st.store, "a")[1], create_key(st.store, "b")[1]
    app = create_app(st, close=False)
    clock = Clock(NOON)
    app.state.quotas.clock = clock
    assert (app.state.quotas.redis is not None) == bool(backend)
    with TestClient(app) as api:
        first = api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=_auth(a))
        assert first.status_code == 200
        spent = first.json()["usage"]["prompt_tokens"] + first.json()["usage"]["completion_tokens"]
        assert spent >= 10  # a cold answer: one model call spends the day's quota
        r = api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=_auth(a))
        assert r.status_code == 429 and r.json()["error"] == "QuotaExceeded"
        assert r.headers["Retry-After"] == str(12 * 3600)  # until 00:00 UTC
        assert "SLEEPTIME_QUOTA_TEST_TOKENS" in r.json()["message"]
        stream = api.post("/v1/a/contexts/doc/ask/stream", json={"question": Q}, headers=_auth(a))
        assert stream.status_code == 429
        # another namespace has its own quota
        other = api.post("/v1/b/contexts/doc/ask", json={"question": Q}, headers=_auth(b))
        assert other.status_code == 200
        use = api.get("/v1/a/usage", headers=_auth(a)).json()
        assert use["test"] == {"used": spent, "limit": 10, "left": 0}
        assert use["sleep"] == {"used": 0, "limit": None, "left": None}
        assert use["day"] == "2026-12-05" and use["resets_in_s"] == 12 * 3600
        metrics = api.get("/metrics").text
        assert f'sleeptime_quota_used_tokens{{namespace="a",phase="test"}} {float(spent)}' in (
            metrics
        )
        assert 'sleeptime_quota_refused_total{namespace="a",phase="test"} 2.0' in metrics
        # the next UTC day starts a new count
        clock.now += 12 * 3600
        again = api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=_auth(a))
        assert again.status_code == 200
    if backend:
        # another server process reads the same counters
        shared = Quotas.from_settings(st.settings, st.store.accounting, clock=lambda: NOON)
        assert shared.test_used("a") == spent and shared.test_left("a") == 0
        shared.close()
    st.close()


def test_zero_token_answers_count_nothing(sqlite_url: str) -> None:
    st = _client(sqlite_url, quota_test_tokens=1)
    st.ingest("a", "doc", TEXT)
    st.sleep("a", "doc")
    predicted = st.artifacts("a", "doc").qas[0].question
    key = create_key(st.store, "a")[1]
    with TestClient(create_app(st, close=False)) as api:
        for _ in range(3):
            r = api.post("/v1/a/contexts/doc/ask", json={"question": predicted}, headers=_auth(key))
            assert r.status_code == 200 and r.json()["source"] == "predicted"
        assert api.get("/v1/a/usage", headers=_auth(key)).json()["test"]["used"] == 0
    st.close()


def test_sleep_quota_counts_the_ledger(sqlite_url: str) -> None:
    st = _client(sqlite_url, quota_sleep_tokens=50)
    st.ingest("a", "doc", TEXT)
    st.ingest("b", "doc", TEXT)
    assert st.sleep("a", "doc").usage.total_tokens > 50
    quotas = Quotas.from_settings(st.settings, st.store.accounting)
    assert quotas.sleep_left("a") == 0
    assert quotas.sleep_left("b") == 50
    tomorrow = day_start(quotas.clock()).timestamp() + 86400 + 1
    assert quotas.sleep_left("a", now=tomorrow) == 50  # a new UTC day
    with pytest.raises(QuotaExceeded) as over:
        quotas.check_sleep("a")
    assert over.value.phase == "sleep" and over.value.retry_after >= 1
    assert Quotas().sleep_left("a") is None  # no quota: unlimited
    a, b = create_key(st.store, "a")[1], create_key(st.store, "b")[1]
    with TestClient(create_app(st, close=False)) as api:
        r = api.post("/v1/a/contexts/doc/sleep", json={"wait": True}, headers=_auth(a))
        assert r.status_code == 429 and r.json()["error"] == "QuotaExceeded"
        assert "SLEEPTIME_QUOTA_SLEEP_TOKENS" in r.json()["message"]
        assert int(r.headers["Retry-After"]) >= 1
        assert api.post("/v1/a/contexts/doc/sleep", headers=_auth(a)).status_code == 429
        assert api.post("/v1/b/contexts/doc/sleep", headers=_auth(b)).status_code == 202
        use = api.get("/v1/a/usage", headers=_auth(a)).json()["sleep"]
        assert use["limit"] == 50 and use["left"] == 0 and use["used"] > 50
    st.close()


def test_dashboard_shows_quota_use(sqlite_url: str) -> None:
    st = _client(sqlite_url, quota_sleep_tokens=10_000, quota_test_tokens=500)
    st.ingest("a", "doc", TEXT)
    st.sleep("a", "doc")
    admin = create_key(st.store, None, admin=True)[1]
    with TestClient(create_app(st, close=False)) as api:
        page = api.get("/dashboard", headers=_auth(admin)).text
        assert "<table id='quotas'>" in page and "data-namespace='a'" in page
        assert " / 10,000</td>" in page and "0 / 500</td>" in page
    st.close()


# -- the explicit sleep: queued (202) or in the request (wait=true) --------------------


@pytest.fixture
def sleepy(
    sqlite_url: str, backend: str | None
) -> Iterator[tuple[SleepTime, TestClient, dict[str, str]]]:
    """A server over the embedded queue, or over Redis Streams."""
    st = _client(sqlite_url, backend)
    st.ingest("a", "doc", TEXT)
    key = create_key(st.store, "a")[1]
    with TestClient(create_app(st, close=False)) as api:
        yield st, api, _auth(key)
    st.close()


def test_sleep_is_queued_with_its_job(
    sleepy: tuple[SleepTime, TestClient, dict[str, str]],
) -> None:
    st, api, h = sleepy
    r = api.post("/v1/a/contexts/doc/sleep", headers=h)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert (job["namespace"], job["context_id"], job["version"]) == ("a", "doc", 1)
    assert job["state"] == "waiting" and job["id"]
    assert not st.artifacts("a", "doc").complete  # nothing ran in the request
    # asked again: the same job, not a second one
    again = api.post("/v1/a/contexts/doc/sleep", json={}, headers=h)
    assert again.status_code == 202 and again.json()["job"]["id"] == job["id"]
    waiting = [j for j in st.open_queue().list("waiting") if j.context_id == "doc"]
    assert [j.id for j in waiting] == [job["id"]]


def test_sleep_wait_runs_in_the_request(
    sleepy: tuple[SleepTime, TestClient, dict[str, str]],
) -> None:
    st, api, h = sleepy
    r = api.post("/v1/a/contexts/doc/sleep?wait=true", json={"k": 1, "questions": 1}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and len(r.json()["qas"]) == 1
    assert st.artifacts("a", "doc").complete
    r = api.post("/v1/a/contexts/doc/sleep", json={"wait": True}, headers=h)
    assert r.status_code == 200 and r.json()["skipped"] is True


def test_sleep_options_need_wait(sleepy: tuple[SleepTime, TestClient, dict[str, str]]) -> None:
    _, api, h = sleepy
    r = api.post("/v1/a/contexts/doc/sleep", json={"k": 2}, headers=h)
    assert r.status_code == 422 and "wait=true" in r.json()["message"]
    assert api.post("/v1/a/contexts/nope/sleep", headers=h).status_code == 404
    assert api.post("/v1/a/contexts/doc/sleep", json={"wait": 1}, headers=h).status_code == 422


def test_sleep_of_a_finished_job_runs_again(sqlite_url: str) -> None:
    """A version whose job is done: an explicit sleep runs (here: skipped at once,
    its artifacts being complete) and answers 200 with the report."""
    st = _client(sqlite_url, idle_after=0.0)
    st.ingest("a", "doc", TEXT)
    key = create_key(st.store, "a")[1]
    with TestClient(create_app(st, close=False)) as api:
        job = api.post("/v1/a/contexts/doc/sleep", headers=_auth(key)).json()["job"]
        queue = st.open_queue()
        claimed = [j for j in queue.claim("w", 10) if j.id == job["id"]]
        assert claimed
        st.sleep("a", "doc")
        assert queue.ack("w", claimed[0])
        r = api.post("/v1/a/contexts/doc/sleep", headers=_auth(key))
        assert r.status_code == 200 and r.json()["skipped"] is True
    st.close()


def test_mcp_ask_spends_the_same_quota(sqlite_url: str) -> None:
    pytest.importorskip("mcp", reason="needs the mcp extra (the README test command)")
    import asyncio

    from mcp import Client

    from sleeptime.server.mcp_server import create_mcp

    st = _client(sqlite_url, quota_test_tokens=10)
    server = create_mcp(st, namespace="acme")

    async def session() -> None:
        async with Client(server) as c:
            await c.call_tool("ingest", {"context_id": "d", "text": TEXT})
            first = await c.call_tool("ask", {"context_id": "d", "question": Q})
            assert not first.is_error
            refused = await c.call_tool("ask", {"context_id": "d", "question": Q})
            assert refused.is_error
            assert "SLEEPTIME_QUOTA_TEST_TOKENS" in str(getattr(refused.content[0], "text", ""))

    asyncio.run(session())
    st.close()


def test_zero_token_fast_path_answers_as_the_thread_pool_does(sqlite_url: str) -> None:
    """On a SQLite file without Redis a precomputed answer is served on the event
    loop; the reply is the one the thread pool's ask gives."""
    st = _client(sqlite_url, quota_test_tokens=1000)
    st.ingest("a", "doc", TEXT)
    st.sleep("a", "doc")
    predicted = st.artifacts("a", "doc").qas[0].question
    h = _auth(create_key(st.store, "a")[1])
    app = create_app(st, close=False)
    assert app.state.inline
    replies = []
    with TestClient(app) as api:
        for inline in (True, False):
            app.state.inline = inline
            for question in (predicted, Q):
                r = api.post("/v1/a/contexts/doc/ask", json={"question": question}, headers=h)
                assert r.status_code == 200
                replies.append({k: v for k, v in r.json().items() if k != "latency_ms"})
    assert replies[:2] == replies[2:]
    assert [r["source"] for r in replies] == ["predicted", "learned"] * 2
    st.close()


def test_explicit_sleep_promotes_a_waiting_job_and_revives_a_deferred_one(
    sqlite_url: str, backend: str | None
) -> None:
    """A version whose job is waiting at an ordinary priority, or was deferred by a
    sleep policy: the explicit sleep makes it the explicit priority's, which no policy
    holds back (queue.base.EXPLICIT_PRIORITY)."""
    from sleeptime.queue.base import EXPLICIT_PRIORITY

    st = _client(sqlite_url, backend, idle_after=0.0)
    h = _auth(create_key(st.store, "a")[1])
    queue = st.open_queue()
    with TestClient(create_app(st, close=False)) as api:
        queue.enqueue("a", "deferred", st.ingest("a", "deferred", TEXT).version)
        job = next(j for j in queue.claim("w", 10) if j.context_id == "deferred")
        assert queue.defer("w", job, "skipped: a test policy")
        # an ordinary job (or the relay's) first
        queue.enqueue("a", "waits", st.ingest("a", "waits", TEXT).version)
        for cid in ("waits", "deferred"):
            r = api.post(f"/v1/a/contexts/{cid}/sleep", headers=h)
            assert r.status_code == 202, r.text
            got = r.json()["job"]
            assert got["state"] == "waiting" and got["priority"] >= EXPLICIT_PRIORITY, got
        assert {j.context_id for j in queue.list("waiting")} >= {"waits", "deferred"}
        assert all(j.priority >= EXPLICIT_PRIORITY for j in queue.list("waiting"))
    st.close()
