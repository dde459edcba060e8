"""Redis hot cache on the online path (real redis-server): hits skip SQL, a new
version invalidates, tenants never share entries, Redis down -> SQL + one warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.cache import HotCache
from sleeptime.models import Artifacts, PredictedQA


@pytest.fixture
def st(redis_server: Any, sqlite_url: str) -> Any:
    # a generous Redis timeout: these tests are about what is cached, and a loaded
    # machine can stall one round trip past the online path's 0.1 s (then the cache
    # is skipped for a cooldown and nothing is filled)
    settings = Settings(
        model="fake", n_questions=2, idle_after=0.0, redis_url=redis_server.url, cache_timeout_s=5.0
    )
    client = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    yield client
    client.close()


def counting_sql(st: SleepTime) -> list[int]:
    """Count reads that reach SQL (the fallback behind the cache)."""
    calls = [0]
    inner = st._artifacts_from_sql

    def fallback(ns: str, cid: str) -> Any:
        calls[0] += 1
        return inner(ns, cid)

    st.artifact_source = st.cache.wrap(fallback)
    return calls


def test_complete_artifacts_are_served_from_redis(st: SleepTime) -> None:
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    sql = counting_sql(st)
    st.ask("acme", "doc", "How many apples?")  # no artifacts yet: nothing cached
    st.ask("acme", "doc", "How many apples?")
    assert sql[0] == 2
    st.sleep("acme", "doc")
    qa = st.artifacts("acme", "doc").qas[0]  # a miss: read from SQL, fills the cache
    assert sql[0] == 3
    for _ in range(5):
        ans = st.ask("acme", "doc", qa.question)
        assert ans.source == "predicted" and ans.text == qa.answer
    assert sql[0] == 3  # every ask was a hit
    assert st.cache.hits >= 5


def test_new_version_invalidates(st: SleepTime) -> None:
    st.ingest("acme", "doc", "Ann has 3 apples.")
    st.sleep("acme", "doc")
    old = st.artifacts("acme", "doc")
    assert old.version == 1 and st.artifacts("acme", "doc").version == 1  # cached now
    st.ingest("acme", "doc", "Ann has 7 apples.")
    fresh = st.artifacts("acme", "doc")
    assert fresh.version == 2 and not fresh.complete
    ans = st.ask("acme", "doc", old.qas[0].question)
    assert ans.version == 2 and ans.source != "predicted"


def test_stale_fill_racing_an_ingest_is_a_miss(redis_server: Any) -> None:
    cache = HotCache(redis_server.url, prefix="t")
    v1 = Artifacts(namespace="acme", context_id="doc", version=1, learned="x", complete=True)
    cache.invalidate("acme", "doc", 2)  # an ingest made v2 ...
    cache.put(v1)  # ... while a slow reader was still filling v1
    newest, arts = cache.get("acme", "doc")
    assert newest == 2 and arts is None
    cache.invalidate("acme", "doc", 1)  # an older invalidation never rolls back
    assert cache.get("acme", "doc")[0] == 2
    cache.close()


def test_tenants_never_share_entries(redis_server: Any) -> None:
    cache = HotCache(redis_server.url, prefix="t")
    a = Artifacts(
        namespace="a:b",
        context_id="c",
        version=1,
        complete=True,
        qas=(PredictedQA(question="q", answer="secret of a:b"),),
    )
    cache.put(a)
    assert cache.get("a", "b:c")[1] is None
    assert cache.get("a:b", "c")[1] == a
    # an entry whose payload names another tenant (corrupt or forged) is ignored
    cache.r.set(cache.keys.artifacts("other", "c"), a.model_dump_json())
    assert cache.get("other", "c")[1] is None
    cache.close()


def test_incomplete_artifacts_are_not_cached(redis_server: Any) -> None:
    cache = HotCache(redis_server.url, prefix="t")
    cache.put(Artifacts(namespace="acme", context_id="doc", version=1, learned="half"))
    assert cache.get("acme", "doc") == (None, None)
    cache.close()


def test_redis_down_falls_back_to_sql_with_one_warning(
    st: SleepTime, redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    st.sleep("acme", "doc")
    qa = st.artifacts("acme", "doc").qas[0]
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="sleeptime.cache")
    cache = st.cache
    assert cache is not None
    now = [1000.0]
    cache.clock = lambda: now[0]
    tried: list[str] = []
    get = cache.get

    def counting_get(namespace: str, context_id: str) -> Any:
        tried.append(context_id)
        return get(namespace, context_id)

    cache.get = counting_get  # type: ignore[method-assign]
    answers = [st.ask("acme", "doc", qa.question) for _ in range(20)]
    assert all(a.source == "predicted" and a.text == qa.answer for a in answers)
    warnings = [r for r in caplog.records if "hot cache unavailable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert len(tried) == 1  # one request met the dead socket; the rest skipped Redis
    now[0] += cache.cooldown_s - 0.01
    st.ask("acme", "doc", qa.question)
    assert len(tried) == 1  # still cooling down
    redis_server.start()
    now[0] += 0.02  # the cool-down is over: Redis is tried again
    st.ask("acme", "doc", qa.question)
    hits = st.cache.hits
    st.ask("acme", "doc", qa.question)
    assert st.cache.hits == hits + 1  # back on Redis


def test_a_worker_warms_the_cache_with_the_passage_index(
    redis_server: Any, sqlite_url: str
) -> None:
    """What a worker puts in Redis is what SQL holds, the passage index included: a
    learned answer read through the cache sends passages, not the whole text."""
    from sleeptime.worker.runtime import Worker

    settings = Settings(
        model="fake",
        n_questions=1,
        idle_after=0.0,
        redis_url=redis_server.url,
        cache_timeout_s=5.0,  # see the st fixture
        passage_threshold_tokens=300,
        sleep_max_tokens=40,
    )
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    queue = st.open_queue()
    text = "\n\n".join(f"Shelf {i} holds {i * 4} jars of honey from farm {i}." for i in range(80))
    st.ingest("acme", "doc", text)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    Worker(st, queue).run(burst=True, install_signals=False)
    sql = counting_sql(st)
    ans = st.ask("acme", "doc", "How many jars does shelf 17 hold?", verbosity=0)
    assert sql[0] == 0  # read from Redis
    assert ans.source == "learned" and ans.passages
    assert any("Shelf 17 " in text[p.start : p.end] for p in ans.passages)
    st.close()
