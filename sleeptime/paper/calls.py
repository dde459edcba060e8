"""The loop's messages (memory blocks, sleep and answer messages), its model calls through
the gateway (decode limits, call metadata, failures reported), and its tools (rewrite
the memory block, finish) with the tool-calling adapter."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult

from sleeptime.errors import ModelCallError
from sleeptime.llm.gateway import CallResult, ModelGateway, Recorder
from sleeptime.models import Phase
from sleeptime.paper.prompts import (
    EMPTY_MEMORY,
    MEMORY_CHARS,
    MEMORY_LABEL,
    TEXT_PROTOCOL,
    TOOLS_PROTOCOL,
    PaperPrompts,
)


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
