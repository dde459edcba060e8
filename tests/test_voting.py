"""Precomputed answers scaled by voting: N samples at the sleep temperature, the most
common final answer stored with its agreement, only agreed answers served."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import PrivateAttr

from sleeptime import FakeChatModel, InvalidSettings, Settings, SleepTime


class Noisy(FakeChatModel):
    """A model of known accuracy: the right final answer (the question's number times
    ten) with probability ``p``, else a random wrong one. A simulation, not a model."""

    p: float = 0.5
    seed: int = 0
    _rng: random.Random = PrivateAttr()
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._rng = random.Random(self.seed)

    def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
        last = str(messages[-1].content)
        asked = re.search(r"<question>\s*Item (\d+)", last)
        if asked and "List" not in last:
            right = int(asked.group(1)) * 10
            with self._guard:
                ok = self._rng.random() < self.p
                wrong = self._rng.choice([v for v in range(1, 1000) if v != right])
            return f"Working it out. The answer is {right if ok else wrong}."
        m = re.search(r"List (\d+) questions", last)
        if m:
            qs = [f"Item {i} has how many units?" for i in range(1, int(m.group(1)) + 1)]
            return '{"questions": [' + ", ".join(f'"{q}"' for q in qs) + "]}"
        return super()._rule_based(messages, structured)


def stored_accuracy(url: str, n: int, p: float, seed: int) -> tuple[float, list[Any]]:
    st = SleepTime(
        model=Noisy(p=p, seed=seed),
        database_url=url,
        settings=Settings(model="fake", n_questions=20),
        answer_samples=n,
    )
    st.ingest("acme", "doc", "Twenty items, each with its own count of units.")
    qas = st.sleep("acme", "doc").qas
    right = [
        qa for qa in qas if re.search(rf"answer is {int(qa.question.split()[1]) * 10}\.", qa.answer)
    ]
    st.close()
    return len(right) / len(qas), qas


def test_voting_raises_the_accuracy_of_stored_answers(tmp_path: Any) -> None:
    """p = 0.5: about half the single samples are right; seven votes get >= 90% right."""
    one = [stored_accuracy(f"sqlite:///{tmp_path}/a{s}.db", 1, 0.5, s)[0] for s in range(3)]
    seven = [stored_accuracy(f"sqlite:///{tmp_path}/b{s}.db", 7, 0.5, s)[0] for s in range(3)]
    assert 0.3 <= sum(one) / 3 <= 0.7
    assert sum(seven) / 3 >= 0.9


def test_agreement_is_stored_and_gates_serving(sqlite_url: str) -> None:
    _, qas = stored_accuracy(sqlite_url, 7, 0.5, 1)
    assert all(qa.agreement is not None and 0 < qa.agreement <= 1 for qa in qas)
    for qa in qas:
        assert qa.servable == (qa.agreement >= 0.5), qa
        if not qa.servable:
            assert qa.reason and qa.reason.startswith("low agreement")


def test_one_sample_has_no_vote(sqlite_url: str) -> None:
    _, qas = stored_accuracy(sqlite_url, 1, 1.0, 0)
    assert all(qa.agreement is None and qa.servable for qa in qas)


def test_samples_are_bounded(sqlite_url: str) -> None:
    with pytest.raises(InvalidSettings, match="ANSWER_SAMPLES"):
        SleepTime(model=FakeChatModel(), database_url=sqlite_url, answer_samples=100)
