"""The ``shopping`` and ``travel`` families: a shopping trip and a road trip."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from sleeptime.bench.generator.common import (
    _GOODS,
    _ORDINALS,
    _PEOPLE,
    _PLACES,
    Near,
    Pool,
    Support,
    fmt,
    money,
)


@dataclass
class _Trip:
    """A shopping trip: what is bought at what price, the bill, and its sentences."""

    name: str
    goods: list[str]
    qty: list[int]
    price: list[float]
    subtotal: float
    discount: int
    threshold: int
    fee: int
    paid: float
    budget: int
    lines: list[str]
    buys: dict[str, str]  # goods -> its purchase sentence
    terms: list[str]  # the discount and fee sentences: what "paid" depends on

    @property
    def cost(self) -> list[float]:
        return [q * p for q, p in zip(self.qty, self.price, strict=True)]

    @property
    def order(self) -> list[int]:
        """The goods' positions, cheapest spend first."""
        cost = self.cost
        return sorted(range(len(self.goods)), key=lambda i: cost[i])


def _trip(rng: random.Random, difficulty: int) -> _Trip:
    """The trip's draws and its sentences."""
    name, she, _ = rng.choice(_PEOPLE)
    n_items = {1: 2, 2: 3, 3: rng.choice([4, 5])}[difficulty]
    goods = rng.sample(_GOODS, n_items)
    cents: list[float] = {1: [0.0], 2: [0.0, 0.5], 3: [0.0, 0.25, 0.5, 0.75]}[difficulty]
    qty = [rng.randint(2, 9) for _ in goods]
    price = [rng.randint(1, 12) + rng.choice(cents) for _ in goods]
    subtotal = sum(q * p for q, p in zip(qty, price, strict=True))
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
    terms: list[str] = []
    if discount:
        terms.append(
            f"The store takes {discount}% off the whole bill when it is over ${threshold}."
        )
    if fee:
        terms.append(f"A delivery fee of ${fee} is added after any discount.")
    lines += terms
    return _Trip(
        name,
        goods,
        qty,
        price,
        subtotal,
        discount,
        threshold,
        fee,
        paid,
        budget,
        lines,
        buys,
        terms,
    )


def _trip_pool(t: _Trip) -> Pool:
    name, goods, cost = t.name, t.goods, t.cost
    pool: Pool = [
        (f"item_cost:{g}", f"How much does {name} spend on {g}?", fmt(c))
        for g, c in zip(goods, cost, strict=True)
    ]
    pool += [
        ("count", f"How many items does {name} buy in total?", fmt(sum(t.qty))),
        (
            "subtotal",
            f"What is {name}'s bill before any discount{' or fee' if t.fee else ''}?",
            fmt(t.subtotal),
        ),
        ("paid", f"How much does {name} pay in total?", fmt(t.paid)),
        ("left", f"How much money does {name} have left after paying?", fmt(t.budget - t.paid)),
    ]
    order = t.order
    lo, hi = order[0], order[-1]
    if cost[hi] > cost[lo]:
        pool.append(
            (
                f"diff:{goods[hi]}:{goods[lo]}",
                f"How much more does {name} spend on {goods[hi]} than on {goods[lo]}?",
                fmt(cost[hi] - cost[lo]),
            )
        )
    if len(goods) > 1 and cost[order[-1]] > cost[order[-2]]:
        pool.append(("most", f"Which goods does {name} spend the most money on?", goods[hi]))
    return pool


def _trip_near_goods(t: _Trip) -> Near:
    """Near misses of each goods' spend: the next goods, the others, one, both."""
    name, goods, cost, n_items = t.name, t.goods, t.cost, len(t.goods)
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
                fmt(t.subtotal - cost[i]),
            ),
            (
                f"item_cost:{g}",
                "per-item vs total",
                f"How much does one of the {g} cost?",
                fmt(t.price[i]),
            ),
            (
                f"item_cost:{g}",
                "part added",
                f"How much does {name} spend on {g} and {g2} together?",
                fmt(cost[i] + cost[(i + 1) % n_items]),
            ),
        ]
    return near


