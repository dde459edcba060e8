"""End to end on the real local model (llama.cpp + SmolLM2-135M). This proves the
inference path, caching and accounting; it asserts nothing about accuracy, which
for a 135M model is ~0 on grade-school math."""

from __future__ import annotations

import pytest

from sleeptime import Settings, SleepTime

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

TEXT = (
    "The Riverside library ordered 12 dozen muffins at $18 per dozen and 6 cakes at $32 "
    "each. Delivery costs $25. The bakery gives the library a 15% discount on food."
)


def test_sleep_then_ask_on_the_real_model(sqlite_url: str) -> None:
    settings = Settings(model="local", n_questions=2, sleep_max_tokens=96)
    st = SleepTime(database_url=sqlite_url, settings=settings)
    assert st.model_name.startswith("local:SmolLM2")
    st.ingest("lib", "order", TEXT)
    cold = st.ask("lib", "order", "How much does the library pay?", max_tokens=24)
    assert cold.source == "cold"
    assert 0 < cold.usage.completion_tokens <= 24 and cold.usage.prompt_tokens > 50

    report = st.sleep("lib", "order")
    assert report.learned and report.learned.strip()
    assert 1 <= len(report.qas) <= 2
    assert all(qa.question.endswith("?") and qa.answer.strip() for qa in report.qas)
    assert report.usage.completion_tokens > 0

    hit = st.ask("lib", "order", report.qas[0].question)
    assert hit.source == "predicted" and hit.usage.total_tokens == 0
    warm = st.ask("lib", "order", "How much does the library pay?", max_tokens=24)
    assert warm.source == "learned" and 0 < warm.usage.completion_tokens <= 24

    ledger = st.ledger("lib", "order")
    assert ledger.sleep.completion_tokens == report.usage.completion_tokens
    assert (
        ledger.test.completion_tokens == cold.usage.completion_tokens + warm.usage.completion_tokens
    )
    assert ledger.queries == 3
    # re-running sleep-time on the same version is free
    assert st.sleep("lib", "order").skipped
    assert st.ledger("lib", "order").sleep == ledger.sleep
