"""What every benchmark dataset is made of: a context and the queries asked about it.

Its own module so that the loaders (:mod:`sleeptime.bench.datasets`) and the generator
(:mod:`sleeptime.bench.generator`) both depend on it instead of on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Query:
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """One context and the queries asked about it."""

    id: str
    context: str
    queries: tuple[Query, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "context": self.context,
            "queries": [
                {"question": q.question, "answer": q.answer, **({"meta": q.meta} if q.meta else {})}
                for q in self.queries
            ],
        }
        if self.meta:
            out["meta"] = self.meta
        return out
