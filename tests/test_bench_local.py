"""The parallel-sampling baseline on the real local model (slow: llama.cpp)."""

from __future__ import annotations

import pytest

from sleeptime import SleepTime, prompts
from sleeptime.bench.runner import _sample_seed

pytestmark = pytest.mark.slow


def test_local_samples_differ_and_repeat() -> None:
    """llama.cpp samples with a fixed seed, so without a per-sample seed the K samples of
    the baseline would be K copies of one answer."""
    st = SleepTime(model="local", database_url="sqlite:///:memory:")
    messages = prompts.query_messages(
        "How many apples are left?",
        context="Ann has 5 apples. She eats 2.",
        learned=None,
        verbosity=2,
    )

    def sample(i: int) -> str:
        res = st.gateway.call(
            messages,
            phase="test",
            step="parallel",
            max_tokens=24,
            temperature=0.9,
            seed=_sample_seed(st.gateway, i),
        )
        return res.text

    texts = [sample(i) for i in range(3)]
    assert len(set(texts)) > 1
    assert sample(0) == texts[0]
    st.close()
