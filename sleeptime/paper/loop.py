"""The rethink loop: rounds of memory rewrites (tool calls, or the text protocol) until the
model finishes or the rounds run out, and the sleep strategy's options."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ToolMessage,
)

from sleeptime.errors import InvalidInput, ModelCallError
from sleeptime.llm.gateway import CallResult, ModelGateway, Recorder
from sleeptime.models import Usage
from sleeptime.paper.calls import (
    MIN_DECODE,
    _ToolCalling,
    call,
    decode_limit,
    sleep_messages,
    tool_gateway,
)
from sleeptime.paper.prompts import BUILTIN, MEMORY_CHARS, PaperPrompts


@dataclass
class RethinkResult:
    memory: str
    mode: str  # "tools" | "text"
    stop: str  # finished | unchanged | no_tool_call | empty | budget | rounds | window
    calls: int = 0
    rewrites: int = 0
    refused: int = 0  # rewrites over the character limit
    capped_calls: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def finished(self) -> bool:
        return self.stop in ("finished", "unchanged", "no_tool_call")

    def to_json(self) -> dict[str, Any]:
        return {
            "memory": self.memory,
            "mode": self.mode,
            "stop": self.stop,
            "calls": self.calls,
            "rewrites": self.rewrites,
            "refused": self.refused,
            "capped_calls": self.capped_calls,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
        }


_REWRITE = re.compile(r"^[\s#*`>_-]*rewrite\b[\s:*`_-]*", re.IGNORECASE)
_FINISHED = re.compile(r"^[\s#*`>_-]*finished[\s.!*`_-]*$", re.IGNORECASE)


def parse_text_reply(text: str) -> tuple[str | None, bool]:
    """(new block or None, finished) from a text-protocol reply. A reply without the
    ``REWRITE`` line is taken as a rewrite (small models forget the header); a last
    line ``FINISHED`` ends the loop after storing what precedes it."""
    lines = text.strip().splitlines()
    finished = False
    while lines and _FINISHED.match(lines[-1]):
        finished = True
        lines = lines[:-1]
    body = "\n".join(lines).strip()
    body = _REWRITE.sub("", body, count=1).strip()
    return (body or None), finished


def _capped(res: CallResult, limit: int | None) -> bool:
    return res.finish_reason == "length" or (
        limit is not None and res.usage.completion_tokens >= limit
    )


def rethink_loop(
    gateway: ModelGateway,
    prompts: PaperPrompts,
    context: str,
    *,
    temperature: float | None,
    token_budget: int | None = None,
    max_rounds: int = 10,
    limit_chars: int = MEMORY_CHARS,
    mode: str = "auto",
    aime: bool = False,
    task: str | None = None,
    recorder: Recorder | None = None,
    step: str = "rethink",
    on_call: Callable[[CallResult, int | None], None] | None = None,
    namespace: str | None = None,
) -> RethinkResult:
    """Rewrite a memory block about ``context`` until the model is done.

    ``token_budget`` (completion tokens over the whole loop; None = no budget, the
    paper's setting) caps each call at what is left of it. ``mode`` is ``auto`` (tools
    when the model has them), ``tools`` or ``text``.
    """
    tools = tool_gateway(gateway) if mode in ("auto", "tools") else None
    if mode == "tools" and tools is None:
        raise ModelCallError(f"model {gateway.name} has no tool calling (use the text protocol)")
    out = RethinkResult(memory="", mode="tools" if tools else "text", stop="rounds")
    history: list[BaseMessage] = []
    note: str | None = None
    for _round in range(max_rounds):
        left = None if token_budget is None else token_budget - out.usage.completion_tokens
        if left is not None and left <= 0:
            out.stop = "budget"
            break
        messages = sleep_messages(
            prompts,
            context,
            out.memory,
            tools=tools is not None,
            aime=aime,
            task=task,
            limit=limit_chars,
            note=None if tools else note,
        )
        if tools is not None:
            messages = [*messages, *history]
        gw = tools or gateway
        limit = decode_limit(gw, messages, left)
        if limit is not None and limit < min(MIN_DECODE, left or MIN_DECODE):
            out.stop = "window"  # the block has grown to fill the model's window
            break
        res = call(
            gw,
            messages,
            phase="sleep",
            step=step,
            max_tokens=left,
            temperature=temperature,
            recorder=recorder,
            namespace=namespace,
        )
        out.calls += 1
        out.usage = out.usage + res.usage
        capped = _capped(res, limit)
        out.capped_calls += capped
        if on_call is not None:
            on_call(res, limit)
        if tools is not None:
            stop = _tool_round(out, history, res, limit_chars)
        else:
            stop, note = _text_round(out, res, limit_chars, capped)
        if stop:
            out.stop = stop
            break
    else:
        out.stop = "rounds"
    return out


def _store(out: RethinkResult, new: str, limit_chars: int) -> str:
    """Store a rewrite; returns the message for the model."""
    if len(new) > limit_chars:
        out.refused += 1
        return (
            f"Not stored: the new block has {len(new):,} characters, over the limit of "
            f"{limit_chars:,}. Write a shorter block."
        )
    out.memory = new
    out.rewrites += 1
    return f"Stored: the block now holds {len(new):,} characters."


def _tool_round(
    out: RethinkResult, history: list[BaseMessage], res: CallResult, limit_chars: int
) -> str | None:
    msg = _ToolCalling.last_message()
    calls = list(getattr(msg, "tool_calls", None) or [])
    history.append(msg if isinstance(msg, AIMessage) else AIMessage(res.text))
    if not calls:
        return "no_tool_call"
    finished = False
    for tc in calls:
        if tc.get("name") == "finish_rethinking_memory":
            finished = True
            reply = "Finished."
        elif tc.get("name") == "rethink_memory":
            new = str((tc.get("args") or {}).get("new_memory") or "").strip()
            reply = _store(out, new, limit_chars) if new else "Not stored: new_memory is empty."
        else:
            reply = (
                f"Unknown tool {tc.get('name')!r}: use rethink_memory or finish_rethinking_memory."
            )
        history.append(ToolMessage(reply, tool_call_id=str(tc.get("id") or "call")))
    return "finished" if finished else None


def _text_round(
    out: RethinkResult, res: CallResult, limit_chars: int, capped: bool
) -> tuple[str | None, str | None]:
    new, finished = parse_text_reply(res.text)
    if new is None:
        return ("finished" if finished else "empty"), None
    if new == out.memory.strip():
        return "unchanged", None
    reply = _store(out, new, limit_chars)
    if finished:
        return "finished", None
    note = None
    if reply.startswith("Not stored"):
        note = f"Your last rewrite was not stored. {reply.split(': ', 1)[1]}"
    elif capped:
        note = "Your last reply was cut off at its token limit: keep the block shorter."
    return None, note


#: How the sleep graph learns c' (``SLEEPTIME_SLEEP_STRATEGY``, ``sleep(strategy=...)``):
#: ``notes``, one capped learn call per rethink; ``rethink_tools``, the paper's loop.
SleepStrategy = Literal["notes", "rethink_tools"]
SLEEP_STRATEGIES: tuple[str, ...] = ("notes", "rethink_tools")


def rethink_key(i: int) -> str:
    """The draft artifact key of the ``rethink_tools`` strategy's loop ``i`` (apart from
    the notes strategy's drafts, so a version never mixes the two)."""
    return f"rethink-{i}"


