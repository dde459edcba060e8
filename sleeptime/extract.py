"""Answer extraction and scoring: the paper's scorer and our lenient one. The library
votes on precomputed answers with the same extraction (``lenient_key``) that the
benchmark scores with.

``--scorer paper`` (:func:`paper_correct`) is the rule of the paper's released
evaluators (letta-ai/sleep-time-compute), replayed exactly. Stateful GSM-Symbolic
(``evaluate_gsm_symbolic.py``): the last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` in
the final message, with ``$``, ``,`` and leading/trailing ``.`` stripped, must equal
the gold (the answer field with everything up to ``#### `` removed, stripped the same
way, nothing else) as a *string*: ``7.0`` is not ``7``, ``3/4`` reads as ``4``, and a
malformed gold (``####42``, trailing whitespace) never matches. Stateful AIME
(``evaluate_stateful_aime.py``, :func:`paper_extract_aime`): the last ``\\boxed``
(else ``\\fbox``), brace-matched; unless that text starts with ``\\boxed{`` and
``int()`` reads its content, the last 1-3 digit integer (never 0) anywhere; compared
as integers. No fallback to an earlier box.

``--scorer lenient`` (:func:`is_correct`) reads what a person would accept: the last
``\\boxed{...}`` that closes (an earlier one when the last is unclosed, and
``\\boxed {x}`` too), the last ``#### X``, the first number after the last "answer
is" / "answer:", else the last number anywhere. Numbers may carry ``$``, ``%``,
thousands commas, a sign (including the Unicode minus), decimals, fractions ("3/4",
"1 1/2", "\\frac{3}{4}") or be written as words ("twelve"); they compare with a 1e-6
tolerance, against the gold as the dataset loader normalised it (``#### ?`` and
whitespace stripped). Clock times compare exactly (``1:15 AM`` is not 13:15; a bare
``1:15`` is read as either). A text gold must be the answer given, not one item of a
list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

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
    matches = list(_NUMBER.finditer(text))
    for m in matches if first else reversed(matches):
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
    matches = list(_TIME.finditer(text))
    if not matches:
        return None
    m = matches[-1]
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


#: A sentence that names several things ("pens and mugs", "pens, mugs", "pens or mugs").
_ENUMERATION = re.compile(r",|;|/|\band\b|\bor\b|&|\n\s*[-*\d]", re.IGNORECASE)


def _last_sentence(text: str) -> str:
    parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if p.strip()]
    return parts[-1] if parts else ""


def _text_correct(response: str, gold: str) -> bool:
    """A short text gold ("scarves"): the final answer must be it, not a list holding it.
    The final span (after "answer is", in a box, after ####; else the last sentence) is
    right when it equals the gold, or names the gold once and lists nothing else."""
    want = _normal_text(gold)
    if not want:
        return False
    span = final_span(response)
    if span is response:
        span = _last_sentence(response)
    span = _last_sentence(span) if "\n" in span.strip() else span
    got = _normal_text(span)
    if got == want:
        return True
    if re.search(rf"\b{re.escape(want)}\b", got) is None:
        return False
    if len(re.findall(rf"\b{re.escape(want)}\b", got)) > 1:
        return False
    rest = re.sub(rf"\b{re.escape(gold.strip())}\b", " ", span, flags=re.IGNORECASE)
    return _ENUMERATION.search(rest) is None


def _time_correct(response: str, gold: str) -> bool:
    want = parse_time(gold)
    span = final_span(response)
    matches = list(_TIME.finditer(span)) or list(_TIME.finditer(response))
    if want is None or not matches:
        return False
    m = matches[-1]
    got = parse_time(m.group(0))
    if got is None:
        return False
    if got == want:
        return True
    # a bare 12-hour time ("1:15") may mean 13:15; an explicit AM/PM never shifts
    hours = int(m.group(1))
    return not m.group(3) and 1 <= hours <= 12 and (want - got) % 720 == 0


def is_correct(response: str, gold: str) -> bool:
    """The lenient scorer: one response against a gold answer (number, clock or text)."""
    gold = gold.strip()
    if _TIME.fullmatch(gold):
        return _time_correct(response, gold)
    target = parse_number(gold)
    if target is not None:
        value = extract_number(response)
        if value is None:
            return False
        return math.isclose(value, target, rel_tol=1e-6, abs_tol=1e-6)
    return _text_correct(response, gold)


# -- the paper's scorers -------------------------------------------------------------------

_PAPER_GSM = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_PAPER_AIME = re.compile(r"([1-9][0-9][0-9]|[1-9][0-9]|[1-9])")


def paper_standardize(answer: str) -> str:
    """The paper's normalisation: drop ``$`` and ``,``, strip ``.`` at both ends."""
    return answer.replace("$", "").replace(",", "").strip(".")


def paper_gold(gold: str) -> str:
    """The gold as the paper compares it: the text after ``#### `` when present."""
    return paper_standardize(re.sub(r"(?s).*#### ", "", gold))


def paper_extract_gsm(response: str) -> str:
    """The paper's GSM answer: the last regex match, standardised; a reply with no match
    is kept whole (the released evaluator leaves it so, so it only matches verbatim)."""
    matches = _PAPER_GSM.findall(response)
    if not matches:
        return response
    return paper_standardize("".join(matches[-1]))


def paper_last_boxed(response: str) -> str | None:
    """``last_boxed_only_string`` of the paper's AIME evaluator, rule for rule: from the
    last ``\\boxed`` (else the last ``\\fbox``), count braces up to the one that closes
    the first opened; the text from the command to that brace, else None (unclosed).
    Braces are counted from the command on, whatever stands between them."""
    idx = response.rfind("\\boxed")
    if idx < 0:
        idx = response.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(response)):
        if response[i] == "{":
            depth += 1
        if response[i] == "}":
            depth -= 1
            if depth == 0:
                return response[idx : i + 1]
    return None


