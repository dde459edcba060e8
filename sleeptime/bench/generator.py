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
    near_misses: int = 0

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


def shopping(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near]:
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
    return " ".join(lines), pool, near


def travel(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near]:
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
    return " ".join(lines), pool, near


def inventory(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near]:
    n_products = {1: 2, 2: 3, 3: 3}[difficulty]
    n_days = {1: 3, 2: 5, 3: 7}[difficulty]
    products = rng.sample(_PRODUCTS, n_products)
    stock = {p: rng.randint(4, 12) * 10 for p in products}
    per_box = rng.choice([6, 12, 20, 25])
    start = " and ".join(f"{stock[p]} boxes of {p}" for p in products)
    lines = [f"A warehouse starts the week with {start}. Each box holds {per_box} units."]
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
    return " ".join(lines), pool, near


def schedule(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near]:
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
    return text, pool, near


_BUILDERS: dict[str, Callable[[random.Random, int], tuple[str, Pool, Near]]] = {
    "shopping": shopping,
    "travel": travel,
    "inventory": inventory,
    "schedule": schedule,
}


def generate_item(spec: Spec, index: int) -> Item:
    rng = random.Random(f"multi-query:{spec.seed}:{index}:{spec.difficulty}")
    family = spec.families[index % len(spec.families)]
    context, pool, near = _BUILDERS[family](rng, spec.difficulty)
    want = rng.randint(spec.min_queries, spec.max_queries)
    picked = sorted(rng.sample(range(len(pool)), min(want, len(pool))))
    queries = [
        Query(question=pool[i][1], answer=pool[i][2], meta={"kind": pool[i][0]}) for i in picked
    ]
    if spec.near_misses:
        queries += near_miss_queries(queries, near, spec.near_misses)
    return Item(
        id=f"mq-s{spec.seed}-d{spec.difficulty}-{index:04d}",
        context=context,
        queries=tuple(queries),
        meta={"family": family, "difficulty": spec.difficulty, "seed": spec.seed},
    )


def near_miss_queries(base: list[Query], near: Near, per_base: int) -> list[Query]:
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
            if key in ("n", "seed", "difficulty"):
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
                    "use n, seed, difficulty, queries, families, near_misses"
                )
        except ValueError as exc:
            raise InvalidInput(
                f"multi-query: bad option {part!r} (e.g. n=50,seed=1,queries=3-10)"
            ) from exc
    if "n" not in kw and limit is not None:
        kw["n"] = limit
    return generate(Spec(**kw))  # type: ignore[arg-type]
