"""The ``longdoc`` family: a long report of depots' stock movements.

Like ``thread`` (:mod:`sleeptime.bench.generator.chat_thread`) it tests retrieval, not
arithmetic: every question names its subject in other words
than the text (the text's "refrigerated warehouse" is the question's "cold store",
"vans" are "delivery vehicles", "hens" are "chickens"), many answers add up facts
stated in different places, and distractor sentences share the questions' words
(every depot has the same kinds of stock; a friend is mentioned in many turns). Each
question's supporting sentences are in its ``meta["support"]``, verbatim."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sleeptime.bench.generator.common import Pool, Spec, Support, fmt
from sleeptime.errors import InvalidInput

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


@dataclass
class _Report:
    """What the report says, by what it is about."""

    blocks: list[str]
    depots: list[_Depot] = field(default_factory=list)
    stock_said: dict[tuple[str, int, str, str], str] = field(default_factory=dict)
    said: dict[tuple[str, str], str] = field(default_factory=dict)  # (site, what) -> sentence
    deliveries: dict[tuple[str, int, str, str], tuple[int, str, str]] = field(default_factory=dict)
    #: site -> (signed change, month, sentence)
    fleet_changes: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def depot(self, site: str) -> _Depot:
        return next(d for d in self.depots if d.site == site)


def _depot_section(
    rng: random.Random, rep: _Report, names: list[str], people: list[str]
) -> tuple[_Depot, list[str]]:
    """The next depot, drawn, and its section: its people, then its stores' stock."""
    site = names[len(rep.depots)]
    depot = _Depot(
        site=site,
        manager=people[len(rep.depots) % len(people)],
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
    rep.depots.append(depot)
    said = rep.said
    year = rng.randint(1998, 2022)
    said[site, "manager"] = f"{site} is run by {depot.manager}, who joined the company in {year}."
    said[site, "staff"] = f"{site} employs {depot.drivers} drivers and {depot.pickers} pickers."
    said[site, "fleet"] = f"{site} runs a fleet of {depot.vans} vans."
    said[site, "office"] = f"The office at {site} has {depot.clerks} clerks."
    people_part = [said[site, w] for w in ("manager", "staff", "fleet", "office")]
    neighbours = names[: len(rep.depots) + 8]
    fillers = [_fill(rng, t, site, neighbours) for t in rng.sample(_DEPOT_FILLERS, 8)]
    people_part += fillers[:4]
    rng.shuffle(people_part)
    stock_part = []
    for (s, unit, product), n in depot.stock.items():
        sentence = rng.choice(_STOCK_SENTENCES).format(
            site=site, store=_STORES[s][0], n=n, unit=unit, product=product
        )
        rep.stock_said[site, s, unit, product] = sentence
        stock_part.append(sentence)
    stock_part += fillers[4:]
    rng.shuffle(stock_part)
    intro = f"{site} is one of the company's depots, {rng.randint(3, 90)} miles from head office."
    section = [
        f"Section {len(rep.depots)}: {site}\n{intro} {' '.join(people_part)}",
        " ".join(stock_part),
    ]
    return depot, section


def _write_report(rng: random.Random, spec: Spec) -> tuple[_Report, str]:
    """Depot sections, a movements log after every 8, until ``spec.tokens`` words."""
    names = _site_names(rng)
    people = [f"{f} {s}" for f in _FIRST_NAMES for s in _LAST_NAMES]
    rng.shuffle(people)
    rep = _Report(
        blocks=[
            "Operations review of Greyling Provisions: the second quarter",
            "This review covers every depot of the company: its people, its vans and the "
            "stock in its stores when the quarter closed, followed by logs of what changed "
            "after the quarter closed.",
        ]
    )
    blocks = rep.blocks
    words = sum(len(b.split()) for b in blocks)
    pending: list[_Depot] = []  # described, not yet in a movement log
    while words < spec.tokens:
        if len(rep.depots) >= len(names):
            raise InvalidInput(f"multi-query: tokens={spec.tokens} is more than longdoc can write")
        depot, section = _depot_section(rng, rep, names, people)
        pending.append(depot)
        blocks += section
        words += sum(len(b.split()) for b in section)
        if len(pending) >= 8:
            log = _movement_log(rng, pending, rep.stock_said, rep.deliveries, rep.fleet_changes)
            blocks.append(f"Movements log {len(rep.depots) // 8}\n{log}")
            words += len(blocks[-1].split())
            pending = []
    if pending:
        log = _movement_log(rng, pending, rep.stock_said, rep.deliveries, rep.fleet_changes)
        blocks.append(f"Movements log {len(rep.depots) // 8 + 1}\n{log}")
    return rep, "\n\n".join(blocks) + "\n"


#: Questions of each kind a report gets (fewer where the report has fewer to ask).
_PER_KIND = 4
Ask = Callable[[str, str, str, list[str]], None]


def _stock_questions(rng: random.Random, rep: _Report, ask: Ask) -> None:
    """A store's stock, after a delivery, and at two depots."""
    stock_said, per_kind = rep.stock_said, _PER_KIND
    for site, s, unit, product in rng.sample(sorted(stock_said), per_kind):
        n = rep.depot(site).stock[s, unit, product]
        ask(
            "stock",
            f"How many {unit} of {product} were left in the {_STORES[s][1]} at {site} "
            "at the end of the quarter?",
            fmt(n),
            [stock_said[site, s, unit, product]],
        )
    for key in rng.sample(sorted(rep.deliveries), min(per_kind, len(rep.deliveries))):
        site, s, unit, product = key
        n = rep.depot(site).stock[s, unit, product]
        k, month, sentence = rep.deliveries[key]
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
        total = sum(rep.depot(x).stock[s, unit, product] for x in (a, b))
        ask(
            "stock_two_depots",
            f"How many {unit} of {product} did the {_STORES[s][1]}s at {a} and {b} hold "
            "between them at the end of the quarter?",
            fmt(total),
            [stock_said[a, s, unit, product], stock_said[b, s, unit, product]],
        )


def _depot_questions(rng: random.Random, rep: _Report, ask: Ask) -> None:
    """Vehicles (after a fleet change, by the manager's name), headcount, manager."""
    depots, said, per_kind = rep.depots, rep.said, _PER_KIND
    for depot in rng.sample(depots, min(per_kind, len(depots))):
        ask(
            "vehicles",
            f"How many delivery vehicles were based at {depot.site} at the end of the quarter?",
            fmt(depot.vans),
            [said[depot.site, "fleet"]],
        )
    for site in rng.sample(sorted(rep.fleet_changes), min(per_kind, len(rep.fleet_changes))):
        change, month, sentence = rep.fleet_changes[site]
        ask(
            "vehicles_after_change",
            f"After the fleet changes of {month}, how many delivery vehicles did {site} have?",
            fmt(rep.depot(site).vans + change),
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


def longdoc(rng: random.Random, spec: Spec) -> tuple[str, Pool, Support, dict[str, dict[str, Any]]]:
    """An operations report of a food distributor, one section per depot, with
    movement logs between them, at least ``spec.tokens`` words long; a few questions of
    each kind, drawn at random."""
    rep, text = _write_report(rng, spec)
    pool: Pool = []
    support: Support = {}

    def ask(kind: str, question: str, answer: str, sentences: list[str]) -> None:
        pool.append((kind, question, answer))
        support[question] = sentences

    _stock_questions(rng, rep, ask)
    _depot_questions(rng, rep, ask)
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
