"""The MCP server (``sleeptime mcp``): ingest, ask and show as tools, over stdio, for
any MCP client (the official ``mcp`` Python SDK, 2.x). ``namespace=`` pins the server
to one namespace: its tools then need no namespace, and a call naming another is
refused before anything is read.

An MCP host starts only this process, so ``sleeptime mcp`` runs a worker in it: without
one an ingested document would never get notes (a host has no idea a second process
is needed). The tool descriptions say who prepares the notes and when.

The tools' arguments are as strict as the library's: no coercion (``"1"`` and ``true``
are not integers) and no unknown arguments, each refusal one line; the bounds (of
``max_tokens``, ``verbosity``) are the library's own (``sleeptime.validation``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ConfigDict, ValidationError

from sleeptime.api import SleepTime
from sleeptime.errors import SleepTimeError
from sleeptime.quotas import Quotas
from sleeptime.validation import one_line


class _StrictTool(Tool):
    """A tool whose arguments are refused in one line (``where: what``, the input never
    echoed) rather than pydantic's multi-line report."""

    async def run(self, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            self.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            raise ToolError(f"Error executing tool {self.name}: {one_line(exc)}") from None
        return await super().run(arguments, *args, **kwargs)


def _strict(fn: Callable[..., Any], name: str, description: str) -> Tool:
    """The tool of ``fn`` with a strict argument model: ``extra="forbid"`` (its input
    schema says ``additionalProperties: false``) and ``strict=True``."""
    tool = _StrictTool.from_function(fn, name=name, description=description)
    base = tool.fn_metadata.arg_model

    class Arguments(base):  # type: ignore[valid-type,misc]  # a model made at runtime
        model_config = ConfigDict(extra="forbid", strict=True)

    Arguments.__name__ = base.__name__
    meta = tool.fn_metadata.model_copy(update={"arg_model": Arguments})
    schema = Arguments.model_json_schema(by_alias=True)
    return tool.model_copy(update={"fn_metadata": meta, "parameters": schema})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sleeptime")
    except PackageNotFoundError:  # a source tree that was never installed
        return ""


def create_mcp(
    client: SleepTime, namespace: str | None = None, *, worker: bool | None = None
) -> MCPServer:
    """An MCP server over ``client``. With ``namespace`` the server is pinned: its tools take
    no namespace argument and work in that namespace only. ``worker`` says who prepares
    the notes, for the tool descriptions: True, this process's worker (``sleeptime mcp``
    starts one); False, a separate ``sleeptime worker``; None, whether ``client`` has one."""
    own = client.worker is not None if worker is None else worker
    idle = client.settings.idle_after
    when = (
        f"this server's own worker prepares notes and likely questions once the namespace has "
        f"been idle for {idle:g} s (`show` says when they are ready)"
        if own
        else "a separate `sleeptime worker` process prepares notes and likely questions "
        "(none runs in this server)"
    )
    instructions = (
        "Store a document with `ingest`, then ask questions about it with `ask`: "
        "answers use notes prepared while the system was idle (sleep-time compute), "
        f"so they are fast and cheap; {when}. `show` lists the prepared notes and "
        "questions."
    )

    def guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SleepTimeError as exc:  # one line, what to do; never a traceback
            raise ToolError(str(exc).splitlines()[0]) from exc

    def do_ingest(ns: str, context_id: str, text: str) -> dict[str, Any]:
        ctx = guarded(client.ingest, ns, context_id, text)
        return {"namespace": ns, "context_id": context_id, "version": ctx.version,
                "created": ctx.created, "notes": when}  # fmt: skip

    # the namespace's daily answer-token quota applies here as over HTTP (counted in
    # Redis when configured, so a server and its MCP processes share it)
    quotas = Quotas.from_settings(client.settings, client.store.accounting)

    def do_ask(
        ns: str, context_id: str, question: str, verbosity: int | None, max_tokens: int | None
    ) -> dict[str, Any]:
        guarded(quotas.check_test, ns)
        answer = guarded(
            client.ask, ns, context_id, question, verbosity=verbosity, max_tokens=max_tokens
        )
        quotas.add_test(ns, answer.usage.total_tokens)
        return dict(answer.model_dump(mode="json"))

    def do_show(ns: str, context_id: str) -> dict[str, Any]:
        ctx = guarded(client.context, ns, context_id)
        arts = guarded(client.artifacts, ns, context_id)
        ledger = guarded(client.ledger, ns, context_id)
        return {
            "version": ctx.version,
            "learned": arts.learned,
            "complete": arts.complete,
            "status": "ready" if arts.complete else f"not ready yet: {when}",
            "predicted": [{"question": qa.question, "answer": qa.answer} for qa in arts.qas],
            "ledger": ledger.model_dump(mode="json"),
        }

    ingest_doc = (
        "Store a document (a new version when its text changed). Sleep-time compute then "
        f"prepares notes and likely questions for it: {when}."
    )
    ask_doc = (
        "Answer a question about a stored document using its prepared notes. ``source`` "
        "says how: predicted (precomputed, zero tokens), learned (notes), or cold (no notes "
        "yet)."
    )
    show_doc = (
        "The document's current version, its learned notes, the predicted questions with "
        "their prepared answers, whether they are ready, and the token ledger."
    )
    if namespace is not None:
        pinned: str = namespace

        def scope(ns: str | None) -> str:
            # optional, so hosts need not know it; a different one is refused, never
            # silently redirected into the pinned namespace
            if ns is not None and ns != pinned:
                raise ToolError(f"this server is pinned to namespace {pinned!r}, not {ns!r}")
            return pinned

        def ingest(context_id: str, text: str, namespace: str | None = None) -> dict[str, Any]:
            return do_ingest(scope(namespace), context_id, text)

        def ask(
            context_id: str,
            question: str,
            verbosity: int | None = None,
            max_tokens: int | None = None,
            namespace: str | None = None,
        ) -> dict[str, Any]:
            return do_ask(scope(namespace), context_id, question, verbosity, max_tokens)

        def show(context_id: str, namespace: str | None = None) -> dict[str, Any]:
            return do_show(scope(namespace), context_id)

        pinned_tools: list[tuple[Callable[..., dict[str, Any]], str, str]] = [
            (ingest, "ingest", ingest_doc),
            (ask, "ask", ask_doc),
            (show, "show", show_doc),
        ]
        return MCPServer(
            "sleeptime",
            version=_version(),
            instructions=instructions,
            tools=[_strict(fn, name, doc) for fn, name, doc in pinned_tools],
        )

    def ingest_any(namespace: str, context_id: str, text: str) -> dict[str, Any]:
        return do_ingest(namespace, context_id, text)

    def ask_any(
        namespace: str,
        context_id: str,
        question: str,
        verbosity: int | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        return do_ask(namespace, context_id, question, verbosity, max_tokens)

    def show_any(namespace: str, context_id: str) -> dict[str, Any]:
        return do_show(namespace, context_id)

    tools: list[tuple[Callable[..., dict[str, Any]], str, str]] = [
        (ingest_any, "ingest", ingest_doc),
        (ask_any, "ask", ask_doc),
        (show_any, "show", show_doc),
    ]
    return MCPServer(
        "sleeptime",
        version=_version(),
        instructions=instructions,
        tools=[_strict(fn, name, doc) for fn, name, doc in tools],
    )
