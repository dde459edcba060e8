"""The one function every model call goes through: retry policy, usage, ledger."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from tenacity import retry_if_exception

from sleeptime.errors import ModelCallError, ModelUnavailable, SleepTimeError
from sleeptime.llm.capabilities import PrefixState
from sleeptime.llm.estimate import estimate_tokens
from sleeptime.llm.retry import RetryPolicy, is_transient
from sleeptime.models import Phase, Usage


@dataclass(frozen=True)
class CallResult:
    text: str
    usage: Usage
    latency_ms: float
    finish_reason: str | None = None

    @property
    def hit_cap(self) -> bool:
        """The reply stopped because it reached its token cap (it may be cut off)."""
        return self.finish_reason in {"length", "max_tokens"}


#: Receives (phase, step, usage, latency_ms) for every finished call.
Recorder = Callable[[Phase, str, Usage, float], None]
#: Receives each piece of an answer's text as the model produces it.
TokenSink = Callable[[str], None]


def model_name(model: BaseChatModel) -> str:
    for attr in ("display_name", "model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def count_tokens(model: BaseChatModel, messages: Sequence[BaseMessage], text: str) -> Usage:
    """Usage when the provider reports none: the model's own counter, else an estimate."""
    try:
        prompt = model.get_num_tokens_from_messages(list(messages))
        completion = model.get_num_tokens(text)
    except Exception:  # tokenizers may be unavailable offline: estimate
        prompt = sum(estimate_tokens(str(m.content)) for m in messages)
        completion = estimate_tokens(text)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, calls=1)


def usage_of(model: BaseChatModel, messages: Sequence[BaseMessage], msg: AIMessage) -> Usage:
    meta = msg.usage_metadata
    if meta:
        return Usage(
            prompt_tokens=int(meta.get("input_tokens", 0)),
            completion_tokens=int(meta.get("output_tokens", 0)),
            calls=1,
        )
    return count_tokens(model, messages, str(msg.content))


