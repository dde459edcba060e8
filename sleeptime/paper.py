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
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult

from sleeptime.errors import InvalidInput, ModelCallError
from sleeptime.llm.gateway import CallResult, ModelGateway, Recorder
from sleeptime.models import Phase, Usage

#: Version of the built-in texts below; recorded with every call and in ``run.json``.
PAPER_PROMPTS_VERSION = "paper-2026-12-05.1"

#: The paper's memory block holds at most this many characters.
MEMORY_CHARS = 5000
#: What an untouched memory block holds (as in the paper's runs).
EMPTY_MEMORY = "[empty]"
#: The block's label, as the paper's prompts call it.
MEMORY_LABEL = "rethink_memory_block"

# -- sleep time --------------------------------------------------------------------------

SLEEP_SYSTEM = (
    "Your job is to think about a situation before anyone asks about it. Work out the "
    "quantities, inferences, calculations and reasoning that will help answer the "
    "questions someone is likely to ask about it later, and keep them in your memory "
    f"block `{MEMORY_LABEL}`. Whoever answers the questions later reads that block.\n\n"
    "Rewrite the block as many times as you need. Each time, add new calculations, "
    "double-check the ones you wrote before, and remove anything that is not useful. A "
    "rewrite replaces the whole block, so copy over everything from the old block that "
    "is still useful. Keep going until the block holds every useful calculation and you "
    "have checked that it has no errors and nothing that would not help; only then say "
    "you are done."
)

SLEEP_PERSONA = (
    "I am an expert reasoner. Given a new situation, I work out calculations and "
    "inferences that will be useful for the questions likely to come. I am verbose: in my "
    "memory block I brainstorm many different kinds of questions that could be asked about "
    "the situation, with the reasoning needed to answer each, and I write all my "
    "questions, calculations and inferences there. I keep rewriting it until nothing "
    "useful is missing and I have checked that nothing wrong or useless is left."
)

SLEEP_HUMAN = "I bring problems that are worth thinking about deeply and carefully."

SLEEP_SYSTEM_AIME_EXTRA = (
    "You are given only part of a competition math problem; the rest comes later. Draw "
    "as many inferences as you can from this part, guess the ways the rest of the problem "
    "could go, and compute results that would help reach the final answer quickly once "
    "the whole problem is known."
)

#: How the model rewrites the block when it can call tools.
TOOLS_PROTOCOL = (
    "To rewrite the block, call `rethink_memory` with the complete new text as "
    "`new_memory`. When the block is complete and checked, call "
    "`finish_rethinking_memory`."
)

#: How the model rewrites the block when it cannot call tools (plain text replies).
TEXT_PROTOCOL = (
    "Reply in one of two ways. To rewrite the block, write a first line with the single "
    "word REWRITE, then the complete new text of the block. When the block is complete "
    "and checked, reply with the single word FINISHED."
)

# -- test time: (system, persona, human) per verbosity level -------------------------------

_USE_NOTES = (
    f"When you get a question, first look in your memory block `{MEMORY_LABEL}` for notes "
    "prepared in advance: possible questions with their answers, and intermediate "
    "reasoning that can help. Answer from those notes instead of working things out on "
    "the spot. Do not recompute anything the notes already hold. Do not think out loud "
    "unless you really have to."
)
_ROLE = "You answer questions accurately and concisely, in the way your persona describes."
_FEW_TOKENS = "Use only as many tokens as the answer needs, and no more."

TEST_SYSTEM: dict[int, str] = {
    0: f"{_ROLE}\n\n{_USE_NOTES}\n\n"
    "Reply directly, with a single sentence: 'The answer is' followed by the number.",
    1: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "Give one short sentence of explanation, then a sentence that starts with "
    "'The answer is' and gives the number.",
    2: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "Give two short sentences of explanation, then a sentence that starts with "
    "'The answer is' and gives the number.",
    3: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "End your reply with the final numerical answer, with no reasoning after it.",
    4: "You reason through problems step by step, accurately, in the way your persona "
    "describes.\n\n"
    f"When you get a question, look in your memory block `{MEMORY_LABEL}` for notes "
    "prepared in advance: possible questions with their answers, and intermediate "
    "reasoning that can help. Check carefully whether what the notes say is right before "
    "you use it, and always reason out loud before using any of it.\n\n"
    "Explain every step of your reasoning. If you use a number from the notes, first "
    "recompute it and double-check it. End with 'The answer is' followed by the number.",
}

