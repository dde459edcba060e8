"""How predictable a question is from its context: mean log P(question | context).

Lin et al. (2025) found sleep-time compute pays off most where the question is
predictable from the context, measured as the log-probability a language model gives
the question after reading the context. We compute the same on the local llama.cpp
model: the raw text ``"{context}\\n\\nQuestion: {question}"`` is scored token by
token and the log-probabilities of the question's tokens are averaged (natural log,
so the result is <= 0; closer to 0 = more predictable). A scheduler can rank contexts
by it to spend sleep-time compute where queries are foreseeable.

The context's KV cache is reused across calls, so scoring several questions about one
context reads the context once (within one ``namespace``: scoring claims the model's
prompt cache for it, see :meth:`~sleeptime.llm.local.LocalChatModel.claim_cache`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sleeptime.errors import InvalidInput
from sleeptime.llm import llama_internals as lli
from sleeptime.llm.local import LocalChatModel, bundled_model_path
from sleeptime.llm.tokens import common_prefix


@dataclass(frozen=True)
class Predictability:
    """The score and what it was computed over."""

    mean_logprob: float
    question_tokens: int
    context_tokens: int
    truncated: bool  # the context's beginning was cut to fit the window


_DEFAULT: LocalChatModel | None = None


def default_model() -> LocalChatModel:
    """The bundled model (loaded once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LocalChatModel(model_path=str(bundled_model_path()), n_ctx=4096)
    return _DEFAULT


def score(
    context: str,
    question: str,
    model: LocalChatModel | None = None,
    *,
    namespace: str | None = None,
) -> Predictability:
    """Mean log P(question tokens | context) under ``model`` (default: bundled SmolLM2),
    for the tenant ``namespace`` (None: no tenant, e.g. a benchmark)."""
    if not isinstance(context, str) or not context.strip():
        raise InvalidInput("context is empty")
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("question is empty")
    model = model or default_model()
    llama, lock = model.llama()
    head = f"{context.strip()}\n\nQuestion:"
    prompt = llama.tokenize(head.encode("utf-8"), add_bos=True, special=False)
    full = llama.tokenize(f"{head} {question.strip()}".encode(), add_bos=True, special=False)
    n = common_prefix(prompt, full)
    prefix, targets = list(full[:n]), list(full[n:])
    room = llama.n_ctx() - len(targets) - 1
    if room < 2:
        raise InvalidInput(f"question is too long for the model's {llama.n_ctx()}-token window")
    truncated = len(prefix) > room
    if truncated:  # keep the start-of-text token and the end of the context
        keep = 1 if prefix and prefix[0] == llama.token_bos() else 0
        prefix = prefix[:keep] + prefix[len(prefix) - (room - keep) :]
    with lock:
        model.claim_cache(namespace)
        lps = lli.target_logprobs(llama, prefix, targets)
    mean = float(np.mean(lps))
    if not math.isfinite(mean):
        raise RuntimeError(f"non-finite log-probability {mean} from {model.display_name}")
    return Predictability(mean, len(targets), len(prefix), truncated)


def predictability(context: str, question: str, model: LocalChatModel | None = None) -> float:
    """Mean log P(question | context): a finite number <= 0, higher = more predictable."""
    return score(context, question, model).mean_logprob


def mean_predictability(
    context: str, questions: list[str], model: LocalChatModel | None = None
) -> float | None:
    """Mean predictability of several questions about one context (e.g. its past queries
    from the query log): a priority key for the sleep-time scheduler. The context is read
    once. None when there are no questions."""
    scores = [score(context, q, model).mean_logprob for q in questions if q.strip()]
    return float(np.mean(scores)) if scores else None