@dataclass(frozen=True)
class RethinkOptions:
    """How the ``rethink_tools`` strategy runs its loops (the defaults are the paper's).

    ``temperature`` None: the library's rule (``SLEEPTIME_SLEEP_TEMPERATURE`` when k > 1,
    else the model's default). ``task`` replaces the paper's sleep-time task (the
    benchmark's product protocol). ``merge``: with k > 1, the k blocks are merged into
    c' by one more call; False keeps them apart, as the paper's k sleep agents (each
    block a draft artifact, c' the first non-empty one). ``fallback``: when every loop
    wrote nothing, c' is learned by the notes strategy's call (a warning says so);
    False stores the empty block, as the paper's memory block stays ``[empty]``.
    """

    prompts: PaperPrompts = BUILTIN
    max_rounds: int = 10
    memory_chars: int = MEMORY_CHARS
    mode: str = "auto"
    aime: bool = False
    task: str | None = None
    token_budget: int | None = None
    temperature: float | None = None
    merge: bool = True
    fallback: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "tools", "text"):
            raise InvalidInput(f"rethink mode must be auto, tools or text (got {self.mode!r})")
        if not 1 <= self.max_rounds <= 100:
            raise InvalidInput(f"max_rounds takes 1-100 (got {self.max_rounds})")
        if self.memory_chars < 1:
            raise InvalidInput(f"memory_chars must be >= 1 (got {self.memory_chars})")
        if self.token_budget is not None and self.token_budget < 1:
            raise InvalidInput(f"token_budget must be >= 1 (got {self.token_budget})")
