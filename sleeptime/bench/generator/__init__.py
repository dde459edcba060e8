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
from collections.abc import Callable
from typing import Any

from sleeptime.bench.generator.chat_thread import thread, thread_messages
from sleeptime.bench.generator.common import (
    FAMILIES,
    LONG_FAMILIES,
    NEAR_MISS_CATEGORIES,
    Near,
    Pool,
    Spec,
    Support,
    clock,
    fmt,
    money,
)
from sleeptime.bench.generator.errands import shopping, travel
from sleeptime.bench.generator.long_report import longdoc
from sleeptime.bench.generator.stock import inventory, schedule
from sleeptime.bench.items import Item, Query
from sleeptime.errors import InvalidInput

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


__all__ = [
    "FAMILIES",
    "LONG_FAMILIES",
    "NEAR_MISS_CATEGORIES",
    "Spec",
    "clock",
    "fmt",
    "generate",
    "generate_from_options",
    "generate_item",
    "money",
    "near_miss_queries",
    "thread_messages",
]
