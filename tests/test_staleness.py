"""The bound on cross-process staleness (docs/reliability.md): once an ingest has
returned, the replaced version's precomputed answers are never served by the process
that ingested, and by any other process for at most about one relay interval
(``SLEEPTIME_RELAY_S``), whether either process has Redis or not.

The writer is a second process (a subprocess); the reader's cache clock is stepped,
never slept."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sleeptime import FakeChatModel, Settings, SleepTime

RELAY_S = 5.0

WRITER = """
import sys
from sleeptime import FakeChatModel, Settings, SleepTime

url, redis_url, queue_path, text = sys.argv[1:5]
settings = Settings(
    model="fake",
    n_questions=2,
    idle_after=0.0,
    relay_s=0.05,
    redis_url=redis_url or None,
    queue_path=queue_path,
)
st = SleepTime(model=FakeChatModel(), database_url=url, settings=settings)
st.open_queue()  # its own queue and relay: embedded SQLite without Redis
print(st.ingest("acme", "doc", text).version)
st.close()
"""


def write_in_another_process(url: str, text: str, redis_url: str = "") -> int:
    """Ingest ``text`` in a subprocess; returns the version once its ingest returned
    (and the process exited, its relay's last pass done)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTIME_")}
    out = subprocess.run(
        [sys.executable, "-c", WRITER, url, redis_url, QUEUE[url], text],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


#: Database URL -> the embedded queue file of its test (not the working directory).
QUEUE: dict[str, str] = {}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reader(url: str, redis_url: str | None) -> SleepTime:
    settings = Settings(
        model="fake", n_questions=2, idle_after=0.0, relay_s=RELAY_S, redis_url=redis_url
    )
    return SleepTime(model=FakeChatModel(), database_url=url, settings=settings)


@pytest.fixture
def prepared(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A context whose v1 is learned (its job relayed to an embedded queue, so no
    reader's relay moves the version key later), and one of v1's precomputed
    questions."""
    QUEUE[database_url] = str(tmp_path / "queue.db")
    settings = Settings(model="fake", n_questions=2, idle_after=0.0, queue_path=QUEUE[database_url])
    st = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    st.open_queue()
    st.ingest("acme", "doc", "Ann has 3 apples. Bob has 4 pears.")
    report = st.sleep("acme", "doc")
    assert report.version == 1 and report.qas
    st.close()
    assert st.store.unsent_outbox() == []
    yield database_url, report.qas[0].question
    QUEUE.pop(database_url, None)


def served_v1(st: SleepTime, question: str) -> bool:
    ans = st.ask("acme", "doc", question)
    return ans.version == 1 and ans.source == "predicted"


def test_without_redis_another_process_never_serves_the_old_version(
    prepared: tuple[str, str],
) -> None:
    """No Redis anywhere: a reader's in-process caches are keyed by version and the
    current version is read from SQL on every ask, so the bound is zero."""
    url, question = prepared
    st = reader(url, None)
    assert served_v1(st, question) and served_v1(st, question)  # v1 cached in-process
    assert write_in_another_process(url, "Ann has 30 apples. Bob has 40 pears.") == 2
    ans = st.ask("acme", "doc", question)
    assert ans.version == 2 and ans.source != "predicted"
    st.close()


def test_redis_reader_after_a_writer_without_redis(
    prepared: tuple[str, str], redis_server: Any
) -> None:
    """The writer has no Redis: its relay sends the job to its embedded queue and never
    moves the cache's version key. The reader (Redis) serves the new version at most one
    relay interval after the ingest returned (before the fix: until the 1-hour TTL)."""
    url, question = prepared
    st = reader(url, redis_server.url)
    assert st.cache is not None
    clock = st.cache.clock = Clock()
    assert served_v1(st, question) and served_v1(st, question)
    assert st.cache.hits >= 1  # the second ask was a Redis hit
    assert write_in_another_process(url, "Ann has 30 apples. Bob has 40 pears.") == 2
    clock.now += RELAY_S  # one relay interval later
    ans = st.ask("acme", "doc", question)
    assert ans.version == 2 and ans.source != "predicted"
    # and the version key moved on for every other process with Redis too
    assert st.cache.r.get(st.cache.keys.version("acme", "doc")) == "2"
    st.close()


def test_redis_reader_started_after_a_writer_without_redis(
    prepared: tuple[str, str], redis_server: Any
) -> None:
    """No process with Redis was running during the ingest: the cache still holds v1
    under a version key at v1. A process that starts later never serves it."""
    url, question = prepared
    first = reader(url, redis_server.url)
    assert served_v1(first, question) and served_v1(first, question)  # cached in Redis
    assert first.cache is not None and first.cache.hits == 1
    first.close()
    assert write_in_another_process(url, "Ann has 30 apples. Bob has 40 pears.") == 2
    later = reader(url, redis_server.url)
    assert later.cache is not None
    later.cache.clock = Clock()  # no time passes
    ans = later.ask("acme", "doc", question)
    assert ans.version == 2 and ans.source != "predicted"
    later.close()


def test_redis_reader_after_a_writer_with_redis(
    prepared: tuple[str, str], redis_server: Any
) -> None:
    """Both have Redis: the writer's relay moves the version key (its last pass ran
    before it exited), so the reader serves the new version at once."""
    url, question = prepared
    st = reader(url, redis_server.url)
    assert st.cache is not None
    st.cache.clock = Clock()  # no time passes
    assert served_v1(st, question) and served_v1(st, question)
    assert write_in_another_process(url, "Ann has 30 apples.", redis_server.url) == 2
    ans = st.ask("acme", "doc", question)
    assert ans.version == 2 and ans.source != "predicted"
    st.close()


def test_the_writing_process_never_serves_the_old_version(
    prepared: tuple[str, str], redis_server: Any
) -> None:
    """In the process that ingested, the old version is gone when ingest returns, even
    though its relay has not moved the version key (Redis answers nothing here)."""
    url, question = prepared
    st = reader(url, redis_server.url)
    assert st.cache is not None and st.outbox_relay is not None
    st.cache.clock = Clock()
    assert served_v1(st, question) and served_v1(st, question)
    st.outbox_relay.close()  # no relay: the key stays at v1
    st.ingest("acme", "doc", "Ann has 30 apples. Bob has 40 pears.")
    assert st.cache.r.get(st.cache.keys.version("acme", "doc")) == "1"
    ans = st.ask("acme", "doc", question)
    assert ans.version == 2 and ans.source != "predicted"
    st.close()


def test_a_hit_is_confirmed_once_per_relay_interval(
    prepared: tuple[str, str], redis_server: Any
) -> None:
    """The price of the bound: one indexed SQL read per context per relay interval."""
    url, question = prepared
    st = reader(url, redis_server.url)
    assert st.cache is not None
    clock = st.cache.clock = Clock()
    reads: list[str] = []
    current = st.store.contexts.current_version

    def counting(ns: str, cid: str) -> int | None:
        reads.append(cid)
        return current(ns, cid)

    st.store.contexts.current_version = counting  # type: ignore[method-assign]
    st.ask("acme", "doc", question)  # a miss, or a hit confirmed now
    reads.clear()
    for _ in range(10):
        assert served_v1(st, question)
    assert reads == []  # confirmed within the interval
    clock.now += RELAY_S
    assert served_v1(st, question)
    assert reads == ["doc"]
    st.close()
