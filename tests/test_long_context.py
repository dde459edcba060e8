"""Contexts longer than the model's window: sleep-time reads them in chunks, the
learned path drops the raw text, and the cold path refuses with a clear message."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from sleeptime import ContextTooLong, FakeChatModel, Settings, SleepTime
from sleeptime.chunking import split_text
from sleeptime.store.schema import LedgerRow


def words(text: str) -> int:
    return len(text.split())


def test_split_text_respects_the_limit_and_keeps_everything() -> None:
    paras = [" ".join(f"w{p}_{i}." for i in range(n)) for p, n in enumerate([5, 40, 3, 120, 7])]
    text = "\n\n".join(paras)
    chunks = split_text(text, 30, words)
    assert all(words(c) <= 30 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())
    with pytest.raises(ValueError):
        split_text(text, 0, words)


def test_chunks_fit_when_the_whole_counts_more_than_its_parts() -> None:
    # a tokenizer for which joined text costs more than the sum of its pieces (here:
    # every line break is two tokens), as a real BPE count of a joined chunk can be
    def count(text: str) -> int:
        return len(text.split()) + 2 * text.count("\n")

    text = " ".join(f"Crate {i} holds {i} apples." for i in range(200))
    chunks = split_text(text, 50, count)
    assert all(count(c) <= 50 for c in chunks), max(count(c) for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def long_text(n_sentences: int) -> str:
    return "\n\n".join(
        f"Crate {i} holds {i * 3} apples and {i + 2} pears in warehouse {i % 4}."
        for i in range(n_sentences)
    )


def test_long_context_is_learned_in_chunks(database_url: str) -> None:
    settings = Settings(model="fake", n_questions=2, context_window=400, sleep_max_tokens=64)
    st = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    text = long_text(80)  # ~1,000 words, 2.5x the window
    st.ingest("acme", "big", text)
    with pytest.raises(ContextTooLong, match="run sleep-time on it first"):
        st.ask("acme", "big", "How many apples are in crate 7?")
    report = st.sleep("acme", "big")
    assert report.learned and len(report.qas) == 2
    with st.store.session() as s:
        steps = dict(s.execute(select(LedgerRow.step, func.count()).group_by(LedgerRow.step)).all())
    assert steps["learn_chunk"] >= 3 and "learn" not in steps
    answer = st.ask("acme", "big", "How many apples are in crate 7?", max_tokens=16)
    assert answer.source == "learned"
    assert answer.usage.prompt_tokens + 16 <= 400  # the raw text was left out


def test_short_context_uses_a_single_learn_call(database_url: str) -> None:
    settings = Settings(model="fake", n_questions=1, context_window=4000)
    st = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    st.ingest("acme", "small", long_text(5))
    st.sleep("acme", "small")
    with st.store.session() as s:
        steps = set(s.scalars(select(LedgerRow.step)).all())
    assert "learn" in steps and "learn_chunk" not in steps
