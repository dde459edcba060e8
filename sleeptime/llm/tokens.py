"""Token-id sequences: their byte form, hash, common prefixes and the stable prefix of
a prompt (the part that does not depend on the question)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any


def token_bytes(tokens: Sequence[int]) -> bytes:
    """Token ids as little-endian int32, the form they are hashed and stored in."""
    return struct.pack(f"<{len(tokens)}i", *map(int, tokens))


def tokens_hash(tokens: Sequence[int]) -> str:
    return hashlib.sha256(token_bytes(tokens)).hexdigest()


def prefix_hashes(tokens: Sequence[int], lengths: Sequence[int]) -> list[str]:
    """:func:`tokens_hash` of ``tokens[:n]`` for each ``n`` of the ascending ``lengths``,
    hashing every token once."""
    h = hashlib.sha256()
    done = 0
    out: list[str] = []
    for n in lengths:
        h.update(token_bytes(tokens[done:n]))
        done = n
        out.append(h.copy().hexdigest())
    return out


def common_prefix(a: Any, b: Any) -> int:
    """Length of the longest common prefix of two token sequences (lists or arrays)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    xs = a[:n].tolist() if hasattr(a, "tolist") else a[:n]  # numpy arrays: compare ints
    ys = b[:n].tolist() if hasattr(b, "tolist") else b[:n]
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x != y:
            return i
    return n


def stable_prefix(variants: Sequence[Sequence[int]], pieces: Sequence[bytes]) -> int:
    """Length of the token prefix shared by all ``variants`` (the same prompt with
    different questions), cut back to just after a token that ends a line (``pieces``
    are the detokenised tokens of ``variants[0]``): a newline is a safe boundary for
    BPE, so no merge with the question's first characters can change it."""
    n = len(variants[0])
    for v in variants[1:]:
        n = min(n, common_prefix(variants[0], v))
    while n > 0 and not pieces[n - 1].endswith(b"\n"):
        n -= 1
    return n
