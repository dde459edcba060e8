"""Splitting a context that is longer than the model's window into pieces that fit.

Sleep-time compute is what makes long contexts affordable: each piece is read once,
offline, and the learned context that comes out fits where the raw text does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_text(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Greedy packing of paragraphs (then sentences, then words) into chunks of at
    most ``max_tokens`` tokens as measured by ``count``. Order is preserved."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    pieces = _atoms(text, max_tokens, count)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for piece, n in pieces:
        if current and size + n > max_tokens:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        chunks.append("\n\n".join(current))
    return chunks


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
