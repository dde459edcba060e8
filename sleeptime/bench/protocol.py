"""The iterative rethink loop, and what each model call of a benchmark is run with.

Sleep time in the paper is not one call: the sleep agent rewrites a memory block of at
most ~5,000 characters as many times as it needs (adding calculations, double-checking
earlier ones, removing useless ones), then says it is finished. :func:`rethink_loop` does
that for any chat model:

- **tool calls** where the model supports them (``bind_tools``): the tools
  ``rethink_memory(new_memory)`` and ``finish_rethinking_memory()``;
- a **text protocol** otherwise (``REWRITE`` + the new block, or ``FINISHED``), for
  llama.cpp and other models without tool calling.

A rewrite longer than the block's limit is refused and the model is told so, as the
paper's memory block refuses it. The loop ends when the model finishes, when a rewrite
changes nothing, when the token budget is spent (product protocol), when the block no
longer leaves room in the model's window, or after ``max_rounds`` calls (a safety stop,
reported as such).

Every call goes through :class:`~sleeptime.llm.gateway.ModelGateway` (retries and
accounting). The gateway returns text only, so tool calls are read from the message
the model produced through a thin wrapper (:class:`_ToolCalling`).

A benchmark's gateway is a :class:`BenchGateway`: every call of a phase (sleep, test)
is made with that phase's options (:func:`phase_options`: the temperature where the
caller leaves the model's default, the reasoning effort), the options actually sent are
published for the call recorder, and a call that fails is reported
(:func:`report_failure`) before the error goes on: no call fails unrecorded, and none is
retried with other parameters.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from sleeptime.bench.paper_prompts import MEMORY_CHARS, PaperPrompts, sleep_messages
from sleeptime.errors import ModelCallError
from sleeptime.llm.gateway import CallResult, ModelGateway, Recorder, TokenSink
from sleeptime.models import Phase, Usage

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


# -- per-phase options, failures ------------------------------------------------------------

#: Reasoning efforts a benchmark may ask for (``--test-effort``, ``--sleep-effort``).
EFFORTS = ("minimal", "low", "medium", "high")


@dataclass(frozen=True)
class PhaseOptions:
    """What every call of one phase is made with. ``temperature`` is sent where the
    caller leaves the model's default (None: leave it); ``effort`` (None: the model's
    default) is sent with every call of the phase."""

    temperature: float | None = None
    effort: str | None = None


#: The options per phase of the work in progress (see :class:`BenchGateway`).
PHASE_OPTIONS: contextvars.ContextVar[dict[str, PhaseOptions] | None] = contextvars.ContextVar(
    "bench_phase_options", default=None
)
#: Called with (phase, step, error) for every model call that fails.
ON_FAILURE: contextvars.ContextVar[Callable[[Phase, str, BaseException], None] | None] = (
    contextvars.ContextVar("bench_on_failure", default=None)
)


@contextmanager
def phase_options(**by_phase: PhaseOptions) -> Iterator[None]:
    """Make the calls inside with these options per phase (``sleep=``, ``test=``)."""
    token = PHASE_OPTIONS.set(dict(by_phase))
    try:
        yield
    finally:
        PHASE_OPTIONS.reset(token)


def report_failure(phase: Phase, step: str, exc: BaseException) -> None:
    """Tell the benchmark's recorder that a call failed (nothing when none listens)."""
    hook = ON_FAILURE.get()
    if hook is not None:
        hook(phase, step, exc)


def takes_effort(model: BaseChatModel) -> bool:
    """Whether the model has a ``reasoning_effort`` setting (OpenAI o-series, gpt-5,
    gpt-oss through ``ChatOpenAI``; a scripted model may declare one)."""
    base = model.base if isinstance(model, _ToolCalling) else model
    return "reasoning_effort" in type(base).model_fields


def with_effort(model: BaseChatModel, effort: str) -> BaseChatModel:
    """A copy of ``model`` that sends ``reasoning_effort=effort``."""
    if isinstance(model, _ToolCalling):
        base = with_effort(model.base, effort)
        return _ToolCalling(base=base, bound=base.bind_tools([RETHINK_TOOL, FINISH_TOOL]))
    if not takes_effort(model):
        raise ModelCallError(f"model {type(model).__name__} takes no reasoning effort")
    return model.model_copy(update={"reasoning_effort": effort})


class BenchGateway(ModelGateway):
    """The gateway of a benchmark run: :meth:`call` applies the phase's options
    (:func:`phase_options`), publishes the temperature and effort it sends in
    :data:`CALL_META` for the call recorder, and reports a call that fails
    (:func:`report_failure`) before raising its error unchanged."""

    def call(
        self,
        messages: Sequence[BaseMessage],
        *,
        phase: Phase,
        step: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        recorder: Recorder | None = None,
        json_schema: dict[str, Any] | None = None,
        namespace: str | None = None,
        on_token: TokenSink | None = None,
    ) -> CallResult:
        opts = (PHASE_OPTIONS.get() or {}).get(phase) or PhaseOptions()
        if temperature is None:
            temperature = opts.temperature
        meta = {**(CALL_META.get() or {}), "temperature": temperature, "effort": opts.effort}
        with call_meta(**meta):
            try:
                target: ModelGateway = self
                if opts.effort is not None:
                    target = dataclasses.replace(self, model=with_effort(self.model, opts.effort))
                return ModelGateway.call(
                    target,
                    messages,
                    phase=phase,
                    step=step,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    recorder=recorder,
                    json_schema=json_schema,
                    namespace=namespace,
                    on_token=on_token,
                )
            except Exception as exc:
                report_failure(phase, step, exc)
                raise


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
    # replace, not a new ModelGateway: a BenchGateway stays one (phase options, failures)
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
