"""Sentence splitting, the shipped Stateful GSM8K file and user JSONL validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sleeptime.bench.datasets import (
    load_dataset,
    load_jsonl,
    load_stateful_gsm8k,
    split_problem,
    split_sentences,
)
from sleeptime.errors import InvalidInput

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the paper's split on "." breaks prices and decimals
        (
            "Tea costs $3.50 a cup. How much do 4 cups cost?",
            ["Tea costs $3.50 a cup.", "How much do 4 cups cost?"],
        ),
        (
            "He ran 2.5 miles. She ran 1,000.75 meters.",
            ["He ran 2.5 miles.", "She ran 1,000.75 meters."],
        ),
        ("It is .5 liters. Then more.", ["It is .5 liters.", "Then more."]),
        # titles never end a sentence
        (
            "Mr. Smith and Mrs. Jones met Dr. Lee. They ate.",
            ["Mr. Smith and Mrs. Jones met Dr. Lee.", "They ate."],
        ),
        ("Ms. Ann vs. St. Louis. Go.", ["Ms. Ann vs. St. Louis.", "Go."]),
        # a.m./p.m.: a sentence ends there only when a capital follows
        ("She wakes at 6 a.m. and runs. He naps.", ["She wakes at 6 a.m. and runs.", "He naps."]),
        (
            "She sleeps at 10 p.m. and wakes up at 6 a.m. She is tired.",
            ["She sleeps at 10 p.m. and wakes up at 6 a.m.", "She is tired."],
        ),
        # initials vs letter labels
        ("J. K. Rowling wrote 7 books. How many?", ["J. K. Rowling wrote 7 books.", "How many?"]),
        ("Juice Box B is $5. Juice Box C is $7.", ["Juice Box B is $5.", "Juice Box C is $7."]),
        ("He owns Farm Y. He sold it.", ["He owns Farm Y.", "He sold it."]),
        ("Use e.g. Bob. Then go.", ["Use e.g. Bob.", "Then go."]),
        # quotes, question and exclamation marks, lowercase continuations
        ('He said "Hi." Then he left!', ['He said "Hi."', "Then he left!"]),
        ('"Ready?" she asked. Yes.', ['"Ready?" she asked.', "Yes."]),
        ("Wait... what? No.", ["Wait... what?", "No."]),
        ("It has 3 parts.\n\nthen a new paragraph", ["It has 3 parts.", "then a new paragraph"]),
        ("A sentence without an end", ["A sentence without an end"]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_problem_last_sentence_is_the_query() -> None:
    context, query = split_problem("Ann has $3.50. Bob has $1.25 more. How much does Bob have?")
    assert context == "Ann has $3.50. Bob has $1.25 more."
    assert query == "How much does Bob have?"


def test_split_problem_keeps_a_trailing_note_with_the_question() -> None:
    context, query = split_problem(
        "Soup serves 6. It costs $2.00. What is the cost per serving? "
        "(Round to the nearest integer.)"
    )
    assert context == "Soup serves 6. It costs $2.00."
    assert query == "What is the cost per serving? (Round to the nearest integer.)"


def test_split_problem_refuses_a_single_sentence() -> None:
    with pytest.raises(InvalidInput, match="single-sentence"):
        split_problem("If Ann is 9 years old, how old is she in 3 years?")


def test_shipped_stateful_gsm8k() -> None:
    items = load_stateful_gsm8k()
    assert len(items) == 1195  # 1,319 - 110 removed by Platinum - 14 single-sentence
    ids = [it.id for it in items]
    assert len(set(ids)) == len(ids)
    by_line = {it.queries[0].meta["gsm8k_line"]: it for it in items}
    assert 4 not in by_line and 12 not in by_line  # removed by Platinum
    assert by_line[288].queries[0].answer == "4"  # revised by Platinum (GSM8K said 3)
    assert by_line[288].queries[0].meta["gsm8k_answer"] == "3"
    assert by_line[0].queries[0].answer == "18"
    for it in items:
        assert len(it.queries) == 1 and it.context and it.queries[0].question
        assert "," not in it.queries[0].answer
        float(it.queries[0].answer)
        # a number is never cut at its decimal point ("... $3." + "50 a cup ...")
        assert not (re.search(r"\d\.$", it.context) and re.match(r"\d", it.queries[0].question))
    assert load_dataset("gsm8k", limit=5) == items[:5]


@pytest.mark.skipif(
    not (SHARED / "gsm8k" / "test.jsonl").exists(), reason="../shared/data not present"
)
def test_gsm8k_split_loses_no_text() -> None:
    rows = [
        json.loads(x) for x in (SHARED / "gsm8k" / "test.jsonl").read_text("utf-8").splitlines()
    ]
    for it in load_stateful_gsm8k():
        original = rows[it.queries[0].meta["gsm8k_line"]]["question"]
        joined = it.context + " " + it.queries[0].question
        assert joined.split() == original.split()


def _write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_user_jsonl_round_trip(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        [
            "# my data",
            json.dumps(
                {
                    "id": "a",
                    "context": "Ann has 3 apples.",
                    "queries": [
                        {"question": "How many apples?", "answer": 3},
                        {"question": "Who?", "answer": "Ann"},
                    ],
                }
            ),
            "",
            json.dumps({"id": 7, "context": "x", "queries": [{"question": "q", "answer": 1.5}]}),
        ],
    )
    items = load_dataset(str(p))
    assert [it.id for it in items] == ["a", "7"]
    assert [q.answer for q in items[0].queries] == ["3", "Ann"]
    assert items[1].queries[0].answer == "1.5"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"data.jsonl:1: not valid JSON"),
        ("[1, 2]", r"data.jsonl:1: expected a JSON object"),
        ('{"context": "c", "queries": [{"question": "q", "answer": "1"}]}', r"'id' must be"),
        (
            '{"id": "a", "context": " ", "queries": [{"question": "q", "answer": "1"}]}',
            r"'context' must be",
        ),
        ('{"id": "a", "context": "c", "queries": []}', r"'queries' must be a non-empty list"),
        ('{"id": "a", "context": "c", "queries": [{"question": "q"}]}', r"queries\[0\]: 'answer'"),
        (
            '{"id": "a", "context": "c", "queries": [{"question": "q", "answer": true}]}',
            r"'answer' must be",
        ),
        (
            '{"id": "a", "context": "c", "queries": [{"question": "", "answer": "1"}]}',
            r"'question' must be",
        ),
        ('{"id": "a", "context": "c", "querys": []}', r"unknown field"),
    ],
)
def test_user_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    p = _write(tmp_path, [line])
    with pytest.raises(InvalidInput, match=message):
        load_jsonl(p)


def test_user_jsonl_duplicate_ids(tmp_path: Path) -> None:
    row = json.dumps({"id": "a", "context": "c", "queries": [{"question": "q", "answer": "1"}]})
    p = _write(tmp_path, [row, row])
    with pytest.raises(InvalidInput, match=r"data.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        load_jsonl(p)


def test_unknown_dataset_and_missing_file() -> None:
    with pytest.raises(InvalidInput, match="unknown dataset"):
        load_dataset("no-such-dataset")
    with pytest.raises(InvalidInput, match="limit"):
        load_dataset("gsm8k", limit=0)


# -- the paper's published formats (small files written here) -------------------------------


def _rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_stateful_gsm_symbolic_file(tmp_path: Path) -> None:
    shared = "A shop sells pens at $2 each. Ann buys 3 pens."
    rows: list[dict[str, object]] = [
        {
            "id": 7,
            "instance": 0,
            "question": "ignored",
            "answer": "3 x 2 = 6.\n#### 6",
            "stateful_gsm_symbolic_context": shared,
            "stateful_gsm_symbolic_question": "How much does Ann pay?",
        },
        {  # the same context with another query: one item, two queries (multi-query)
            "id": 7,
            "instance": 1,
            "answer": "#### 1,200",
            "stateful_gsm_symbolic_context": shared,
            "stateful_gsm_symbolic_question": "How many cents is that times 200?",
        },
        {
            "id": 8,
            "instance": 0,
            "answer": "#### $4.50",
            "stateful_gsm_symbolic_context": "Tea costs $1.50.",
            "stateful_gsm_symbolic_question": "What do 3 teas cost?",
        },
    ]
    p = _rows(tmp_path / "stateful_gsm_symbolic_p2.jsonl", rows)
    for spec in (str(p), f"stateful-gsm-symbolic:{p}"):
        items = load_dataset(spec)
        assert [it.id for it in items] == ["gsmsym-7-0", "gsmsym-8-0"]
        assert [q.answer for q in items[0].queries] == ["6", "1200"]
        assert items[1].queries[0].answer == "4.50"
        assert items[0].meta["format"] == "stateful-gsm-symbolic"
        assert items[0].context == shared
    with pytest.raises(InvalidInput, match="not stateful-aime data"):
        load_dataset(f"stateful-aime:{p}")
    # --keep-apart: one item per record, as the paper's scripts run them
    for spec in (str(p), f"stateful-gsm-symbolic:{p}"):
        apart = load_dataset(spec, keep_apart=True)
        assert [it.id for it in apart] == ["gsmsym-7-0", "gsmsym-7-1", "gsmsym-8-0"]
        assert [len(it.queries) for it in apart] == [1, 1, 1]
        assert apart[0].context == apart[1].context == shared
        assert apart[1].queries[0].answer == "1200"


def test_stateful_aime_file(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {
            "id": "2024-I-1",
            "stateful_aime_context": "Every morning Aya walks 9 kilometers.",
            "stateful_aime_question": "Find the number of minutes the walk takes her.",
            "answer": 204,
        },
        {
            "stateful_aime_context": "Let ABC be a triangle.",
            "stateful_aime_question": "Find m + n.",
            "answer": "113",
        },
    ]
    items = load_dataset(str(_rows(tmp_path / "aime.jsonl", rows)))
    assert [it.id for it in items] == ["aime-2024-I-1", "aime-line2"]
    assert [it.queries[0].answer for it in items] == ["204", "113"]
    assert all(it.meta["format"] == "stateful-aime" for it in items)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"stateful_aime_context": "c", "stateful_aime_question": "", "answer": 1}, "question"),
        ({"stateful_aime_context": "c", "stateful_aime_question": "q", "answer": "x"}, "integer"),
        ({"stateful_aime_context": "c", "stateful_aime_question": "q"}, "'answer'"),
        (
            {
                "stateful_gsm_symbolic_context": "c",
                "stateful_gsm_symbolic_question": "q",
                "answer": "no final line ####",
            },
            "no final answer",
        ),
    ],
)
def test_stateful_file_errors_name_the_line(
    tmp_path: Path, row: dict[str, object], message: str
) -> None:
    p = _rows(tmp_path / "bad.jsonl", [row])
    with pytest.raises(InvalidInput, match=message) as err:
        load_dataset(str(p))
    assert "bad.jsonl:1" in str(err.value)
    with pytest.raises(InvalidInput, match="local file"):
        load_dataset("stateful-aime")
