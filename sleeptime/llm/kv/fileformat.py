"""The KV blob file: ``MAGIC``, a length-prefixed JSON header, the prefix's token ids
(int32 LE) and the llama.cpp sequence state. Every load re-checks all of it, so a
missing, truncated, corrupt or misplaced file is refused, never restored."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence

from sleeptime.llm.tokens import token_bytes
from sleeptime.store.kv_index import KVBlob

MAGIC = b"SLEEPTIME-KV1\n"
_HEADER_LEN = struct.Struct("<I")


def encode(
    *, namespace: str, model_key: str, prefix_hash: str, tokens: Sequence[int], data: bytes
) -> tuple[bytes, bytes]:
    """(head, data): the file is ``head + data`` (written in two calls, no big copy)."""
    header = json.dumps(
        {
            "namespace": namespace,
            "model_key": model_key,
            "prefix_hash": prefix_hash,
            "n_tokens": len(tokens),
            "data_len": len(data),
            "crc32": zlib.crc32(data),
        }
    ).encode()
    return MAGIC + _HEADER_LEN.pack(len(header)) + header + token_bytes(tokens), data


def check(raw: bytearray, blob: KVBlob, tokens: Sequence[int]) -> str | None:
    """Why ``raw`` is not a valid file for ``blob`` and ``tokens``, or None if it is."""
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + _HEADER_LEN.size:
        return "not a sleeptime KV file"
    (hlen,) = _HEADER_LEN.unpack_from(raw, len(MAGIC))
    pos = len(MAGIC) + _HEADER_LEN.size
    try:
        header = json.loads(bytes(raw[pos : pos + hlen]))
    except ValueError:
        return "bad header"
    expected = {
        "namespace": blob.namespace,
        "model_key": blob.model_key,
        "prefix_hash": blob.prefix_hash,
        "n_tokens": blob.n_tokens,
    }
    for key, value in expected.items():
        if header.get(key) != value:
            return f"{key} mismatch"
    pos += hlen
    n = blob.n_tokens
    if len(tokens) < n or bytes(raw[pos : pos + 4 * n]) != token_bytes(tokens[:n]):
        return "token mismatch"
    pos += 4 * n
    data = memoryview(raw)[pos:]
    try:
        if len(data) != header.get("data_len") or zlib.crc32(data) != header.get("crc32"):
            return "truncated or corrupt state"
    finally:
        data.release()
    return None


def strip_to_state(raw: bytearray, n_tokens: int) -> bytearray:
    """Cut a checked file down to its state bytes, in place (no second copy of a
    multi-MiB state)."""
    start = len(MAGIC) + _HEADER_LEN.size + _HEADER_LEN.unpack_from(raw, len(MAGIC))[0]
    del raw[: start + 4 * n_tokens]
    return raw