def _trip_near(t: _Trip) -> Near:
    name, goods, cost, qty, fee = t.name, t.goods, t.cost, t.qty, t.fee
    near = _trip_near_goods(t)
    near += [
        ("count", "part removed", f"How many {goods[0]} does {name} buy?", fmt(qty[0])),
        (
            "count",
            "negation",
            f"How many items other than {goods[0]} does {name} buy in total?",
            fmt(sum(qty) - qty[0]),
        ),
        ("left", "opposite", f"How much money does {name} have before paying?", fmt(t.budget)),
    ]
    if (Fraction(str(t.paid)) * 100) % sum(qty) == 0:  # exact to the cent
        near.append(
            (
                "paid",
                "per-item vs total",
                f"How much does {name} pay per item on average?",
                fmt(t.paid / sum(qty)),
            )
        )
    if t.discount and t.subtotal > t.threshold:
        after = t.subtotal * (100 - t.discount) / 100
        near.append(
            (
                "subtotal",
                "opposite",
                f"What is {name}'s bill after the discount{' but before the fee' if fee else ''}?",
                fmt(after),
            )
        )
    order = t.order
    lo, hi = order[0], order[-1]
    if cost[hi] > cost[lo]:
        near.append(
            (
                f"diff:{goods[hi]}:{goods[lo]}",
                "swapped order",
                f"How much more does {name} spend on {goods[lo]} than on {goods[hi]}?",
                fmt(cost[lo] - cost[hi]),
            )
        )
    if len(goods) > 1 and cost[order[0]] < cost[order[1]] and cost[order[-1]] > cost[order[-2]]:
        near.append(
            ("most", "opposite", f"Which goods does {name} spend the least money on?", goods[lo])
        )
    return near


def _trip_support(t: _Trip, pool: Pool, near: Near) -> Support:
    goods, buys, terms, n_items = t.goods, t.buys, t.terms, len(t.goods)
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
            support[question] = [t.lines[0], *every, *terms]
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
            support[question] = [t.lines[0]]
        elif kind == "paid":
            support[question] = every + terms
        elif kind == "subtotal":  # the bill after the discount
            support[question] = every + terms[:1]
        elif kind.startswith("diff"):
            support[question] = [buys[g] for g in goods if g in kind.split(":")[1:]]
        else:
            support[question] = every
    return support


def shopping(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
    t = _trip(rng, difficulty)
    pool = _trip_pool(t)
    near = _trip_near(t)
    return " ".join(t.lines), pool, near, _trip_support(t, pool, near)


@dataclass
class _Drive:
    """A road trip: its legs, the sentences, and the questions asked of it."""

    name: str
    hours: list[int]
    dist: list[int]
    difficulty: int
    lines: list[str]
    pool: Pool
    gas_line: list[str]
    stop_line: list[str]
    mpg: int = 0

    @property
    def legs(self) -> int:
        return len(self.hours)

    @property
    def total(self) -> int:
        return sum(self.dist)

    @property
    def leg_lines(self) -> list[str]:
        return self.lines[1 : 1 + self.legs]


def _drive(rng: random.Random, difficulty: int) -> _Drive:
    """The trip's draws, its sentences and its questions (gas and stops draw too)."""
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
    trip = _Drive(name, hours, dist, difficulty, lines, pool, [], [])
    if difficulty >= 2:
        trip.mpg = mpg = next(m for m in (25, 20, 10) if total % m == 0)
        gas = rng.choice([3, 4, 5])
        trip.gas_line.append(
            f"The car uses one gallon of gas every {mpg} miles, and gas costs ${gas} per gallon."
        )
        lines += trip.gas_line
        pool += [
            ("gallons", "How many gallons of gas does the trip use?", fmt(total / mpg)),
            ("fuel_cost", "How much does the gas for the trip cost?", fmt(total / mpg * gas)),
        ]
    if difficulty >= 3:
        stop = rng.choice([10, 15, 20, 30])
        trip.stop_line.append(
            f"{she.capitalize()} stops for {stop} minutes between consecutive legs."
        )
        lines += trip.stop_line
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
    return trip


def _drive_near(d: _Drive) -> Near:
    name, hours, dist, legs, total = d.name, d.hours, d.dist, d.legs, d.total
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
    if d.difficulty >= 2 and (100 * dist[0]) % d.mpg == 0:
        near.append(
            (
                "gallons",
                "part removed",
                "How many gallons of gas does the first leg use?",
                fmt(dist[0] / d.mpg),
            )
        )
    if d.difficulty >= 3:
        near.append(
            (
                "trip_minutes",
                "opposite",
                "How many minutes does the whole trip take, excluding stops?",
                fmt(60 * sum(hours)),
            )
        )
    return near


def _drive_support(d: _Drive, near: Near) -> Support:
    leg_lines, gas_line, stop_line = d.leg_lines, d.gas_line, d.stop_line
    support: Support = {}
    for kind, question, _ in d.pool:
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
            support[question] = [leg_lines[(i + 1) % d.legs if category == "other entity" else i]]
        elif kind == "distance" and category == "part removed":
            support[question] = [leg_lines[0]]
        elif kind == "gallons":  # the first leg's gas
            support[question] = [leg_lines[0], *gas_line]
        else:
            support[question] = list(leg_lines)
    return support


def travel(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
    d = _drive(rng, difficulty)
    near = _drive_near(d)
    return " ".join(d.lines), d.pool, near, _drive_support(d, near)