def paper_remove_boxed(box: str) -> str | None:
    """``remove_boxed`` of the paper's AIME evaluator: the content when ``box`` starts
    with ``\\boxed{`` exactly and ends with ``}``, else None (``\\boxed {x}``,
    ``\\fbox{x}``)."""
    left = "\\boxed{"
    if box.startswith(left) and box.endswith("}"):
        return box[len(left) : -1]
    return None


def paper_extract_aime(response: str) -> int | None:
    """The paper's AIME answer (``parse_answer`` of ``evaluate_stateful_aime.py``): the
    last box (:func:`paper_last_boxed`, :func:`paper_remove_boxed`) through Python's
    ``int()`` (so ``{ 042 }``, ``{+7}`` and ``{4_2}`` are numbers); when that fails, with
    no fallback to an earlier box, the last match of ``[1-9][0-9][0-9]|[1-9][0-9]|[1-9]``
    anywhere in the reply (no word boundaries: ``2040`` reads as 204 then nothing, and 0
    is never matched), else None."""
    box = paper_last_boxed(response)
    content = None if box is None else paper_remove_boxed(box)
    if content is not None:
        try:
            return int(content)
        except ValueError:
            pass
    matches = _PAPER_AIME.findall(response)
    return int(matches[-1]) if matches else None


def paper_correct(response: str, gold: str, *, aime: bool = False) -> bool:
    """The paper's scorer (see the module docstring): exact, no tolerance. ``gold`` is
    the dataset's answer field as the evaluator reads it: for Stateful GSM-Symbolic the
    whole solution (only the text after ``#### ``, with the space, is the answer, and a
    malformed field such as ``####42`` or ``#### 42 `` never matches, as in the
    paper); for AIME the integer."""
    if aime:
        try:
            want = int(str(gold).strip())
        except ValueError:
            return False
        return paper_extract_aime(response) == want
    return paper_extract_gsm(response) == paper_gold(str(gold))


SCORERS = ("paper", "lenient")


@dataclass(frozen=True)
class Scorer:
    """A named scoring rule: ``correct(response, gold)`` and ``key(response)``, the
    extracted answer that majority votes count."""

    name: str
    aime: bool = False

    def correct(self, response: str, gold: str) -> bool:
        if self.name == "paper":
            return paper_correct(response, gold, aime=self.aime)
        return is_correct(response, gold)

    def gold(self, answer: str, meta: Mapping[str, Any] | None = None) -> str:
        """The gold this scorer compares with: the paper's evaluator reads the raw
        answer field (a Stateful GSM-Symbolic query keeps it as ``meta["solution"]``),
        the lenient scorer the loader's normalised answer."""
        if self.name == "paper" and meta and isinstance(meta.get("solution"), str):
            return str(meta["solution"])
        return answer

    def key(self, response: str) -> str | None:
        if self.name == "paper":
            if self.aime:
                value = paper_extract_aime(response)
                return None if value is None else str(value)
            return paper_extract_gsm(response).strip() or None
        return lenient_key(response)


def lenient_key(text: str) -> str | None:
    """The lenient scorer's extracted answer as a string (for logs and votes)."""
    value = extract_number(text)
    if value is not None:
        return f"{value:g}" if abs(value) < 1e15 else str(value)
    span = " ".join(final_span(text).split())[:60]
    return span.lower().strip(" .") or None


def get_scorer(name: str, *, aime: bool = False) -> Scorer:
    if name not in SCORERS:
        from sleeptime.errors import InvalidInput

        raise InvalidInput(f"--scorer takes {' or '.join(SCORERS)} (got {name!r})")
    return Scorer(name, aime=aime)
