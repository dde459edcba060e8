"""Answer extraction on the formats models really write."""

from __future__ import annotations

import pytest

from sleeptime.bench.extract import (
    boxed,
    extract_number,
    get_scorer,
    is_correct,
    paper_correct,
    paper_extract_aime,
    paper_last_boxed,
    paper_remove_boxed,
    parse_number,
    words_to_number,
)
from sleeptime.errors import InvalidInput


@pytest.mark.parametrize(
    ("response", "value"),
    [
        # GSM8K reference solutions end with "#### N"
        (
            "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
            "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18",
            18,
        ),
        ("#### 1,234", 1234),
        # AIME / reasoning models: the last \boxed{}
        ("First 2+2=4, so \\boxed{4}. Double-check: \\boxed{\\frac{3}{4}}", 0.75),
        ("\\boxed{\\dfrac{1}{2}}", 0.5),
        ("\\boxed{{12}}", 12),
        # our prompts ask for "The answer is X."
        ("Step 1: 16 - 3 = 13.\nThe answer is $1,234.50.", 1234.5),
        ("The answer is 18. Check: 16-3-4=9 and 9*2=18 again 7", 18),
        ("So x = 5.\nThe answer is -7.", -7),
        ("Final answer: 3/4", 0.75),
        ("The answer is 1 1/2 cups.", 1.5),
        ("The answer is 25%.", 25),
        ("The answer is −5 degrees.", -5),
        ("The answer is twelve.", 12),
        # no marker: the last number (the paper's rule), words only when there are no digits
        ("Step 1: 16 - 3 = 13\nStep 2: 13 * 2 = 26", 26),
        ("Total: 1,000,000 dollars", 1_000_000),
        ("It costs $0.75 each", 0.75),
        ("I have .5 left", 0.5),
        ("She has twenty-five apples.", 25),
        ("one hundred and two people came", 102),
        ("There were 2 cars and a dozen bikes.", 2),
        ("No number at all.", None),
        ("", None),
    ],
)
def test_extract_number(response: str, value: float | None) -> None:
    assert extract_number(response) == value


def test_subtraction_is_not_a_negative_number() -> None:
    assert extract_number("16 - 3") == 3
    assert extract_number("5-3") == 3
    assert extract_number("-$5") == -5


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("$1,234.50", 1234.5),
        ("-3/4", -0.75),
        ("1 1/2", 1.5),
        ("25%", 25),
        ("twelve", 12),
        ("\\frac{7}{2}", 3.5),
        ("5/0", None),
        ("abc", None),
        ("18.", 18),
    ],
)
def test_parse_number(token: str, value: float | None) -> None:
    assert parse_number(token) == value


def test_words_to_number() -> None:
    assert words_to_number("three thousand four hundred and five") == 3405
    assert words_to_number("ninety-nine") == 99
    assert words_to_number("a dozen") == 12
    assert words_to_number("many") is None


def test_boxed_nested() -> None:
    assert boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert boxed("no box") is None


@pytest.mark.parametrize(
    ("response", "gold", "ok"),
    [
        ("The answer is 18 dollars.", "18", True),
        ("The answer is $18.00", "18", True),
        ("The answer is 180.", "18", False),
        ("The answer is 38.75.", "38.75", True),
        ("The answer is 38.7.", "38.75", False),
        ("The answer is 114,200.", "114,200", True),
        ("It ends at 1:15 PM.", "13:15", True),
        ("The answer is 13:15.", "13:15", True),
        ("The answer is 10:45.", "10:45", True),
        ("The answer is 10:50.", "10:45", False),
        ("The answer is scarves.", "scarves", True),
        ("The answer is the scarves they bought.", "scarves", True),
        ("The answer is socks.", "scarves", False),
        ("I don't know.", "18", False),
    ],
)
def test_is_correct(response: str, gold: str, ok: bool) -> None:
    assert is_correct(response, gold) is ok