TEST_PERSONA: dict[int, str] = {
    0: "I am a concise and accurate question-answering system. I always look at what I "
    "have already computed in my memory block. I answer directly with one sentence that "
    "starts with 'The answer is'. I do not reason out loud before answering and I do not "
    "announce what I am going to do.",
    1: "You work through the problem step by step, efficiently, to get it right. You "
    "answer with one short sentence of explanation, then a sentence that starts with "
    "'The answer is' and gives a number.",
    2: "You work through the problem step by step, efficiently, to get it right. You "
    "answer with two sentences of explanation, then a sentence that starts with "
    "'The answer is' and gives a number.",
    3: "You work through the problem step by step, efficiently, to get it right. You use "
    "as much reasoning as it takes to be correct, and no more.",
    4: "You work through the problem step by step, double-checking anything that was "
    "computed before. You explain your answer to the user thoroughly.",
}

TEST_HUMAN: dict[int, str] = {
    0: "I need direct and concise answers.",
    1: "I need direct and concise answers: always one short sentence of explanation and "
    "one sentence with the answer.",
    2: "I need direct and concise answers: always two short sentences of explanation and "
    "one sentence with the answer.",
    3: "I need accurate information.",
    4: "I need long, thorough explanations, with every reasoning step that leads to the "
    "right answer explained one by one.",
}


@dataclass(frozen=True)
class PaperPrompts:
    """One complete set of paper-protocol prompts (built in, or read from a directory)."""

    version: str
    sleep_system: str
    sleep_persona: str
    sleep_human: str
    test_system: dict[int, str]
    test_persona: dict[int, str]
    test_human: dict[int, str]
    #: Sleep-time system prompt for partial competition problems (Stateful AIME).
    sleep_system_aime: str
    source: str = "built-in"
    files: dict[str, str] = field(default_factory=dict)

    def sleep_task(self, *, aime: bool = False) -> str:
        return self.sleep_system_aime if aime else self.sleep_system


BUILTIN = PaperPrompts(
    version=PAPER_PROMPTS_VERSION,
    sleep_system=SLEEP_SYSTEM,
    sleep_persona=SLEEP_PERSONA,
    sleep_human=SLEEP_HUMAN,
    test_system=dict(TEST_SYSTEM),
    test_persona=dict(TEST_PERSONA),
    test_human=dict(TEST_HUMAN),
    sleep_system_aime=f"{SLEEP_SYSTEM}\n\n{SLEEP_SYSTEM_AIME_EXTRA}",
)


#: Where one sentence of a line ends and the next begins.
_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+")


def strip_send_message(text: str) -> str:
    """``text`` without the sentences that name ``send_message``: the paper's test-time
    files tell the agent to answer through Letta's ``send_message`` tool, which is not
    bound here (the answer is the reply's text), so the instruction is left out."""
    lines = []
    for line in text.splitlines():
        if "send_message" not in line:
            lines.append(line)
            continue
        sentences = _SENTENCE_END.split(line)
        kept = " ".join(x for x in sentences if "send_message" not in x).strip()
        if kept:
            lines.append(kept)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def load_prompt_dir(path: str | Path) -> PaperPrompts:
    """Read the paper's prompt files from a local checkout of its repository.

    ``path`` is the checkout (holding ``prompts/``) or its ``prompts/`` directory. It
    must hold ``system/sleep_time_base.txt`` and, for each level N in 0-4,
    ``system/convo_verbosity_N.txt``, ``persona/persona_verbosity_N.txt`` and
    ``human/human_verbosity_N.txt``; ``system/sleep_time_base_aime.txt`` is used for
    Stateful AIME when present. The sleep agent's persona and user description live in
    the paper's scripts, not in files, so ours are used unless the directory also has
    ``persona/sleep_time_persona.txt`` / ``human/sleep_time_human.txt``. Sentences that
    ask for Letta's ``send_message`` tool are left out (:func:`strip_send_message`): no
    such tool is bound, the answer is the reply's text.
    """
    root = Path(path).expanduser()
    if (root / "prompts").is_dir():
        root = root / "prompts"
    if not root.is_dir():
        raise InvalidInput(
            f"--prompts {path}: not a directory; pass a local checkout of "
            "letta-ai/sleep-time-compute (or its prompts/ folder)"
        )
    wanted = {"system/sleep_time_base.txt": True}
    for n in range(5):
        wanted[f"system/convo_verbosity_{n}.txt"] = True
        wanted[f"persona/persona_verbosity_{n}.txt"] = True
        wanted[f"human/human_verbosity_{n}.txt"] = True
    optional = (
        "system/sleep_time_base_aime.txt",
        "persona/sleep_time_persona.txt",
        "human/sleep_time_human.txt",
    )
    missing = [name for name in wanted if not (root / name).is_file()]
    if missing:
        raise InvalidInput(
            f"--prompts {path}: missing {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            + "; expected the prompts/ folder of letta-ai/sleep-time-compute"
        )
    texts: dict[str, str] = {}
    for name in [*wanted, *optional]:
        file = root / name
        if file.is_file():
            try:
                texts[name] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"--prompts {path}: cannot read {name}: {exc}") from exc
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    files = {name: hashlib.sha256(t.encode()).hexdigest()[:12] for name, t in texts.items()}
    texts = {name: strip_send_message(t) for name, t in texts.items()}
    sleep_system = texts["system/sleep_time_base.txt"]
    return PaperPrompts(
        version=f"paper-dir-{digest.hexdigest()[:12]}",
        sleep_system=sleep_system,
        sleep_persona=texts.get("persona/sleep_time_persona.txt", SLEEP_PERSONA),
        sleep_human=texts.get("human/sleep_time_human.txt", SLEEP_HUMAN),
        test_system={n: texts[f"system/convo_verbosity_{n}.txt"] for n in range(5)},
        test_persona={n: texts[f"persona/persona_verbosity_{n}.txt"] for n in range(5)},
        test_human={n: texts[f"human/human_verbosity_{n}.txt"] for n in range(5)},
        sleep_system_aime=texts.get("system/sleep_time_base_aime.txt", sleep_system),
        source=str(root),
        files=files,
    )


