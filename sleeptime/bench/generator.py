"""Multi-Query: seeded stateful word problems with several questions per context.

The paper measures the amortization of sleep-time compute over many queries on
Multi-Query GSM-Symbolic, which it introduces but did not release with its code. This is
our own multi-query data in that spirit: each context is a small world (a shopping trip,
a road trip, a warehouse week, a workshop schedule) with 3-10 related questions whose
answers the generator computes exactly, by construction.

Same (seed, index, difficulty, queries, families) -> same item, on any machine:
``random.Random`` seeded with a string is stable across processes and versions.

Difficulty 1-3 grows the number of entities (items, legs, days, sessions) and adds
steps (discounts and fees, fuel, stops, unit conversions, odd durations).

With ``near_misses=N`` each question also gets up to N *near-miss* variants: questions
with nearly the same words that ask something else (a negation, the opposite verb or
period, the order or direction swapped, another entity or unit, a part added or
removed, a per-item amount instead of a total), each with its own exact label, which
always differs from its base question's label. They are tagged in their ``meta``
(``near_miss_of``: the base question's position, ``category``), so a benchmark can
measure whether a precomputed answer for the base question is ever served for them.
Near-miss variants use no random draws: the base questions are the same with or
without them.

Every question knows the sentences of the context its answer depends on
(``meta["support"]``, verbatim), so a benchmark can tell whether they reached a prompt
without asking any model (:mod:`sleeptime.bench.coverage`). Two long families test
that retrieval: ``longdoc``, a report of ``tokens`` words (default 20,000), and
``thread``, a chat of ``exchanges`` exchanges (default 60), whose questions name their
subject in other words than the text and often add up facts stated far apart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sleeptime.bench.items import Item, Query
from sleeptime.conversation import render_messages
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


def shopping(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
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
    buys = {}
    for g, q, p in zip(goods, qty, price, strict=True):
        buys[g] = f"{she.capitalize()} buys {q} {g} at {money(p)} each."
        lines.append(buys[g])
    terms: list[str] = []  # the discount and fee sentences: what "paid" depends on
    if discount:
        terms.append(
            f"The store takes {discount}% off the whole bill when it is over ${threshold}."
        )
    if fee:
        terms.append(f"A delivery fee of ${fee} is added after any discount.")
    lines += terms
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
    near: Near = []
    for i, g in enumerate(goods):
        g2 = goods[(i + 1) % n_items]
        near += [
            (
                f"item_cost:{g}",
                "other entity",
                f"How much does {name} spend on {g2}?",
                fmt(cost[(i + 1) % n_items]),
            ),
            (
                f"item_cost:{g}",
                "negation",
                f"How much does {name} spend on items other than {g}?",
                fmt(subtotal - cost[i]),
            ),
            (
                f"item_cost:{g}",
                "per-item vs total",
                f"How much does one of the {g} cost?",
                fmt(price[i]),
            ),
            (
                f"item_cost:{g}",
                "part added",
                f"How much does {name} spend on {g} and {g2} together?",
                fmt(cost[i] + cost[(i + 1) % n_items]),
            ),
        ]
    near += [
        ("count", "part removed", f"How many {goods[0]} does {name} buy?", fmt(qty[0])),
        (
            "count",
            "negation",
            f"How many items other than {goods[0]} does {name} buy in total?",
            fmt(sum(qty) - qty[0]),
        ),
        ("left", "opposite", f"How much money does {name} have before paying?", fmt(budget)),
    ]
    if (Fraction(str(paid)) * 100) % sum(qty) == 0:  # exact to the cent
        near.append(
            (
                "paid",
                "per-item vs total",
                f"How much does {name} pay per item on average?",
                fmt(paid / sum(qty)),
            )
        )
    if discount and subtotal > threshold:
        after = subtotal * (100 - discount) / 100
        near.append(
            (
                "subtotal",
                "opposite",
                f"What is {name}'s bill after the discount{' but before the fee' if fee else ''}?",
                fmt(after),
            )
        )
    if cost[hi] > cost[lo]:
        near.append(
            (
                f"diff:{goods[hi]}:{goods[lo]}",
                "swapped order",
                f"How much more does {name} spend on {goods[lo]} than on {goods[hi]}?",
                fmt(cost[lo] - cost[hi]),
            )
        )
    if n_items > 1 and cost[order[0]] < cost[order[1]] and cost[order[-1]] > cost[order[-2]]:
        near.append(
            ("most", "opposite", f"Which goods does {name} spend the least money on?", goods[lo])
        )
    every = list(buys.values())
    support: Support = {}
    for kind, question, _ in pool:
        head, _, good = kind.partition(":")
        if head == "item_cost":
            support[question] = [buys[good]]
        elif head == "diff":
            support[question] = [buys[g] for g in goods if g in good.split(":")]
        elif head == "paid":
            support[question] = every + terms
        elif head == "left":
            support[question] = [lines[0], *every, *terms]
        else:  # count, subtotal, most: every purchase
            support[question] = every
    for kind, category, question, _ in near:
        head, _, good = kind.partition(":")
        if head == "item_cost":
            nxt = goods[(goods.index(good) + 1) % n_items]
            support[question] = {
                "other entity": [buys[nxt]],
                "per-item vs total": [buys[good]],
                "part added": [buys[good], buys[nxt]],
            }.get(category, every)
        elif kind == "count" and category == "part removed":
            support[question] = [buys[goods[0]]]
        elif kind == "left":  # the money before paying
            support[question] = [lines[0]]
        elif kind == "paid":
            support[question] = every + terms
        elif kind == "subtotal":  # the bill after the discount
            support[question] = every + terms[:1]
        elif kind.startswith("diff"):
            support[question] = [buys[g] for g in goods if g in kind.split(":")[1:]]
        else:
            support[question] = every
    return " ".join(lines), pool, near, support


def travel(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
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
    leg_lines = lines[1:]
    gas_line: list[str] = []
    stop_line: list[str] = []
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
        gas_line.append(
            f"The car uses one gallon of gas every {mpg} miles, and gas costs ${gas} per gallon."
        )
        lines += gas_line
        pool += [
            ("gallons", "How many gallons of gas does the trip use?", fmt(total / mpg)),
            ("fuel_cost", "How much does the gas for the trip cost?", fmt(total / mpg * gas)),
        ]
    if difficulty >= 3:
        stop = rng.choice([10, 15, 20, 30])
        stop_line.append(f"{she.capitalize()} stops for {stop} minutes between consecutive legs.")
        lines += stop_line
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
    near: Near = []
    for i, h in enumerate(hours):
        j = (i + 1) % legs
        near += [
            (
                f"leg_time:{i}",
                "other entity",
                f"How many hours does the {_ORDINALS[j]} leg take?",
                fmt(hours[j]),
            ),
            (
                f"leg_time:{i}",
                "other unit",
                f"How many minutes does the {_ORDINALS[i]} leg take?",
                fmt(60 * h),
            ),
        ]
    near += [
        (
            "distance",
            "part removed",
            f"How many miles does {name} drive in the first leg?",
            fmt(dist[0]),
        ),
        (
            "drive_hours",
            "other unit",
            f"How many minutes does {name} spend driving?",
            fmt(60 * sum(hours)),
        ),
        ("longest", "opposite", "How many miles long is the shortest leg?", fmt(min(dist))),
    ]
    if (100 * total) % legs == 0:
        near.append(
            (
                "distance",
                "per-item vs total",
                f"How many miles does {name} drive per leg on average?",
                fmt(total / legs),
            )
        )
    if difficulty >= 2 and (100 * dist[0]) % mpg == 0:
        near.append(
            (
                "gallons",
                "part removed",
                "How many gallons of gas does the first leg use?",
                fmt(dist[0] / mpg),
            )
        )
    if difficulty >= 3:
        near.append(
            (
                "trip_minutes",
                "opposite",
                "How many minutes does the whole trip take, excluding stops?",
                fmt(60 * sum(hours)),
            )
        )
    support: Support = {}
    for kind, question, _ in pool:
        head, _, leg = kind.partition(":")
        if head == "leg_time":
            support[question] = [leg_lines[int(leg)]]
        elif head in ("gallons", "fuel_cost"):
            support[question] = leg_lines + gas_line
        elif head == "trip_minutes":
            support[question] = leg_lines + stop_line
        else:  # distance, drive_hours, longest, avg_speed: every leg
            support[question] = list(leg_lines)
    for kind, category, question, _ in near:
        head, _, leg = kind.partition(":")
        if head == "leg_time":
            i = int(leg)
            support[question] = [leg_lines[(i + 1) % legs if category == "other entity" else i]]
        elif kind == "distance" and category == "part removed":
            support[question] = [leg_lines[0]]
        elif kind == "gallons":  # the first leg's gas
            support[question] = [leg_lines[0], *gas_line]
        else:
            support[question] = list(leg_lines)
    return " ".join(lines), pool, near, support


def inventory(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
    n_products = {1: 2, 2: 3, 3: 3}[difficulty]
    n_days = {1: 3, 2: 5, 3: 7}[difficulty]
    products = rng.sample(_PRODUCTS, n_products)
    stock = {p: rng.randint(4, 12) * 10 for p in products}
    per_box = rng.choice([6, 12, 20, 25])
    start = " and ".join(f"{stock[p]} boxes of {p}" for p in products)
    lines = [f"A warehouse starts the week with {start}.", f"Each box holds {per_box} units."]
    opening, units_line = lines
    said: list[tuple[str, str, str]] = []  # (day, product, sentence)
    pool: Pool = []
    received = shipped = 0
    got = dict.fromkeys(products, 0)
    before: dict[str, dict[str, int]] = {}  # stock at the start of each day
    after: dict[str, dict[str, int]] = {}  # ... and at its end
    for day in _DAYS[:n_days]:
        before[day] = dict(stock)
        p = rng.choice(products)
        amount = rng.randint(1, 6) * 5
        if rng.random() < 0.5 or stock[p] < amount:
            stock[p] += amount
            received += amount
            got[p] += amount
            lines.append(f"On {day} it receives {amount} boxes of {p}.")
        else:
            stock[p] -= amount
            shipped += amount
            lines.append(f"On {day} it ships {amount} boxes of {p}.")
        said.append((day, p, lines[-1]))
        after[day] = dict(stock)
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
    near: Near = []
    days = _DAYS[:n_days]
    for d, day in enumerate(days[:-1]):
        for p in products:
            base = f"stock_after:{p}:{day}"
            q = products[(products.index(p) + 1) % n_products]
            near += [
                (
                    base,
                    "other period",
                    f"How many boxes of {p} are in stock at the end of {days[d + 1]}?",
                    fmt(after[days[d + 1]][p]),
                ),
                (
                    base,
                    "opposite",
                    f"How many boxes of {p} are in stock at the start of {day}?",
                    fmt(before[day][p]),
                ),
                (
                    base,
                    "other entity",
                    f"How many boxes of {q} are in stock at the end of {day}?",
                    fmt(after[day][q]),
                ),
            ]
    for i, p in enumerate(products):
        q = products[(i + 1) % n_products]
        near += [
            (
                f"final:{p}",
                "other unit",
                f"How many units of {p} are in stock after {last}?",
                fmt(stock[p] * per_box),
            ),
            (
                f"final:{p}",
                "other entity",
                f"How many boxes of {q} are in stock after {last}?",
                fmt(stock[q]),
            ),
            (
                f"units:{p}",
                "other unit",
                f"How many boxes of {p} are in stock after {last}?",
                fmt(stock[p]),
            ),
        ]
    p0 = products[0]
    near += [
        (
            "received",
            "opposite",
            "How many boxes does the warehouse ship in total during the week?",
            fmt(shipped),
        ),
        (
            "shipped",
            "opposite",
            "How many boxes does the warehouse receive in total during the week?",
            fmt(received),
        ),
        (
            "received",
            "part removed",
            f"How many boxes of {p0} does the warehouse receive in total during the week?",
            fmt(got[p0]),
        ),
        (
            "total_final",
            "part removed",
            f"How many boxes of {p0} are in stock after {last}?",
            fmt(stock[p0]),
        ),
        (
            "total_final",
            "negation",
            f"How many boxes of products other than {p0} are in stock after {last}?",
            fmt(sum(stock.values()) - stock[p0]),
        ),
    ]
    days_said = [line for _, _, line in said]

    def until(product: str, day: str, *, inclusive: bool = True) -> list[str]:
        """The opening stock and the product's movements up to ``day``."""
        end = _DAYS.index(day) + (1 if inclusive else 0)
        moves = [line for d, p, line in said if p == product and _DAYS.index(d) < end]
        return [opening, *moves]

    support: Support = {}
    for kind, question, _ in pool:
        head, _, rest = kind.partition(":")
        product, _, day = rest.partition(":")
        if head == "stock_after":
            support[question] = until(product, day)
        elif head == "final":
            support[question] = until(product, last)
        elif head == "units":
            support[question] = [*until(product, last), units_line]
        elif head == "total_final":
            support[question] = [opening, *days_said]
        else:  # received, shipped: every day says which it did
            support[question] = list(days_said)
    for kind, category, question, _ in near:
        head, _, rest = kind.partition(":")
        product, _, day = rest.partition(":")
        nxt = products[(products.index(product) + 1) % n_products] if product else products[0]
        if head == "stock_after":
            support[question] = {
                "other period": until(product, days[days.index(day) + 1]),
                "opposite": until(product, day, inclusive=False),
            }.get(category, until(nxt, day))
        elif head == "final":
            support[question] = (
                [*until(product, last), units_line]
                if category == "other unit"
                else until(nxt, last)
            )
        elif head == "units":
            support[question] = until(product, last)
        elif head == "received" and category == "part removed":  # none: every day says so
            support[question] = [line for _, p, line in said if p == p0] or list(days_said)
        elif head == "total_final" and category == "part removed":
            support[question] = until(p0, last)
        elif head == "total_final":
            support[question] = [opening, *days_said]
        else:
            support[question] = list(days_said)
    return " ".join(lines), pool, near, support


