"""Shared fixtures: real Redis servers on free loopback ports, SQLite files, and
PostgreSQL when one is reachable (tests marked ``postgres`` skip otherwise)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.bench.redis_server import RedisServer
from sleeptime.redact import redact_text, redact_url

POSTGRES_URL = os.environ.get(
    "SLEEPTIME_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port; fsync on every write so a
    restart in a test never loses an acknowledged write."""
    try:
        server = RedisServer(tmp_path, appendfsync="always").start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}: run the README test command (it installs redis-server)")
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sleeptime.db'}"


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, in one line (None: they can)."""
    try:
        import psycopg
    except ImportError:
        return 'PostgreSQL driver not installed: pip install "sleeptime[postgres]"'
    url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=2):
            return None
    except Exception as exc:
        detail = " ".join(redact_text(exc, url).split())[:200]
        where = redact_url(POSTGRES_URL)
        return f"PostgreSQL not reachable at {where} ({detail}); set SLEEPTIME_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both SQL backends; PostgreSQL gets a fresh schema per test and skips if absent."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sleeptime.db'}"
        return
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    raw = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def settings() -> Settings:
    return Settings(model="fake", n_questions=3, idle_after=0.0)


@pytest.fixture
def st(database_url: str, settings: Settings) -> Iterator[SleepTime]:
    client = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    yield client
    client.close()