# -- messages ------------------------------------------------------------------------------


def memory_blocks(persona: str, human: str, memory: str, *, limit: int = MEMORY_CHARS) -> str:
    """The agent's core memory, shown in its system prompt (the paper's agents see their
    blocks there). The block text is untrusted model output: it is fenced by tags."""
    shown = memory if memory.strip() else EMPTY_MEMORY
    return (
        "Your memory blocks:\n"
        f"<persona>\n{persona.strip()}\n</persona>\n"
        f"<human>\n{human.strip()}\n</human>\n"
        f'<{MEMORY_LABEL} characters="{len(memory)}/{limit}">\n{shown}\n</{MEMORY_LABEL}>'
    )


def sleep_messages(
    p: PaperPrompts,
    context: str,
    memory: str,
    *,
    tools: bool,
    aime: bool = False,
    task: str | None = None,
    limit: int = MEMORY_CHARS,
    note: str | None = None,
) -> list[BaseMessage]:
    """One round of the rethink loop: the task, the blocks (with the current memory) and
    the situation. ``task`` replaces the paper's sleep-time task (product protocol)."""
    system = "\n\n".join(
        [
            task or p.sleep_task(aime=aime),
            TOOLS_PROTOCOL if tools else TEXT_PROTOCOL,
            f"The memory block holds at most {limit:,} characters.",
            memory_blocks(p.sleep_persona, p.sleep_human, memory, limit=limit),
        ]
    )
    human = f"New situation:\n<situation>\n{context}\n</situation>"
    if note:
        human += f"\n\n{note}"
    return [SystemMessage(system), HumanMessage(human)]


def answer_messages(
    p: PaperPrompts, level: int, *, context: str, question: str, memory: str
) -> list[BaseMessage]:
    """A test-time query: the level's system prompt with persona, user description and
    the memory block (``[empty]`` for test-time only), then the context and question."""
    system = "\n\n".join(
        [
            p.test_system[level].strip(),
            memory_blocks(p.test_persona[level], p.test_human[level], memory),
        ]
    )
    return [SystemMessage(system), HumanMessage(f"{context.strip()} {question.strip()}")]


# -- calls ---------------------------------------------------------------------------------

#: Parameters of the model call in progress, read by the benchmark's call recorder:
#: ``max_tokens`` (None: uncapped), ``limit`` (the most tokens the model could decode,
#: e.g. what is left of a local model's window when uncapped), ``temperature`` (None:
#: the model's default).
CALL_META: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bench_call_meta", default=None
)


#: Tokens kept free for a chat template's markup when a call fills a model's window.
_TEMPLATE_MARGIN = 24
#: A call that could decode fewer tokens than this is not made.
MIN_DECODE = 16


@contextmanager
def call_meta(**meta: Any) -> Iterator[None]:
    token = CALL_META.set(meta)
    try:
        yield
    finally:
        CALL_META.reset(token)


