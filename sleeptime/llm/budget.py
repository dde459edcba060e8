"""Test-time budgets: one :class:`~sleeptime.models.Budget` drives every backend.

* Raw-completion backends (llama.cpp) get **budget forcing** as in s1 ("Simple
  test-time scaling", Muennighoff et al. 2025): the model thinks after a start marker;
  at ``think_tokens`` generated tokens the thinking is cut, the end-of-thinking marker
  and "Final answer:" are appended and the answer is decoded (at most ``token_cap``
  tokens). When the model tries to stop thinking early, "Wait" is appended instead, up
  to ``extend`` times, so it keeps thinking.
* Chat APIs cannot be cut mid-thought, so the budget becomes request parameters:
  ``max_tokens`` (thinking + answer for reasoning models), ``reasoning_effort`` for
  models that take it, and the verbosity instruction the prompt already carries
  (:data:`sleeptime.prompts.VERBOSITY`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from sleeptime.llm.capabilities import BudgetForcing
from sleeptime.models import Budget

if TYPE_CHECKING:
    from sleeptime.llm.gateway import ModelGateway
    from sleeptime.llm.local import LocalChatModel, PromptParts

Effort = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class ThinkMarkers:
    """The text around thinking. The defaults follow the ``<think>`` convention of
    DeepSeek-R1 / Qwen3 style models; s1 itself used ``<|im_start|>think``."""

    start: str = "<think>\n"
    end: str = "\n</think>\n\n"
    answer: str = "Final answer:"
    wait: str = "Wait"

    @property
    def stop(self) -> str:
        """What the model writes when it ends thinking on its own."""
        return self.end.strip()


@dataclass(frozen=True)
class Completion:
    """One raw completion: generated text, tokens generated, and why it stopped."""

    text: str
    tokens: int
    finish: str  # "stop" (end marker / EOS / stop string) or "length"


#: (prompt text, max new tokens, stop strings) -> Completion
RawComplete = Callable[[str, int, list[str]], Completion]


@dataclass(frozen=True)
class Forced:
    """What budget forcing produced, and how."""

    thinking: str
    answer: str
    think_tokens: int
    answer_tokens: int
    waits: int
    capped: bool  # thinking was cut at the budget
    calls: int


def force_budget(
    complete: RawComplete,
    prompt: str,
    *,
    think_tokens: int,
    extend: int = 0,
    answer_tokens: int = 64,
    markers: ThinkMarkers | None = None,
) -> Forced:
    """Think for at most ``think_tokens`` tokens after ``prompt``, then answer.

    ``think_tokens == 0`` skips thinking (the answer is forced at once). ``extend``
    suppresses up to that many early stops by appending "Wait". The appended markers
    are not counted as generated tokens.
    """
    if think_tokens < 0 or extend < 0 or answer_tokens < 1:
        raise ValueError("think_tokens and extend must be >= 0 and answer_tokens >= 1")
    mk = markers or ThinkMarkers()
    head = prompt + mk.start
    thinking = ""
    used = waits = calls = 0
    capped = think_tokens == 0
    while used < think_tokens:
        out = complete(head + thinking, think_tokens - used, [mk.stop] if mk.stop else [])
        calls += 1
        thinking += out.text
        used += out.tokens
        if out.finish == "length" or used >= think_tokens:
            capped = True
            break
        if waits >= extend:
            break
        sep = "" if not thinking or thinking[-1].isspace() else " "
        thinking += f"{sep}{mk.wait}"
        waits += 1
    thinking = thinking.rstrip()
    ans = complete(head + thinking + mk.end + mk.answer, answer_tokens, [])
    calls += 1
    return Forced(
        thinking=thinking,
        answer=ans.text.strip(),
        think_tokens=used,
        answer_tokens=ans.tokens,
        waits=waits,
        capped=capped,
        calls=calls,
    )


def local_forced_answer(
    model: LocalChatModel,
    parts: PromptParts,
    *,
    think_tokens: int,
    extend: int,
    answer_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    markers: ThinkMarkers | None = None,
    namespace: str | None = None,
) -> AIMessage:
    """Budget forcing on a llama.cpp model, after its chat template's assistant header.
    Each continuation shares the previous prompt's tokens, so llama.cpp's prefix reuse
    evaluates only what was appended (within ``namespace``: see
    :meth:`~sleeptime.llm.local.LocalChatModel.claim_cache`)."""
    llama, lock = model.llama()
    special_stops = parts.stop
    mk = markers or ThinkMarkers()
    tail = mk.end + mk.answer

    restored: list[int] = []

    def tokens_of(text: str) -> list[int]:
        """The prompt's own ids (``parts.tokens``: its content was tokenized as plain
        text), then what force_budget appended to it: the start marker, the thinking
        and, for the answer, the end marker and "Final answer:". The markers are ours
        (special tokens on: ``<think>`` may be one); the thinking is model output that
        may echo the context, so it is plain text."""
        added = text[len(parts.text) :]  # force_budget only ever appends to the prompt
        head = mk.start if added.startswith(mk.start) else ""
        body = added[len(head) :]
        end = tail if tail and body.endswith(tail) else ""
        body = body[: len(body) - len(end)]
        ids = list(parts.tokens)
        for piece, special in ((head, True), (body, False), (end, True)):
            if piece:
                ids.extend(llama.tokenize(piece.encode("utf-8"), add_bos=False, special=special))
        return ids

    def complete(text: str, max_tokens: int, stop: list[str]) -> Completion:
        tokens = tokens_of(text)
        with lock:
            restored.append(model.prepare(tokens, namespace)[0])  # a saved KV prefix, if any
            out = llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=[*stop, *special_stops],
                seed=seed,
            )
        choice = out["choices"][0]
        n = int((out.get("usage") or {}).get("completion_tokens", 0))
        return Completion(
            choice["text"], n, "length" if choice["finish_reason"] == "length" else "stop"
        )

    forced = force_budget(
        complete,
        parts.text,
        think_tokens=think_tokens,
        extend=extend,
        answer_tokens=answer_tokens,
        markers=mk,
    )
    used = forced.think_tokens + forced.answer_tokens
    return AIMessage(
        content=forced.answer,
        usage_metadata={
            "input_tokens": len(parts.tokens),
            "output_tokens": used,
            "total_tokens": len(parts.tokens) + used,
        },
        response_metadata={
            "finish_reason": "stop",
            "model": model.display_name,
            "thinking": forced.thinking,
            "think_tokens": forced.think_tokens,
            "waits": forced.waits,
            "capped": forced.capped,
            "kv_restored_tokens": max(restored, default=0),
        },
    )


# -- chat APIs ---------------------------------------------------------------------------

_REASONING = re.compile(r"(^|[/:])(o\d|gpt-5|gpt-oss)", re.IGNORECASE)


def is_reasoning_model(model: BaseChatModel) -> bool:
    """Models that take ``reasoning_effort`` (OpenAI o-series, gpt-5, gpt-oss)."""
    name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or "")
    return "reasoning_effort" in type(model).model_fields and bool(_REASONING.search(name))


def reasoning_effort(budget: Budget) -> Effort | None:
    """Thinking tokens -> effort level; None leaves the provider's default."""
    if budget.think_tokens is None:
        return None
    if budget.think_tokens <= 1024:
        return "low"
    if budget.think_tokens <= 8192:
        return "medium"
    return "high"


