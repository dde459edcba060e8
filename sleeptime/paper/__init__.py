"""The Sleep-time Compute paper's sleep strategy: its prompts and its rethink loop.

``SleepTime.sleep(strategy="rethink_tools")`` (``SLEEPTIME_SLEEP_STRATEGY``) runs this
loop in the sleep graph's ``rethink`` step instead of the notes strategy's one learn
call; ``sleeptime bench run --protocol paper`` runs the same code.

**Prompts.** They carry every instruction of the prompts released with the paper (Lin
et al. 2025, letta-ai/sleep-time-compute), written in our own words:

- **sleep time**: work out the quantities, inferences, calculations and reasoning that
  will help answer later questions; rewrite the memory block as many times as needed,
  each time adding calculations, double-checking earlier ones and removing what is not
  useful; each rewrite replaces the whole block; stop only when every useful
  calculation is there and checked;
- **test time**, for each verbosity level 0-4, three parts as in the paper: a system
  prompt, a persona and a description of the user. Levels 0-3 tell the model to use
  the notes instead of thinking on the spot and **not to recompute what the notes
  already hold**; level 4 tells it to **recompute and double-check** any number it takes
  from the notes. Verbosity is set by these prompts only: no token caps.

For an exact run, :func:`load_prompt_dir` reads the paper's own prompt files from a
local checkout of its repository (``--prompts DIR``); nothing of theirs is shipped here.

**The loop.** Sleep time in the paper is not one call: the sleep agent rewrites a memory
block of at most ~5,000 characters as many times as it needs (adding calculations,
double-checking earlier ones, removing useless ones), then says it is finished.
:func:`rethink_loop` does that for any chat model:

- **tool calls** where the model supports them (``bind_tools``): the tools
  ``rethink_memory(new_memory)`` and ``finish_rethinking_memory()``;
- a **text protocol** otherwise (``REWRITE`` + the new block, or ``FINISHED``), for
  llama.cpp and other models without tool calling.

A rewrite longer than the block's limit is refused and the model is told so, as the
paper's memory block refuses it. The loop ends when the model finishes, when a rewrite
changes nothing, when the token budget is spent (product protocol), when the block no
longer leaves room in the model's window, or after ``max_rounds`` calls (10, as Letta's
sleep-time agent stops after 10 steps).

Every call goes through :class:`~sleeptime.llm.gateway.ModelGateway` (retries and
accounting). The gateway returns text only, so tool calls are read from the message
the model produced through a thin wrapper (:class:`_ToolCalling`), bound by
:func:`tool_gateway` on a copy of the gateway (same retry policy, recorder and class).

One module per concern: :mod:`~sleeptime.paper.prompts` (the texts),
:mod:`~sleeptime.paper.calls` (messages, model calls, tools), :mod:`~sleeptime.paper.loop`
(the loop and the strategy's options); this package re-exports their names.
"""

from __future__ import annotations

from sleeptime.paper.calls import (
    CALL_META as CALL_META,
)
from sleeptime.paper.calls import (
    FINISH_TOOL as FINISH_TOOL,
)
from sleeptime.paper.calls import (
    MIN_DECODE as MIN_DECODE,
)
from sleeptime.paper.calls import (
    ON_FAILURE as ON_FAILURE,
)
from sleeptime.paper.calls import (
    RETHINK_TOOL as RETHINK_TOOL,
)
from sleeptime.paper.calls import (
    _ToolCalling as _ToolCalling,
)
from sleeptime.paper.calls import (
    answer_messages as answer_messages,
)
from sleeptime.paper.calls import (
    call as call,
)
from sleeptime.paper.calls import (
    call_meta as call_meta,
)
from sleeptime.paper.calls import (
    decode_limit as decode_limit,
)
from sleeptime.paper.calls import (
    memory_blocks as memory_blocks,
)
from sleeptime.paper.calls import (
    report_failure as report_failure,
)
from sleeptime.paper.calls import (
    sleep_messages as sleep_messages,
)
from sleeptime.paper.calls import (
    tool_gateway as tool_gateway,
)
from sleeptime.paper.loop import (
    SLEEP_STRATEGIES as SLEEP_STRATEGIES,
)
from sleeptime.paper.loop import (
    RethinkOptions as RethinkOptions,
)
from sleeptime.paper.loop import (
    RethinkResult as RethinkResult,
)
from sleeptime.paper.loop import (
    SleepStrategy as SleepStrategy,
)
from sleeptime.paper.loop import (
    parse_text_reply as parse_text_reply,
)
from sleeptime.paper.loop import (
    rethink_key as rethink_key,
)
from sleeptime.paper.loop import (
    rethink_loop as rethink_loop,
)
from sleeptime.paper.prompts import (
    BUILTIN as BUILTIN,
)
from sleeptime.paper.prompts import (
    EMPTY_MEMORY as EMPTY_MEMORY,
)
from sleeptime.paper.prompts import (
    MEMORY_CHARS as MEMORY_CHARS,
)
from sleeptime.paper.prompts import (
    MEMORY_LABEL as MEMORY_LABEL,
)
from sleeptime.paper.prompts import (
    PAPER_PROMPTS_VERSION as PAPER_PROMPTS_VERSION,
)
from sleeptime.paper.prompts import (
    SLEEP_HUMAN as SLEEP_HUMAN,
)
from sleeptime.paper.prompts import (
    SLEEP_PERSONA as SLEEP_PERSONA,
)
from sleeptime.paper.prompts import (
    SLEEP_SYSTEM as SLEEP_SYSTEM,
)
from sleeptime.paper.prompts import (
    SLEEP_SYSTEM_AIME_EXTRA as SLEEP_SYSTEM_AIME_EXTRA,
)
from sleeptime.paper.prompts import (
    TEST_HUMAN as TEST_HUMAN,
)
from sleeptime.paper.prompts import (
    TEST_PERSONA as TEST_PERSONA,
)
from sleeptime.paper.prompts import (
    TEST_SYSTEM as TEST_SYSTEM,
)
from sleeptime.paper.prompts import (
    TEXT_PROTOCOL as TEXT_PROTOCOL,
)
from sleeptime.paper.prompts import (
    TOOLS_PROTOCOL as TOOLS_PROTOCOL,
)
from sleeptime.paper.prompts import (
    PaperPrompts as PaperPrompts,
)
from sleeptime.paper.prompts import (
    load_prompt_dir as load_prompt_dir,
)
from sleeptime.paper.prompts import (
    strip_send_message as strip_send_message,
)
