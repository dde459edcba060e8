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

from sleeptime.llm.capabilities import BudgetForcing
from sleeptime.models import Budget

if TYPE_CHECKING:
    from sleeptime.llm.gateway import ModelGateway

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
