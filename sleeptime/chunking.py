"""Splitting a context that is longer than the model's window into pieces that fit.

Sleep-time compute is what makes long contexts affordable: each piece is read once,
offline, and the learned context that comes out fits where the raw text does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PARAGRAPHS = re.compile(r"\n\s*\n")
_JOIN = "\n\n"
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_text(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Greedy packing of paragraphs (then sentences, then words) into chunks of at
    most ``max_tokens`` tokens as measured by ``count``. Order is preserved.

    The pieces' counts are summed while packing, with the separator's tokens; a sum is
    only an estimate of the joined text's count (a real tokenizer merges across piece
    boundaries), so each packed chunk is counted whole once and halved if it is over."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    pieces = _atoms(text, max_tokens, count)
    sep = max(1, count(_JOIN))
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for piece, n in pieces:
        extra = n + (sep if current else 0)
        if current and size + extra > max_tokens:
            groups.append(current)
            current, size, extra = [], 0, n
        current.append(piece)
        size += extra
    if current:
        groups.append(current)
    return [chunk for group in groups for chunk in _fit(group, max_tokens, count)]


def _fit(group: list[str], max_tokens: int, count: Callable[[str], int]) -> list[str]:
    joined = _JOIN.join(group)
    if len(group) == 1 or count(joined) <= max_tokens:
        return [joined]
    half = len(group) // 2
    return _fit(group[:half], max_tokens, count) + _fit(group[half:], max_tokens, count)


def _atoms(text: str, max_tokens: int, count: Callable[[str], int]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for para in (p.strip() for p in _PARAGRAPHS.split(text)):
        if not para:
            continue
        n = count(para)
        if n <= max_tokens:
            out.append((para, n))
            continue
        for sent in (s.strip() for s in _SENTENCES.split(para)):
            if not sent:
                continue
            n = count(sent)
            if n <= max_tokens:
                out.append((sent, n))
                continue
            words = sent.split()
            step = max(1, len(words) * max_tokens // (n + 1))
            for i in range(0, len(words), step):
                piece = " ".join(words[i : i + step])
                out.append((piece, count(piece)))
    return out