@dataclass(frozen=True)
class ChatBudget:
    """A budget as chat-API request parameters."""

    max_tokens: int
    reasoning_effort: Effort | None
    verbosity: int


def chat_budget(model: BaseChatModel, budget: Budget) -> ChatBudget:
    """How ``budget`` is spent on ``model``. Reasoning models count thinking inside
    ``max_tokens``, so their cap is thinking + answer; other chat models cannot think
    apart from the answer, so the verbosity prompt sets the reasoning length."""
    if isinstance(model, BudgetForcing) or not is_reasoning_model(model):
        return ChatBudget(budget.token_cap, None, budget.verbosity)
    return ChatBudget(
        budget.token_cap + (budget.think_tokens or 0), reasoning_effort(budget), budget.verbosity
    )


def apply_budget(model: BaseChatModel, budget: Budget) -> BaseChatModel:
    """A copy of ``model`` configured for ``budget`` (the same object when the budget
    needs nothing beyond ``max_tokens`` and the prompt)."""
    if isinstance(model, BudgetForcing):
        if budget.think_tokens is None:
            return model
        return model.with_thinking(budget.think_tokens, budget.extend)
    effort = chat_budget(model, budget).reasoning_effort
    if effort is None:
        return model
    return model.model_copy(update={"reasoning_effort": effort})


def with_budget(gateway: ModelGateway, budget: Budget) -> ModelGateway:
    """The gateway to call for ``budget`` (accounting stays in the gateway)."""
    model = apply_budget(gateway.model, budget)
    return gateway if model is gateway.model else dataclasses.replace(gateway, model=model)


def call_max_tokens(model: BaseChatModel, budget: Budget) -> int:
    return chat_budget(model, budget).max_tokens