# -- the two scorers on tricky strings ------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "gold", "paper", "lenient"),
    [
        # the paper compares strings after stripping "$", "," and outer "."
        ("The answer is $1,234.50.", "1234.50", True, True),
        ("The answer is $1,234.50.", "1234.5", False, True),
        ("The answer is 7.0", "7", False, True),
        ("The answer is 7.", "7", True, True),
        # its regex reads "3/4" as 4 and cannot read words
        ("The answer is 3/4.", "0.75", False, True),
        ("The answer is 3/4.", "4", True, False),
        ("The answer is twelve.", "12", False, True),
        # boxes and GSM8K-style "####"
        ("so \\boxed{42}", "42", True, True),
        ("Work.\n#### 42", "42", True, True),
        ("Work.\n#### 42", "#### 42", True, True),
        # two numbers in the final sentence: the paper takes the last, we the one answered
        ("The answer is 18, which is 6 more than 12.", "18", False, True),
        ("The answer is 18, which is 6 more than 12.", "12", True, False),
        # a gold answer with its solution (GSM-Symbolic files): the text after ####
        ("The answer is 5.", "She has 2+3 = 5 apples.\n#### 5", True, True),
    ],
)
def test_paper_and_lenient_scorers(response: str, gold: str, paper: bool, lenient: bool) -> None:
    assert paper_correct(response, gold) is paper
    if "####" not in gold:
        assert is_correct(response, gold) is lenient


@pytest.mark.parametrize(
    ("response", "gold", "ok"),
    [
        # a reply listing several items is not the answer
        ("The answer is pens and mugs.", "pens", False),
        ("It could be pens, mugs or bowls.", "pens", False),
        ("The answer is pens or mugs.", "mugs", False),
        ("She spends the most on pens.", "pens", True),
        ("The answer is pens.", "pens", True),
        ("The answer is poster session.", "poster session", True),
        ("Bowls cost less. The answer is pens.", "pens", True),
        # clock times: AM/PM is exact, a bare 12-hour time may mean the afternoon
        ("It ends at 1:15 AM.", "13:15", False),
        ("It ends at 1:15 PM.", "13:15", True),
        ("It ends at 1:15.", "13:15", True),
        ("It ends at 13:15.", "1:15", False),
        ("It starts at 12:30 AM.", "0:30", True),
    ],
)
def test_lenient_text_and_clock_answers(response: str, gold: str, ok: bool) -> None:
    assert is_correct(response, gold) is ok


def test_paper_aime_rule_and_scorer_objects() -> None:
    assert paper_correct("so the answer is \\boxed{204}", "204", aime=True)
    assert paper_correct("we get 17 and then 204", "204", aime=True)
    assert paper_correct("we get 2040", "204", aime=True)  # its regex reads "204" in "2040"
    assert get_scorer("paper").key("The answer is $1,234.50.") == "1234.50"
    assert get_scorer("lenient").key("The answer is $1,234.50.") == "1234.5"
    assert get_scorer("paper", aime=True).key("\\boxed{12}") == "12"
    with pytest.raises(InvalidInput, match="--scorer"):
        get_scorer("fuzzy")


# -- the paper's evaluators, exactly (issue 20): a table of replies and their verdicts -------

# (reply, what evaluate_stateful_aime.parse_answer returns, what the lenient scorer reads)
AIME_TABLE = [
    # the last \boxed{} through int()
    ("so the answer is \\boxed{204}", 204, 204),
    ("\\boxed{ 042 }", 42, 42),  # int() strips spaces and leading zeros
    ("\\boxed{+7}", 7, 7),
    ("\\boxed{4_2}", 42, None),  # int() reads digit separators; we do not
    ("\\boxed{-5}", -5, -5),
    ("\\boxed{0}", 0, 0),  # the only way to answer 0
    ("\\boxed{12} and then \\fbox{34}", 12, 12),  # the last \boxed wins over a later \fbox
    # the last box is unclosed or bare: extraction fails, no earlier box, last 1-3 digits
    ("\\boxed{12} wait, recheck: \\boxed{34", 34, 12),
    ("\\boxed{5} then 7 and \\boxed", 7, 5),
    # not exactly "\boxed{": a space before the brace, \fbox, text before the brace
    ("\\boxed {819}, from step 2", 2, 819),
    ("\\boxed {819}", 819, 819),
    ("\\fbox{42}", 42, 42),
    ("\\fbox{42} of 50", 50, 50),
    ("\\boxed 5 and {6}", 6, 6),
    # the content is not an integer for int(): the whole reply's last 1-3 digits
    ("\\boxed{42.0}", 42, 42),
    ("\\boxed{\\text{7}} after 365 days", 365, 7),
    ("\\boxed{{42}}", 42, 42),
    ("\\boxed{} in 9 steps", 9, 9),
    # no box: [1-9][0-9][0-9]|[1-9][0-9]|[1-9], no word boundaries, never 0
    ("we get 2040", 204, 2040),
    ("Total 1000", 100, 1000),
    ("x = 7 or x = 1234", 4, 1234),
    ("The answer is 0.", None, 0),
    ("no digits at all", None, None),
]


