"""predictability(context, question) on the bundled SmolLM2 (slow: real model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sleeptime.errors import InvalidInput
from sleeptime.predictability import mean_predictability, predictability, score

CONTEXT = (
    "Maple Street Bakery is preparing a catering order for the Riverside library. The "
    "library ordered 12 dozen blueberry muffins, 8 dozen chocolate chip cookies and 6 "
    "large carrot cakes. A dozen muffins costs $18, a dozen cookies costs $10, and each "
    "carrot cake costs $32. Each batch of muffins makes 2 dozen and takes 35 minutes."
)
ON_TOPIC = (
    "How much does a dozen muffins cost?",
    "How long does a batch of muffins take to bake?",
    "How many carrot cakes did the library order?",
)
OFF_TOPIC = ("What is the capital of Mongolia?", "Which football team won the 1998 World Cup?")


def test_bad_input_is_rejected_before_loading_a_model() -> None:
    with pytest.raises(InvalidInput):
        score("", "Why?")
    with pytest.raises(InvalidInput):
        score("Some context.", "   ")


@pytest.mark.slow
def test_finite_negative_deterministic_and_equal_to_a_brute_force_reference() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from sleeptime.llm.local import bundled_model_path

    q = ON_TOPIC[0]
    first = score(CONTEXT, q)
    assert math.isfinite(first.mean_logprob) and first.mean_logprob < 0
    assert first.question_tokens >= 5 and not first.truncated
    # scoring reuses the cached context; the number must not depend on what ran before
    score(CONTEXT, OFF_TOPIC[0])
    assert predictability(CONTEXT, q) == pytest.approx(first.mean_logprob, abs=1e-6)

    # reference: one llama.cpp pass over the whole text keeping every position's logits
    ref = llama_cpp.Llama(
        model_path=str(bundled_model_path()), n_ctx=512, logits_all=True, verbose=False, seed=0
    )
    head = f"{CONTEXT}\n\nQuestion:"
    full = ref.tokenize(f"{head} {q}".encode(), add_bos=True)
    n = len(full) - first.question_tokens
    assert full[:n] == ref.tokenize(head.encode(), add_bos=True)[:n]
    ref.eval(full)
    logits = np.asarray(ref.scores[: len(full)], dtype=np.float64)
    lps = []
    for i in range(n, len(full)):
        row = logits[i - 1]
        lps.append(row[full[i]] - (row.max() + np.log(np.exp(row - row.max()).sum())))
    assert first.mean_logprob == pytest.approx(float(np.mean(lps)), abs=0.02)


@pytest.mark.slow
def test_on_topic_questions_score_above_off_topic_ones() -> None:
    """Observed on SmolLM2-135M Q4_1 (llama-cpp-python 0.3.36, 2 threads): on-topic
    -1.33, -1.67, -1.25; off-topic -3.28, -2.69. The test compares the group means
    (~1.6 nats apart), not single questions."""
    pytest.importorskip("llama_cpp")
    on = [predictability(CONTEXT, q) for q in ON_TOPIC]
    off = [predictability(CONTEXT, q) for q in OFF_TOPIC]
    assert all(math.isfinite(x) and x < 0 for x in on + off)
    assert np.mean(on) > np.mean(off)
    assert mean_predictability(CONTEXT, list(ON_TOPIC)) == pytest.approx(np.mean(on), abs=1e-6)
    assert mean_predictability(CONTEXT, ["  "]) is None


@pytest.mark.slow
def test_a_context_longer_than_the_window_is_truncated_from_the_front() -> None:
    pytest.importorskip("llama_cpp")
    from sleeptime.llm.local import LocalChatModel, bundled_model_path

    small = LocalChatModel(model_path=str(bundled_model_path()), n_ctx=512)
    res = score(CONTEXT * 12, ON_TOPIC[0], small)
    assert res.truncated and res.context_tokens + res.question_tokens < 512
    assert math.isfinite(res.mean_logprob) and res.mean_logprob < 0
