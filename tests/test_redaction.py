"""Passwords never reach messages, exceptions, CLI output or logs, whatever the URL."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback

import pytest
from typer.testing import CliRunner

from sleeptime import FakeChatModel, Settings, SleepTime, SleepTimeError
from sleeptime.cache import HotCache
from sleeptime.cli import app
from sleeptime.errors import InvalidSettings, StoreUnavailable
from sleeptime.queue.base import QueueUnavailable
from sleeptime.queue.redis_streams import RedisStreamsQueue
from sleeptime.redact import redact_text, redact_url
from sleeptime.store.sql import SQLStore

# (url, secrets that must not appear, parts that should stay visible)
CASES = [
    ("postgresql+psycopg://app:p@ss@db.example:5432/st", ["p@ss"], ["db.example:5432/st", "app"]),
    ("redis://:s3cr@t@localhost:6379/0", ["s3cr@t", "s3cr"], ["localhost:6379/0"]),
    ("redis://default:a@b@c@cache:6380/1", ["a@b@c"], ["cache:6380/1"]),
    (
        "postgresql://app:pw1234@h/db?sslpassword=sslsecret&password=qsecret&sslmode=require",
        ["pw1234", "sslsecret", "qsecret"],
        ["sslmode=require", "h/db"],
    ),
    ("rediss://cache:6380/0?password=tok3n&ssl_cert_reqs=none", ["tok3n"], ["ssl_cert_reqs=none"]),
    ("redis://cache/0?token=abcd1234&api_key=k3y99", ["abcd1234", "k3y99"], ["cache/0"]),
    ("postgresql://app:p/ss?w0rd@h/db", ["p/ss?w0rd", "ss?w0rd"], ["h/db"]),
    ("postgresql://app:p%40ss%2Fword@h/db", ["p%40ss%2Fword", "p@ss/word"], ["h/db"]),
    ("unix://:sockpw@/run/redis.sock?db=0", ["sockpw"], ["/run/redis.sock"]),
    ("postgresql://app:pw99@[::1]:5432/db", ["pw99"], ["[::1]:5432"]),
    ("postgresql://app@h/db?application_name=a@b", [], ["app@h/db", "application_name=a@b"]),
    ("sqlite:////var/lib/st.db", [], ["/var/lib/st.db"]),
]

UNPARSEABLE = [
    ("postgresql://app:pw99xx@h:notaport/db", "unparseable postgresql URL (hidden)"),
    ("redis://:pw99xx@[::1/0", "unparseable redis URL (hidden)"),
    ("app:pw99xx@localhost:5432", "unparseable URL (hidden)"),
    ("pw99xx", "unparseable URL (hidden)"),
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("url", "secrets", "visible"), CASES)
def test_redact_url(url: str, secrets: list[str], visible: list[str]) -> None:
    out = redact_url(url)
    for secret in secrets:
        assert secret not in out, out
    for part in visible:
        assert part in out, out
    if secrets:
        assert "***" in out


@pytest.mark.parametrize(("url", "expected"), UNPARSEABLE)
def test_an_unparseable_url_is_never_printed(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_scrubs_quoted_urls_and_decoded_passwords() -> None:
    url = "postgresql://app:p%40ssw0rd@h/db?sslpassword=k3y-secret"
    message = f"cannot use {url}: password p@ssw0rd rejected, key k3y-secret"
    out = redact_text(message, url)
    for secret in ("p%40ssw0rd", "p@ssw0rd", "k3y-secret"):
        assert secret not in out
    assert "postgresql://app:***@h/db" in out


def test_store_errors_hide_the_password() -> None:
    url = f"postgresql+psycopg://app:s3cr@t-pw@127.0.0.1:{closed_port()}/db?password=qs3cret"
    with pytest.raises(StoreUnavailable) as info:
        SQLStore(url)
    for text in (str(info.value), repr(info.value)):
        assert "s3cr@t-pw" not in text and "t-pw" not in text and "qs3cret" not in text
    with pytest.raises(StoreUnavailable) as info:
        SQLStore("postgresql+psycopg://app:pw-secret-1@127.0.0.1:notaport/db")
    assert "pw-secret-1" not in str(info.value)
    assert "unparseable postgresql+psycopg URL (hidden)" in str(info.value)


def test_settings_never_show_a_password() -> None:
    """Before: repr(Settings(...)) printed the database and Redis passwords."""
    db = "postgresql+psycopg://app:db-pw-1234@db.example:5432/st?sslpassword=ssl-pw-9"
    redis = "redis://:rd-pw-5678@cache:6379/0"
    secret = "session-secret-" + "x" * 20
    settings = Settings(database_url=db, redis_url=redis, session_secret=secret)
    for text in (repr(settings), str(settings), settings.model_dump_json(), f"{settings!r}"):
        for hidden in ("db-pw-1234", "ssl-pw-9", "rd-pw-5678", secret):
            assert hidden not in text, text
    assert "postgresql+psycopg://app:***@db.example:5432/st" in repr(settings)
    assert "redis://:***@cache:6379/0" in repr(settings)
    # every reader still gets the URLs themselves
    assert settings.database_url == db and settings.redis_url == redis
    assert settings.session_secret == secret
    assert Settings.model_validate(settings.model_dump()).database_url == db


def test_a_printed_traceback_never_shows_the_password() -> None:
    """Before: the StoreUnavailable's cause was the driver's error, whose message quotes
    SQLAlchemy's host of ``p@ss@host`` URLs: the rest of the password."""
    url = f"postgresql+psycopg://app:s3cr@t-pw@127.0.0.1:{closed_port()}/db?password=qs3cret"
    with pytest.raises(StoreUnavailable) as info:
        SQLStore(url)
    printed = "".join(traceback.format_exception(info.value))
    assert "OperationalError" in printed  # the driver's error is named, its text redacted
    for secret in ("s3cr@t-pw", "t-pw", "qs3cret"):
        assert secret not in printed, printed
    url = "postgresql+psycopg://app:tb-secret-7@127.0.0.1:5432/db?connect_timeout=abc"
    with pytest.raises(StoreUnavailable) as info:
        SQLStore(url)
    assert "bad value for connect_timeout" in str(info.value)
    assert "tb-secret-7" not in "".join(traceback.format_exception(info.value))
    queue = RedisStreamsQueue(f"redis://:r3d@s-pw@127.0.0.1:{closed_port()}/0")
    with pytest.raises(QueueUnavailable) as qinfo:
        queue.counts()
    queue.close()
    printed = "".join(traceback.format_exception(qinfo.value))
    assert "r3d@s-pw" not in printed and "s-pw" not in printed