def schedule(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
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
    opening = f"A workshop starts at {clock(start)}."
    order = f"Its sessions run back to back, with no gaps, in this order: {_join(parts)}."
    text = f"{opening} {order}"
    pool: Pool = []
    near: Near = []
    t = start
    for i, (s, m) in enumerate(zip(names, minutes, strict=True)):
        near += [
            (f"start:{s}", "opposite", f"At what time does the {s} end?", clock(t + m)),
            (f"end:{s}", "opposite", f"At what time does the {s} start?", clock(t)),
        ]
        if i > 0:
            near.append(
                (
                    f"start:{s}",
                    "other entity",
                    f"At what time does the session before the {s} start?",
                    clock(t - minutes[i - 1]),
                )
            )
        if i + 1 < len(names):
            near.append(
                (
                    f"end:{s}",
                    "other entity",
                    f"At what time does the session after the {s} end?",
                    clock(t + m + minutes[i + 1]),
                )
            )
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
    breaks = sum(m for s, m in zip(names, minutes, strict=True) if "break" in s)
    first_break = next(s for s in names if "break" in s)
    near += [
        ("end", "opposite", "At what time does the workshop start?", clock(start)),
        (
            "length",
            "negation",
            "How many minutes of the workshop are not breaks?",
            fmt(t - start - breaks),
        ),
        (
            "break_minutes",
            "negation",
            "How many minutes of the workshop are not breaks?",
            fmt(t - start - breaks),
        ),
        (
            "break_minutes",
            "part removed",
            f"How many minutes long is the {first_break}?",
            fmt(minutes[names.index(first_break)]),
        ),
    ]
    if (100 * (t - start)) % 60 == 0:
        near.append(
            (
                "length",
                "other unit",
                "How many hours long is the whole workshop?",
                fmt((t - start) / 60),
            )
        )
    support: Support = {}
    for kind, question, _ in pool:  # a clock time needs the start; a length only the order
        support[question] = [order] if kind in ("length", "break_minutes") else [opening, order]
    for kind, category, question, answer in near:
        if kind == "end" and category == "opposite":  # when the workshop starts
            support[question] = [opening]
        else:
            support[question] = [opening, order] if ":" in answer else [order]
    return text, pool, near, support


# -- long contexts: a long report and a long conversation ----------------------------------
#
# Both test retrieval, not arithmetic: every question names its subject in other words
# than the text (the text's "refrigerated warehouse" is the question's "cold store",
# "vans" are "delivery vehicles", "hens" are "chickens"), many answers add up facts
# stated in different places, and distractor sentences share the questions' words
# (every depot has the same kinds of stock; a friend is mentioned in many turns). Each
# question's supporting sentences are in its ``meta["support"]``, verbatim.

LONG_FAMILIES = ("longdoc", "thread")

_SITE_HEADS = (
    "Ash", "Bram", "Cald", "Dun", "Elder", "Fern", "Gold", "Hazel", "Iron", "Kings", "Lark",
    "Marsh", "North", "Oak", "Pen", "Quarry", "Raven", "Stan", "Thorn", "Wex", "Alder",
    "Birch", "Cole", "Holm", "Wil",
)  # fmt: skip
_SITE_TAILS = (
    "ford", "ley", "wick", "bury", "field", "mouth", "stead", "combe", "holt", "gate", "ton",
    "moor",
)  # fmt: skip
_FIRST_NAMES = (
    "Ines", "Bruno", "Hattie", "Emeka", "Rosalind", "Mateo", "Yara", "Gideon", "Paloma",
    "Cyril", "Ottilie", "Ravi", "Marguerite", "Anders", "Zofia", "Tobin", "Elspeth", "Kwame",
    "Liesel", "Dorian", "Mirela", "Fintan", "Celeste", "Idris",
)  # fmt: skip
_LAST_NAMES = (
    "Okafor", "Lindqvist", "Marchetti", "Abernathy", "Castellanos", "Whitcombe", "Nakagawa",
    "Delacroix", "Fairbairn", "Osei", "Penhaligon", "Varga", "Quennell", "Rautio", "Szabo",
    "Thackeray", "Ulloa", "Vantongeren", "Wojcik", "Yardley", "Zeller", "Brannigan",
    "Achterberg", "Mbeki",
)  # fmt: skip
_MONTHS = ("July", "August", "September", "October", "November", "December")
#: (the store as the text names it, as the questions name it, its goods (unit, product))
_STORES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "refrigerated warehouse",
        "cold store",
        (("pallets", "apples"), ("pallets", "pears"), ("crates", "cheese"), ("crates", "yoghurt")),
    ),
    (
        "freezer hall",
        "deep-freeze room",
        (("cases", "peas"), ("cases", "fish fillets"), ("tubs", "ice cream")),
    ),
    (
        "ambient warehouse",
        "dry store",
        (("sacks", "flour"), ("sacks", "rice"), ("cartons", "oats")),
    ),
)
_STOCK_SENTENCES = (
    "At {site}, the {store} held {n} {unit} of {product} when the quarter closed.",
    "The {store} at {site} closed the quarter with {n} {unit} of {product}.",
    "When the quarter closed, {site} had {n} {unit} of {product} in its {store}.",
)
_DEPOT_FILLERS = (
    "The {store} at {site} is checked for temperature twice a day.",
    "Stock in the {store} at {site} is rotated first in, first out.",
    "Drivers at {site} start their rounds before dawn.",
    "The vans at {site} are serviced every {n} weeks.",
    "Staff at {site} completed {n} hours of safety training this quarter.",
    "A second {store} for {site} is planned for next year.",
    "Shops near {site} asked for more {product} than a year ago.",
    "The office at {site} moved to the ground floor in {month}.",
    "{site} shares a delivery route with {other}.",
    "Stock at {site} is counted by hand on the last Friday of each month.",
    "The loading bay at {site} was repainted in {month}.",
    "No {product} were written off at {site} this quarter.",
    "A power cut at {site} kept the {store} on its generator for {n} hours.",
    "People at {site} voted their canteen the best in the region.",
    "{site} welcomed {n} visitors from local schools.",
    "Pickers at {site} load the vans in two shifts.",
    "The {store} at {site} passed a council inspection in {month}.",
    "{Unit} of {product} at {site} are stacked no more than {n} high.",
    "The manager of {site} has asked for a bigger {store}.",
    "Like every depot, {site} reports its stock to head office each week.",
)
_LOG_FILLERS = (
    "Head office reminds every depot that deliveries are booked a week ahead.",
    "Fuel prices rose again, so routes were shortened where possible.",
    "Two suppliers changed their delivery days this month.",
    "The company's cold chain audit found no breaches.",
    "New labels for pallets and crates were introduced across the company.",
    "Staff surveys were sent to every depot.",
)


