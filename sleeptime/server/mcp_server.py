"""The MCP server (``sleeptime mcp``): ingest, ask and show as tools, over stdio, for
any MCP client (the official ``mcp`` Python SDK, 2.x). ``namespace=`` pins the server
to one namespace: a tool call naming another is refused before anything is read."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from sleeptime.api import SleepTime
from sleeptime.errors import SleepTimeError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sleeptime")
    except PackageNotFoundError:  # a source tree that was never installed
        return ""


def create_mcp(st: SleepTime, namespace: str | None = None) -> MCPServer:
    """An MCP server over ``st``; with ``namespace``, tools work in that namespace only."""
    server = MCPServer(
        "sleeptime",
        version=_version(),
        instructions=(
            "Store a document with `ingest`, then ask questions about it with `ask`: "
            "answers use notes prepared while the system was idle (sleep-time compute), "
            "so they are fast and cheap. `show` lists the prepared notes and questions."
        ),
    )

    def scope(ns: str) -> str:
        if namespace is not None and ns != namespace:
            raise ToolError(f"this server is pinned to namespace {namespace!r}, not {ns!r}")
        return ns

    def guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SleepTimeError as exc:  # one line, what to do; never a traceback
            raise ToolError(str(exc).splitlines()[0]) from exc

    @server.tool()
    def ingest(namespace: str, context_id: str, text: str) -> dict[str, Any]:
        """Store a document (a new version when its text changed); sleep-time compute
        prepares notes and likely questions for it in the background."""
        ctx = guarded(st.ingest, scope(namespace), context_id, text)
        return {"namespace": namespace, "context_id": context_id, "version": ctx.version,
                "created": ctx.created}  # fmt: skip

    @server.tool()
    def ask(
        namespace: str,
        context_id: str,
        question: str,
        verbosity: int | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Answer a question about a stored document using its prepared notes.
        ``source`` says how: predicted (precomputed, zero tokens), learned, or cold."""
        answer = guarded(
            st.ask,
            scope(namespace),
            context_id,
            question,
            verbosity=verbosity,
            max_tokens=max_tokens,
        )
        return dict(answer.model_dump(mode="json"))

    @server.tool()
    def show(namespace: str, context_id: str) -> dict[str, Any]:
        """The document's current version, its learned notes, the predicted questions
        with their prepared answers, and the token ledger."""
        ns = scope(namespace)
        ctx = guarded(st.context, ns, context_id)
        arts = guarded(st.artifacts, ns, context_id)
        ledger = guarded(st.ledger, ns, context_id)
        return {
            "version": ctx.version,
            "learned": arts.learned,
            "complete": arts.complete,
            "predicted": [{"question": qa.question, "answer": qa.answer} for qa in arts.qas],
            "ledger": ledger.model_dump(mode="json"),
        }

    return server