def test_redis_queue_errors_hide_the_password() -> None:
    url = f"redis://:r3d@s-pw@127.0.0.1:{closed_port()}/0"
    queue = RedisStreamsQueue(url)
    with pytest.raises(QueueUnavailable) as info:
        queue.counts()
    queue.close()
    assert "r3d@s-pw" not in str(info.value) and "s-pw" not in str(info.value)
    assert "redis://:***@127.0.0.1" in str(info.value)


def test_cache_and_enqueue_logs_hide_the_password(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:c@che-pw@127.0.0.1:{closed_port()}/0"
    settings = Settings(model="fake", redis_url=url, idle_after=0.0)
    with caplog.at_level(logging.WARNING):
        st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
        st.ingest("acme", "doc-1", "Ann has 3 apples.")
        assert st.cache is not None
        cache: HotCache = st.cache
        cache._down_until = 0.0  # let the read try Redis again and log
        st.artifacts("acme", "doc-1")
        st.close()
    assert caplog.records, "expected warnings about the unreachable Redis"
    assert "c@che-pw" not in caplog.text and "che-pw" not in caplog.text
    assert "***" in caplog.text


def test_a_misspelled_redis_scheme_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InvalidSettings) as info:
        Settings(redis_url="redsi://:hunter2-pw@cache:6379/0")
    message = str(info.value)
    assert "SLEEPTIME_REDIS_URL" in message and "redis://" in message
    assert "hunter2-pw" not in message and len(message.splitlines()) == 1
    assert isinstance(info.value, SleepTimeError) and isinstance(info.value, ValueError)
    monkeypatch.setenv("SLEEPTIME_REDIS_URL", "redsi://:hunter2-pw@cache:6379/0")
    with pytest.raises(InvalidSettings):
        SleepTime(model="fake", database_url="sqlite:///:memory:")


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_cli_errors_hide_the_password(tmp_path: object) -> None:
    url = f"postgresql+psycopg://app:cl1@pw@127.0.0.1:{closed_port()}/db"
    proc = run_cli(["show", "acme", "doc-1", "--database-url", url])
    assert proc.returncode == 2, proc.stderr
    assert "cl1@pw" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(["jobs"], env={"SLEEPTIME_REDIS_URL": "redsi://:cl1@pw@cache/0"})
    assert proc.returncode == 2, proc.stderr
    assert "cl1@pw" not in proc.stdout + proc.stderr and "SLEEPTIME_REDIS_URL" in proc.stderr


@pytest.mark.postgres
def test_demo_does_not_print_the_database_password(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a URL with a password: PostgreSQL (trust auth ignores it)")
    url = database_url.replace("://postgres@", "://postgres:d3mo%40pw@", 1)
    assert url != database_url
    out = CliRunner().invoke(app, ["demo", "--model", "fake", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert "postgresql+psycopg://postgres:***@127.0.0.1" in out.output
    assert "d3mo" not in out.output
