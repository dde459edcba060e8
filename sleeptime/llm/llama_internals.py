"""Every use of llama-cpp-python beyond its public API, in one module.

The KV-prefix artifacts, the namespace fence of the in-process prompt cache and the
predictability score need what ``Llama`` keeps private: the evaluated token ids
(``_input_ids``), the context wrapper (``_ctx``: KV-cache surgery, raw decode and
logits), the batch (``_batch``), the vocabulary (``_model``) and the "logits are stale"
flag (``_requires_eval``). They are not a stable interface, so they are touched here
only, and ``pyproject.toml`` caps llama-cpp-python below the next minor release
(tested with 0.3.x). A new version that renames them breaks this module and its tests,
nothing else.

Every function expects the caller to hold the lock that serialises the ``Llama``
object (see :func:`sleeptime.llm.local.load_llama`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from sleeptime.llm.tokens import common_prefix

#: The llama-cpp-python versions this module was tested with (``>=`` lower, ``<`` upper).
TESTED = ("0.3.0", "0.4")


def binding_version() -> str:
    """The installed llama-cpp-python version ("none" when it is not installed)."""
    try:
        import llama_cpp
    except ImportError:  # pragma: no cover - only used with llama.cpp models
        return "none"
    return str(llama_cpp.__version__)


# -- the evaluated prefix (llama.cpp's in-process prompt cache) --------------------------


def cached_tokens(llama: Any) -> Any:
    """The token ids whose KV cells are in the context now: the next prompt that starts
    with them skips evaluating them (llama-cpp-python's prefix reuse)."""
    return llama._input_ids


def reusable_tokens(llama: Any, tokens: Sequence[int]) -> int:
    """How many leading tokens of ``tokens`` the next decode would take from the cache."""
    return common_prefix(cached_tokens(llama), tokens)


def clear_cache(llama: Any) -> None:
    """Forget every evaluated token: the next prompt is evaluated from scratch."""
    llama._ctx.kv_cache_clear()
    llama.reset()


def keep_prefix(llama: Any, n: int) -> None:
    """Keep the first ``n`` evaluated tokens, drop the rest, mark the logits stale."""
    llama._ctx.kv_cache_seq_rm(-1, n, -1)
    llama.n_tokens = n
    llama._requires_eval = True


def token_text(llama: Any, token: int) -> str:
    """The text of a special token (chat templates need the BOS/EOS strings)."""
    return str(llama._model.token_get_text(token))


# -- per-sequence KV state (KV-prefix artifacts) ------------------------------------------


def get_seq_state(llama: Any, seq_id: int = 0) -> bytes:
    """Copy the KV cells of one sequence out of a llama.cpp context
    (``llama_state_seq_get_data``: only the cells, not ``Llama.save_state``'s copy of
    the whole logits buffer)."""
    import llama_cpp

    ctx = llama.ctx
    size = int(llama_cpp.llama_state_seq_get_size(ctx, seq_id))
    buf = (ctypes.c_uint8 * size)()
    n = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq_id))
    if n <= 0 or n > size:
        raise RuntimeError(f"llama_state_seq_get_data copied {n} of {size} bytes")
    return ctypes.string_at(buf, n)


def set_seq_state(llama: Any, data: bytearray, tokens: Sequence[int], seq_id: int = 0) -> bool:
    """Replace the KV cache with a saved sequence state for ``tokens`` and tell the
    Python wrapper those tokens are evaluated. False (and an empty cache) if llama.cpp
    rejects the state."""
    import llama_cpp

    clear_cache(llama)
    if len(tokens) >= llama.n_ctx():
        return False
    buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
    if int(llama_cpp.llama_state_seq_set_data(llama.ctx, buf, len(data), seq_id)) == 0:
        clear_cache(llama)
        return False
    n = len(tokens)
    llama.input_ids[:n] = list(tokens)
    llama.n_tokens = n
    llama._requires_eval = True  # logits are not part of the state: decode at least 1 token
    return True


def eval_prefix(llama: Any, tokens: Sequence[int]) -> None:
    """Leave exactly ``tokens`` evaluated, reusing whatever prefix is cached."""
    cached = min(reusable_tokens(llama, tokens), len(tokens))
    keep_prefix(llama, cached)
    if cached < len(tokens):
        llama.eval(list(tokens[cached:]))


# -- raw decoding with every position's logits (predictability) ---------------------------


def target_logprobs(llama: Any, prefix: list[int], targets: list[int]) -> np.ndarray:
    """Evaluate ``prefix`` (reusing the cached part) and return log P of each target
    token given everything before it."""
    # evaluate all but the last prefix token normally; the last one opens the scored batch
    eval_prefix(llama, prefix[:-1])
    seq = [prefix[-1], *targets[:-1]]
    n_vocab = llama.n_vocab()
    out: list[np.ndarray] = []
    for i in range(0, len(seq), llama.n_batch):
        batch = seq[i : i + llama.n_batch]
        want = np.asarray(targets[i : i + llama.n_batch])
        n_past = llama.n_tokens
        llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[n_past : n_past + len(batch)] = batch
        llama.n_tokens += len(batch)
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(batch) * n_vocab,))
        rows = logits.reshape(len(batch), n_vocab).astype(np.float64)
        top = rows.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
        out.append(rows[np.arange(len(batch)), want] - lse)
    llama._requires_eval = True
    return np.concatenate(out)


# -- llama.cpp's own timers (benchmarks) ----------------------------------------------------


def perf_reset(llama: Any) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llama.ctx)


def perf(llama: Any) -> tuple[float, int, float, int]:
    """(prompt eval ms, prompt tokens, decode ms, decoded tokens) since :func:`perf_reset`."""
    import llama_cpp

    p = llama_cpp.llama_perf_context(llama.ctx)
    return float(p.t_p_eval_ms), int(p.n_p_eval), float(p.t_eval_ms), int(p.n_eval)
