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
                made = _data(
                    await c.call_tool(
                        "ingest", {"namespace": "acme", "context_id": "d", "text": TEXT}
                    )
                )
                assert made["version"] == 1 and made["created"] is True
                cold = _data(
                    await c.call_tool(
                        "ask",
                        {"namespace": "acme", "context_id": "d", "question": "How many apples?"},
                    )
                )
                assert cold["source"] == "cold"
                await asyncio.to_thread(st.sleep, "acme", "d")
                shown = _data(await c.call_tool("show", {"namespace": "acme", "context_id": "d"}))
                assert shown["complete"] is True and len(shown["predicted"]) == 2
                q = shown["predicted"][0]["question"]
                warm = _data(
                    await c.call_tool(
                        "ask", {"namespace": "acme", "context_id": "d", "question": q}
                    )
                )
                assert warm["source"] == "predicted" and warm["usage"]["prompt_tokens"] == 0
                missing = await c.call_tool(
                    "ask", {"namespace": "acme", "context_id": "nope", "question": "Why?"}
                )
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
