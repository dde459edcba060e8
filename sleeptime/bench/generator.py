"""Multi-Query: seeded stateful word problems with several questions per context.

The paper's Stateful GSM-Symbolic has one question per context, so it cannot show the
amortization of sleep-time compute over many queries. Each context here is a small
world (a shopping trip, a road trip, a warehouse week, a workshop schedule) with 3-10
related questions whose answers the generator computes exactly, by construction.

Same (seed, index, difficulty, queries, families) -> same item, on any machine:
``random.Random`` seeded with a string is stable across processes and versions.

Difficulty 1-3 grows the number of entities (items, legs, days, sessions) and adds
steps (discounts and fees, fuel, stops, unit conversions, odd durations).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from sleeptime.bench.items import Item, Query
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
        unknown = set(self.families) - set(FAMILIES)
        if unknown or not self.families:
            raise InvalidInput(
                f"multi-query: unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}"
            )


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


def shopping(rng: random.Random, difficulty: int) -> tuple[str, Pool]:
    name, she, _ = rng.choice(_PEOPLE)
    n_items = {1: 2, 2: 3, 3: rng.choice([4, 5])}[difficulty]
    goods = rng.sample(_GOODS, n_items)
    cents: list[float] = {1: [0.0], 2: [0.0, 0.5], 3: [0.0, 0.25, 0.5, 0.75]}[difficulty]
    qty = [rng.randint(2, 9) for _ in goods]
    price = [rng.randint(1, 12) + rng.choice(cents) for _ in goods]
    cost = [q * p for q, p in zip(qty, price, strict=True)]
    subtotal = sum(cost)
    # only discounts that leave whole cents, so every label is exact
    exact = [d for d in (10, 20, 25) if (Fraction(str(subtotal)) * (100 - d)) % 1 == 0]
    discount = rng.choice(exact) if difficulty >= 2 else 0
    threshold = rng.choice([20, 30, 40, 50]) if difficulty >= 2 else 0
    fee = rng.choice([3, 4, 5, 6]) if difficulty >= 3 else 0
    paid = subtotal * (100 - discount) / 100 if discount and subtotal > threshold else subtotal
    paid += fee
    budget = (int(paid) // 10 + rng.randint(2, 6)) * 10
    lines = [f"{name} goes shopping with ${budget}."]
    for g, q, p in zip(goods, qty, price, strict=True):
        lines.append(f"{she.capitalize()} buys {q} {g} at {money(p)} each.")
    if discount:
        lines.append(
            f"The store takes {discount}% off the whole bill when it is over ${threshold}."
        )
    if fee:
        lines.append(f"A delivery fee of ${fee} is added after any discount.")
    pool: Pool = [
        (f"item_cost:{g}", f"How much does {name} spend on {g}?", fmt(c))
        for g, c in zip(goods, cost, strict=True)
    ]
    pool += [
        ("count", f"How many items does {name} buy in total?", fmt(sum(qty))),
        (
            "subtotal",
            f"What is {name}'s bill before any discount{' or fee' if fee else ''}?",
            fmt(subtotal),
        ),
        ("paid", f"How much does {name} pay in total?", fmt(paid)),
        ("left", f"How much money does {name} have left after paying?", fmt(budget - paid)),
    ]
    order = sorted(range(n_items), key=lambda i: cost[i])
    lo, hi = order[0], order[-1]
    if cost[hi] > cost[lo]:
        pool.append(
            (
                f"diff:{goods[hi]}:{goods[lo]}",
                f"How much more does {name} spend on {goods[hi]} than on {goods[lo]}?",
                fmt(cost[hi] - cost[lo]),
            )
        )
    if n_items > 1 and cost[order[-1]] > cost[order[-2]]:
        pool.append(("most", f"Which goods does {name} spend the most money on?", goods[hi]))
    return " ".join(lines), pool


def travel(rng: random.Random, difficulty: int) -> tuple[str, Pool]:
    name, she, her = rng.choice(_PEOPLE)
    a, b = rng.sample(_PLACES, 2)
    legs = {1: 2, 2: 3, 3: rng.choice([4, 5])}[difficulty]
    speed = [rng.choice([30, 40, 50, 60, 70]) for _ in range(legs)]
    hours = [rng.randint(1, 4) for _ in range(legs)]
    dist = [s * h for s, h in zip(speed, hours, strict=True)]
    total = sum(dist)
    lines = [f"{name} drives from {a} to {b} in {legs} legs."]
    for i, (d, s) in enumerate(zip(dist, speed, strict=True)):
        lines.append(f"The {_ORDINALS[i]} leg is {d} miles at {s} miles per hour.")
    pool: Pool = [
        (f"leg_time:{i}", f"How many hours does the {_ORDINALS[i]} leg take?", fmt(h))
        for i, h in enumerate(hours)
    ]
    pool += [
        ("distance", f"How many miles does {name} drive in total?", fmt(total)),
        ("drive_hours", f"How many hours does {name} spend driving?", fmt(sum(hours))),
        ("longest", "How many miles long is the longest leg?", fmt(max(dist))),
    ]
    if difficulty >= 2:
        mpg = next(m for m in (25, 20, 10) if total % m == 0)
        gas = rng.choice([3, 4, 5])
        lines.append(
            f"The car uses one gallon of gas every {mpg} miles, and gas costs ${gas} per gallon."
        )
        pool += [
            ("gallons", "How many gallons of gas does the trip use?", fmt(total / mpg)),
            ("fuel_cost", "How much does the gas for the trip cost?", fmt(total / mpg * gas)),
        ]
    if difficulty >= 3:
        stop = rng.choice([10, 15, 20, 30])
        lines.append(f"{she.capitalize()} stops for {stop} minutes between consecutive legs.")
        pool.append(
            (
                "trip_minutes",
                "How many minutes does the whole trip take, including stops?",
                fmt(60 * sum(hours) + stop * (legs - 1)),
            )
        )
    if (100 * total) % sum(hours) == 0:
        pool.append(
            (
                "avg_speed",
                f"What is {her} average driving speed in miles per hour?",
                fmt(total / sum(hours)),
            )
        )
    return " ".join(lines), pool


def inventory(rng: random.Random, difficulty: int) -> tuple[str, Pool]:
    n_products = {1: 2, 2: 3, 3: 3}[difficulty]
    n_days = {1: 3, 2: 5, 3: 7}[difficulty]
    products = rng.sample(_PRODUCTS, n_products)
    stock = {p: rng.randint(4, 12) * 10 for p in products}
    per_box = rng.choice([6, 12, 20, 25])
    start = " and ".join(f"{stock[p]} boxes of {p}" for p in products)
    lines = [f"A warehouse starts the week with {start}. Each box holds {per_box} units."]
    pool: Pool = []
    received = shipped = 0
    for day in _DAYS[:n_days]:
        p = rng.choice(products)
        amount = rng.randint(1, 6) * 5
        if rng.random() < 0.5 or stock[p] < amount:
            stock[p] += amount
            received += amount
            lines.append(f"On {day} it receives {amount} boxes of {p}.")
        else:
            stock[p] -= amount
            shipped += amount
            lines.append(f"On {day} it ships {amount} boxes of {p}.")
        if day != _DAYS[n_days - 1]:
            pool.append(
                (
                    f"stock_after:{p}:{day}",
                    f"How many boxes of {p} are in stock at the end of {day}?",
                    fmt(stock[p]),
                )
            )
    last = _DAYS[n_days - 1]
    for p in products:
        pool.append(
            (f"final:{p}", f"How many boxes of {p} are in stock after {last}?", fmt(stock[p]))
        )
    pool += [
        (
            "received",
            "How many boxes does the warehouse receive in total during the week?",
            fmt(received),
        ),
        (
            "shipped",
            "How many boxes does the warehouse ship in total during the week?",
            fmt(shipped),
        ),
        (
            "total_final",
            f"How many boxes of all products are in stock after {last}?",
            fmt(sum(stock.values())),
        ),
    ]
    if difficulty >= 2:
        p = rng.choice(products)
        pool.append(
            (
                f"units:{p}",
                f"How many units of {p} are in stock after {last}?",
                fmt(stock[p] * per_box),
            )
        )
    return " ".join(lines), pool


def schedule(rng: random.Random, difficulty: int) -> tuple[str, Pool]:
    n_sessions = {1: 3, 2: 5, 3: 7}[difficulty]
    n_breaks = {1: 1, 2: 1, 3: 2}[difficulty]
    names = rng.sample(_SESSIONS, n_sessions - n_breaks) + rng.sample(_BREAKS, n_breaks)
    rng.shuffle(names)
    step = 15 if difficulty == 1 else 5
    minutes = [
        rng.randint(1, 6) * step if "break" in s else rng.randint(2, 9) * step for s in names
    ]
    start = rng.choice([8, 9, 10]) * 60 + rng.choice(
        [0, 15, 30, 45] if difficulty < 3 else [0, 10, 20, 35, 50]
    )
    parts = [f"a {m}-minute {s}" for s, m in zip(names, minutes, strict=True)]
    text = (
        f"A workshop starts at {clock(start)}. Its sessions run back to back, with no gaps, "
        f"in this order: {_join(parts)}."
    )
    pool: Pool = []
    t = start
    for s, m in zip(names, minutes, strict=True):
        pool.append((f"start:{s}", f"At what time does the {s} start?", clock(t)))
        t += m
        pool.append((f"end:{s}", f"At what time does the {s} end?", clock(t)))
    pool += [
        ("end", "At what time does the workshop end?", clock(t)),
        ("length", "How many minutes long is the whole workshop?", fmt(t - start)),
        (
            "break_minutes",
            "How many minutes of breaks are there in total?",
            fmt(sum(m for s, m in zip(names, minutes, strict=True) if "break" in s)),
        ),
    ]
    return text, pool


_BUILDERS: dict[str, Callable[[random.Random, int], tuple[str, Pool]]] = {
    "shopping": shopping,
    "travel": travel,
    "inventory": inventory,
    "schedule": schedule,
}


def generate_item(spec: Spec, index: int) -> Item:
    rng = random.Random(f"multi-query:{spec.seed}:{index}:{spec.difficulty}")
    family = spec.families[index % len(spec.families)]
    context, pool = _BUILDERS[family](rng, spec.difficulty)
    want = rng.randint(spec.min_queries, spec.max_queries)
    picked = sorted(rng.sample(range(len(pool)), min(want, len(pool))))
    queries = tuple(
        Query(question=pool[i][1], answer=pool[i][2], meta={"kind": pool[i][0]}) for i in picked
    )
    return Item(
        id=f"mq-s{spec.seed}-d{spec.difficulty}-{index:04d}",
        context=context,
        queries=queries,
        meta={"family": family, "difficulty": spec.difficulty, "seed": spec.seed},
    )


def generate(spec: Spec | None = None, **knobs: object) -> list[Item]:
    """``spec.n`` items, families in rotation; see :class:`Spec` for the knobs."""
    spec = spec or Spec(**knobs)  # type: ignore[arg-type]
    spec.check()
    return [generate_item(spec, i) for i in range(spec.n)]


def generate_from_options(options: str, *, limit: int | None = None) -> list[Item]:
    """Parse ``n=50,seed=1,difficulty=2,queries=3-10,families=shopping+travel``."""
    kw: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        try:
            if not sep:
                raise ValueError
            if key in ("n", "seed", "difficulty"):
                kw[key] = int(value)
            elif key == "queries":
                lo, _, hi = value.partition("-")
                kw["min_queries"], kw["max_queries"] = int(lo), int(hi or lo)
            elif key == "families":
                kw["families"] = tuple(f.strip() for f in value.split("+") if f.strip())
            else:
                raise InvalidInput(
                    f"multi-query: unknown option {key!r}; "
                    "use n, seed, difficulty, queries, families"
                )
        except ValueError as exc:
            raise InvalidInput(
                f"multi-query: bad option {part!r} (e.g. n=50,seed=1,queries=3-10)"
            ) from exc
    if "n" not in kw and limit is not None:
        kw["n"] = limit
    return generate(Spec(**kw))  # type: ignore[arg-type]
