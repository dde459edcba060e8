"""The sleep-time ``prefill`` step: leave the query prompt's prefix (system prompt +
notes + context, everything before the question) computed for the model, so a query
evaluates only the question.

For a model with :class:`~sleeptime.llm.capabilities.PrefixState` (llama.cpp) the KV
state of that exact token prefix is saved as a blob of the context's namespace; for an
OpenAI-compatible server one 1-token request fills the server's prefix cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sleeptime import prompts
from sleeptime.llm.capabilities import PrefillResult, PrefixState
from sleeptime.llm.kv.blobs import KVStore, kv_directory
from sleeptime.models import Budget
from sleeptime.store.sql import SQLStore

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from sleeptime.llm.gateway import ModelGateway
    from sleeptime.settings import Settings

#: Questions that begin with different kinds of characters: the query prompt's token
#: prefix shared by all of them cannot depend on how a real question begins.
PROBE_QUESTIONS = ("What is the total?", "(a) 12 + 7?", "¿Cuánto?", "1", '"x"')


def prefill_query_prefix(
    model: BaseChatModel,
    kv: KVStore,
    *,
    namespace: str,
    context: str | None,
    learned: str | None,
    context_id: str = "",
    version: int = 0,
    build: Callable[[str], list[BaseMessage]] | None = None,
) -> PrefillResult | None:
    """Evaluate and save, for ``namespace``, the KV state of the query prompt's stable
    prefix, exactly as :func:`sleeptime.prompts.query_messages` builds it (or
    ``build(question)``, for another prompt layout). None if ``model`` cannot save
    prefix states (servers are pre-warmed instead, see :func:`prewarm_messages`)."""
    if not isinstance(model, PrefixState) or not kv.enabled:
        return None
    if build is None:

        def build(q: str) -> list[BaseMessage]:
            return prompts.query_messages(q, context=context, learned=learned, verbosity=1)

    variants = [build(q) for q in PROBE_QUESTIONS]
    return model.save_prefix(
        kv, variants, namespace=namespace, context_id=context_id, version=version
    )


def prewarm_messages(context: str | None, learned: str | None) -> list[Any]:
    """A request whose prompt shares the query prompt's prefix (everything up to the
    question): sent with ``max_tokens=1`` it fills a server's prefix cache."""
    return prompts.query_messages("", context=context, learned=learned, verbosity=1)


def supports_prewarm(model: BaseChatModel) -> bool:
    """True when a pre-warm request can still be in the server's prefix cache when the
    first question comes: a server that keeps many prefixes (vLLM, SGLang, OpenAI; see
    ``llm/servers.py``), not one whose next request evicts it (llama-cpp-python, a
    single-slot llama.cpp server). A fake or an in-process model has nothing to warm."""
    helps = getattr(model, "prewarm_helps", None)
    if isinstance(helps, bool):
        return helps
    return (
        getattr(model, "openai_api_base", None) is not None or type(model).__name__ == "ChatOpenAI"
    )


def attach_kv(model: BaseChatModel, store: SQLStore, settings: Settings) -> KVStore | None:
    """Give a model that saves prefix states the blob store of ``store`` (idempotent);
    None for other models or when KV prefill is switched off."""
    if not isinstance(model, PrefixState):
        return None
    if not settings.kv_prefill or settings.kv_max_bytes <= 0:
        model.attach_kv(None)
        return None
    kv = model.kv
    if (
        kv is None
        or kv.store is not store
        or kv.directory != kv_directory(store, settings)
        or kv.max_bytes != settings.kv_max_bytes
    ):
        kv = KVStore.from_settings(store, settings)
        model.attach_kv(kv)
    return kv


def prefill_missing(
    store: SQLStore,
    gateway: ModelGateway,
    settings: Settings,
    *,
    namespace: str,
    context_id: str,
    version: int,
) -> bool:
    """True when a finished version should get its KV prefix state (again): the model
    saves prefix states, KV prefill is on, and no state is stored (e.g. evicted under
    the size cap), so a re-run of sleep-time rebuilds just that."""
    model = gateway.model
    kv = attach_kv(model, store, settings)
    if kv is None or not kv.enabled or not isinstance(model, PrefixState):
        return False
    return not kv.has(namespace, context_id, version, model.model_key())


def sleep_prefill(
    store: SQLStore,
    gateway: ModelGateway,
    settings: Settings,
    *,
    namespace: str,
    context_id: str,
    version: int,
    context: str | None,
    learned: str | None,
) -> str:
    """Leave the query prompt's prefix computed for the model behind ``gateway`` -- a
    saved KV state of ``namespace`` (llama.cpp) or a warm server prefix cache
    (OpenAI-compatible servers, one 1-token request, booked as sleep-time). Mirrors the
    query path's choice to drop the raw context when it does not fit (``context`` None:
    the query path sends passages, not the text). Returns what was done, for progress
    output."""
    raw: str | None = context if settings.include_raw_context else None
    if raw is not None:
        probe = prewarm_messages(raw, learned)
        if not gateway.fits(probe, Budget(verbosity=settings.default_verbosity).token_cap):
            raw = None
    if raw is None and not learned:
        return "nothing to prefill"
    model = gateway.model
    kv = attach_kv(model, store, settings)
    if kv is not None:
        res = prefill_query_prefix(
            model,
            kv,
            namespace=namespace,
            context=raw,
            learned=learned,
            context_id=context_id,
            version=version,
        )
        if res is None or res.blob is None:
            return "KV prefill skipped (prompt too long for the window, or over the size cap)"
        return f"saved the KV state of {res.n_tokens} prefix tokens ({res.blob.size_bytes:,} bytes)"
    if not settings.prewarm or not supports_prewarm(model):
        return "no prefix cache to fill"

    record = store.recorder(namespace, context_id, version, gateway.name)
    gateway.call(
        prewarm_messages(raw, learned),
        phase="sleep",
        step="prewarm",
        max_tokens=1,
        recorder=record,
        namespace=namespace,
    )
    return "pre-warmed the server's prefix cache"
