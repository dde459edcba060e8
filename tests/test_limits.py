"""One set of bounds at every entry point (issue 19, item 3): the library, the HTTP API,
the MCP tools and the CLI refuse the same k, questions, max_tokens, thinking tokens
and extend, before any model call or write, with one line (over HTTP a 422
``InvalidInput``). The bounds live in sleeptime.validation; Settings takes its caps
from there and the token ceiling is a setting."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from store_invariants import row_counts

from sleeptime import Budget, FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.validation import MAX_EXTEND, MAX_QUESTIONS, MAX_SLEEP_K, MAX_TOKENS_CEILING

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."
Q = "How many apples are there?"


@pytest.fixture
def model() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def st(sqlite_url: str, model: FakeChatModel) -> Iterator[SleepTime]:
    settings = Settings(model="fake", n_questions=2, idle_after=3600.0)
    with SleepTime(model=model, database_url=sqlite_url, settings=settings) as client:
        client.ingest("acme", "doc", TEXT)
        yield client


def refused(st: SleepTime, model: FakeChatModel, call: Any, fragment: str) -> str:
    before, calls = row_counts(st.store), model.calls
    with pytest.raises(InvalidInput) as info:
        call()
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    assert model.calls == calls, "a model was called for a request over the bounds"
    assert row_counts(st.store) == before
    return message


def test_settings_caps_are_the_validation_bounds() -> None:
    """One source: the settings' caps are the entry points' bounds."""

    def le(name: str) -> Any:
        return next(m.le for m in Settings.model_fields[name].metadata if hasattr(m, "le"))

    assert le("sleep_k") == MAX_SLEEP_K == 16
    assert le("n_questions") == MAX_QUESTIONS == 50
    assert Settings().max_tokens_ceiling == MAX_TOKENS_CEILING == 131_072


# -- the library ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"k": 100}, "k must be 1-16 (got 100)"),
        ({"k": MAX_SLEEP_K + 1}, "k must be 1-16"),
        ({"n_questions": 200}, "n_questions must be 0-50 (got 200)"),
    ],
)
def test_sleep_bounds(
    st: SleepTime, model: FakeChatModel, kwargs: dict[str, Any], fragment: str
) -> None:
    """Before: st.sleep(k=100) made 104 model calls."""
    refused(st, model, lambda: st.sleep("acme", "doc", **kwargs), fragment)
    refused(st, model, lambda: asyncio.run(st.asleep("acme", "doc", **kwargs)), fragment)


def test_sleep_at_the_bounds_runs(st: SleepTime, model: FakeChatModel) -> None:
    report = st.sleep("acme", "doc", k=2, n_questions=MAX_QUESTIONS)
    assert not report.skipped


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_tokens": 10**30}, "max_tokens must be 1-131072 (SLEEPTIME_MAX_TOKENS_CEILING"),
        ({"max_tokens": 10**5000}, "too large to print"),  # past int's str() limit
        ({"max_tokens": MAX_TOKENS_CEILING + 1}, "max_tokens must be 1-131072"),
        ({"budget": Budget(max_tokens=10**30)}, "max_tokens must be 1-131072"),
        ({"budget": Budget(think_tokens=10**9)}, "think_tokens must be 0-131072"),
        ({"budget": Budget(think_tokens=8, extend=10**9)}, "extend must be 0-16"),
        ({"budget": Budget(extend=MAX_EXTEND + 1)}, "extend must be 0-16"),
    ],
)
def test_ask_bounds(
    st: SleepTime, model: FakeChatModel, kwargs: dict[str, Any], fragment: str
) -> None:
    refused(st, model, lambda: st.ask("acme", "doc", Q, **kwargs), fragment)
    refused(st, model, lambda: st.ask_stream("acme", "doc", Q, **kwargs), fragment)
    refused(st, model, lambda: asyncio.run(st.aask("acme", "doc", Q, **kwargs)), fragment)


def test_ask_at_the_bounds_is_answered(st: SleepTime) -> None:
    budget = Budget(max_tokens=MAX_TOKENS_CEILING, think_tokens=8, extend=MAX_EXTEND)
    assert st.ask("acme", "doc", Q, budget=budget).text


def test_the_token_ceiling_is_a_setting(sqlite_url: str, model: FakeChatModel) -> None:
    settings = Settings(model="fake", max_tokens_ceiling=100)
    with SleepTime(model=model, database_url=sqlite_url, settings=settings) as st:
        st.ingest("acme", "doc", TEXT)
        assert st.ask("acme", "doc", Q, max_tokens=100).text
        refused(
            st,
            model,
            lambda: st.ask("acme", "doc", Q, max_tokens=101),
            "max_tokens must be 1-100 (SLEEPTIME_MAX_TOKENS_CEILING",
        )


def test_max_tokens_fit_a_known_window(sqlite_url: str, model: FakeChatModel) -> None:
    settings = Settings(model="fake", context_window=1024)
    with SleepTime(model=model, database_url=sqlite_url, settings=settings) as st:
        st.ingest("acme", "doc", TEXT)
        message = refused(
            st, model, lambda: st.ask("acme", "doc", Q, max_tokens=2000), "max_tokens must be"
        )
        assert "1-1024 (the model's 1,024-token window" in message
        refused(
            st,
            model,
            lambda: st.ask("acme", "doc", Q, budget=Budget(think_tokens=5000)),
            "think_tokens must be 0-1024",
        )


def test_a_local_models_window_is_known_without_loading_it(sqlite_url: str) -> None:
    """model='local': its n_ctx bounds max_tokens, and checking it loads nothing."""
    settings = Settings(model="local", local_n_ctx=2048)
    with SleepTime(model="local", database_url=sqlite_url, settings=settings) as st:
        st.ingest("acme", "doc", TEXT)
        with pytest.raises(InvalidInput, match="the model's 2,048-token window"):
            st.ask("acme", "doc", Q, max_tokens=4096)
        assert st._gateway is None  # never resolved, never loaded


# -- HTTP -----------------------------------------------------------------------------


@pytest.fixture
def api(st: SleepTime) -> Iterator[tuple[Any, dict[str, str]]]:
    pytest.importorskip("fastapi", reason="needs the server extra")
    from fastapi.testclient import TestClient

    from sleeptime.server import create_app
    from sleeptime.server.auth import create_key

    key = create_key(st.store, "acme")[1]
    with TestClient(create_app(st, close=False)) as tc:
        yield tc, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("sleep", {"k": 64, "questions": 200}, "k:"),
        ("sleep", {"k": 17}, "k:"),
        ("sleep", {"questions": 51}, "questions:"),
        ("ask", {"question": Q, "max_tokens": 10**30}, "max_tokens must be 1-131072"),
        ("ask", {"question": Q, "max_tokens": 131_073}, "max_tokens must be 1-131072"),
        ("ask", {"question": Q, "think_tokens": 10**9}, "think_tokens must be 0-131072"),
        ("ask", {"question": Q, "think_tokens": 4, "extend": 10**9}, "extend:"),
        ("ask/stream", {"question": Q, "max_tokens": 10**30}, "max_tokens must be 1-131072"),
        ("ask/stream", {"question": Q, "think_tokens": 4, "extend": 17}, "extend:"),
    ],
)
def test_http_bounds(
    api: tuple[Any, dict[str, str]],
    st: SleepTime,
    model: FakeChatModel,
    route: str,
    body: dict[str, Any],
    fragment: str,
) -> None:
    """Before: {"k": 64, "questions": 200} ran 68 calls; max_tokens 10^30 and extend
    10^9 were accepted."""
    tc, h = api
    calls, before = model.calls, row_counts(st.store)
    r = tc.post(f"/v1/acme/contexts/doc/{route}", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "InvalidInput" and fragment in r.json()["message"], r.text
    assert set(r.json()) == {"error", "message"} and "\n" not in r.text
    assert model.calls == calls and row_counts(st.store) == before


def test_http_schema_declares_the_bounds(api: tuple[Any, dict[str, str]]) -> None:
    schemas = api[0].get("/openapi.json").json()["components"]["schemas"]
    assert schemas["SleepIn"]["properties"]["k"]["anyOf"][0]["maximum"] == MAX_SLEEP_K
    assert schemas["SleepIn"]["properties"]["questions"]["anyOf"][0]["maximum"] == MAX_QUESTIONS
    assert schemas["AskIn"]["properties"]["extend"]["maximum"] == MAX_EXTEND


# -- MCP --------------------------------------------------------------------------------


def test_mcp_bounds(st: SleepTime, model: FakeChatModel) -> None:
    pytest.importorskip("mcp", reason="needs the mcp extra")
    from mcp import Client

    from sleeptime.server.mcp_server import create_mcp

    server = create_mcp(st, namespace="acme")

    async def session() -> list[str]:
        out = []
        async with Client(server) as c:
            for args in (
                {"context_id": "doc", "question": Q, "max_tokens": 10**30},
                {"context_id": "doc", "question": Q, "max_tokens": 131_073},
            ):
                result = await c.call_tool("ask", args)
                assert result.is_error
                out.append(str(result.content[0].text))
        return out

    calls = model.calls
    for message in asyncio.run(session()):
        assert "max_tokens must be 1-131072" in message and "\n" not in message
    assert model.calls == calls


# -- CLI --------------------------------------------------------------------------------


def run_cli(args: list[str], db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_bounds(st: SleepTime, sqlite_url: str) -> None:
    st.close()
    for args, fragment in (
        (["sleep", "acme", "doc", "--k", "100"], "k must be 1-16 (got 100)"),
        (["sleep", "acme", "doc", "--questions", "200"], "n_questions must be 0-50"),
        (["ask", "acme", "doc", Q, "--max-tokens", str(10**12)], "max_tokens must be 1-131072"),
        (["ask", "acme", "doc", Q, "--think-tokens", "8", "--extend", "100"], "extend must be"),
    ):
        proc = run_cli(args, sqlite_url)
        assert proc.returncode == 2, (args, proc.stderr)
        assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    shown = json.loads(run_cli(["show", "acme", "doc", "--json"], sqlite_url).stdout)
    assert shown["ledger"]["sleep"]["calls"] == 0 and shown["ledger"]["queries"] == 0
