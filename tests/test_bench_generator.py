"""Multi-Query generator: deterministic, and every label right.

The labels are recomputed here from the context *text* with regular expressions and
plain arithmetic, never with the generator's own code, so a bug in a generator formula
(or a mismatch between what it says and what it computes) fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction

import pytest

from sleeptime.bench.datasets import Item, load_dataset
from sleeptime.bench.generator import FAMILIES, Spec, generate, thread_messages
from sleeptime.conversation import render_messages
from sleeptime.errors import InvalidInput
from sleeptime.passages import sentence_spans

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]


def num(text: str) -> Fraction:
    return Fraction(text)


def hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def solve_shopping(ctx: str, q: str) -> str | Fraction:
    budget = num(re.search(r"goes shopping with \$(\d+)\.", ctx).group(1))  # type: ignore[union-attr]
    items = {
        g: (int(n), num(p)) for n, g, p in re.findall(r"buys (\d+) (\w+) at \$([\d.]+) each", ctx)
    }
    spent = {g: n * p for g, (n, p) in items.items()}
    subtotal = sum(spent.values(), Fraction(0))
    paid = subtotal
    m = re.search(r"takes (\d+)% off the whole bill when it is over \$(\d+)", ctx)
    if m and subtotal > int(m.group(2)):
        paid = subtotal * (100 - int(m.group(1))) / 100
    fee = re.search(r"delivery fee of \$(\d+)", ctx)
    if fee:
        paid += int(fee.group(1))
    if m2 := re.fullmatch(r"How much more does \w+ spend on (\w+) than on (\w+)\?", q):
        return spent[m2.group(1)] - spent[m2.group(2)]
    if m2 := re.fullmatch(r"How much does \w+ spend on items other than (\w+)\?", q):
        return subtotal - spent[m2.group(1)]
    if m2 := re.fullmatch(r"How much does \w+ spend on (\w+) and (\w+) together\?", q):
        return spent[m2.group(1)] + spent[m2.group(2)]
    if m2 := re.fullmatch(r"How much does one of the (\w+) cost\?", q):
        return items[m2.group(1)][1]
    if m2 := re.fullmatch(r"How many items other than (\w+) does \w+ buy in total\?", q):
        return Fraction(sum(n for n, _ in items.values()) - items[m2.group(1)][0])
    if m2 := re.fullmatch(r"How many (\w+) does \w+ buy\?", q):
        return Fraction(items[m2.group(1)][0])
    if "have before paying" in q:
        return budget
    if "pay per item on average" in q:
        return paid / sum(n for n, _ in items.values())
    if "bill after the discount" in q:
        assert m is not None
        return subtotal * (100 - int(m.group(1))) / 100
    if q.startswith("Which goods") and "least" in q:
        return min(spent, key=lambda g: spent[g])
    if m2 := re.fullmatch(r"How much does \w+ spend on (\w+)\?", q):
        return spent[m2.group(1)]
    if re.fullmatch(r"How many items does \w+ buy in total\?", q):
        return Fraction(sum(n for n, _ in items.values()))
    if "bill before any discount" in q:
        return subtotal
    if re.fullmatch(r"How much does \w+ pay in total\?", q):
        return paid
    if "have left after paying" in q:
        return budget - paid
    if q.startswith("Which goods"):
        return max(spent, key=lambda g: spent[g])
    raise AssertionError(f"unrecognised shopping question {q!r}")


def solve_travel(ctx: str, q: str) -> Fraction:
    legs = {
        o: (int(d), int(s))
        for o, d, s in re.findall(r"The (\w+) leg is (\d+) miles at (\d+) miles per hour", ctx)
    }
    dist = sum(d for d, _ in legs.values())
    hours = sum((Fraction(d, s) for d, s in legs.values()), Fraction(0))
    if m := re.fullmatch(r"How many hours does the (\w+) leg take\?", q):
        d, s = legs[m.group(1)]
        return Fraction(d, s)
    if m := re.fullmatch(r"How many minutes does the (\w+) leg take\?", q):
        d, s = legs[m.group(1)]
        return Fraction(60 * d, s)
    if re.fullmatch(r"How many miles does \w+ drive in the first leg\?", q):
        return Fraction(legs["first"][0])
    if re.fullmatch(r"How many miles does \w+ drive per leg on average\?", q):
        return Fraction(dist, len(legs))
    if re.fullmatch(r"How many minutes does \w+ spend driving\?", q):
        return hours * 60
    if "shortest leg" in q:
        return Fraction(min(d for d, _ in legs.values()))
    if "excluding stops" in q:
        return hours * 60
    if re.fullmatch(r"How many miles does \w+ drive in total\?", q):
        return Fraction(dist)
    if re.fullmatch(r"How many hours does \w+ spend driving\?", q):
        return hours
    if "longest leg" in q:
        return Fraction(max(d for d, _ in legs.values()))
    fuel = re.search(r"one gallon of gas every (\d+) miles, and gas costs \$(\d+) per gallon", ctx)
    if "gallons of gas does the first leg" in q:
        return Fraction(legs["first"][0], int(fuel.group(1)))  # type: ignore[union-attr]
    if "gallons of gas" in q:
        return Fraction(dist, int(fuel.group(1)))  # type: ignore[union-attr]
    if "gas for the trip cost" in q:
        return Fraction(dist, int(fuel.group(1))) * int(fuel.group(2))  # type: ignore[union-attr]
    if "including stops" in q:
        stop = int(re.search(r"stops for (\d+) minutes between consecutive legs", ctx).group(1))  # type: ignore[union-attr]
        return hours * 60 + stop * (len(legs) - 1)
    if "average driving speed" in q:
        return dist / hours
    raise AssertionError(f"unrecognised travel question {q!r}")


def solve_inventory(ctx: str, q: str) -> Fraction:
    start = re.search(r"starts the week with (.+?)\. Each box holds (\d+) units", ctx)
    assert start is not None
    per_box = int(start.group(2))
    stock = {p: int(n) for n, p in re.findall(r"(\d+) boxes of (\w+)", start.group(1))}
    events = re.findall(r"On (\w+) it (receives|ships) (\d+) boxes of (\w+)\.", ctx)
    received = sum(int(n) for _, verb, n, _ in events if verb == "receives")
    shipped = sum(int(n) for _, verb, n, _ in events if verb == "ships")

    def after(day: str) -> dict[str, int]:
        s = dict(stock)
        for d, verb, n, p in events:
            s[p] += int(n) if verb == "receives" else -int(n)
            if d == day:
                return s
        raise AssertionError(f"no event on {day}")

    def before(day: str) -> dict[str, int]:
        s = dict(stock)
        for d, verb, n, p in events:
            if d == day:
                return s
            s[p] += int(n) if verb == "receives" else -int(n)
        raise AssertionError(f"no event on {day}")

    if m := re.fullmatch(
        r"How many boxes of (\w+) are in stock (?:at the end of|after) (\w+)\?", q
    ):
        return Fraction(after(m.group(2))[m.group(1)])
    if m := re.fullmatch(r"How many boxes of (\w+) are in stock at the start of (\w+)\?", q):
        return Fraction(before(m.group(2))[m.group(1)])
    if m := re.fullmatch(
        r"How many boxes of products other than (\w+) are in stock after (\w+)\?", q
    ):
        left = after(m.group(2))
        return Fraction(sum(left.values()) - left[m.group(1)])
    if m := re.fullmatch(r"How many boxes of (\w+) does the warehouse receive in total.*", q):
        return Fraction(sum(int(n) for _, v, n, p in events if v == "receives" and p == m.group(1)))
    if m := re.fullmatch(r"How many units of (\w+) are in stock after (\w+)\?", q):
        return Fraction(after(m.group(2))[m.group(1)] * per_box)
    if m := re.fullmatch(r"How many boxes of all products are in stock after (\w+)\?", q):
        return Fraction(sum(after(m.group(1)).values()))
    if "receive in total" in q:
        return Fraction(received)
    if "ship in total" in q:
        return Fraction(shipped)
    raise AssertionError(f"unrecognised inventory question {q!r}")


def solve_schedule(ctx: str, q: str) -> str | Fraction:
    h, m = re.search(r"starts at (\d+):(\d+)\.", ctx).groups()  # type: ignore[union-attr]
    t0 = int(h) * 60 + int(m)
    order = ctx.split("in this order: ", 1)[1]
    sessions = [
        (name, int(mins))
        for mins, name in re.findall(r"a (\d+)-minute ([a-z ]+?)(?=,| and |\.$)", order)
    ]
    assert sessions, ctx
    times = {}
    t = t0
    for name, mins in sessions:
        times[name] = (t, t + mins)
        t += mins
    if q == "At what time does the workshop end?":
        return hm(t)
    if q == "At what time does the workshop start?":
        return hm(t0)
    names = [name for name, _ in sessions]
    if mm := re.fullmatch(
        r"At what time does the session (before|after) the (.+) (start|end)\?", q
    ):
        i = names.index(mm.group(2)) + (-1 if mm.group(1) == "before" else 1)
        start, end = times[names[i]]
        return hm(start if mm.group(3) == "start" else end)
    if mm := re.fullmatch(r"At what time does the (.+) (start|end)\?", q):
        start, end = times[mm.group(1)]
        return hm(start if mm.group(2) == "start" else end)
    if "minutes long is the whole workshop" in q:
        return Fraction(t - t0)
    breaks = sum(mins for name, mins in sessions if name.endswith("break"))
    if "minutes of the workshop are not breaks" in q:
        return Fraction(t - t0 - breaks)
    if "hours long is the whole workshop" in q:
        return Fraction(t - t0, 60)
    if mm := re.fullmatch(r"How many minutes long is the (.+break)\?", q):
        return Fraction(dict(sessions)[mm.group(1)])
    if "minutes of breaks" in q:
        return Fraction(sum(mins for name, mins in sessions if name.endswith("break")))
    raise AssertionError(f"unrecognised schedule question {q!r}")


SOLVERS = {
    "shopping": solve_shopping,
    "travel": solve_travel,
    "inventory": solve_inventory,
    "schedule": solve_schedule,
}


def check(item: Item) -> None:
    family = item.meta["family"]
    for q in item.queries:
        want = SOLVERS[family](item.context, q.question)
        if isinstance(want, Fraction):
            assert Fraction(q.answer) == want, (item.context, q.question, q.answer, want)
        else:
            assert q.answer == want, (item.context, q.question, q.answer, want)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_labels_recomputed_from_the_text(difficulty: int, seed: int) -> None:
    items = generate(Spec(n=60, seed=seed, difficulty=difficulty))
    assert {it.meta["family"] for it in items} == set(FAMILIES)
    for item in items:
        assert 1 <= len(item.queries) <= 10
        assert len({q.question for q in item.queries}) == len(item.queries)
        check(item)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_near_miss_labels_recomputed_and_tagged(difficulty: int) -> None:
    items = generate(Spec(n=40, seed=4, difficulty=difficulty, near_misses=3))
    plain = generate(Spec(n=40, seed=4, difficulty=difficulty))
    categories: set[str] = set()
    for item, base in zip(items, plain, strict=True):
        check(item)  # every near-miss label recomputed from the text, too
        n_base = len(base.queries)
        assert item.queries[:n_base] == base.queries  # near-misses draw nothing at random
        assert len({q.question for q in item.queries}) == len(item.queries)
        for q in item.queries[n_base:]:
            of = item.queries[q.meta["near_miss_of"]]
            assert "near_miss_of" not in of.meta
            assert q.answer != of.answer and q.question != of.question
            categories.add(q.meta["category"])
    assert len(categories) >= 6


def test_near_misses_collide_lexically_but_never_share_a_label() -> None:
    """The generator's own collisions: 'A more than B' vs 'B more than A' and
    'received' vs 'shipped' read alike but are different questions with their own labels."""
    items = generate(Spec(n=80, seed=0, difficulty=2, near_misses=5, families=("shopping",)))
    swapped = [
        (it.queries[q.meta["near_miss_of"]], q)
        for it in items
        for q in it.queries
        if q.meta.get("category") == "swapped order"
    ]
    assert swapped
    for base, q in swapped:
        assert Fraction(q.answer) == -Fraction(base.answer) != 0
        assert sorted(re.findall(r"\w+", q.question)) == sorted(re.findall(r"\w+", base.question))
    inv = generate(Spec(n=40, seed=0, difficulty=2, near_misses=5, families=("inventory",)))
    pairs = [
        (it.queries[q.meta["near_miss_of"]].question, q.question)
        for it in inv
        for q in it.queries
        if q.meta.get("category") == "opposite" and "in total" in q.question
    ]
    assert any("receive" in a and "ship" in b for a, b in pairs)


def test_near_miss_option() -> None:
    items = load_dataset("multi-query:n=4,seed=1,near_misses=1")
    assert any("near_miss_of" in q.meta for it in items for q in it.queries)
    with pytest.raises(InvalidInput, match="near_misses"):
        load_dataset("multi-query:near_misses=9")


def test_query_counts_follow_the_knob() -> None:
    items = generate(Spec(n=40, seed=3, difficulty=3, min_queries=3, max_queries=10))
    counts = [len(it.queries) for it in items]
    assert min(counts) >= 3 and max(counts) <= 10 and len(set(counts)) > 2
    assert all(len(it.queries) == 4 for it in generate(Spec(n=12, min_queries=4, max_queries=4)))


def test_deterministic_across_processes() -> None:
    here = [it.to_json() for it in load_dataset("multi-query:n=12,seed=5,difficulty=3")]
    assert here == [it.to_json() for it in load_dataset("multi-query:n=12,seed=5,difficulty=3")]
    code = (
        "import json; from sleeptime.bench.datasets import load_dataset; "
        "items = load_dataset('multi-query:n=12,seed=5,difficulty=3'); "
        "print(json.dumps([i.to_json() for i in items]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert json.loads(out.stdout) == here
    other = [it.to_json() for it in load_dataset("multi-query:n=12,seed=6,difficulty=3")]
    assert other != here


def test_prefix_stable_and_limit() -> None:
    ten = load_dataset("multi-query:n=10,seed=2")
    assert load_dataset("multi-query:n=4,seed=2") == ten[:4]
    assert load_dataset("multi-query:seed=2", limit=4) == ten[:4]
    assert [it.meta["family"] for it in load_dataset("multi-query:n=3,families=travel")] == [
        "travel"
    ] * 3


@pytest.mark.parametrize(
    "spec",
    [
        "multi-query:n=0",
        "multi-query:difficulty=4",
        "multi-query:queries=5-3",
        "multi-query:queries=1-11",
        "multi-query:families=cooking",
        "multi-query:colour=red",
        "multi-query:n=abc",
        "multi-query:n",
    ],
)
def test_bad_options(spec: str) -> None:
    with pytest.raises(InvalidInput, match="multi-query"):
        load_dataset(spec)


# -- supporting sentences ---------------------------------------------------------------------


def _perturb_unsupported(context: str, support: list[str]) -> str:
    """The context with every number of every sentence *not* in ``support`` changed."""
    out = context
    for start, end in reversed(sentence_spans(context)):
        sentence = context[start:end]
        if sentence not in support:
            bumped = re.sub(r"\d+", lambda m: str(int(m.group(0)) + 1), sentence)
            out = out[:start] + bumped + out[end:]
    return out


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_short_families_support_determines_the_label(difficulty: int) -> None:
    """Every question's supporting sentences are whole sentences of the context, and
    they alone fix its label: change every number elsewhere and the label stands."""
    items = generate(Spec(n=40, seed=2, difficulty=difficulty, near_misses=2))
    for item in items:
        sentences = {item.context[s:e] for s, e in sentence_spans(item.context)}
        for q in item.queries:
            support = q.meta["support"]
            assert support and set(support) <= sentences, (q.question, support)
            masked = _perturb_unsupported(item.context, support)
            want = SOLVERS[item.meta["family"]](masked, q.question)
            got: str | Fraction = q.answer if isinstance(want, str) else Fraction(q.answer)
            assert got == want, (q.question, support, item.context)


UNITS = "pallets|crates|cases|tubs|sacks|cartons"


def solve_longdoc(support: list[str], q: str) -> str | int:
    """A longdoc label from its supporting sentences alone."""
    joined = " ".join(support)
    if q.startswith("Who is in charge"):
        return re.search(r"is run by (\w+ \w+),", joined).group(1)  # type: ignore[union-attr]
    if "delivery vehicles" in q:
        vans = int(re.search(r"fleet of (\d+) vans", joined).group(1))  # type: ignore[union-attr]
        if m := re.search(r"took (\d+) new vans", joined):
            vans += int(m.group(1))
        if m := re.search(r"retired (\d+) of its vans", joined):
            vans -= int(m.group(1))
        return vans
    if "people work" in q:
        staff = re.search(r"employs (\d+) drivers and (\d+) pickers", joined)
        clerks = re.search(r"has (\d+) clerks", joined)
        return int(staff.group(1)) + int(staff.group(2)) + int(clerks.group(1))  # type: ignore[union-attr]
    return sum(int(n) for n in re.findall(rf"(\d+) (?:{UNITS}) of", joined))


def solve_thread(support: list[str], q: str) -> str | int:
    """A thread label from its supporting sentences alone."""
    if q.startswith("Which city"):
        return re.search(r"moved to (\w+)", support[0]).group(1)  # type: ignore[union-attr]
    if "debt" in q:
        owed, paid = (int(re.search(r"\$(\d+)", s).group(1)) for s in support)  # type: ignore[union-attr]
        return owed - paid
    if "spend" in q or "spent" in q:
        return sum(int(re.search(r"\$(\d+)", s).group(1)) for s in support)  # type: ignore[union-attr]
    total = 0
    for s in support:
        n = int(re.search(r"\d+", s).group(0))  # type: ignore[union-attr]
        total += -n if " sold " in s else n
    return total


@pytest.mark.parametrize("seed", [0, 1])
def test_long_report_support_and_size(seed: int) -> None:
    """A longdoc report reaches its length; every question's support is verbatim in
    it and fixes its label; questions name the store in other words than the text, and
    many answers add up sentences from different sections."""
    items = generate(
        Spec(n=2, seed=seed, families=("longdoc",), tokens=20_000, min_queries=10, max_queries=10)
    )
    stores = {"refrigerated warehouse", "freezer hall", "ambient warehouse"}
    spanning = 0
    for item in items:
        assert len(item.context.split()) >= 20_000
        assert item.meta == {"family": "longdoc", "seed": seed, "tokens": 20_000}
        sections = item.context.split("\n\nSection ")
        for q in item.queries:
            support = q.meta["support"]
            assert all(s in item.context for s in support), (q.question, support)
            got = solve_longdoc(support, q.question)
            assert str(got) == q.answer, (q.question, support)
            words = set(re.findall(r"\w+", q.question.lower()))
            assert not any(set(s.split()) <= words for s in stores), q.question  # paraphrased
            assert "vans" not in words
            if len(support) > 1:
                spanning += 1
                assert len(set(support)) == len(support)
            if q.meta["kind"] == "stock":  # the only sentence of its site, store and goods
                store = next(s for s in stores if s in support[0])
                goods = re.search(rf"(?:{UNITS}) of [a-z ]+?(?= in |\.| when)", support[0])
                assert goods is not None
                site = q.question.rsplit(" at ", 2)[1]
                same = [
                    s
                    for s in (item.context[a:b] for a, b in sentence_spans(item.context))
                    if site in s and store in s and goods.group(0) in s and "quarter" in s
                ]
                assert same == [support[0]], same
            if q.meta["kind"] == "stock_two_depots":
                assert sum(support[0] in s for s in sections) == 1
                assert not any(support[0] in s and support[1] in s for s in sections)
    assert spanning >= 5


@pytest.mark.parametrize("exchanges", [20, 60])
def test_long_thread_support_and_size(exchanges: int) -> None:
    """A thread has its exchanges (60: 4-5k words); each question's support is verbatim
    in the user turns its meta names, fixes its label, and the question calls the
    subject something else than the text does."""
    items = generate(
        Spec(n=3, seed=4, families=("thread",), exchanges=exchanges, min_queries=10, max_queries=10)
    )
    for item in items:
        messages = thread_messages(item.context)
        assert [m["role"] for m in messages] == ["user", "assistant"] * exchanges
        assert render_messages(messages) == item.context
        if exchanges == 60:
            assert 4000 <= len(item.context.split()) <= 5000
        for q in item.queries:
            support = q.meta["support"]
            turns = q.meta["exchanges"]
            assert turns == sorted(turns) and len(turns) == len(support)
            for s in support:
                assert any(s in messages[2 * x]["content"] for x in turns), (s, turns)
            assert str(solve_thread(support, q.question)) == q.answer, (q.question, support)
            text_words = {"hens", "ewes", "ponies", "beehives", "owe", "moved", "laptop", "sofa"}
            assert not text_words & set(re.findall(r"\w+", q.question.lower()))
    spanning = [q for it in items for q in it.queries if len(q.meta["exchanges"]) > 1]
    assert spanning and all(len(set(q.meta["exchanges"])) > 1 for q in spanning)


def test_long_families_options_and_determinism() -> None:
    spec = "multi-query:n=2,seed=3,families=longdoc+thread,tokens=3000,exchanges=30"
    items = load_dataset(spec)
    assert [it.meta["family"] for it in items] == ["longdoc", "thread"]
    assert items[0].id == "mq-s3-longdoc3000-0000" and items[1].id == "mq-s3-thread30-0001"
    assert [it.to_json() for it in load_dataset(spec)] == [it.to_json() for it in items]
    assert load_dataset(spec.replace("seed=3", "seed=4"))[0].context != items[0].context
    # the short families are unchanged by the long ones' knobs
    assert load_dataset("multi-query:n=4,tokens=5000") == load_dataset("multi-query:n=4")
    for bad in ("tokens=10", "exchanges=5", "families=longdoc,near_misses=1"):
        with pytest.raises(InvalidInput, match="multi-query"):
            load_dataset(f"multi-query:{bad}")
