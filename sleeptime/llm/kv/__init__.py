"""KV-prefill artifacts: the llama.cpp KV state of a query prompt's stable prefix.

Reading the context (prefill) is most of the cost of answering a question about a long
context on a local model. At sleep time we evaluate the exact token prefix that the
query path will send (system prompt + notes + context, everything before the question),
copy the *per-sequence* KV state out of llama.cpp and keep it as a blob. At query time
the model restores the blob whose tokens are the longest prefix of the prompt and
evaluates only the question.

- :mod:`~sleeptime.llm.kv.prefill`: the sleep-time step (what to save, for whom);
- :mod:`~sleeptime.llm.kv.blobs`: blob files, the size cap and LRU eviction;
- :mod:`~sleeptime.llm.kv.fileformat`: the file layout and its checks;
- :mod:`~sleeptime.llm.kv.identity`: which model and build a state belongs to;
- the SQL index is :mod:`sleeptime.store.kv_index`, the llama.cpp calls are in
  :mod:`sleeptime.llm.llama_internals`.

Blobs are keyed by (namespace, model key, hash of the exact prefix token ids); the
namespace is an explicit argument of every save and lookup. Every load re-checks the
file (magic, header, token ids, CRC); a blob that is missing, truncated, corrupt or
rejected by llama.cpp is dropped and the prompt is evaluated cold, so a bad blob costs
time, never a wrong answer.
"""

from sleeptime.llm.kv.blobs import KVStore, kv_directory
from sleeptime.llm.kv.identity import model_key
from sleeptime.llm.kv.prefill import (
    PROBE_QUESTIONS,
    PrefillResult,
    attach_kv,
    prefill_missing,
    prefill_query_prefix,
    prewarm_messages,
    sleep_prefill,
    supports_prewarm,
)
from sleeptime.store.kv_index import KVBlob

__all__ = [
    "PROBE_QUESTIONS",
    "KVBlob",
    "KVStore",
    "PrefillResult",
    "attach_kv",
    "kv_directory",
    "model_key",
    "prefill_missing",
    "prefill_query_prefix",
    "prewarm_messages",
    "sleep_prefill",
    "supports_prewarm",
]
