"""Prompts of the paper protocol (``sleeptime bench run --protocol paper``).

They live in the library now, with the loop that uses them (:mod:`sleeptime.paper`, the
``rethink_tools`` sleep strategy); this module keeps their old import path.
"""

from __future__ import annotations

from sleeptime.paper import (
    BUILTIN,
    EMPTY_MEMORY,
    MEMORY_CHARS,
    MEMORY_LABEL,
    PAPER_PROMPTS_VERSION,
    SLEEP_HUMAN,
    SLEEP_PERSONA,
    SLEEP_SYSTEM,
    SLEEP_SYSTEM_AIME_EXTRA,
    TEST_HUMAN,
    TEST_PERSONA,
    TEST_SYSTEM,
    TEXT_PROTOCOL,
    TOOLS_PROTOCOL,
    PaperPrompts,
    answer_messages,
    load_prompt_dir,
    memory_blocks,
    sleep_messages,
    strip_send_message,
)

__all__ = [
    "BUILTIN",
    "EMPTY_MEMORY",
    "MEMORY_CHARS",
    "MEMORY_LABEL",
    "PAPER_PROMPTS_VERSION",
    "SLEEP_HUMAN",
    "SLEEP_PERSONA",
    "SLEEP_SYSTEM",
    "SLEEP_SYSTEM_AIME_EXTRA",
    "TEST_HUMAN",
    "TEST_PERSONA",
    "TEST_SYSTEM",
    "TEXT_PROTOCOL",
    "TOOLS_PROTOCOL",
    "PaperPrompts",
    "answer_messages",
    "load_prompt_dir",
    "memory_blocks",
    "sleep_messages",
    "strip_send_message",
]
