"""What every step of the sleep graph shares: its state (:class:`SleepState`), its
dependencies and their helpers (:class:`SleepDeps`: model calls, warnings, idempotent
artifact writes and reads), and the output error of a degenerate model."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from sleeptime import quality
from sleeptime.errors import ModelOutputError
from sleeptime.llm.gateway import CallResult, ModelGateway
from sleeptime.models import SleepStep, Usage
from sleeptime.paper import RethinkOptions
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore


class DegenerateOutput(ModelOutputError):
    """Sleep-time output the quality gate rejected twice (``cause``: empty, repetition)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def add_usage(a: Usage | None, b: Usage | None) -> Usage:
    return (a or Usage()) + (b or Usage())


def version_kwargs(state: SleepState) -> dict[str, Any]:
    """The context version a run works on, as keyword arguments."""
    return {
        "namespace": state["namespace"],
        "context_id": state["context_id"],
        "version": state["version"],
    }


class SleepState(TypedDict, total=False):
    namespace: str
    context_id: str
    version: int
    text: str
    rethink: int
    drafts: Annotated[list[str], operator.add]
    learned: str | None
    questions: list[str]
    qas: list[dict[str, Any]]
    carried: list[dict[str, Any]]
    warnings: list[str]
    usage: Annotated[Usage, add_usage]
    skipped: bool
    rebuild_kv: bool
    #: incremental run: the finished version this one extends, and the added text
    base_version: int
    new_part: str


@dataclass
class SleepDeps:
    """What the nodes need, handed over through LangGraph's ``Runtime.context``."""

    store: SQLStore
    gateway: ModelGateway
    settings: Settings
    k: int
    n_questions: int
    #: Samples per precomputed answer, voted on (1: one sample, no vote).
    answer_samples: int = 1
    progress: Callable[[str], None] | None = None
    #: Called once per finished (or failed) step with its name, duration and tokens.
    on_step: Callable[[SleepStep], None] | None = None
    #: The test-time model, whose query-prompt prefix the prefill step computes (the
    #: sleep-time model may be another, cheaper or stronger one). None: the same.
    prefill_gateway: ModelGateway | None = None
    #: The client's LangChain ``Embeddings``: passages are embedded too (optional).
    embeddings: Embeddings | None = None
    #: What degraded in this run (quality gate, ...), for the report and the manifest.
    warnings: list[str] = field(default_factory=list)
    #: How c' is learned: ``notes`` (one learn call per rethink) or ``rethink_tools``
    #: (the paper's loop of memory rewrites, :mod:`sleeptime.paper`).
    strategy: str = "notes"
    #: The ``rethink_tools`` loop's options (None: the paper's defaults).
    rethink_options: RethinkOptions | None = None

    @property
    def rethink(self) -> RethinkOptions:
        return self.rethink_options or RethinkOptions()

    @property
    def query_gateway(self) -> ModelGateway:
        return self.prefill_gateway or self.gateway

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def call(
        self,
        state: SleepState,
        messages: list[BaseMessage],
        step: str,
        *,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> CallResult:
        record = self.store.recorder(**version_kwargs(state), model=self.gateway.name)
        return self.gateway.call(
            messages,
            phase="sleep",
            step=step,
            max_tokens=self.settings.sleep_max_tokens,
            temperature=temperature,
            recorder=record,
            namespace=state["namespace"],
            json_schema=json_schema,
        )

    def nonempty(
        self,
        state: SleepState,
        messages: list[BaseMessage],
        step: str,
        *,
        keep_before_loop: bool = True,
        **kw: Any,
    ) -> tuple[str, Usage]:
        """Call until the output passes the quality gate: never store an empty or looping
        artifact. A loop is cut where it starts when what precedes it is worth keeping
        (``keep_before_loop``), else the call is tried once more, at the sleep
        temperature (a greedy decoder would loop again); output cut at the cap is kept up
        to its last complete sentence. Each is a warning; two rejected outputs raise
        :class:`DegenerateOutput`."""
        usage = Usage()
        cause = "empty"
        for attempt in range(2):
            if attempt and cause == "repetition":
                kw = {**kw, "temperature": kw.get("temperature") or self.settings.sleep_temperature}
            res = self.call(state, messages, step, **kw)
            usage = usage + res.usage
            got = quality.check(res.text, res.hit_cap, keep_before_loop=keep_before_loop)
            if got.text is not None:
                if got.cause == "repetition":
                    self.warn(f"{step}: repetition; kept the part before the loop")
                elif got.cause:
                    self.warn(f"{step}: {got.cause} at the token cap; kept up to the last "
                              "complete sentence")  # fmt: skip
                return got.text, usage
            cause = got.cause or cause
        raise DegenerateOutput(
            f"model {self.gateway.name} returned {cause} output twice on {step}", cause
        )

    def warn(self, message: str) -> None:
        """A degraded step: said now, and kept for the report and the manifest."""
        if message not in self.warnings:
            self.warnings.append(message)
        self.say(message)

    def fitted(
        self, build: Callable[[str | None], list[BaseMessage]], context: str
    ) -> list[BaseMessage]:
        """``build(context)`` when it fits the model's window, else ``build(None)``:
        for long contexts the later steps work from the learned context alone."""
        messages = build(context)
        if self.gateway.fits(messages, self.settings.sleep_max_tokens):
            return messages
        return build(None)

    def put(
        self, state: SleepState, kind: str, key: str, payload: dict[str, Any], usage: Usage
    ) -> dict[str, Any]:
        """Write an artifact once and return what the store holds. When a concurrent
        run of the same version (a reclaimed job whose first worker is still alive) got
        there first, its payload wins, so later steps build on what was persisted."""
        added = self.store.put_artifact(
            state["namespace"],
            state["context_id"],
            state["version"],
            kind,
            key,
            payload,
            model=self.gateway.name,
            usage=usage,
        )
        if added:
            return payload
        return self.get(state, kind, key) or payload

    def get(self, state: SleepState, kind: str, key: str) -> dict[str, Any] | None:
        return self.store.get_artifact(
            state["namespace"], state["context_id"], state["version"], kind, key
        )
