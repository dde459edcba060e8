"""The ``inventory`` and ``schedule`` families: a warehouse week and a workshop day."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sleeptime.bench.generator.common import (
    _BREAKS,
    _DAYS,
    _PRODUCTS,
    _SESSIONS,
    Near,
    Pool,
    Support,
    _join,
    clock,
    fmt,
)


@dataclass
class _Week:
    """A warehouse week: products, stock by day, what each day's sentence says."""

    products: list[str]
    per_box: int
    lines: list[str]
    days: list[str]
    stock: dict[str, int]
    pool: Pool = field(default_factory=list)
    #: (day, product, sentence) of each day's movement
    said: list[tuple[str, str, str]] = field(default_factory=list)
    received: int = 0
    shipped: int = 0
    got: dict[str, int] = field(default_factory=dict)
    before: dict[str, dict[str, int]] = field(default_factory=dict)  # stock at a day's start
    after: dict[str, dict[str, int]] = field(default_factory=dict)  # ... and at its end

    @property
    def last(self) -> str:
        return self.days[-1]

    @property
    def opening(self) -> str:
        return self.lines[0]

    @property
    def units_line(self) -> str:
        return self.lines[1]

    def nxt(self, product: str) -> str:
        return self.products[(self.products.index(product) + 1) % len(self.products)]

    def until(self, product: str, day: str, *, inclusive: bool = True) -> list[str]:
        """The opening stock and the product's movements up to ``day``."""
        end = _DAYS.index(day) + (1 if inclusive else 0)
        moves = [line for d, p, line in self.said if p == product and _DAYS.index(d) < end]
        return [self.opening, *moves]


def _week(rng: random.Random, difficulty: int) -> _Week:
    """The week's draws, its sentences and its end-of-day questions."""
    n_products = {1: 2, 2: 3, 3: 3}[difficulty]
    n_days = {1: 3, 2: 5, 3: 7}[difficulty]
    products = rng.sample(_PRODUCTS, n_products)
    stock = {p: rng.randint(4, 12) * 10 for p in products}
    per_box = rng.choice([6, 12, 20, 25])
    start = " and ".join(f"{stock[p]} boxes of {p}" for p in products)
    lines = [f"A warehouse starts the week with {start}.", f"Each box holds {per_box} units."]
    w = _Week(products, per_box, lines, list(_DAYS[:n_days]), stock)
    w.got = dict.fromkeys(products, 0)
    for day in w.days:
        w.before[day] = dict(stock)
        p = rng.choice(products)
        amount = rng.randint(1, 6) * 5
        if rng.random() < 0.5 or stock[p] < amount:
            stock[p] += amount
            w.received += amount
            w.got[p] += amount
            lines.append(f"On {day} it receives {amount} boxes of {p}.")
        else:
            stock[p] -= amount
            w.shipped += amount
            lines.append(f"On {day} it ships {amount} boxes of {p}.")
        w.said.append((day, p, lines[-1]))
        w.after[day] = dict(stock)
        if day != w.last:
            w.pool.append(
                (
                    f"stock_after:{p}:{day}",
                    f"How many boxes of {p} are in stock at the end of {day}?",
                    fmt(stock[p]),
                )
            )
    return w


def _week_pool(w: _Week, rng: random.Random, difficulty: int) -> Pool:
    """The week's other questions: final stock, totals, units (the last draw)."""
    pool, stock, last = w.pool, w.stock, w.last
    for p in w.products:
        pool.append(
            (f"final:{p}", f"How many boxes of {p} are in stock after {last}?", fmt(stock[p]))
        )
    pool += [
        (
            "received",
            "How many boxes does the warehouse receive in total during the week?",
            fmt(w.received),
        ),
        (
            "shipped",
            "How many boxes does the warehouse ship in total during the week?",
            fmt(w.shipped),
        ),
        (
            "total_final",
            f"How many boxes of all products are in stock after {last}?",
            fmt(sum(stock.values())),
        ),
    ]
    if difficulty >= 2:
        p = rng.choice(w.products)
        pool.append(
            (
                f"units:{p}",
                f"How many units of {p} are in stock after {last}?",
                fmt(stock[p] * w.per_box),
            )
        )
    return pool