def structured_kwargs(model: BaseChatModel, schema: dict[str, Any]) -> dict[str, Any]:
    """Invocation kwargs that make ``model`` decode JSON matching ``schema``, or {}
    when it has no such mode (the caller then parses text, with repair).

    Our llama.cpp model compiles the schema into a grammar; OpenAI-style chat APIs
    take ``response_format`` (in the form each server accepts, see ``llm/servers.py``).
    Both return a plain message, so usage is still read from it and the ledger stays
    exact."""
    if getattr(model, "supports_json_schema", False):
        return {"json_schema": schema}
    server_form = getattr(model, "json_kwargs", None)
    if callable(server_form):  # an OpenAI-compatible server: the form it accepts
        return dict(server_form(schema))
    if type(model).__name__ in {"ChatOpenAI", "AzureChatOpenAI"}:
        return json_schema_format(schema)
    return {}


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``response_format`` asking for JSON that matches ``schema``."""
    name = str(schema.get("title", "reply"))
    return {
        "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    }


def _kwargs(max_tokens: int | None, temperature: float | None, seed: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if seed is not None:
        kwargs["seed"] = seed
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if temperature is not None:
        kwargs["temperature"] = temperature
    return kwargs


@dataclass
class ModelGateway:
    """A chat model plus the policy around it. Accounting cannot be bypassed:
    the only way the graphs reach a model is :meth:`call`."""

    model: BaseChatModel
    retry: RetryPolicy
    recorder: Recorder | None = None
    window: int | None = None
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return model_name(self.model)

    @property
    def context_window(self) -> int | None:
        """Tokens the model can attend to: the configured window, else the local
        model's ``n_ctx``; None (unknown, assume it fits) for remote APIs."""
        if self.window is not None:
            return self.window
        n_ctx = getattr(self.model, "n_ctx", None)
        return n_ctx if isinstance(n_ctx, int) else None

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``, counted once: the same system prompts, notes and
        contexts are measured again and again, and a server's tokenizer costs a round
        trip per count."""
        cached = self._counts.get(text)
        if cached is not None:
            return cached
        try:
            n = int(self.model.get_num_tokens(text))
        except Exception:  # tokenizer unavailable offline: estimate
            n = estimate_tokens(text)
        if len(self._counts) >= 1024:
            self._counts.clear()
        self._counts[text] = n
        return n

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        # a few tokens per message for the chat template's role markers
        return sum(self.count_tokens(str(m.content)) + 8 for m in messages)

    def fits(self, messages: Sequence[BaseMessage], max_tokens: int) -> bool:
        window = self.context_window
        return window is None or self.prompt_tokens(messages) + max_tokens <= window

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
        """One model call: retried here (and only here) on transient errors, booked
        with ``recorder`` and the gateway's own recorder.

        With ``on_token`` the reply is streamed: each piece of text goes to
        ``on_token`` as it arrives (a model without streaming sends its whole reply as
        one piece). A transient failure is retried only before the first piece was
        sent, so a listener never sees text twice.

        With ``json_schema`` the model is asked for constrained JSON where it supports
        it; if the provider rejects that request, the call is repeated as plain text
        (the caller parses and repairs), so no model is excluded. ``namespace`` is the
        tenant the call is made for: a model with an in-process prompt cache reuses
        cached or saved prompt prefixes within that namespace only."""
        kwargs = _kwargs(max_tokens, temperature, seed)
        if isinstance(self.model, PrefixState):
            kwargs["namespace"] = namespace
        if json_schema is not None:
            extra = structured_kwargs(self.model, json_schema)
            if extra:
                try:
                    return self._call(messages, {**kwargs, **extra}, phase, step, recorder)
                except ModelCallError:
                    pass  # no JSON mode after all: plain text below
        if on_token is not None:
            return self._stream(messages, kwargs, phase, step, recorder, on_token)
        return self._call(messages, kwargs, phase, step, recorder)

    def _stream(
        self,
        messages: Sequence[BaseMessage],
        kwargs: dict[str, Any],
        phase: Phase,
        step: str,
        recorder: Recorder | None,
        on_token: TokenSink,
    ) -> CallResult:
        start = time.perf_counter()
        sent = False

        def once() -> AIMessageChunk | None:
            nonlocal sent
            total: AIMessageChunk | None = None
            for chunk in self.model.stream(list(messages), **kwargs):
                total = chunk if total is None else total + chunk
                piece = chunk.text
                if piece:
                    sent = True
                    on_token(piece)
            return total

        try:
            for attempt in self.retry.retrying(
                retry=retry_if_exception(lambda e: not sent and is_transient(e))
            ):
                with attempt:
                    total = once()
        except Exception as exc:
            if sent:  # not retried: the listener already has part of a reply
                raise ModelUnavailable(
                    f"model {self.name} failed midway through a streamed reply on {step}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise self._error(exc, step) from exc
        msg = AIMessage(
            content=total.content if total is not None else "",
            usage_metadata=total.usage_metadata if total is not None else None,
            response_metadata=total.response_metadata if total is not None else {},
        )
        return self._finish(messages, msg, phase, step, start, recorder)

    def _error(self, exc: BaseException, step: str) -> SleepTimeError:
        if is_transient(exc):
            return ModelUnavailable(
                f"model {self.name} still failing on {step} after "
                f"{self.retry.attempts} attempts: {type(exc).__name__}: {exc}"
            )
        return ModelCallError(f"model {self.name} failed on {step}: {exc}")

    def _call(
        self,
        messages: Sequence[BaseMessage],
        kwargs: dict[str, Any],
        phase: Phase,
        step: str,
        recorder: Recorder | None,
    ) -> CallResult:
        start = time.perf_counter()
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    msg = self.model.invoke(list(messages), **kwargs)
        except Exception as exc:
            raise self._error(exc, step) from exc
        return self._finish(messages, msg, phase, step, start, recorder)

    def _finish(
        self,
        messages: Sequence[BaseMessage],
        msg: Any,
        phase: Phase,
        step: str,
        start: float,
        recorder: Recorder | None,
    ) -> CallResult:
        latency_ms = (time.perf_counter() - start) * 1000.0
        if not isinstance(msg, AIMessage):
            raise ModelCallError(f"model {self.name} returned {type(msg).__name__}, not a message")
        usage = usage_of(self.model, messages, msg)
        for rec in (recorder, self.recorder):
            if rec is not None:
                rec(phase, step, usage, latency_ms)
        return CallResult(
            text=str(msg.text),
            usage=usage,
            latency_ms=latency_ms,
            finish_reason=(msg.response_metadata or {}).get("finish_reason"),
        )
