"""What each model call of a benchmark is run with, and the rethink loop's old home.

The iterative rethink loop is the library's ``rethink_tools`` sleep strategy now
(:mod:`sleeptime.paper`); its names are re-exported here so older imports keep working.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from sleeptime.errors import ModelCallError
from sleeptime.llm.gateway import CallResult, ModelGateway, Recorder, TokenSink
from sleeptime.models import Phase
from sleeptime.paper import (
    CALL_META,
    FINISH_TOOL,
    MIN_DECODE,
    ON_FAILURE,
    RETHINK_TOOL,
    RethinkResult,
    _ToolCalling,
    call,
    call_meta,
    decode_limit,
    parse_text_reply,
    report_failure,
    rethink_loop,
    tool_gateway,
)

__all__ = [
    "CALL_META",
    "EFFORTS",
    "FINISH_TOOL",
    "MIN_DECODE",
    "ON_FAILURE",
    "PHASE_OPTIONS",
    "RETHINK_TOOL",
    "BenchGateway",
    "PhaseOptions",
    "RethinkResult",
    "call",
    "call_meta",
    "decode_limit",
    "parse_text_reply",
    "phase_options",
    "report_failure",
    "rethink_loop",
    "takes_effort",
    "tool_gateway",
    "with_effort",
]


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


@contextmanager
def phase_options(**by_phase: PhaseOptions) -> Iterator[None]:
    """Make the calls inside with these options per phase (``sleep=``, ``test=``)."""
    token = PHASE_OPTIONS.set(dict(by_phase))
    try:
        yield
    finally:
        PHASE_OPTIONS.reset(token)


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
