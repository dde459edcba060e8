"""Conversations as contexts: a thread of chat messages rendered as stable text.

A thread grows by appending turns, so its rendering must grow by appending too: the
text of the first N messages is always a prefix of the text of the first N+1. That
is what lets sleep-time compute on a new version be *incremental* (revise the notes
with the new part) instead of re-reading the whole thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
#: The role names a rendered message starts with (``[user] ...``).
ROLE_TAGS = tuple(_ROLES.values())


def _content(message: BaseMessage) -> str:
    return message.text.strip() if isinstance(message.text, str) else str(message.content)


def as_messages(messages: Sequence[BaseMessage | Mapping[str, Any]]) -> list[BaseMessage]:
    """LangChain messages from messages or ``{"role": ..., "content": ...}`` dicts."""
    return list(convert_to_messages(list(messages)))  # type: ignore[arg-type]


def render_messages(messages: Sequence[BaseMessage | Mapping[str, Any]]) -> str:
    """One block per message, ``[role] content``, roles kept, empty messages (an
    assistant message that only calls tools) skipped."""
    blocks = []
    for message in as_messages(messages):
        text = _content(message)
        if text:
            blocks.append(f"[{_ROLES.get(message.type, message.type)}] {text}\n\n")
    return "".join(blocks)


def completed_turn(messages: Sequence[BaseMessage | Mapping[str, Any]]) -> bool:
    """True when the thread ends with a finished assistant reply: an AI message with
    text and no pending tool calls. A partial or streaming turn schedules nothing."""
    msgs = as_messages(messages)
    if not msgs:
        return False
    last = msgs[-1]
    return isinstance(last, AIMessage) and not last.tool_calls and bool(_content(last))
