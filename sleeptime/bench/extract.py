"""Answer extraction and scoring.

The paper scores the last number of the final message against the text after
``####`` (``$`` and ``,`` stripped) and, for AIME, the last ``\\boxed{}``. We do the
same, in this order of preference: the last ``\\boxed{...}``, the last ``#### X``,
the last "answer is X" / "answer: X", else the last number anywhere. Numbers may carry
``$``, ``%``, thousands commas, a sign (including the Unicode minus), decimals,
fractions ("3/4", "1 1/2", "\\frac{3}{4}") or be written as words ("twelve").
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_NUM = r"[-−–]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−–]?\$?\.\d+"
_FRAC = r"(?:\d+\s+)?\d+\s*/\s*\d+|\\d?frac\{[^{}]+\}\{[^{}]+\}"
_NUMBER = re.compile(rf"(?<![\w.])(?:{_FRAC}|{_NUM})(?:\s?%)?")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?\s?m\.?)?", re.IGNORECASE)
_HASH = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|=|:)\s*:?\s*([^\n]+)", re.IGNORECASE)

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "a dozen": 12,
    "dozen": 12,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_WORD_NUMBER = re.compile(
    r"\b(?:(?:"
    + "|".join(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))
    + r")(?:[\s-]+(?:and[\s-]+)?|\b))+",
    re.IGNORECASE,
)


def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed)."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i != -1:
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


def parse_number(token: str) -> float | None:
    """'$1,234.50' -> 1234.5, '-3/4' -> -0.75, '1 1/2' -> 1.5, '25%' -> 25, 'twelve' -> 12."""
    s = token.strip().replace("−", "-").replace("–", "-")
    s = re.sub(r"[$%,]", "", s).strip().rstrip(".").strip()
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("-").strip()
    m = re.fullmatch(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}", body)
    if m:
        num, den = parse_number(m.group(1)), parse_number(m.group(2))
        return sign * num / den if num is not None and den else None
    m = re.fullmatch(r"(?:(\d+)\s+)?(\d+)\s*/\s*(\d+)", body)
    if m:
        den = int(m.group(3))
        if den == 0:
            return None
        return sign * (int(m.group(1) or 0) + float(Fraction(int(m.group(2)), den)))
    try:
        value = float(body.replace(" ", ""))
    except ValueError:
        return words_to_number(token)
    return sign * value if math.isfinite(value) else None


def words_to_number(text: str) -> float | None:
    """'twenty-five' -> 25, 'one hundred and two' -> 102, 'a dozen' -> 12; else None."""
    words = re.split(r"[\s-]+", text.strip().lower().replace(" and ", " "))
    if not words or words == [""]:
        return None
    total, current, seen = 0, 0, False
    i = 0
    while i < len(words):
        w = words[i]
        if w == "a" and i + 1 < len(words) and words[i + 1] == "dozen":
            w = "dozen"
            i += 1
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current = 0
        elif w == "and":
            pass
        else:
            return None
        seen = True
        i += 1
    return float(total + current) if seen else None


def last_number(text: str, *, first: bool = False) -> float | None:
    """The last (or first) number written in digits, else one written in words."""
    found = list(_NUMBER.finditer(text))
    for m in found if first else reversed(found):
        value = parse_number(m.group(0))
        if value is not None:
            return value
    words = list(_WORD_NUMBER.finditer(text))
    for m in words if first else reversed(words):
        value = words_to_number(m.group(0))
        if value is not None:
            return value
    return None


def _final(text: str) -> tuple[str, bool]:
    """(span holding the final answer, whether it follows an "answer is" marker)."""
    b = boxed(text)
    if b is not None:
        return b, False
    hashes = _HASH.findall(text)
    if hashes:
        return str(hashes[-1]), False
    said = _ANSWER_IS.findall(text)
    if said:
        return str(said[-1]), True
    return text, False


def final_span(text: str) -> str:
    """The part of a response that holds the final answer (see module docstring)."""
    return _final(text)[0]


def extract_number(text: str) -> float | None:
    """The numeric answer of a response, or None when it has no number.

    After "The answer is" the *first* number counts ("The answer is 18. Check: 9*2=18"),
    elsewhere the last one (the paper's rule)."""
    span, marked = _final(text)
    value = last_number(span, first=marked)
    if value is None and span is not text:
        value = last_number(text)
    return value


def parse_time(text: str) -> int | None:
    """Minutes after midnight of the last clock time in ``text`` ('1:15 PM' -> 795)."""
    found = list(_TIME.finditer(text))
    if not found:
        return None
    m = found[-1]
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 23 or minutes > 59:
        return None
    suffix = (m.group(3) or "").lower().replace(".", "").replace(" ", "")
    if suffix == "pm" and hours < 12:
        hours += 12
    if suffix == "am" and hours == 12:
        hours = 0
    return hours * 60 + minutes


def _normal_text(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", text.lower())
    words = [w for w in text.split() if w not in ("a", "an", "the")]
    return " ".join(words)


def is_correct(response: str, gold: str) -> bool:
    """Score one response against a gold answer (number, clock time or short text)."""
    gold = gold.strip()
    if _TIME.fullmatch(gold):
        want = parse_time(gold)
        got = parse_time(final_span(response)) or parse_time(response)
        # A 12-hour answer ("1:15") matches 13:15: word problems rarely mean midnight.
        return want is not None and got is not None and (want - got) % 720 == 0
    target = parse_number(gold)
    if target is not None:
        value = extract_number(response)
        if value is None:
            return False
        return math.isclose(value, target, rel_tol=1e-6, abs_tol=1e-6)
    want_text = _normal_text(gold)
    span = _normal_text(final_span(response))
    return bool(want_text) and (
        span == want_text or re.search(rf"\b{re.escape(want_text)}\b", span) is not None
    )