@dataclass(frozen=True)
class _Depot:
    site: str
    manager: str
    drivers: int
    pickers: int
    clerks: int
    vans: int
    stock: dict[tuple[int, str, str], int]  # (store index, unit, product) -> count


def _site_names(rng: random.Random) -> list[str]:
    names = [h + t for h in _SITE_HEADS for t in _SITE_TAILS]
    rng.shuffle(names)
    return names


def _fill(rng: random.Random, template: str, site: str, others: Sequence[str]) -> str:
    store, _, goods = rng.choice(_STORES)
    unit, product = rng.choice(goods)
    return template.format(
        site=site,
        other=rng.choice([o for o in others if o != site] or [site]),
        store=store,
        unit=unit,
        Unit=unit.capitalize(),
        product=product,
        n=rng.randint(2, 9),
        month=rng.choice(_MONTHS),
    )


def longdoc(rng: random.Random, spec: Spec) -> tuple[str, Pool, Support, dict[str, dict[str, Any]]]:
    """An operations report of a food distributor, one section per depot, with
    movement logs between them, at least ``spec.tokens`` words long."""
    names = _site_names(rng)
    people = [f"{f} {s}" for f in _FIRST_NAMES for s in _LAST_NAMES]
    rng.shuffle(people)
    blocks = [
        "Operations review of Greyling Provisions: the second quarter",
        "This review covers every depot of the company: its people, its vans and the stock "
        "in its stores when the quarter closed, followed by logs of what changed after the "
        "quarter closed.",
    ]
    words = sum(len(b.split()) for b in blocks)
    depots: list[_Depot] = []
    stock_said: dict[tuple[str, int, str, str], str] = {}
    said: dict[tuple[str, str], str] = {}  # (site, what) -> sentence
    deliveries: dict[tuple[str, int, str, str], tuple[int, str, str]] = {}
    fleet_changes: dict[str, tuple[int, str, str]] = {}  # site -> (signed change, month, sentence)
    pending: list[_Depot] = []  # described, not yet in a movement log
    while words < spec.tokens:
        if len(depots) >= len(names):
            raise InvalidInput(f"multi-query: tokens={spec.tokens} is more than longdoc can write")
        site = names[len(depots)]
        depot = _Depot(
            site=site,
            manager=people[len(depots) % len(people)],
            drivers=rng.randint(8, 40),
            pickers=rng.randint(10, 60),
            clerks=rng.randint(2, 9),
            vans=rng.randint(6, 30),
            stock={
                (s, unit, product): rng.randint(12, 240)
                for s, (_, _, goods) in enumerate(_STORES)
                for unit, product in rng.sample(goods, 2)
            },
        )
        depots.append(depot)
        pending.append(depot)
        year = rng.randint(1998, 2022)
        said[site, "manager"] = (
            f"{site} is run by {depot.manager}, who joined the company in {year}."
        )
        said[site, "staff"] = f"{site} employs {depot.drivers} drivers and {depot.pickers} pickers."
        said[site, "fleet"] = f"{site} runs a fleet of {depot.vans} vans."
        said[site, "office"] = f"The office at {site} has {depot.clerks} clerks."
        people_part = [said[site, w] for w in ("manager", "staff", "fleet", "office")]
        neighbours = names[: len(depots) + 8]
        fillers = [_fill(rng, t, site, neighbours) for t in rng.sample(_DEPOT_FILLERS, 8)]
        people_part += fillers[:4]
        rng.shuffle(people_part)
        stock_part = []
        for (s, unit, product), n in depot.stock.items():
            sentence = rng.choice(_STOCK_SENTENCES).format(
                site=site, store=_STORES[s][0], n=n, unit=unit, product=product
            )
            stock_said[site, s, unit, product] = sentence
            stock_part.append(sentence)
        stock_part += fillers[4:]
        rng.shuffle(stock_part)
        intro = (
            f"{site} is one of the company's depots, {rng.randint(3, 90)} miles from head office."
        )
        section = [
            f"Section {len(depots)}: {site}\n{intro} {' '.join(people_part)}",
            " ".join(stock_part),
        ]
        blocks += section
        words += sum(len(b.split()) for b in section)
        if len(pending) >= 8:
            log = _movement_log(rng, pending, stock_said, deliveries, fleet_changes)
            blocks.append(f"Movements log {len(depots) // 8}\n{log}")
            words += len(blocks[-1].split())
            pending = []
    if pending:
        log = _movement_log(rng, pending, stock_said, deliveries, fleet_changes)
        blocks.append(f"Movements log {len(depots) // 8 + 1}\n{log}")
    text = "\n\n".join(blocks) + "\n"

    # questions: a few of each kind, drawn at random
    pool: Pool = []
    support: Support = {}

    def ask(kind: str, question: str, answer: str, sentences: list[str]) -> None:
        pool.append((kind, question, answer))
        support[question] = sentences

    per_kind = 4
    for site, s, unit, product in rng.sample(sorted(stock_said), per_kind):
        n = next(d for d in depots if d.site == site).stock[s, unit, product]
        ask(
            "stock",
            f"How many {unit} of {product} were left in the {_STORES[s][1]} at {site} "
            "at the end of the quarter?",
            fmt(n),
            [stock_said[site, s, unit, product]],
        )
    for key in rng.sample(sorted(deliveries), min(per_kind, len(deliveries))):
        site, s, unit, product = key
        n = next(d for d in depots if d.site == site).stock[s, unit, product]
        k, month, sentence = deliveries[key]
        ask(
            "stock_after_delivery",
            f"After the {month} delivery, how many {unit} of {product} did the "
            f"{_STORES[s][1]} at {site} hold?",
            fmt(n + k),
            [stock_said[key], sentence],
        )
    by_goods: dict[tuple[int, str, str], list[str]] = {}
    for site, s, unit, product in sorted(stock_said):
        by_goods.setdefault((s, unit, product), []).append(site)
    shared = sorted(g for g, sites in by_goods.items() if len(sites) >= 2)
    for s, unit, product in rng.sample(shared, min(per_kind, len(shared))):
        a, b = rng.sample(by_goods[s, unit, product], 2)
        total = sum(next(d for d in depots if d.site == x).stock[s, unit, product] for x in (a, b))
        ask(
            "stock_two_depots",
            f"How many {unit} of {product} did the {_STORES[s][1]}s at {a} and {b} hold "
            "between them at the end of the quarter?",
            fmt(total),
            [stock_said[a, s, unit, product], stock_said[b, s, unit, product]],
        )
    for depot in rng.sample(depots, min(per_kind, len(depots))):
        ask(
            "vehicles",
            f"How many delivery vehicles were based at {depot.site} at the end of the quarter?",
            fmt(depot.vans),
            [said[depot.site, "fleet"]],
        )
    for site in rng.sample(sorted(fleet_changes), min(per_kind, len(fleet_changes))):
        depot = next(d for d in depots if d.site == site)
        change, month, sentence = fleet_changes[site]
        ask(
            "vehicles_after_change",
            f"After the fleet changes of {month}, how many delivery vehicles did {site} have?",
            fmt(depot.vans + change),
            [said[site, "fleet"], sentence],
        )
    for depot in rng.sample(depots, min(per_kind, len(depots))):
        ask(
            "headcount",
            f"How many people work at {depot.site} altogether?",
            fmt(depot.drivers + depot.pickers + depot.clerks),
            [said[depot.site, "staff"], said[depot.site, "office"]],
        )
    for depot in rng.sample(depots, min(per_kind, len(depots))):
        ask(  # the depot named by its manager only: no word of the fleet sentence
            "vehicles_by_manager",
            f"How many delivery vehicles does the depot that {depot.manager} is in charge "
            "of have at the end of the quarter?",
            fmt(depot.vans),
            [said[depot.site, "manager"], said[depot.site, "fleet"]],
        )
    for depot in rng.sample(depots, min(per_kind, len(depots))):
        ask(
            "manager",
            f"Who is in charge of the {depot.site} depot?",
            depot.manager,
            [said[depot.site, "manager"]],
        )
    rng.shuffle(pool)
    return text, pool, support, {}


