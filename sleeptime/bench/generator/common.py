"""What every family shares: the knobs (:class:`Spec`), the names and goods drawn
from, number formats, and the types of a question pool, its support and near misses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sleeptime.errors import InvalidInput

FAMILIES = ("shopping", "travel", "inventory", "schedule")

_PEOPLE = [
    ("Maya", "she", "her"),
    ("Omar", "he", "his"),
    ("Lena", "she", "her"),
    ("Tariq", "he", "his"),
    ("Grace", "she", "her"),
    ("Diego", "he", "his"),
    ("Priya", "she", "her"),
    ("Felix", "he", "his"),
    ("Amara", "she", "her"),
    ("Jonas", "he", "his"),
    ("Sofia", "she", "her"),
    ("Kenji", "he", "his"),
]
_GOODS = [
    "notebooks",
    "pens",
    "apples",
    "mugs",
    "candles",
    "towels",
    "batteries",
    "lamps",
    "plates",
    "socks",
    "folders",
    "bowls",
    "brushes",
    "scarves",
    "cushions",
    "kettles",
]
_PLACES = ["Ashford", "Bristow", "Carlton", "Dunmore", "Elmira", "Fairview", "Glenwood", "Hartley"]
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]
_PRODUCTS = ["bolts", "hinges", "nails", "washers", "brackets", "screws", "clamps"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_SESSIONS = [
    "keynote",
    "lab",
    "panel",
    "demo",
    "tutorial",
    "poster session",
    "lightning talk",
    "round table",
    "closing talk",
    "hackathon",
]
_BREAKS = ["coffee break", "lunch break", "tea break"]


@dataclass(frozen=True)
class Spec:
    """Generator knobs."""

    n: int = 100
    seed: int = 0
    difficulty: int = 2
    min_queries: int = 3
    max_queries: int = 10
    families: tuple[str, ...] = FAMILIES
    near_misses: int = 0
    #: ``longdoc``: the report's length in words (whitespace tokens, what model ``fake``
    #: counts; a BPE tokenizer counts about 1.3 times as many).
    tokens: int = 20_000
    #: ``thread``: exchanges (a user turn and an assistant reply) in the conversation.
    exchanges: int = 60

    def check(self) -> None:
        if self.n < 1:
            raise InvalidInput(f"multi-query: n must be >= 1 (got {self.n})")
        if self.difficulty not in (1, 2, 3):
            raise InvalidInput(f"multi-query: difficulty must be 1, 2 or 3 (got {self.difficulty})")
        if not 1 <= self.min_queries <= self.max_queries <= 10:
            raise InvalidInput(
                f"multi-query: queries must satisfy 1 <= min <= max <= 10 "
                f"(got {self.min_queries}-{self.max_queries})"
            )
        if not 0 <= self.near_misses <= 5:
            raise InvalidInput(
                f"multi-query: near_misses takes 0-5 variants per question (got {self.near_misses})"
            )
        unknown = set(self.families) - set(FAMILIES + LONG_FAMILIES)
        if unknown or not self.families:
            raise InvalidInput(
                f"multi-query: unknown families {sorted(unknown)}; "
                f"known: {', '.join(FAMILIES + LONG_FAMILIES)}"
            )
        if not 1000 <= self.tokens <= 60_000:
            raise InvalidInput(f"multi-query: tokens takes 1000-60000 (got {self.tokens})")
        if not 12 <= self.exchanges <= 200:
            raise InvalidInput(f"multi-query: exchanges takes 12-200 (got {self.exchanges})")
        if self.near_misses and set(self.families) & set(LONG_FAMILIES):
            raise InvalidInput("multi-query: near_misses are for the short families only")


def fmt(value: float) -> str:
    """12.0 -> '12', 12.5 -> '12.5', 3.25 -> '3.25' (answers and prices)."""
    rounded = round(value, 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def money(value: float) -> str:
    return f"${value:.2f}" if round(value, 2) != int(value) else f"${int(value)}"


def clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


Pool = list[tuple[str, str, str]]  # (kind, question, answer)
#: question -> the sentences of the context its answer depends on (verbatim).
Support = dict[str, list[str]]
#: (base kind, category, question, answer): a near-miss variant of the base question.
Near = list[tuple[str, str, str, str]]

#: Near-miss categories, in the order variants are taken.
NEAR_MISS_CATEGORIES = (
    "swapped order",
    "opposite",
    "negation",
    "other entity",
    "other period",
    "other unit",
    "part added",
    "part removed",
    "per-item vs total",
)


LONG_FAMILIES = ("longdoc", "thread")