#: Called with (phase, step, error) for every model call that fails.
ON_FAILURE: contextvars.ContextVar[Callable[[Phase, str, BaseException], None] | None] = (
    contextvars.ContextVar("bench_on_failure", default=None)
)


def report_failure(phase: Phase, step: str, exc: BaseException) -> None:
    """Tell the benchmark's recorder that a call failed (nothing when none listens)."""
    hook = ON_FAILURE.get()
    if hook is not None:
        hook(phase, step, exc)


def decode_limit(
    gateway: ModelGateway, messages: Sequence[BaseMessage], cap: int | None
) -> int | None:
    """Tokens the call may decode: ``cap``, or, uncapped, what is left of a model's known
    window (a local llama.cpp model decodes a small default otherwise). None: unbounded."""
    window = gateway.context_window
    if window is None:
        return cap
    # the chat template adds tokens the estimate does not see: keep a margin
    room = window - gateway.prompt_tokens(messages) - _TEMPLATE_MARGIN
    return room if cap is None else min(cap, room)


def call(
    gateway: ModelGateway,
    messages: Sequence[BaseMessage],
    *,
    phase: Phase,
    step: str,
    max_tokens: int | None,
    temperature: float | None,
    recorder: Recorder | None = None,
    seed: int | None = None,
    namespace: str | None = None,
) -> CallResult:
    """One model call with its parameters published for the recorder. ``max_tokens``
    None means uncapped (the model's window is still a hard limit)."""
    limit = decode_limit(gateway, messages, max_tokens)
    if limit is not None and limit < min(MIN_DECODE, max_tokens or MIN_DECODE):
        error = ModelCallError(
            f"the prompt of {step} leaves {max(limit, 0)} tokens of the "
            f"{gateway.context_window}-token window of {gateway.name}"
        )
        with call_meta(max_tokens=max_tokens, limit=limit, temperature=temperature):
            report_failure(phase, step, error)
        raise error
    with call_meta(max_tokens=max_tokens, limit=limit, temperature=temperature):
        return gateway.call(
            messages,
            phase=phase,
            step=step,
            max_tokens=limit,
            temperature=temperature,
            seed=seed,
            recorder=recorder,
            namespace=namespace,
        )


# -- tools ------------------------------------------------------------------------------------

RETHINK_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "rethink_memory",
        "description": (
            "Replace the whole memory block with new text: the quantities, inferences and "
            "calculations that will help answer later questions about the situation. Call "
            "it again to add calculations, double-check earlier ones or remove useless "
            "ones. The text must never be empty and must hold everything still useful."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "new_memory": {"type": "string", "description": "the complete new block"},
                "target_block_label": {"type": "string", "description": "block to write"},
                "source_block_label": {"type": "string", "description": "block read from"},
            },
            "required": ["new_memory"],
        },
    },
}
FINISH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "finish_rethinking_memory",
        "description": "Call this once every useful inference is in the block and checked.",
        "parameters": {"type": "object", "properties": {}},
    },
}


#: The last message a tool-calling model produced, per thread.
_LAST = threading.local()


class _ToolCalling(BaseChatModel):
    """A chat model with the rethink tools bound. It keeps the last message it produced
    (per thread) so the loop can read its tool calls after the gateway's accounting."""

    base: BaseChatModel
    bound: Any

    @property
    def _llm_type(self) -> str:
        return f"tools:{self.base._llm_type}"

    @property
    def display_name(self) -> str:
        from sleeptime.llm.gateway import model_name

        return model_name(self.base)

    def get_num_tokens(self, text: str) -> int:
        return self.base.get_num_tokens(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return self.base.get_num_tokens_from_messages(messages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        msg = self.bound.invoke(messages, stop=stop, **kwargs)
        _LAST.message = msg
        return ChatResult(generations=[ChatGeneration(message=msg)])

    @staticmethod
    def last_message() -> AIMessage | None:
        return getattr(_LAST, "message", None)


def tool_gateway(gateway: ModelGateway) -> ModelGateway | None:
    """A gateway over the same model with the rethink tools bound, sharing retry policy
    and recorder; None when the model has no tool calling."""
    model = gateway.model
    try:
        bound = model.bind_tools([RETHINK_TOOL, FINISH_TOOL])
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return None
    # replace, not a new ModelGateway: a subclass (the benchmark's) stays one
    return dataclasses.replace(gateway, model=_ToolCalling(base=model, bound=bound))


# -- the loop --------------------------------------------------------------------------------


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


# -- the sleep strategy ----------------------------------------------------------------------

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
