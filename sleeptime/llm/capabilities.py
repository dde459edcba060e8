"""What a chat model can do beyond ``invoke``, as protocols, so that the budget, KV
and gateway code ask a model for a capability instead of importing its class.

The local llama.cpp model (:class:`sleeptime.llm.local.LocalChatModel`) implements
both; chat APIs implement neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from sleeptime.llm.kv.blobs import KVStore
    from sleeptime.store.kv_index import KVBlob


@dataclass(frozen=True)
class PrefillResult:
    """What saving a prefix's KV state did (:meth:`PrefixState.save_prefix`; the
    sleep-time prefill step, :mod:`sleeptime.llm.kv.prefill`, re-exports it)."""

    blob: KVBlob | None
    n_tokens: int
    seconds: float


@runtime_checkable
class BudgetForcing(Protocol):
    """A raw-completion model that spends a thinking budget itself (s1 budget forcing:
    cut thinking at ``think_tokens``, or extend it with "Wait")."""

    def with_thinking(self, think_tokens: int, extend: int) -> BaseChatModel:
        """A copy of the model that forces this budget on every call."""
        ...


@runtime_checkable
class PrefixState(Protocol):
    """A model evaluated in this process whose prompt-prefix KV state can be saved and
    restored (KV-prefill artifacts). It keeps an in-process prompt cache too, so its
    ``invoke`` takes a ``namespace`` keyword: the cache and the saved states are only
    reused within one namespace."""

    @property
    def kv(self) -> KVStore | None: ...

    def attach_kv(self, kv: KVStore | None) -> None:
        """Restore saved prefix states from ``kv`` before decoding (None: never)."""
        ...

    def model_key(self) -> str:
        """Identity of the weights and the inference build (a state fits only these)."""
        ...

    def save_prefix(
        self,
        kv: KVStore,
        variants: list[list[BaseMessage]],
        *,
        namespace: str,
        context_id: str = "",
        version: int = 0,
    ) -> PrefillResult | None:
        """Evaluate the prefix shared by ``variants`` and save its state for ``namespace``."""
        ...
