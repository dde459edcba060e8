"""The MCP server: ingest, ask and show as tools, in-process and as the real
`sleeptime mcp` subprocess over stdio (the official SDK's client)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="needs the mcp extra (the README test command)")
from mcp import Client, StdioServerParameters

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.server.mcp_server import create_mcp

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."


def _data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    if result.structured_content is not None:
        return dict(result.structured_content)
    return dict(json.loads(result.content[0].text))


def _error(result: Any) -> str:
    assert result.is_error
    return str(result.content[0].text)


def test_tools_in_process(sqlite_url: str) -> None:
    settings = Settings(model="fake", n_questions=2, idle_after=3600.0)
    with SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings) as st:
        server = create_mcp(st, namespace="acme")

        async def session() -> None:
            async with Client(server) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert names == {"ingest", "ask", "show"}
                tools = {t.name: t for t in (await c.list_tools()).tools}
                # pinned: no tool requires a namespace
                assert all(
                    "namespace" not in t.input_schema.get("required", []) for t in tools.values()
                )
                assert "separate `sleeptime worker`" in str(tools["ingest"].description)
                made = _data(await c.call_tool("ingest", {"context_id": "d", "text": TEXT}))
                assert made["version"] == 1 and made["created"] is True
                cold = _data(
                    await c.call_tool("ask", {"context_id": "d", "question": "How many apples?"})
                )
                assert cold["source"] == "cold"
                pending = _data(await c.call_tool("show", {"context_id": "d"}))
                assert pending["complete"] is False and "not ready yet" in pending["status"]
                await asyncio.to_thread(st.sleep, "acme", "d")
                shown = _data(await c.call_tool("show", {"context_id": "d"}))
                assert shown["complete"] is True and len(shown["predicted"]) == 2
                q = shown["predicted"][0]["question"]
                warm = _data(await c.call_tool("ask", {"context_id": "d", "question": q}))
                assert warm["source"] == "predicted" and warm["usage"]["prompt_tokens"] == 0
                missing = await c.call_tool("ask", {"context_id": "nope", "question": "Why?"})
                assert "no context 'nope'" in _error(missing)
                assert "Traceback" not in _error(missing)
                other = await c.call_tool(
                    "ingest", {"namespace": "other", "context_id": "d", "text": TEXT}
                )
                assert "pinned to namespace 'acme'" in _error(other)

        asyncio.run(session())
        assert st.store.context_ids("other") == []  # the refused call wrote nothing


def test_sleeptime_mcp_over_stdio(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mcp.db'}"
    env = {k: v for k, v in os.environ.items() if k != "SLEEPTIME_REDIS_URL"}
    env |= {"SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "sleeptime", "mcp"], env=env)

    async def session() -> None:
        async with Client(params) as c:
            assert c.server_info.name == "sleeptime" and c.server_info.version  # the package's
            assert {t.name for t in (await c.list_tools()).tools} == {"ingest", "ask", "show"}
            made = _data(
                await c.call_tool("ingest", {"namespace": "n", "context_id": "d", "text": TEXT})
            )
            assert made["version"] == 1
            ans = _data(
                await c.call_tool(
                    "ask", {"namespace": "n", "context_id": "d", "question": "How many apples?"}
                )
            )
            assert ans["source"] == "cold" and ans["text"]
            bad = await c.call_tool("ingest", {"namespace": "n", "context_id": "d", "text": " "})
            assert "is empty" in _error(bad)

    asyncio.run(asyncio.wait_for(session(), timeout=120))


def test_sleeptime_mcp_prepares_notes_on_its_own(tmp_path: Path) -> None:
    """The documented MCP configuration starts only `sleeptime mcp`: its own worker must
    turn an ingested document into notes (before: never, at 10, 20, 30 and 40 s)."""
    db = f"sqlite:///{tmp_path / 'mcp.db'}"
    env = {k: v for k, v in os.environ.items() if k != "SLEEPTIME_REDIS_URL"}
    env |= {
        "SLEEPTIME_DATABASE_URL": db,
        "SLEEPTIME_MODEL": "fake",
        "SLEEPTIME_IDLE_AFTER": "0",
        "SLEEPTIME_POLL_S": "0.05",
        "SLEEPTIME_RELAY_S": "0.05",
    }
    args = ["-m", "sleeptime", "mcp", "--namespace", "n"]
    params = StdioServerParameters(command=sys.executable, args=args, env=env)

    async def session() -> None:
        async with Client(params) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "this server's own worker" in str(tools["ingest"].description)
            made = _data(await c.call_tool("ingest", {"context_id": "d", "text": TEXT}))
            assert "own worker" in made["notes"]
            while True:  # the outer wait_for bounds it; this waits on the worker's result
                shown = _data(await c.call_tool("show", {"context_id": "d"}))
                if shown["complete"]:
                    break
                await asyncio.sleep(0.1)
            assert shown["learned"] and shown["predicted"]

    asyncio.run(asyncio.wait_for(session(), timeout=120))


NOT_INT = "Input should be a valid integer"


def test_tool_arguments_are_as_strict_as_the_library(sqlite_url: str) -> None:
    """Before: "1" and true were coerced into integers, unknown arguments ignored."""
    model = FakeChatModel()
    with SleepTime(model=model, database_url=sqlite_url, settings=Settings(model="fake")) as st:
        st.ingest("acme", "d", TEXT)
        server = create_mcp(st)
        ask = {"namespace": "acme", "context_id": "d", "question": "How many apples?"}

        async def session() -> None:
            async with Client(server) as c:
                for tool in (await c.list_tools()).tools:
                    assert tool.input_schema.get("additionalProperties") is False, tool.name
                for name, args, fragment in (
                    ("ask", ask | {"verbosity": "1"}, f"verbosity: {NOT_INT}"),
                    ("ask", ask | {"verbosity": True}, f"verbosity: {NOT_INT}"),
                    ("ask", ask | {"max_tokens": 5.0}, f"max_tokens: {NOT_INT}"),
                    ("ask", ask | {"verbose": 1}, "verbose: Extra inputs are not permitted"),
                    ("ask", ask | {"max_tokens": 10**30}, "max_tokens must be 1-131072"),
                    ("ingest", {"namespace": "acme", "context_id": 5, "text": TEXT}, "context_id"),
                    ("show", {"namespace": "acme", "context_id": "d", "v": 1}, "v: Extra inputs"),
                ):
                    message = _error(await c.call_tool(name, args))
                    assert fragment in message and "\n" not in message, message
                    assert "input_value" not in message  # the input is never echoed
                assert _data(await c.call_tool("ask", ask | {"verbosity": 1}))["text"]

        calls = model.calls
        asyncio.run(session())
        assert model.calls == calls + 1  # only the valid ask reached the model
        assert st.store.context_ids("acme") == ["d"]
