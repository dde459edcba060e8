"""Bad input gets one InvalidInput line before any model call or write, on both SQL
backends, from Python and from the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from store_invariants import check_invariants, row_counts

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.errors import InvalidSettings

TEXT = "Ann has 3 apples. Bob gives her 4 more apples."


@pytest.fixture
def model() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def client(database_url: str, model: FakeChatModel) -> Iterator[SleepTime]:
    settings = Settings(model="fake", n_questions=2, idle_after=0.0)
    st = SleepTime(model=model, database_url=database_url, settings=settings)
    st.ingest("acme", "doc-1", TEXT)
    yield st
    st.close()


def rejected(st: SleepTime, model: FakeChatModel, call: Callable[[], Any], fragment: str) -> str:
    """``call`` raises one InvalidInput line containing ``fragment``; no model call, no
    row written."""
    before, calls = row_counts(st.store), model.calls
    with pytest.raises(InvalidInput) as info:
        call()
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message and len(message) < 400, message
    assert model.calls == calls, "a model was called for rejected input"
    assert row_counts(st.store) == before, "rejected input wrote rows"
    check_invariants(st.store)
    return message


# -- NUL characters (PostgreSQL cannot store them) ------------------------------------


def test_nul_in_context_text(client: SleepTime, model: FakeChatModel) -> None:
    rejected(client, model, lambda: client.ingest("acme", "doc-2", "a\x00b"), "NUL")
    rejected(client, model, lambda: client.ingest("acme", "doc-1", TEXT + "\x00"), "NUL")


def test_nul_in_a_question_is_rejected_before_it_is_billed(
    client: SleepTime, model: FakeChatModel
) -> None:
    ledger = client.ledger("acme", "doc-1")
    rejected(client, model, lambda: client.ask("acme", "doc-1", "How many\x00 apples?"), "NUL")
    assert client.ledger("acme", "doc-1") == ledger


@pytest.mark.parametrize(
    ("namespace", "context_id"),
    [("ac\x00me", "doc-1"), ("acme", "doc\x00-1"), ("acme", "\x00")],
)
def test_nul_in_ids(
    client: SleepTime, model: FakeChatModel, namespace: str, context_id: str
) -> None:
    rejected(client, model, lambda: client.ingest(namespace, context_id, TEXT), "bad")
    rejected(client, model, lambda: client.ask(namespace, context_id, "How many?"), "bad")


# -- lone surrogates (not encodable; what undecodable bytes become) -------------------


def test_lone_surrogate_in_a_question_is_rejected_before_the_model_call(
    client: SleepTime, model: FakeChatModel
) -> None:
    ledger = client.ledger("acme", "doc-1")
    rejected(client, model, lambda: client.ask("acme", "doc-1", "How many \ud800?"), "surrogate")
    assert client.ledger("acme", "doc-1") == ledger


def test_lone_surrogates_in_text_and_ids(client: SleepTime, model: FakeChatModel) -> None:
    rejected(client, model, lambda: client.ingest("acme", "doc-2", "abc \udcff"), "surrogate")
    rejected(client, model, lambda: client.ingest("acme", "doc-\ud800", TEXT), "surrogate")
    rejected(client, model, lambda: client.ledger("acme", "doc-\ud800"), "surrogate")


# -- strict types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_tokens": "5"}, "max_tokens must be an integer"),
        ({"max_tokens": 5.0}, "max_tokens must be an integer"),
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"verbosity": "1"}, "verbosity must be an integer"),
        ({"verbosity": True}, "verbosity must be an integer"),
        ({"verbosity": 7}, "verbosity must be 0-4"),
        ({"budget": {"verbosity": 1}}, "budget must be a sleeptime.Budget"),
    ],
)
def test_ask_argument_types(
    client: SleepTime, model: FakeChatModel, kwargs: dict[str, Any], fragment: str
) -> None:
    rejected(client, model, lambda: client.ask("acme", "doc-1", "How many?", **kwargs), fragment)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"k": "2"}, "k must be an integer"),
        ({"k": 0}, "k must be >= 1"),
        ({"n_questions": "3"}, "n_questions must be an integer"),
        ({"n_questions": -1}, "n_questions must be 0-50"),
        ({"version": "1"}, "version must be an integer"),
        ({"version": 0}, "version must be >= 1"),
        ({"progress": "print"}, "progress must be a callable"),
    ],
)
def test_sleep_argument_types(
    client: SleepTime, model: FakeChatModel, kwargs: dict[str, Any], fragment: str
) -> None:
    rejected(client, model, lambda: client.sleep("acme", "doc-1", **kwargs), fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((b"acme", "doc-1", TEXT), "bad namespace"),
        (("acme", 1, TEXT), "bad context id"),
        (("acme", "doc-1", b"bytes"), "must be a string"),
        (("acme", "doc-1", None), "must be a string"),
    ],
)
def test_ingest_argument_types(
    client: SleepTime, model: FakeChatModel, args: tuple[Any, ...], fragment: str
) -> None:
    rejected(client, model, lambda: client.ingest(*args), fragment)


def test_question_type(client: SleepTime, model: FakeChatModel) -> None:
    question: Any = b"How many?"
    rejected(client, model, lambda: client.ask("acme", "doc-1", question), "must be a string")


# -- namespaces, sizes ------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["acme\n", "acme\r\n", "\nacme", "ac me", "", "-acme"])
def test_namespace_rule_is_anchored(
    client: SleepTime, model: FakeChatModel, namespace: str
) -> None:
    rejected(client, model, lambda: client.ingest(namespace, "doc-1", TEXT), "bad namespace")
    rejected(client, model, lambda: client.ask(namespace, "doc-1", "How many?"), "bad namespace")


def test_a_10_mb_question_is_rejected(client: SleepTime, model: FakeChatModel) -> None:
    huge = "How many apples? " * (10_000_000 // 17)
    message = rejected(client, model, lambda: client.ask("acme", "doc-1", huge), "the limit")
    assert "SLEEPTIME_MAX_QUESTION_CHARS" in message


def test_the_question_limit_is_a_setting(database_url: str, model: FakeChatModel) -> None:
    settings = Settings(model="fake", max_question_chars=20)
    with SleepTime(model=model, database_url=database_url, settings=settings) as st:
        st.ingest("acme", "doc-1", TEXT)
        assert st.ask("acme", "doc-1", "x" * 20).text
        rejected(st, model, lambda: st.ask("acme", "doc-1", "x" * 21), "the limit is 20")
    assert Settings().max_question_chars == 4000


def test_async_twins_validate(client: SleepTime, model: FakeChatModel) -> None:
    calls = model.calls
    with pytest.raises(InvalidInput):
        asyncio.run(client.aask("acme", "doc-1", "How\x00 many?"))
    with pytest.raises(InvalidInput):
        asyncio.run(client.aask("acme", "doc-1", "How many?", max_tokens="5"))
    with pytest.raises(InvalidInput):
        asyncio.run(client.aingest("acme", "doc-2", "\ud800"))
    with pytest.raises(InvalidInput):
        asyncio.run(client.asleep("acme", "doc-1", k="2"))
    with pytest.raises(InvalidInput):
        asyncio.run(client.aledger("acme\n", "doc-1"))
    assert model.calls == calls


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(InvalidSettings) as info:
        Settings(sleep_k="many")  # type: ignore[arg-type]
    assert "SLEEPTIME_SLEEP_K" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InvalidSettings, match="SLEEPTIME_REDIS_URL"):
        Settings(redis_url="redsi://cache:6379/0")
    assert Settings(redis_url="").redis_url is None
    assert Settings(redis_url="unix:///run/redis.sock").redis_url == "unix:///run/redis.sock"


# -- the command line -----------------------------------------------------------------


def run(
    args: list[str | bytes], db: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], fragment: str) -> None:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err + proc.stdout.decode("utf-8", "replace")
    assert "Traceback" not in err
    assert fragment in err, err
    assert len(err.strip().splitlines()) <= 2, err  # one line (may soft-wrap once)


def test_cli_invalid_utf8_arguments(database_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT, encoding="utf-8")
    assert run(["ingest", "acme", "doc-1", str(doc)], database_url).returncode == 0
    proc = run(["ask", "acme", "doc-1", b"How many \xff\xfe apples?"], database_url)
    assert_one_line_error(proc, "not valid UTF-8")
    proc = run(["ingest", "acme", b"doc-\xc3", str(doc)], database_url)
    assert_one_line_error(proc, "not valid UTF-8")


def test_cli_invalid_utf8_and_nul_in_ingested_text(database_url: str, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\xe9 au lait costs 3 euros.".encode("latin-1"))
    assert_one_line_error(run(["ingest", "acme", "doc-1", str(latin1)], database_url), "UTF-8")
    proc = run(["ingest", "acme", "doc-1", "-"], database_url, stdin=b"caf\xe9 3 apples")
    assert_one_line_error(proc, "standard input is not UTF-8")
    proc = run(["ingest", "acme", "doc-1", "-"], database_url, stdin=b"3 apples\x00 and 4 pears")
    assert_one_line_error(proc, "NUL")
    proc = run(["show", "acme", "doc-1"], database_url)
    assert proc.returncode == 2  # nothing was stored


def test_cli_bad_question_and_namespace(database_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT, encoding="utf-8")
    assert run(["ingest", "acme", "doc-1", str(doc)], database_url).returncode == 0
    assert_one_line_error(run(["ask", "acme\n", "doc-1", "How many?"], database_url), "namespace")
    proc = run(["ask", "acme", "doc-1", "x" * 5000], database_url)
    assert_one_line_error(proc, "SLEEPTIME_MAX_QUESTION_CHARS")


def test_database_url_type(model: FakeChatModel) -> None:
    url: Any = 5432
    with pytest.raises(InvalidInput, match="database URL must be a non-empty string"):
        SleepTime(model=model, database_url=url)
