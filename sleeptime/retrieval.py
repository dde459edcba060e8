"""Matching a live question against the questions predicted at sleep time.

Lexical matching is the default: fast (microseconds), deterministic and explainable.
Any LangChain ``Embeddings`` can be plugged in instead. Both refuse a match when the
two questions mention different numbers: "the cost of 3 apples" must never be served
the precomputed answer about 5 apples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, Protocol

from langchain_core.embeddings import Embeddings

_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_STOP = frozenset(
    """a an the of to in on at for by with and or is are was were be been do does did
    what which who whom whose how many much there this that these those it its their
    his her he she they we you i me my our your from as into than then so if""".split()
)


class Match(NamedTuple):
    """The best predicted question for a query and its similarity in [0, 1]."""

    position: int
    score: float


class Matcher(Protocol):
    def best(self, question: str, candidates: Sequence[str]) -> Match | None:
        """The best-scoring candidate, or None when there are none."""


@lru_cache(maxsize=65536)
def _terms(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(content words, numbers) of a question, normalised."""
    text = text.lower().replace(",", "")
    words: set[str] = set()
    numbers: set[str] = set()
    for tok in _WORD.findall(text):
        if tok[0].isdigit():
            numbers.add(tok.rstrip("0").rstrip(".") if "." in tok else tok)
        elif tok not in _STOP:
            words.add(tok[:-1] if len(tok) > 3 and tok.endswith("s") else tok)
    return frozenset(words), frozenset(numbers)


def lexical_score(a: str, b: str) -> float:
    """Cosine similarity of content-word sets; 0 when the numbers differ."""
    wa, na = _terms(a)
    wb, nb = _terms(b)
    if na != nb:
        return 0.0
    ta, tb = wa | na, wb | nb
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / math.sqrt(len(ta) * len(tb))


class LexicalMatcher:
    def best(self, question: str, candidates: Sequence[str]) -> Match | None:
        best: Match | None = None
        for i, cand in enumerate(candidates):
            score = lexical_score(question, cand)
            if best is None or score > best.score:
                best = Match(i, score)
        return best


class EmbeddingMatcher:
    """Cosine similarity of embeddings; candidate vectors are cached."""

    def __init__(self, embeddings: Embeddings, cache_size: int = 4096) -> None:
        self.embeddings = embeddings
        self._cache: dict[str, list[float]] = {}
        self._cache_size = cache_size

    def _vectors(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            for text, vec in zip(missing, self.embeddings.embed_documents(missing), strict=True):
                self._cache[text] = vec
        return [self._cache[t] for t in texts]

    def best(self, question: str, candidates: Sequence[str]) -> Match | None:
        if not candidates:
            return None
        q = self.embeddings.embed_query(question)
        _, nq = _terms(question)
        best: Match | None = None
        for i, vec in enumerate(self._vectors(candidates)):
            score = _cosine(q, vec) if _terms(candidates[i])[1] == nq else 0.0
            if best is None or score > best.score:
                best = Match(i, score)
        return best


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