def _movement_log(
    rng: random.Random,
    depots: list[_Depot],
    stock_said: dict[tuple[str, int, str, str], str],
    deliveries: dict[tuple[str, int, str, str], tuple[int, str, str]],
    fleet_changes: dict[str, tuple[int, str, str]],
) -> str:
    """What changed after the quarter closed at some of ``depots``: deliveries into a
    store and vans taken into or out of service, among company news."""
    lines = [_fill(rng, t, "", []) for t in rng.sample(_LOG_FILLERS, 2)]
    for depot in rng.sample(depots, min(4, len(depots))):
        month = rng.choice(_MONTHS)
        if rng.random() < 0.5:
            s, unit, product = rng.choice(sorted(depot.stock))
            k = rng.randint(5, 60)
            sentence = (
                f"After the quarter closed, on {rng.randint(1, 28)} {month}, a further {k} "
                f"{unit} of {product} reached the {_STORES[s][0]} at {depot.site}."
            )
            deliveries[depot.site, s, unit, product] = (k, month, sentence)
        else:
            k = rng.randint(2, min(5, depot.vans - 1))
            if rng.random() < 0.5:
                sentence = (
                    f"After the quarter closed, in {month}, {depot.site} took {k} new vans "
                    "into service."
                )
                change = k
            else:
                sentence = (
                    f"After the quarter closed, in {month}, {depot.site} retired {k} of its vans."
                )
                change = -k
            fleet_changes[depot.site] = (change, month, sentence)
        lines.append(sentence)
    rng.shuffle(lines)
    return " ".join(lines)


