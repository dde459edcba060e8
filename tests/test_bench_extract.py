"""Answer extraction on the formats models really write."""

from __future__ import annotations

import pytest

from sleeptime.bench.extract import (
    boxed,
    extract_number,
    get_scorer,
    is_correct,
    paper_correct,
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
