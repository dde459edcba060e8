"""Deleting a context or a namespace, and the retention of old versions: text,
artifacts, KV blobs and hot-cache entries go; the ledger keeps counts; another
namespace is never touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.llm.kv import KVStore
from sleeptime.store.schema import QueryRow

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."


def _fill(st: SleepTime, ns: str, cid: str, text: str = TEXT) -> Path:
    """A context with artifacts, an answered query and a KV blob; returns the blob file."""
    st.ingest(ns, cid, text)
    st.sleep(ns, cid)
    st.ask(ns, cid, "How many apples are there?")
    kv = KVStore.from_settings(st.store, st.settings)
    blob = kv.put(
        namespace=ns,
        model_key="m",
        tokens=[1, 2, 3, *map(ord, cid)],
        data=b"state" * 10,
        context_id=cid,
        version=st.context(ns, cid).version,
    )
    assert blob is not None
    return kv.directory / blob.file


def _query_texts(st: SleepTime, ns: str) -> list[tuple[str, str]]:
    st.store.flush()
    with st.store.session() as s:
        rows = s.query(QueryRow).filter(QueryRow.namespace == ns).all()
        return [(r.question, r.answer) for r in rows]


def test_delete_removes_everything_but_counts(st: SleepTime) -> None:
    blob_a = _fill(st, "a", "doc")
    blob_b = _fill(st, "b", "doc")  # same id, other tenant
    other = _fill(st, "a", "keep")
    before = st.ledger("a", "doc")
    assert before.queries == 1 and before.sleep.calls > 0

    counts = st.delete("a", "doc")

    assert counts.contexts == 1 and counts.versions == 1 and counts.artifacts > 0
    assert counts.kv_blobs == 1 and counts.queries_redacted == 1
    with pytest.raises(ContextNotFound):
        st.context("a", "doc")
    with pytest.raises(ContextNotFound):
        st.ask("a", "doc", "How many apples are there?")
    assert not blob_a.exists()
    # the ledger keeps the counts, the query log keeps rows without text
    after = st.ledger("a", "doc")
    assert after.queries == before.queries and after.sleep == before.sleep
    assert ("", "") in _query_texts(st, "a")
    # namespace b and the other context of a are untouched
    assert st.context("b", "doc").text == TEXT and blob_b.exists() and other.exists()
    assert st.artifacts("b", "doc").complete and st.artifacts("a", "keep").complete
    assert all(q for q, _ in _query_texts(st, "b"))
    with pytest.raises(ContextNotFound):
        st.delete("a", "doc")  # nothing left to delete


def test_reingest_after_delete_continues_versions(st: SleepTime) -> None:
    st.ingest("a", "doc", TEXT)
    st.ingest("a", "doc", TEXT + " More.")
    st.sleep("a", "doc")
    st.delete("a", "doc")
    ctx = st.ingest("a", "doc", "Fresh text about pears.")
    assert ctx.version == 3  # never reuses a version number other processes may cache
    assert st.artifacts("a", "doc").learned is None  # no artifact of the deleted text
    assert st.context("a", "doc").text == "Fresh text about pears."


def test_delete_namespace_isolated(st: SleepTime) -> None:
    blobs_a = [_fill(st, "a", f"doc-{i}") for i in range(3)]
    blob_b = _fill(st, "b", "doc-0")
    blob_ab = _fill(st, "ab", "doc-0")  # a namespace whose name starts with "a"

    counts = st.delete_namespace("a")

    assert counts.contexts == 3 and counts.kv_blobs == 3
    assert st.store.context_ids("a") == []
    assert not any(p.exists() for p in blobs_a)
    assert st.store.context_ids("b") == ["doc-0"] and blob_b.exists()
    assert st.store.context_ids("ab") == ["doc-0"] and blob_ab.exists()
    assert st.artifacts("b", "doc-0").complete
    assert st.delete_namespace("a").contexts == 0  # idempotent
    with pytest.raises(InvalidInput):
        st.delete_namespace("a/b")


def test_async_twins(st: SleepTime) -> None:
    import asyncio

    st.ingest("a", "x", TEXT)
    st.ingest("a", "y", TEXT)
    assert asyncio.run(st.adelete("a", "x")).contexts == 1
    assert asyncio.run(st.adelete_namespace("a")).contexts == 1


@pytest.fixture
def keep2(database_url: str) -> Iterator[SleepTime]:
    settings = Settings(model="fake", n_questions=2, idle_after=0.0, keep_versions=2)
    client = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    yield client
    client.close()


def test_retention_prunes_old_versions_never_the_current(keep2: SleepTime) -> None:
    st = keep2
    for i in range(1, 5):
        st.ingest("a", "doc", f"{TEXT} Version {i}.")
        st.sleep("a", "doc")
    st.ingest("b", "doc", TEXT)
    assert st.store.versions("a", "doc") == [3, 4]
    assert st.store.get_context("a", "doc", 2) is None
    assert st.store.load_artifacts("a", "doc", 1).learned is None
    assert st.store.load_artifacts("a", "doc", 3).complete
    assert st.artifacts("a", "doc").version == 4 and st.artifacts("a", "doc").complete
    assert st.ledger("a", "doc").sleep.calls > 0  # counts of pruned versions are kept
    assert st.store.versions("b", "doc") == [1]


def test_keep_versions_one_keeps_only_current(database_url: str) -> None:
    settings = Settings(model="fake", n_questions=1, idle_after=0.0, keep_versions=1)
    with SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings) as st:
        for i in range(3):
            st.ingest("a", "doc", f"{TEXT} {i}")
        assert st.store.versions("a", "doc") == [3]


def test_delete_clears_hot_cache_entries(redis_server: Any, sqlite_url: str) -> None:
    # a generous Redis timeout: a loaded machine can stall one round trip past the online
    # path's 0.1 s, and the cache is then skipped for a cooldown (nothing filled)
    settings = Settings(
        model="fake", n_questions=2, idle_after=0.0, redis_url=redis_server.url, cache_timeout_s=5.0
    )
    with SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings) as st:
        assert st.cache is not None
        keys = st.cache.keys
        for ns in ("a", "b"):
            for cid in ("x", "y"):
                st.ingest(ns, cid, TEXT)
                st.sleep(ns, cid)
                st.ask(ns, cid, "How many apples are there?")  # fills the cache
        r = st.cache.r
        assert r.exists(keys.artifacts("a", "x"), keys.artifacts("b", "x")) == 2

        assert st.delete("a", "x").cache_keys == 1
        assert not r.exists(keys.artifacts("a", "x"))
        assert r.get(keys.version("a", "x")) == "2"  # past the deleted version
        assert r.exists(keys.artifacts("a", "y"))
        # a fill that raced the delete (read before, written after) is never served
        st.cache.put(st.store.load_artifacts("b", "x", 1).model_copy(update={"namespace": "a"}))
        with pytest.raises(ContextNotFound):
            st.ask("a", "x", "How many apples are there?")

        assert st.delete_namespace("a").cache_keys >= 1
        # job dedup keys belong to the queue and name no text; cached artifacts must go
        assert not r.keys(f"{keys.prefix}:art:a/*")
        assert r.exists(keys.artifacts("b", "x"), keys.artifacts("b", "y")) == 2
        assert st.ask("b", "x", "How many apples are there?").text


def test_cli_delete(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    env.pop("SLEEPTIME_REDIS_URL", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sleeptime", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    for ns, cid in (("a", "x"), ("a", "y"), ("b", "x")):
        assert run("ingest", ns, cid, "-", stdin=TEXT).returncode == 0
    refused = run("delete", "a")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "Traceback" not in refused.stderr
    one = run("delete", "a", "x", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["contexts"] == 1
    missing = run("delete", "a", "x")
    assert missing.returncode == 2 and "no context" in missing.stderr
    everything = run("delete", "a", "--yes")
    assert everything.returncode == 0 and "1 context(s)" in everything.stdout
    assert run("show", "b", "x").returncode == 0