@pytest.mark.parametrize(("reply", "paper", "lenient"), AIME_TABLE)
def test_aime_extraction_is_the_papers(reply: str, paper: int | None, lenient: int | None) -> None:
    assert paper_extract_aime(reply) == paper
    for gold in {paper, lenient} - {None}:
        assert paper_correct(reply, str(gold), aime=True) is (gold == paper)
        assert is_correct(reply, str(gold)) is (gold == lenient)


def test_aime_box_helpers() -> None:
    assert paper_last_boxed("a \\boxed{1} b \\boxed{2{3}} c") == "\\boxed{2{3}}"
    assert paper_last_boxed("\\boxed{1} \\boxed{2") is None  # unclosed: no earlier box
    assert paper_last_boxed("\\fbox{4}") == "\\fbox{4}" and paper_last_boxed("4") is None
    assert paper_remove_boxed("\\boxed{4}") == "4"
    assert paper_remove_boxed("\\boxed {4}") is None and paper_remove_boxed("\\fbox{4}") is None


# (reply, the raw answer field, paper verdict, lenient verdict against the loader's gold)
GSM_TABLE = [
    ("The answer is $1,234.50.", "Work.\n#### 1234.50", True, True),
    ("The answer is $1,234.50.", "Work.\n#### 1234.5", False, True),
    ("The answer is 42.", "She has 42.\n#### 42", True, True),
    ("The answer is 42.", "42", True, True),  # no "#### ": the whole field
    ("The answer is 42.", "a #### b\n#### 42", True, True),  # greedy: after the last
    ("The answer is 1000.", "Work.\n#### $1,000.", True, True),
    # malformed gold fields: the paper's evaluator does not normalise them
    ("The answer is 42.", "She has 42.\n####42", False, True),
    ("The answer is 42.", "She has 42.\n#### 42 ", False, True),
    ("The answer is 42.", "She has 42.\n#### 42\n", False, True),
    # the reply: the last match of (-?[$0-9.,]{2,})|(-?[0-9]+), as a string
    ("The answer is -5.", "#### -5", True, True),
    ("The answer is - 5.", "#### -5", False, False),
    ("The answer is 7.0", "#### 7", False, True),
    ("It costs $5", "#### 5", True, True),
    ("The answer is 3/4.", "#### 0.75", False, True),
    ("The answer is 18, which is 6 more than 12.", "#### 18", False, True),
    ("no number here", "#### 42", False, False),  # compared whole
    ("Work.\n#### 42", "#### 42", True, True),
]


@pytest.mark.parametrize(("reply", "field", "paper", "lenient"), GSM_TABLE)
def test_gsm_scoring_is_the_papers(reply: str, field: str, paper: bool, lenient: bool) -> None:
    from sleeptime.bench.datasets import _stateful_gold

    assert paper_correct(reply, field) is paper
    assert is_correct(reply, _stateful_gold("stateful-gsm-symbolic", field, "x")) is lenient
    # the paper scorer takes the raw field from the query's meta, the lenient the gold
    gold = _stateful_gold("stateful-gsm-symbolic", field, "x")
    meta = {"solution": field}
    assert get_scorer("paper").gold(gold, meta) == field
    assert get_scorer("lenient").gold(gold, meta) == gold
