"""The quality gate on sleep-time output: what a model wrote is checked before it is
stored, because stored notes and answers are served again and again.

Three causes, each named in warnings:

* ``empty``: nothing but whitespace.
* ``repetition``: a loop. Measured as the share of word 4-grams that repeat an earlier
  one, which catches a repeated word ("the the the ...") and a repeated paragraph
  alike; a short text is never called a loop (a one-line note is fine). What came
  before the loop can be kept (:func:`before_loop`): small models often write a good
  line or two and then repeat themselves.
* ``truncated``: the model stopped at its token cap; the text is kept up to its last
  complete sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A text whose word 4-grams repeat earlier ones more often than this is a loop.
MAX_REPEATED_SHARE = 0.5
#: Texts with fewer 4-grams than this are too short to call a loop.
MIN_NGRAMS = 16
_N = 4
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)|\n")


def repeated_share(text: str) -> float:
    """Share of the word 4-grams of ``text`` that already occurred earlier in it."""
    words = text.lower().split()
    grams = [tuple(words[i : i + _N]) for i in range(len(words) - _N + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def is_loop(text: str) -> bool:
    words = len(text.split())
    return words - _N + 1 >= MIN_NGRAMS and repeated_share(text) > MAX_REPEATED_SHARE


#: Fewer words than this before a loop is not worth keeping ("the the the ...").
MIN_KEPT_WORDS = 3
_WORD = re.compile(r"\S+")


def before_loop(text: str) -> str | None:
    """The part of ``text`` before its loop starts (the first repeated 4-gram from which
    the rest is a loop), or None when that part is under ``MIN_KEPT_WORDS`` words."""
    spans = [(m.start(), m.group(0).lower()) for m in _WORD.finditer(text)]
    words = [w for _, w in spans]
    seen: set[tuple[str, ...]] = set()
    for j in range(len(words) - _N + 1):
        gram = tuple(words[j : j + _N])
        if gram in seen and repeated_share(" ".join(words[j:])) > MAX_REPEATED_SHARE:
            if j < MIN_KEPT_WORDS:
                return None
            return text[: spans[j][0]].rstrip()
        seen.add(gram)
    return None


def complete_part(text: str) -> str:
    """``text`` up to the end of its last complete sentence (or line); all of it when
    no sentence ends in it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else text


@dataclass(frozen=True)
class Checked:
    """Model output after the gate: the text to keep (None: reject it) and the cause."""

    text: str | None
    cause: str | None = None


def check(text: str, hit_cap: bool, *, keep_before_loop: bool = False) -> Checked:
    """Gate one sleep-time output: reject an empty one or a loop (with
    ``keep_before_loop``, keep what came before the loop, marked ``repetition``); keep a
    cut-off one up to its last complete sentence, marked ``truncated``."""
    stripped = text.strip()
    if not stripped:
        return Checked(None, "empty")
    if is_loop(stripped):
        kept = before_loop(stripped) if keep_before_loop else None
        return Checked(complete_part(kept) if kept else None, "repetition")
    if hit_cap:
        return Checked(complete_part(stripped), "truncated")
    return Checked(stripped)


#: The causes a sleep-time warning can name, for logs that carry no text.
CAUSES = ("empty", "repetition", "truncated", "loop", "longer than its budget", "no predicted")


def degraded_causes(warnings: list[str]) -> set[str]:
    """The known causes named in ``warnings`` (free text stays out of logs)."""
    return {c.split()[0] for w in warnings for c in CAUSES if c in w}
