"""Passages: the pieces of a long text that a learned answer brings back verbatim.

Sleep-time notes replace the raw text they were learned from, but notes lose detail (a
weak model's notes may be one line). So at sleep time the text is split into passages
and indexed in the store's full-text engine; at query time the passages most relevant
to the question are put next to the notes instead of the whole text.

A passage is a run of whole sentences (documents) or of whole exchanges (conversations
rendered by :mod:`sleeptime.conversation`): a question's supporting sentence is never
cut in two, and a tool call never loses its result. Passages carry character offsets
into the text, so an answer can say exactly what it read.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sleeptime.conversation import ROLE_TAGS
from sleeptime.models import PassageIndex

#: A sentence ends at . ! ? (with closing quotes/brackets) before whitespace, or at a
#: line break: lists, tables and log lines are units of their own.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*[ \t]+|\n+")
#: Where an exchange of a rendered conversation starts: a user block.
_EXCHANGE = re.compile(r"(?:^|(?<=\n\n))\[user\] ")
_TURN = re.compile(r"^\[(?:" + "|".join(ROLE_TAGS) + r")\] ")


@dataclass(frozen=True)
class Span:
    """One passage of a text: ``text[start:end]``, ``n_tokens`` by the model's counter."""

    idx: int
    start: int
    end: int
    n_tokens: int


def is_conversation(text: str) -> bool:
    """True for a thread rendered by :func:`sleeptime.conversation.render_messages`."""
    return bool(_TURN.match(text)) and "\n\n[" in text


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of ``text``, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        _add(text, pos, m.start() + len(m.group(0).rstrip()), spans)
        pos = m.end()
    _add(text, pos, len(text), spans)
    return spans


def exchange_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each exchange of a rendered conversation: a user turn and
    every turn after it up to the next user turn (whatever came before the first user
    turn, such as a system message, is an exchange of its own)."""
    starts = [m.start() for m in _EXCHANGE.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    spans: list[tuple[int, int]] = []
    for i, s in enumerate(starts):
        _add(text, s, starts[i + 1] if i + 1 < len(starts) else len(text), spans)
    return spans


def _add(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def split_passages(text: str, target_tokens: int, count: Callable[[str], int]) -> list[Span]:
    """Consecutive whole units (sentences, or exchanges for a conversation) packed
    into passages of about ``target_tokens`` tokens. A unit longer than the target
    is a passage of its own, never cut; a passage never crosses a paragraph break of
    a document (a heading stays with what follows it only inside its paragraph)."""
    if target_tokens < 1:
        raise ValueError("target_tokens must be >= 1")
    conversation = is_conversation(text)
    units = exchange_spans(text) if conversation else sentence_spans(text)
    out: list[Span] = []
    start = end = -1
    size = 0
    for u_start, u_end in units:
        n = count(text[u_start:u_end])
        breaks = not conversation and "\n\n" in text[end:u_start] if start >= 0 else False
        if start >= 0 and (size + n > target_tokens or breaks):
            out.append(Span(len(out), start, end, size))
            start = -1
        if start < 0:
            start, size = u_start, 0
        end = u_end
        size += n
    if start >= 0:
        out.append(Span(len(out), start, end, size))
    # a packed passage is counted whole once: the sum of its units' counts is only
    # an estimate (a tokenizer merges across the joins)
    return [
        Span(s.idx, s.start, s.end, count(text[s.start : s.end]) if s.n_tokens else 0) for s in out
    ]


#: Words too common to rank passages by (the question's other words decide).
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our out over
    own same she should so some such than that the their them then there these they
    this those through to too under until up very was we were what when where which
    while who whom why will with would you your""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(question: str, limit: int = 32) -> list[str]:
    """The words of a question a full-text index is searched for: lower-cased, no
    stopwords or one-letter words, each once, in order. Only ``\\w`` characters, so
    a term can never carry full-text query syntax."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(question.lower()):
        if len(word) > 1 and word not in STOPWORDS and not word.startswith("_"):
            seen.setdefault(word[:64], None)
        if len(seen) >= limit:
            break
    return list(seen)


def replaces_text(index: PassageIndex | None, threshold_tokens: int) -> bool:
    """Whether learned answers about a version send passages instead of its whole
    text: it was indexed (at sleep time, when it was long) and is over the threshold."""
    return index is not None and index.passages > 0 and index.text_tokens > threshold_tokens


#: The question a version's cold prompt is measured with: typical in length, so the
#: stored count stands for any question's without tokenizing each one.
TYPICAL_QUESTION = "What was the total amount, and when was it due?"


# -- the question's focus: re-ranking the engine's candidates --------------------------

