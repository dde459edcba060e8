"""Whether the sentences a question depends on reached a prompt (support coverage),
without judging any answer: :func:`facts`, :func:`reaches`, :func:`support_coverage`,
and :func:`answer_prompt` (what a library answer's prompt carried, rebuilt from it).
See :mod:`sleeptime.bench.coverage` for the measure and its table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sleeptime.passages import STOPWORDS, replaces_text

if TYPE_CHECKING:
    from sleeptime.api import SleepTime
    from sleeptime.models import Answer


_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_FACT = re.compile(rf"(?<![\w.]){_NUMBER}|\b[A-Z][a-z]+(?:[-'][A-Za-z]+)*\b")
_TOKEN = re.compile(rf"{_NUMBER}|[A-Za-z]+(?:[-'][A-Za-z]+)*")
#: Capitalised only because they start a sentence: not names.
_STARTERS = frozenset({"today", "yesterday", "then", "also", "still", "like"})


def normalise(text: str) -> str:
    """``text`` with every run of whitespace made one space."""
    return " ".join(text.split())


def _norm_fact(token: str) -> str:
    if token[0].isdigit():
        token = token.replace(",", "")
        if "." in token:
            token = token.rstrip("0").rstrip(".")
        return token
    return token.lower()


def facts(sentence: str) -> frozenset[str]:
    """The facts of a sentence: its numbers (thousands commas and trailing decimal
    zeros dropped: ``$1,200.50`` is ``1200.5``) and its capitalised names (lower-cased;
    a capitalised first word is a name unless it is a common word)."""
    out: set[str] = set()
    first = True
    for m in _FACT.finditer(sentence):
        token = m.group(0)
        at_start = first and not sentence[: m.start()].strip(" \"'([")
        first = False
        if token[0].isalpha() and at_start:
            low = token.lower()
            if low in STOPWORDS or low in _STARTERS:
                continue
        out.add(_norm_fact(token))
    return frozenset(out)


def _line_facts(line: str) -> frozenset[str]:
    return frozenset(_norm_fact(t) for t in _TOKEN.findall(line))


def reaches(sentence: str, prompt: str, notes: str = "", *, normalised: bool = False) -> bool:
    """Whether ``sentence`` reached a prompt: verbatim in ``prompt`` (whitespace
    aside), or all its :func:`facts` on one line of ``notes`` (the learned context,
    which may restate it). ``normalised``: ``prompt`` is already :func:`normalise` d."""
    if normalise(sentence) in (prompt if normalised else normalise(prompt)):
        return True
    want = facts(sentence)
    if not want or not notes:
        return False
    return any(want <= _line_facts(line) for line in notes.splitlines())


@dataclass(frozen=True)
class Coverage:
    """How many of a question's supporting sentences reached its prompt."""

    sentences: int
    reached: int

    @property
    def covered(self) -> bool:
        return self.reached == self.sentences


def support_coverage(support: Sequence[str], prompt: str, notes: str = "") -> Coverage:
    """:func:`reaches` for each supporting sentence of one question."""
    flat = normalise(prompt)
    got = sum(reaches(s, flat, notes, normalised=True) for s in support)
    return Coverage(sentences=len(support), reached=got)


def share(covered: Sequence[bool]) -> float | None:
    """The share of questions covered (None for none measured)."""
    return sum(covered) / len(covered) if covered else None


@dataclass(frozen=True)
class Prompted:
    """What reached one answer's test-time prompt: all of it, and the notes in it."""

    text: str
    notes: str = ""
    whole_text: bool = False


def answer_prompt(
    st: SleepTime, namespace: str, context_id: str, text: str, question: str, answer: Answer
) -> Prompted | None:
    """What the prompt of an answer of ``st.ask(namespace, context_id, question)``
    carried, rebuilt from the answer (``text``: the version's text): a cold answer
    the whole text; a learned one the notes of ``answer.learned_version``, the
    passages ``answer.passages`` names (offsets into ``text``) or, where the version's
    text is not replaced by passages, the whole text, the related prepared Q&As and the
    question. None for an answer served without a prompt (``predicted``)."""
    if answer.source == "predicted":
        return None
    if answer.source != "learned":
        return Prompted(text=f"{text}\n\n{question}", whole_text=True)
    arts = st.store.load_artifacts(namespace, context_id, answer.version)
    notes = arts.learned or ""
    if answer.learned_version is not None and answer.learned_version != answer.version:
        notes = st.store.load_artifacts(namespace, context_id, answer.learned_version).learned or ""
    settings = st.settings
    whole = (
        not answer.passages
        and not replaces_text(arts.index, settings.passage_threshold_tokens)
        and (settings.include_raw_context or answer.stale)
        # a prompt that did not fit the window dropped the text: it is then shorter
        and (arts.index is None or answer.usage.prompt_tokens >= arts.index.text_tokens)
    )
    parts = [notes]
    parts += [text] if whole else [text[p.start : p.end] for p in answer.passages]
    prepared = {qa.question: qa.answer for qa in arts.qas}
    parts += [f"{q}\n{prepared.get(q, '')}" for q in answer.related_questions]
    parts.append(question)
    return Prompted(text="\n\n".join(parts), notes=notes, whole_text=whole)
