"""Deciding whether a live question may be answered by a precomputed answer.

A precomputed answer is served at zero tokens only when the live question asks the
same thing as the stored one. "Looks similar" is not enough: "How many pens were
bought?" and "How many pens were returned?" share every word but one, and serving one's
answer to the other is a wrong answer that costs nothing and looks authoritative. So
the policy is layered, from safe to cheap:

``exact`` (default)
    Serve only when the two questions are the same after normalisation: case,
    punctuation, articles, contractions, number words, politeness fillers and a small
    curated synonym table. Word order, negation, every content word, tense and every
    function word that carries meaning (before/after, from/to, than, per, and, ...)
    must match. Everything else goes to the model.
``verified``
    ``exact``, plus: a near candidate that passes the structural guard (same numbers,
    same polarity, same order of shared words, no added or removed content or
    meaning-carrying word) is served if a verifier (a user judge, or a one-token
    yes/no call to the model) says the two ask the same thing.
``off``
    Never serve a precomputed answer at zero tokens.

Whatever is not served goes to the model with the learned context plus the most
related precomputed Q&As as notes, so paraphrases still get cheap, grounded answers.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, cast

from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from sleeptime.errors import InvalidInput
from sleeptime.settings import SERVE_MODES, ServeMode


def serve_mode(value: object) -> ServeMode:
    """``value`` as a serve mode, or one :class:`~sleeptime.errors.InvalidInput` line
    (the one check of a mode passed in code; ``Settings`` checks its own field)."""
    if value not in SERVE_MODES:
        raise InvalidInput(f"serve must be one of {', '.join(SERVE_MODES)} (got {value!r})")
    return cast(ServeMode, value)


#: A judge decides whether ``live`` asks exactly what ``stored`` asks.
Judge = Callable[[str, str], bool]

_WORD = re.compile(r"-?\d+(?:\.\d+)?|[a-z]+(?:[-'][a-z]+)*|[$€£%]")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100"})
_CONTRACTIONS = {
    "n't": " not",
    "'re": " are",
    "'ll": " will",
    "'ve": " have",
    "'m": " am",
}
_IRREGULAR = {"can't": "cannot", "won't": "will not", "ain't": "is not", "shan't": "shall not"}
#: Words dropped before comparing: they never change what is asked.
_FILLER = frozenset({"a", "an", "the", "please"})
#: Leading phrases that only frame the request.
_PREAMBLES = (
    ("can", "you", "tell", "me"),
    ("could", "you", "tell", "me"),
    ("would", "you", "tell", "me"),
    ("tell", "me"),
    ("do", "you", "know"),
)
#: A small curated table of same-meaning phrases, mapped to one spelling. Only
#: substitutions that hold in every sentence belong here.
_SYNONYMS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("altogether",): ("in", "total"),
    ("in", "all"): ("in", "total"),
    ("purchase",): ("buy",),
    ("purchases",): ("buys",),
    ("purchased",): ("bought",),
    ("purchasing",): ("buying",),
    ("kids",): ("children",),
    ("kid",): ("child",),
    ("cannot",): ("can", "not"),
}

#: Negators and negative prefixes: a difference here flips the answer.
_NEGATORS = frozenset("not no never none nobody nothing neither nor without nowhere cannot".split())
_NEG_PREFIXES = ("un", "non-", "non", "in", "im", "dis", "ir", "il")
#: Words whose presence on one side only changes what is asked: opposites, direction,
#: order, scope, aggregation, period. Question-frame words are deliberately absent.
_SENSITIVE = frozenset(
    """
    before after including excluding include exclude included excluded except only also
    first last earliest latest next previous initial final start end beginning begin
    more less most least fewer fewest greater smaller larger bigger higher lower
    increase decrease increased decreased gain lose gained lost add remove added removed
    bought sold buy sell buys sells buying selling returned return returns received
    shipped sent delivered spent earned spend earn gave give given took take taken
    lend borrow lent borrowed won win lost profit loss income expense expenses
    from to into onto than between per each every average total all both either and or
    left right above below up down in out inside outside over under with
    max min maximum minimum remaining remain left over difference sum product
    did does do will would was were is are has have had be been being shall should
    yesterday today tomorrow week weekly month monthly year yearly day daily hour hourly
    morning evening night monday tuesday wednesday thursday friday saturday sunday
    who whom whose where when why which
    """.split()
)
#: Question-frame words: a paraphrase may add or drop these.
_FRAME = frozenset("what how many much number of there amount quantity".split())


class Matcher(Protocol):
    def scores(self, question: str, candidates: Sequence[str]) -> list[float]:
        """Similarity of ``question`` to each candidate, in order."""


# -- normalisation ---------------------------------------------------------------------


def _expand(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    for word, repl in _IRREGULAR.items():
        text = text.replace(word, repl)
    for suffix, repl in _CONTRACTIONS.items():
        text = text.replace(suffix, repl)
    text = re.sub(r"\b(what|who|where|how|when|that|there|it)'s\b", r"\1 is", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    return text


def _number(tok: str) -> str:
    if "." in tok:
        tok = tok.rstrip("0").rstrip(".")
    return tok


def _substitute(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for phrase, repl in _SYNONYMS.items():
            if tuple(tokens[i : i + len(phrase)]) == phrase:
                out.extend(repl)
                i += len(phrase)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


@lru_cache(maxsize=65536)
def normalise(question: str) -> tuple[str, ...]:
    """The canonical token sequence of a question. Two questions with the same
    sequence ask the same thing; the converse does not hold (that is the model's job)."""
    raw = _WORD.findall(_expand(question))
    tokens = [_NUMBER_WORDS.get(t, _number(t) if t[-1].isdigit() else t) for t in raw]
    tokens = [t[:-2] if t.endswith("'s") and len(t) > 2 else t for t in tokens]
    for pre in _PREAMBLES:
        if tuple(tokens[: len(pre)]) == pre:
            tokens = tokens[len(pre) :]
            break
    tokens = _substitute([t for t in tokens if t not in _FILLER])
    return tuple(tokens)


def equivalent(a: str, b: str) -> bool:
    """True when the two questions are the same after normalisation."""
    na = normalise(a)
    return bool(na) and na == normalise(b)


def _numbers(tokens: Sequence[str]) -> list[str]:
    return sorted(t for t in tokens if t[-1].isdigit())


def _negations(tokens: Sequence[str]) -> int:
    return sum(t in _NEGATORS for t in tokens)


def _negated_pair(x: str, others: frozenset[str]) -> bool:
    """``x`` is a negated form of a word on the other side (unpaid/paid, non-red/red)."""
    return any(x.startswith(pre) and x[len(pre) :] in others for pre in _NEG_PREFIXES)


def conflict(a: str, b: str) -> str | None:
    """Why two questions cannot be asking the same thing, or None when no structural
    difference was found (which does not make them the same: see :func:`equivalent`).

    Checks, in order: numbers, polarity, negated forms, words on one side only that
    carry meaning, and the order of the words both share (a swapped direction)."""
    ta, tb = normalise(a), normalise(b)
    if _numbers(ta) != _numbers(tb):
        return "different numbers"
    if _negations(ta) != _negations(tb):
        return "different polarity"
    sa, sb = frozenset(ta), frozenset(tb)
    only = (sa - sb) | (sb - sa)
    for x in only:
        if _negated_pair(x, sb if x in sa else sa):
            return f"negated form {x!r}"
    for x in sorted(only):
        if x in _SENSITIVE:
            return f"{x!r} on one side only"
        if x not in _FRAME:
            return f"content word {x!r} on one side only"
    shared = sa & sb
    order_a = [t for t in ta if t in shared]
    order_b = [t for t in tb if t in shared]
    if order_a != order_b:
        return "different word order"
    if len(ta) != len(tb) and [t for t in ta if t not in _FRAME] != [
        t for t in tb if t not in _FRAME
    ]:
        return "different structure"
    return None


# -- similarity (for related notes and verified candidates) ------------------------------

_STOP = frozenset("a an the of is are was were what which how many much do does did".split())


@lru_cache(maxsize=65536)
def _bag(text: str) -> frozenset[str]:
    """Content words, lightly stemmed (ranking tolerates "pen"/"pens"; serving does not)."""
    return frozenset(
        t[:-1] if len(t) > 3 and t.endswith("s") else t
        for t in normalise(text)
        if t not in _STOP and t not in {"$", "€", "£"}
    )


def lexical_score(a: str, b: str) -> float:
    """Cosine similarity of normalised word sets, in [0, 1]. A ranking signal only:
    it decides which prepared Q&As are shown as notes, never what is served."""
    ta, tb = _bag(a), _bag(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / math.sqrt(len(ta) * len(tb))


class LexicalMatcher:
    def scores(self, question: str, candidates: Sequence[str]) -> list[float]:
        return [lexical_score(question, c) for c in candidates]


class EmbeddingMatcher:
    """Cosine similarity of embeddings; candidate vectors are cached."""

    def __init__(self, embeddings: Embeddings, cache_size: int = 4096) -> None:
        self.embeddings = embeddings
        self._cache: LRUCache[str, list[float]] = LRUCache(maxsize=cache_size)

    def _vectors(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        vectors: dict[str, list[float]] = {}
        if missing:
            vectors = dict(zip(missing, self.embeddings.embed_documents(missing), strict=True))
        for text, vec in vectors.items():
            self._cache[text] = vec
        return [vectors[t] if t in vectors else self._cache[t] for t in texts]

    def scores(self, question: str, candidates: Sequence[str]) -> list[float]:
        if not candidates:
            return []
        q = self.embeddings.embed_query(question)
        return [cosine(q, vec) for vec in self._vectors(candidates)]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


# -- the policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the serve policy concluded for one live question.

    ``serve`` is the position of a precomputed answer to return at zero tokens (exact
    match); ``verify`` the position of a candidate a verifier must confirm first;
    ``related`` the positions of prepared Q&As to show the model as notes otherwise.
    """

    serve: int | None = None
    verify: int | None = None
    score: float = 0.0
    reason: str = ""
    related: tuple[int, ...] = ()


class ServePolicy:
    """Decides, without any model call, what a live question may reuse."""

    def __init__(
        self,
        mode: ServeMode = "exact",
        *,
        matcher: Matcher | None = None,
        threshold: float = 0.75,
        related: int = 3,
        related_min: float = 0.3,
    ) -> None:
        self.mode: ServeMode = serve_mode(mode)
        self.matcher: Matcher = matcher or LexicalMatcher()
        self.threshold = threshold
        self.related = related
        self.related_min = related_min

    def decide(self, question: str, candidates: Sequence[str]) -> Decision:
        if not candidates:
            return Decision(reason="no prepared answers")
        if self.mode != "off":
            for i, cand in enumerate(candidates):
                if equivalent(question, cand):
                    return Decision(serve=i, score=1.0, reason="exact: same question")
        scores = self.matcher.scores(question, candidates)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        related = tuple(i for i in ranked if scores[i] >= self.related_min)[: self.related]
        if self.mode == "verified":
            for i in ranked:
                if scores[i] < self.threshold:
                    break
                if conflict(question, candidates[i]) is None:
                    return Decision(
                        verify=i, score=scores[i], reason="near candidate", related=related
                    )
        return Decision(score=scores[ranked[0]], reason="not the same question", related=related)