def _week_near_days(w: _Week) -> Near:
    """Near misses of the end-of-day questions: the next day, the day's start, the next
    product."""
    near: Near = []
    days = w.days
    for d, day in enumerate(days[:-1]):
        for p in w.products:
            base = f"stock_after:{p}:{day}"
            q = w.nxt(p)
            near += [
                (
                    base,
                    "other period",
                    f"How many boxes of {p} are in stock at the end of {days[d + 1]}?",
                    fmt(w.after[days[d + 1]][p]),
                ),
                (
                    base,
                    "opposite",
                    f"How many boxes of {p} are in stock at the start of {day}?",
                    fmt(w.before[day][p]),
                ),
                (
                    base,
                    "other entity",
                    f"How many boxes of {q} are in stock at the end of {day}?",
                    fmt(w.after[day][q]),
                ),
            ]
    return near


def _week_near(w: _Week) -> Near:
    near = _week_near_days(w)
    stock, last = w.stock, w.last
    for p in w.products:
        q = w.nxt(p)
        near += [
            (
                f"final:{p}",
                "other unit",
                f"How many units of {p} are in stock after {last}?",
                fmt(stock[p] * w.per_box),
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
    p0 = w.products[0]
    near += [
        (
            "received",
            "opposite",
            "How many boxes does the warehouse ship in total during the week?",
            fmt(w.shipped),
        ),
        (
            "shipped",
            "opposite",
            "How many boxes does the warehouse receive in total during the week?",
            fmt(w.received),
        ),
        (
            "received",
            "part removed",
            f"How many boxes of {p0} does the warehouse receive in total during the week?",
            fmt(w.got[p0]),
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
    return near


def _week_support(w: _Week, pool: Pool, near: Near) -> Support:
    """The sentences each question (and near miss) depends on."""
    days_said = [line for _, _, line in w.said]
    until, last, p0 = w.until, w.last, w.products[0]
    support: Support = {}
    for kind, question, _ in pool:
        head, _, rest = kind.partition(":")
        product, _, day = rest.partition(":")
        if head == "stock_after":
            support[question] = until(product, day)
        elif head == "final":
            support[question] = until(product, last)
        elif head == "units":
            support[question] = [*until(product, last), w.units_line]
        elif head == "total_final":
            support[question] = [w.opening, *days_said]
        else:  # received, shipped: every day says which it did
            support[question] = list(days_said)
    for kind, category, question, _ in near:
        head, _, rest = kind.partition(":")
        product, _, day = rest.partition(":")
        nxt = w.nxt(product) if product else p0
        if head == "stock_after":
            support[question] = {
                "other period": until(product, w.days[w.days.index(day) + 1]),
                "opposite": until(product, day, inclusive=False),
            }.get(category, until(nxt, day))
        elif head == "final":
            support[question] = (
                [*until(product, last), w.units_line]
                if category == "other unit"
                else until(nxt, last)
            )
        elif head == "units":
            support[question] = until(product, last)
        elif head == "received" and category == "part removed":  # none: every day says so
            support[question] = [line for _, p, line in w.said if p == p0] or list(days_said)
        elif head == "total_final" and category == "part removed":
            support[question] = until(p0, last)
        elif head == "total_final":
            support[question] = [w.opening, *days_said]
        else:
            support[question] = list(days_said)
    return support


def inventory(rng: random.Random, difficulty: int) -> tuple[str, Pool, Near, Support]:
    w = _week(rng, difficulty)
    pool = _week_pool(w, rng, difficulty)
    near = _week_near(w)
    return " ".join(w.lines), pool, near, _week_support(w, pool, near)


def _sessions(names: list[str], minutes: list[int], start: int) -> tuple[Pool, Near, int]:
    """Each session's start and end questions and their near misses; the end time."""
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
    return pool, near, t


def _schedule_support(pool: Pool, near: Near, opening: str, order: str) -> Support:
    support: Support = {}
    for kind, question, _ in pool:  # a clock time needs the start; a length only the order
        support[question] = [order] if kind in ("length", "break_minutes") else [opening, order]
    for kind, category, question, answer in near:
        if kind == "end" and category == "opposite":  # when the workshop starts
            support[question] = [opening]
        else:
            support[question] = [opening, order] if ":" in answer else [order]
    return support


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
    pool, near, t = _sessions(names, minutes, start)
    breaks = sum(m for s, m in zip(names, minutes, strict=True) if "break" in s)
    pool += [
        ("end", "At what time does the workshop end?", clock(t)),
        ("length", "How many minutes long is the whole workshop?", fmt(t - start)),
        ("break_minutes", "How many minutes of breaks are there in total?", fmt(breaks)),
    ]
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
    return text, pool, near, _schedule_support(pool, near, opening, order)