#: What kind of token answers a question, read from its wording (the classic answer
#: types of question answering): a number for "how many / how much / when", a proper
#: name for "which city / where / who".
_NUMERIC_Q = re.compile(
    r"\bhow (?:many|much|long|old|far|often)\b|\bwhen\b"
    r"|\bwhat (?:number|amount|price|total|sum|year|date|day|time|percentage)\b"
)
_NAMED_Q = re.compile(r"\bwhere\b|\bwho\b|\b(?:which|what) (?:city|town|country|place|company)\b")
_DIGIT = re.compile(r"\d")
#: A word starting with a capital that does not start its sentence.
_INNER_NAME = re.compile(r"(?<=[\w,;:] )[A-Z]\w+")
#: How much a sentence holding the token the question asks for weighs above one that
#: only shares its words.
TYPED_BOOST = 1.0


def answer_type(question: str) -> str | None:
    """``"number"``, ``"name"`` or None (no type read from the question's wording)."""
    q = question.lower()
    if _NUMERIC_Q.search(q):
        return "number"
    if _NAMED_Q.search(q):
        return "name"
    return None


def _holds(sentence: str, kind: str | None) -> bool:
    if kind == "number":
        return bool(_DIGIT.search(sentence))
    if kind == "name":
        return bool(_INNER_NAME.search(sentence))
    return False


def _stem(word: str) -> str:
    """``word`` without a common inflection (three letters kept at least)."""
    for suffix in ("ies", "es", "s", "ed", "ing", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


#: A question term weighing less than this share of its rarest term's weight is left
#: out of the focus re-rank (it is in nearly every candidate).
MIN_TERM_WEIGHT = 0.1
#: Where a sentence ends, for ranking (close enough to :data:`_SENTENCE_END`).
_FAST_END = re.compile(r"[.!?] |\n")


def _sentences_holding(low: str, terms: Sequence[str]) -> dict[tuple[int, int], set[str]]:
    """The sentences of ``low`` (a lower-cased text; as (start, end)) that hold a word
    starting with one of ``terms``, with the terms each holds. String searches only
    (this runs on every candidate of every learned answer) and one scan for sentence
    ends (". ", "? ", "! " or a line break: close enough to :func:`sentence_spans`)."""
    hits: list[tuple[int, str]] = []
    for term in terms:
        at = low.find(term)
        while at >= 0:
            if at == 0 or not low[at - 1].isalnum():
                hits.append((at, term))
            at = low.find(term, at + len(term))
    out: dict[tuple[int, int], set[str]] = {}
    if not hits:
        return out
    cuts = [m.end() for m in _FAST_END.finditer(low)]  # where each sentence starts
    for at, term in hits:
        i = bisect_right(cuts, at)
        out.setdefault(
            (cuts[i - 1] if i else 0, cuts[i] if i < len(cuts) else len(low)), set()
        ).add(term)
    return out


def focus_order(question: str, texts: Sequence[str]) -> list[int]:
    """The indexes of ``texts`` (a search's candidates, in the engine's order) best
    first for ``question``. A text counts by its best sentence: the summed weights of
    the question's terms that sentence holds (a term's weight: its rarity among the
    candidates), raised by :data:`TYPED_BOOST` when the sentence also holds the kind of
    token the question asks for (:func:`answer_type`). Ties keep the engine's order.

    Why by sentence and not by passage: in a conversation a friend's name is said in
    many exchanges, and a question names its subject in other words than the text
    ("chickens" for *hens*), so the name is often the only word the question and the
    answer share. Ranking whole exchanges by that name is a draw among a dozen; the
    exchange whose one sentence holds the name *and* a number is the one a "how many"
    question is about (``sleeptime bench coverage``, 60-exchange threads: supporting
    exchanges among the best 5 for 32% of questions by BM25, 94% this way; choosing
    greedily for the terms still missing did no better)."""
    terms = list(dict.fromkeys(_stem(t) for t in query_terms(question)))
    if not terms:
        return list(range(len(texts)))
    kind = answer_type(question)
    lows = [text.lower() for text in texts]
    n = len(texts)
    # a term's weight: its rarity among the candidates (counted as a substring, which
    # is all the weight needs); a term nearly every candidate holds cannot tell them
    # apart, and skipping it keeps the scan short (this runs on every learned answer)
    df = {t: sum(t in low for low in lows) for t in terms}
    weight = {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms if df[t]}
    if not weight:
        return list(range(n))
    top = max(weight.values())
    weight = {t: w for t, w in weight.items() if w >= MIN_TERM_WEIGHT * top}
    boost = 1.0 + TYPED_BOOST
    score = [0.0] * n
    for i, low in enumerate(lows):
        mine = [t for t in weight if t in low]
        for (a, b), hits in _sentences_holding(low, mine).items():
            value = sum(weight[t] for t in hits)
            if value * boost > score[i]:
                score[i] = max(score[i], value * boost if _holds(texts[i][a:b], kind) else value)
    return sorted(range(n), key=lambda i: (-score[i], i))
