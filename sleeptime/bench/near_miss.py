"""Near-miss figures for the serve policy: ``python -m sleeptime.bench.near_miss``.

A near miss is a live question that shares most words with a predicted one but asks
something else. The suite covers every category that fooled the old similarity
threshold, and is used in both directions (stored/live swapped). The script prints,
per category, how many near misses each policy serves at zero tokens (the target is
0), how many exact re-asks it serves (the target is all), and what paraphrases cost
on the model path, where the stored answer is offered as a note.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from sleeptime.retrieval import ServePolicy

#: (category, stored question, live question): a different question every time.
NEAR_MISSES: list[tuple[str, str, str]] = [
    ("negation", "Is the car red?", "Is the car not red?"),
    ("negation", "Which cars are red?", "Which cars aren't red?"),
    ("negation", "How many invoices were paid?", "How many invoices were unpaid?"),
    ("negation", "How many books are fiction?", "How many books are non-fiction?"),
    ("negation", "How many guests ate meat?", "How many guests never ate meat?"),
    (
        "opposite",
        "How much money did Tom have before the trip?",
        "How much money did Tom have after the trip?",
    ),
    ("opposite", "What is the price including tax?", "What is the price excluding tax?"),
    ("opposite", "How many shirts were bought?", "How many shirts were returned?"),
    ("opposite", "How many boxes were received?", "How many boxes were shipped?"),
    ("opposite", "Who finished first?", "Who finished last?"),
    ("opposite", "Which store sells more bread?", "Which store sells less bread?"),
    ("opposite", "What was the profit in March?", "What was the loss in March?"),
    ("entity", "How many apples does Ann have?", "How many apples does Bob have?"),
    ("entity", "How old is Maria's brother?", "How old is Maria's sister?"),
    ("period", "How many cups did Mia sell on Monday?", "How many cups did Mia sell on Tuesday?"),
    ("period", "How much did the shop earn in 2023?", "How much did the shop earn in 2024?"),
    ("period", "How much does Leo save per week?", "How much does Leo save per month?"),
    ("period", "How many apples does Ann have?", "How many apples did Ann have?"),
    ("place", "How many people live in Paris?", "How many people live in Lyon?"),
    ("unit", "How long is the road in miles?", "How long is the road in kilometers?"),
    ("unit", "What is the weight in grams?", "What is the weight in kilograms?"),
    ("number", "What do 3 apples cost?", "What do 5 apples cost?"),
    (
        "number",
        "What is the cost after the 15% discount?",
        "What is the cost after the 20% discount?",
    ),
    ("direction", "How far is it from Oslo to Bergen?", "How far is it from Bergen to Oslo?"),
    (
        "direction",
        "How many more apples does Ann have than Bob?",
        "How many more apples does Bob have than Ann?",
    ),
    ("direction", "What is the ratio of boys to girls?", "What is the ratio of girls to boys?"),
    ("direction", "How much does Ann owe Bob?", "How much does Bob owe Ann?"),
    ("part", "How much do the pens cost?", "How much do the pens and pencils cost?"),
    ("part", "How many apples are there?", "How many red apples are there?"),
    ("part", "How many students passed?", "How many students passed or failed?"),
    (
        "total vs per-item",
        "What is the total cost of the apples?",
        "What is the cost of each apple?",
    ),
    (
        "total vs per-item",
        "What is the price per pen?",
        "What is the total price of the pens?",
    ),
    ("total vs per-item", "How much does one ticket cost?", "How much do all the tickets cost?"),
    (
        "total vs per-item",
        "How many cookies does each child get?",
        "How many cookies do the children get?",
    ),
]

#: (stored, live): the same question, which must be served at zero tokens.
EXACT_REASKS: list[tuple[str, str]] = [
    ("How many apples does Ann have?", "How many apples does Ann have?"),
    ("How many apples does Ann have?", "how many apples does ann have"),
    ("How many apples does Ann have?", "  How many apples does Ann have ?! "),
    ("What is the total cost of the order?", "What is total cost of order?"),
    ("What's the total cost?", "What is the total cost?"),
    ("How many apples do three boxes hold?", "How many apples do 3 boxes hold?"),
    ("How many apples does Ann have?", "Please, how many apples does Ann have?"),
    ("How many apples did Ann buy altogether?", "How many apples did Ann buy in total?"),
    ("How many pears were purchased?", "How many pears were bought?"),
    (
        "What does the order cost in dollars if it is $1,200?",
        "What does the order cost in dollars if it is $1200?",
    ),
    ("Can you tell me how far is it from Oslo to Bergen?", "How far is it from Oslo to Bergen?"),
]

#: (stored, live): true paraphrases the ``exact`` policy leaves to the model, which
#: sees the stored answer as a note.
PARAPHRASES: list[tuple[str, str]] = [
    ("How many apples does Ann have?", "What number of apples does Ann have?"),
    ("How many apples does Ann have?", "How many apples has Ann got?"),
    (
        "How many apples do Ann and Bob have in total?",
        "In total, how many apples do Ann and Bob have?",
    ),
    ("What is the total cost of the order?", "How much does the whole order cost?"),
    (
        "How much money did Tom have before the trip?",
        "Before the trip, how much money did Tom have?",
    ),
    ("How many apples does Bob have?", "What is the number of apples Bob has?"),
]

CONTEXT = (
    "Ann has 3 apples and Bob has 4 apples. Tom had $20 before the trip and spent $5. "
    "The order costs $30 in total."
)


def both_ways() -> Iterator[tuple[str, str, str]]:
    for category, stored, live in NEAR_MISSES:
        yield category, stored, live
        yield category, live, stored


def policy_table() -> list[dict[str, object]]:
    """Per category: near misses served by ``exact`` and by ``verified`` with a judge
    that always says yes (so the structural guard alone must refuse)."""
    exact, verified = ServePolicy("exact"), ServePolicy("verified", threshold=0.01)
    rows: dict[str, Counter[str]] = {}
    for category, stored, live in both_ways():
        row = rows.setdefault(category, Counter())
        row["pairs"] += 1
        row["served_exact"] += exact.decide(live, [stored]).serve is not None
        d = verified.decide(live, [stored])
        row["served_verified_yes_judge"] += d.serve is not None or d.verify is not None
    return [{"category": c, **dict(r)} for c, r in rows.items()]


def model_path_costs(model: str) -> dict[str, object]:
    """Ask each exact re-ask and paraphrase against seeded artifacts with ``model``:
    zero-token serves vs answers on the model path (with the stored answer as a note)."""
    from sleeptime import Settings, SleepTime
    from sleeptime.store.sql import LEARNED, MANIFEST, QA

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'nm.db'}"
        st = SleepTime(model=model, database_url=url, settings=Settings(model=model))
        for name, pairs in (("exact_reasks", EXACT_REASKS), ("paraphrases", PARAPHRASES)):
            sources: Counter[str] = Counter()
            tokens = 0
            for i, (stored, live) in enumerate(pairs):
                cid = f"{name}-{i}"
                st.ingest("bench", cid, CONTEXT)
                for kind, key, payload in (
                    (LEARNED, "0", {"text": CONTEXT}),
                    (QA, "0", {"question": stored, "answer": "The answer is 3."}),
                    (MANIFEST, "0", {"questions": 1}),
                ):
                    st.store.put_artifact("bench", cid, 1, kind, key, payload)
                ans = st.ask("bench", cid, live, verbosity=1)
                sources[ans.source] += 1
                tokens += ans.usage.total_tokens
            out[name] = {
                "asked": len(pairs),
                "by_source": dict(sources),
                "test_tokens_mean": round(tokens / len(pairs), 1),
            }
        st.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fake", help="model for the paraphrase costs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    table = policy_table()
    costs = model_path_costs(args.model)
    if args.json:
        print(json.dumps({"near_misses": table, "model": args.model, **costs}, indent=2))
        return
    print(f"{'category':<20}{'pairs':>6}{'served exact':>14}{'served verified*':>18}")
    for row in table:
        print(
            f"{row['category']!s:<20}{row['pairs']!s:>6}{row['served_exact']!s:>14}"
            f"{row['served_verified_yes_judge']!s:>18}"
        )
    print("* verified mode with a judge that always says yes: the guard alone refuses")
    for name, figures in costs.items():
        print(f"{name} ({args.model}): {figures}")


if __name__ == "__main__":
    main()