_FRIENDS = (
    "Tobias", "Marisol", "Ingrid", "Hamza", "Beatrix", "Rafferty", "Yusuf", "Odette", "Callum",
    "Noor", "Leopold", "Saoirse", "Anselm", "Dagny", "Florian", "Imogen", "Casimir", "Wilhelmina",
    "Evander", "Philippa",
)  # fmt: skip
_RELATIONS = (
    "neighbour", "cousin", "colleague", "old school friend", "sister-in-law", "landlord",
    "brother", "aunt", "godson", "climbing partner", "former flatmate", "niece",
)  # fmt: skip
#: (what the text calls them, what the questions call them)
_ANIMALS = (
    ("hens", "chickens"),
    ("ewes", "sheep"),
    ("ponies", "horses"),
    ("beehives", "bee colonies"),
)
_PURCHASES = (
    ("a second-hand bicycle", "the used bike"),
    ("a sofa", "the couch"),
    ("a laptop", "the new computer"),
    ("a camper van", "the motorhome"),
    ("a lawnmower", "the grass cutter"),
)
_TOWNS = ("Galway", "Porto", "Tallinn", "Ghent", "Bergen", "Trieste", "Lyon", "Krakow", "Aarhus")
_CHAT_FILLERS = (
    "The weather has been grey all week.",
    "Work was busy but fine.",
    "I keep meaning to tidy the garage.",
    "We watched a film about the sea last night.",
    "The train was late again this morning.",
    "I tried a new soup recipe with lentils.",
    "My back is sore from a day in the garden.",
    "I need to renew my passport before the summer.",
    "I walked {n} kilometres along the river today.",
    "{name} says hello, by the way.",
    "I had tea with {name} on {day}.",
    "{name} sent me a photo of the {animal} at the farm shop.",
    "{name} still has not returned my ladder.",
    "The {animal} at the city farm were out in the rain.",
    "I saw {thing} for sale in the paper and thought of {name}.",
    "{name} is thinking about a trip to {town} next spring.",
    "My sister called for {n} minutes about nothing in particular.",
    "The bakery on the corner raised its prices again.",
)
_REPLIES = (
    "That sounds like a lot. I will keep it in mind.",
    "Thank you for telling me about {name}. I have made a note.",
    "Noted. Tell me if you want a reminder about any of this later.",
    "I hope the rest of your week is calmer than this one.",
    "Good to hear from you. I will remember that for when you ask.",
    "That is useful to know. Is there anything else on your mind?",
    "Understood. I can help you plan around it whenever you like.",
)
_DAYS_OFF = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def thread(rng: random.Random, spec: Spec) -> tuple[str, Pool, Support, dict[str, dict[str, Any]]]:
    """A chat of ``spec.exchanges`` exchanges (a user turn, an assistant reply) in
    which the user mentions friends' animals, purchases, moves and debts, some of
    them updated many turns later; rendered as :func:`render_messages` does."""
    n_exchanges = spec.exchanges
    n_friends = max(2, min(len(_FRIENDS), n_exchanges // 5))
    friends = rng.sample(_FRIENDS, n_friends)
    relations = {f: rng.choice(_RELATIONS) for f in friends}
    #: (kind, question, its sentences in the order they are said, answer, friend)
    facts: list[tuple[str, str, list[str], str, str]] = []
    animal_of: dict[str, int] = {}
    counts: dict[str, int] = {}
    animal_sentences: dict[str, list[str]] = {}
    kinds = ("animals", "purchase", "move", "debt")
    for i, name in enumerate(friends):
        rel = relations[name]
        mine = ["animals", rng.choice(kinds[1:])] if i % 3 != 2 else rng.sample(kinds[1:], 2)
        for kind in mine:
            if kind == "animals":
                a = rng.randrange(len(_ANIMALS))
                text_word, q_word = _ANIMALS[a]
                n = rng.randint(3, 14)
                parts = [
                    rng.choice(
                        (
                            f"My {rel} {name} keeps {n} {text_word} behind the house.",
                            f"{name}, my {rel}, looks after {n} {text_word} these days.",
                        )
                    )
                ]
                if rng.random() < 0.5:
                    k = rng.randint(1, n - 1)
                    if rng.random() < 0.5:
                        parts.append(f"{name} took in {k} more {text_word} from a farm nearby.")
                        n += k
                    else:
                        parts.append(f"{name} sold {k} of the {text_word} to a farm nearby.")
                        n -= k
                animal_of[name], counts[name], animal_sentences[name] = a, n, parts
                question = f"How many {q_word} does {name} have now?"
                facts.append(("animals", question, parts, fmt(n), name))
            elif kind == "purchase":
                thing, q_thing = rng.choice(_PURCHASES)
                n = rng.randint(40, 900)
                parts = [f"{name} paid ${n} for {thing} last month."]
                question = f"How much did {name} spend on {q_thing}?"
                if rng.random() < 0.5:
                    k = rng.randint(10, 120)
                    parts.append(f"{name} had to pay another ${k} to get it repaired.")
                    question = f"How much has {name} spent on {q_thing} in all, repairs included?"
                    n += k
                facts.append(("purchase", question, parts, fmt(n), name))
            elif kind == "move":
                town = rng.choice(_TOWNS)
                parts = [f"{name} moved to {town} in {rng.randint(2005, 2023)}."]
                facts.append(("move", f"Which city does {name} live in now?", parts, town, name))
            else:
                n = rng.randint(20, 200)
                k = rng.randint(5, n - 5)
                parts = [
                    f"I still owe {name} ${n} for the concert tickets.",
                    f"Today I paid {name} back ${k}.",
                ]
                question = f"How much is left of my debt to {name}?"
                facts.append(("debt", question, parts, fmt(n - k), name))
    # where each sentence is said: primaries early enough for a follow-up after them
    sentences = [(f, j) for f in range(len(facts)) for j in range(len(facts[f][2]))]
    if len(sentences) > n_exchanges:
        raise InvalidInput(f"multi-query: exchanges={n_exchanges} is too few for a thread")
    slots = rng.sample(range(n_exchanges), len(sentences))
    where: dict[tuple[int, int], int] = {}
    for f in range(len(facts)):  # a fact's sentences in order of the exchanges drawn
        drawn = sorted(slots.pop() for _ in facts[f][2])
        for j, x in enumerate(drawn):
            where[f, j] = x
    said = {x: facts[f][2][j] for (f, j), x in where.items()}
    messages: list[dict[str, str]] = []
    for x in range(n_exchanges):
        name = rng.choice(friends)
        thing = rng.choice(_PURCHASES)[0]
        animal = rng.choice(_ANIMALS)[0]
        turn = [
            t.format(
                name=name,
                n=rng.randint(2, 40),
                day=rng.choice(_DAYS_OFF),
                animal=animal,
                thing=thing,
                town=rng.choice(_TOWNS),
            )
            for t in rng.sample(_CHAT_FILLERS, 6)
        ]
        if x in said:
            turn.insert(rng.randint(0, len(turn)), said[x])
        messages.append({"role": "user", "content": " ".join(turn)})
        reply = rng.choice(_REPLIES).format(name=rng.choice(friends))
        messages.append({"role": "assistant", "content": reply})
    pool: Pool = []
    support: Support = {}
    extra: dict[str, dict[str, Any]] = {}
    for f, (kind, question, parts, answer, _name) in enumerate(facts):
        pool.append((kind, question, answer))
        support[question] = list(parts)
        extra[question] = {"exchanges": [where[f, j] for j in range(len(parts))]}
    with_animals = sorted(animal_of, key=friends.index)
    same = [
        (a, b)
        for i, a in enumerate(with_animals)
        for b in with_animals[i + 1 :]
        if animal_of[a] == animal_of[b]
    ]
    for one, two in rng.sample(same, min(3, len(same))):
        question = f"How many {_ANIMALS[animal_of[one]][1]} do {one} and {two} have between them?"
        pool.append(("animals_two_friends", question, fmt(counts[one] + counts[two])))
        support[question] = animal_sentences[one] + animal_sentences[two]
        extra[question] = {
            "exchanges": sorted(
                x
                for (f, _), x in where.items()
                if facts[f][0] == "animals" and facts[f][4] in (one, two)
            )
        }
    return render_messages(messages), pool, support, extra


def thread_messages(context: str) -> list[dict[str, str]]:
    """The messages of a rendered thread (``[role] text`` blocks), in order: what a
    chat app would hold for a ``thread`` item."""
    out = []
    for block in context.strip().split("\n\n["):
        role, _, text = block.lstrip("[").partition("] ")
        out.append({"role": role, "content": text})
    return out


_BUILDERS: dict[str, Callable[[random.Random, int], tuple[str, Pool, Near, Support]]] = {
    "shopping": shopping,
    "travel": travel,
    "inventory": inventory,
    "schedule": schedule,
}
_LONG_BUILDERS: dict[
    str, Callable[[random.Random, Spec], tuple[str, Pool, Support, dict[str, dict[str, Any]]]]
] = {"longdoc": longdoc, "thread": thread}


def generate_item(spec: Spec, index: int) -> Item:
    rng = random.Random(f"multi-query:{spec.seed}:{index}:{spec.difficulty}")
    family = spec.families[index % len(spec.families)]
    near: Near = []
    extra: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {"family": family, "difficulty": spec.difficulty, "seed": spec.seed}
    if family in _LONG_BUILDERS:
        context, pool, support, extra = _LONG_BUILDERS[family](rng, spec)
        size = spec.tokens if family == "longdoc" else spec.exchanges
        item_id = f"mq-s{spec.seed}-{family}{size}-{index:04d}"
        meta = {"family": family, "seed": spec.seed}
        meta.update({"tokens": spec.tokens} if family == "longdoc" else {"exchanges": size})
    else:
        context, pool, near, support = _BUILDERS[family](rng, spec.difficulty)
        item_id = f"mq-s{spec.seed}-d{spec.difficulty}-{index:04d}"
    want = rng.randint(spec.min_queries, spec.max_queries)
    picked = sorted(rng.sample(range(len(pool)), min(want, len(pool))))
    queries = [
        Query(
            question=pool[i][1],
            answer=pool[i][2],
            meta={"kind": pool[i][0], "support": support[pool[i][1]], **extra.get(pool[i][1], {})},
        )
        for i in picked
    ]
    if spec.near_misses:
        queries += near_miss_queries(queries, near, spec.near_misses, support)
    return Item(id=item_id, context=context, queries=tuple(queries), meta=meta)


def near_miss_queries(
    base: list[Query], near: Near, per_base: int, support: Support | None = None
) -> list[Query]:
    """Up to ``per_base`` near-miss variants of each base question, categories in the
    order of :data:`NEAR_MISS_CATEGORIES`; a variant whose label equals its base's, or
    whose text is already asked, is skipped (it could not reveal a wrong serve)."""
    asked = {q.question for q in base}
    out: list[Query] = []
    rank = {c: i for i, c in enumerate(NEAR_MISS_CATEGORIES)}
    for pos, q in enumerate(base):
        variants = sorted((v for v in near if v[0] == q.meta["kind"]), key=lambda v: rank[v[1]])
        taken = 0
        for _kind, category, question, answer in variants:
            if taken >= per_base:
                break
            if answer == q.answer or question in asked or question == q.question:
                continue
            asked.add(question)
            out.append(
                Query(
                    question=question,
                    answer=answer,
                    meta={
                        "kind": f"near:{q.meta['kind']}",
                        "near_miss_of": pos,
                        "category": category,
                        **({"support": support[question]} if support else {}),
                    },
                )
            )
            taken += 1
    return out


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
            if key in ("n", "seed", "difficulty", "tokens", "exchanges"):
                kw[key] = int(value)
            elif key in ("near_misses", "near_miss", "near-misses"):
                kw["near_misses"] = int(value)
            elif key == "queries":
                lo, _, hi = value.partition("-")
                kw["min_queries"], kw["max_queries"] = int(lo), int(hi or lo)
            elif key == "families":
                kw["families"] = tuple(f.strip() for f in value.split("+") if f.strip())
            else:
                raise InvalidInput(
                    f"multi-query: unknown option {key!r}; "
                    "use n, seed, difficulty, queries, families, near_misses, tokens, exchanges"
                )
        except ValueError as exc:
            raise InvalidInput(
                f"multi-query: bad option {part!r} (e.g. n=50,seed=1,queries=3-10)"
            ) from exc
    if "n" not in kw and limit is not None:
        kw["n"] = limit
    return generate(Spec(**kw))  # type: ignore[arg-type]
