"""The price sheet: tokens turned into money wherever tokens are shown.

Prices are dollars per million tokens, per model name as the ledger records it (e.g.
``openai:gpt-4o-mini``, ``local:SmolLM2-135M-Instruct``), with ``"*"`` as a fallback::

    {"openai:gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
     "*": {"input": 0, "output": 0}}

``SLEEPTIME_PRICES`` holds the JSON itself or the path of a file with it. Without a
sheet nothing is priced (a local model costs only electricity).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sleeptime.errors import InvalidSettings
from sleeptime.models import Ledger, Money, Usage


class Price(BaseModel):
    """Dollars per million tokens of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0.0)
    cached_input: float | None = Field(None, ge=0.0, description="default: the input price")
    output: float = Field(ge=0.0)


class PriceSheet(BaseModel):
    """Prices by model name; ``"*"`` prices every model not named."""

    model_config = ConfigDict(frozen=True)

    prices: dict[str, Price] = Field(default_factory=dict)

    @classmethod
    def load(cls, spec: str | None) -> PriceSheet | None:
        """The sheet in ``spec`` (inline JSON or a file path), None for no sheet. A bad
        sheet is one :class:`InvalidSettings` line naming ``SLEEPTIME_PRICES``."""
        if spec is None or not spec.strip():
            return None
        raw = spec.strip()
        if not raw.startswith("{"):
            path = Path(raw).expanduser()
            try:
                raw = path.read_text("utf-8")
            except OSError as exc:
                raise InvalidSettings(
                    f"SLEEPTIME_PRICES: cannot read the price sheet {path}: {exc.strerror}"
                ) from None
        try:
            data = json.loads(raw)
            return cls(prices=data)
        except (json.JSONDecodeError, ValidationError, TypeError) as exc:
            first = str(exc).splitlines()[0]
            raise InvalidSettings(
                f"SLEEPTIME_PRICES: not a price sheet ({first}); expected "
                '{"model": {"input": $/M, "output": $/M, "cached_input": $/M}}'
            ) from None

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or self.prices.get("*")

    def cost(self, model: str, usage: Usage, *, cached_prompt: int = 0) -> float | None:
        """Dollars of ``usage`` on ``model`` (``cached_prompt`` of its prompt tokens at
        the cached-input price); None when the model has no price."""
        p = self.price(model)
        if p is None:
            return None
        cached = min(cached_prompt, usage.prompt_tokens)
        cached_price = p.input if p.cached_input is None else p.cached_input
        return (
            (usage.prompt_tokens - cached) * p.input
            + cached * cached_price
            + usage.completion_tokens * p.output
        ) / 1e6


def ledger_money(sheet: PriceSheet, ledger: Ledger) -> Money:
    """What the ledger's tokens cost, and what the saved prompt tokens would have cost
    on the model that answered at test time (the one with the most test-time tokens)."""
    answering = [(u.get("test", Usage()).total_tokens, m) for m, u in ledger.by_model.items()]
    test_model = max(answering)[1] if answering else "*"
    spent = {"sleep": 0.0, "test": 0.0}
    for model, phases in ledger.by_model.items():
        for phase, usage in phases.items():
            spent[phase] = spent.get(phase, 0.0) + (sheet.cost(model, usage) or 0.0)
    saved = sheet.cost(test_model, Usage(prompt_tokens=ledger.saved_prompt_tokens)) or 0.0
    per_query = saved / ledger.queries if ledger.queries else 0.0
    return Money(
        sleep_usd=round(spent["sleep"], 6),
        test_usd=round(spent["test"], 6),
        saved_usd=round(saved, 6),
        break_even_queries=round(spent["sleep"] / per_query, 1) if per_query > 0 else None,
    )
