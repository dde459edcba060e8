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

import re
from collections.abc import Callable
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
