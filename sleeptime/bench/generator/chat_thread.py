"""The ``thread`` family: a long chat between friends, and its messages.

Like ``longdoc`` it tests retrieval: questions name their subject in other words than
the text and often add up facts stated far apart."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sleeptime.bench.generator.common import Pool, Spec, Support, fmt
from sleeptime.conversation import render_messages
from sleeptime.errors import InvalidInput

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


#: (kind, question, its sentences in the order they are said, answer, friend)
Fact = tuple[str, str, list[str], str, str]


@dataclass
class _Facts:
    """The facts the user mentions about friends, and each friend's animals."""

    facts: list[Fact] = field(default_factory=list)
    animal_of: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    animal_sentences: dict[str, list[str]] = field(default_factory=dict)


def _animals(rng: random.Random, name: str, rel: str, out: _Facts) -> None:
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
    out.animal_of[name], out.counts[name], out.animal_sentences[name] = a, n, parts
    question = f"How many {q_word} does {name} have now?"
    out.facts.append(("animals", question, parts, fmt(n), name))


def _other_fact(rng: random.Random, kind: str, name: str) -> Fact:
    """A purchase (maybe repaired), a move, or a debt (partly paid back)."""
    if kind == "purchase":
        thing, q_thing = rng.choice(_PURCHASES)
        n = rng.randint(40, 900)
        parts = [f"{name} paid ${n} for {thing} last month."]
        question = f"How much did {name} spend on {q_thing}?"
        if rng.random() < 0.5:
            k = rng.randint(10, 120)
            parts.append(f"{name} had to pay another ${k} to get it repaired.")
            question = f"How much has {name} spent on {q_thing} in all, repairs included?"
            n += k
        return ("purchase", question, parts, fmt(n), name)
    if kind == "move":
        town = rng.choice(_TOWNS)
        parts = [f"{name} moved to {town} in {rng.randint(2005, 2023)}."]
        return ("move", f"Which city does {name} live in now?", parts, town, name)
    n = rng.randint(20, 200)
    k = rng.randint(5, n - 5)
    parts = [
        f"I still owe {name} ${n} for the concert tickets.",
        f"Today I paid {name} back ${k}.",
    ]
    return ("debt", f"How much is left of my debt to {name}?", parts, fmt(n - k), name)


def _friend_facts(rng: random.Random, friends: list[str], relations: dict[str, str]) -> _Facts:
    out = _Facts()
    kinds = ("animals", "purchase", "move", "debt")
    for i, name in enumerate(friends):
        mine = ["animals", rng.choice(kinds[1:])] if i % 3 != 2 else rng.sample(kinds[1:], 2)
        for kind in mine:
            if kind == "animals":
                _animals(rng, name, relations[name], out)
            else:
                out.facts.append(_other_fact(rng, kind, name))
    return out


def _placed(rng: random.Random, facts: list[Fact], n_exchanges: int) -> dict[tuple[int, int], int]:
    """(fact, sentence) -> the exchange it is said in: each fact's sentences in order."""
    sentences = [(f, j) for f in range(len(facts)) for j in range(len(facts[f][2]))]
    if len(sentences) > n_exchanges:
        raise InvalidInput(f"multi-query: exchanges={n_exchanges} is too few for a thread")
    slots = rng.sample(range(n_exchanges), len(sentences))
    where: dict[tuple[int, int], int] = {}
    for f in range(len(facts)):  # a fact's sentences in order of the exchanges drawn
        drawn = sorted(slots.pop() for _ in facts[f][2])
        for j, x in enumerate(drawn):
            where[f, j] = x
    return where


def _chat(
    rng: random.Random, friends: list[str], said: dict[int, str], n_exchanges: int
) -> list[dict[str, str]]:
    """The exchanges: small talk, with each said sentence in its exchange."""
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
    return messages


def thread(rng: random.Random, spec: Spec) -> tuple[str, Pool, Support, dict[str, dict[str, Any]]]:
    """A chat of ``spec.exchanges`` exchanges (a user turn, an assistant reply) in
    which the user mentions friends' animals, purchases, moves and debts, some of
    them updated many turns later; rendered as :func:`render_messages` does."""
    n_exchanges = spec.exchanges
    n_friends = max(2, min(len(_FRIENDS), n_exchanges // 5))
    friends = rng.sample(_FRIENDS, n_friends)
    relations = {f: rng.choice(_RELATIONS) for f in friends}
    known = _friend_facts(rng, friends, relations)
    facts = known.facts
    where = _placed(rng, facts, n_exchanges)
    said = {x: facts[f][2][j] for (f, j), x in where.items()}
    messages = _chat(rng, friends, said, n_exchanges)
    pool: Pool = []
    support: Support = {}
    extra: dict[str, dict[str, Any]] = {}
    for f, (kind, question, parts, answer, _name) in enumerate(facts):
        pool.append((kind, question, answer))
        support[question] = list(parts)
        extra[question] = {"exchanges": [where[f, j] for j in range(len(parts))]}
    animal_of = known.animal_of
    with_animals = sorted(animal_of, key=friends.index)
    same = [
        (a, b)
        for i, a in enumerate(with_animals)
        for b in with_animals[i + 1 :]
        if animal_of[a] == animal_of[b]
    ]
    for one, two in rng.sample(same, min(3, len(same))):
        question = f"How many {_ANIMALS[animal_of[one]][1]} do {one} and {two} have between them?"
        pool.append(("animals_two_friends", question, fmt(known.counts[one] + known.counts[two])))
        support[question] = known.animal_sentences[one] + known.animal_sentences[two]
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
