"""OpenAI-compatible inference servers: what each one honours, and a chat model that
sends its requests in that form.

"OpenAI-compatible" covers servers that differ where it matters to a token budget:

- the completion cap: OpenAI's API wants ``max_completion_tokens`` (and langchain-openai
  always sends that name), but llama-cpp-python's server ignores it and generates until
  its window is full; llama.cpp's server, vLLM, SGLang and Ollama all honour
  ``max_tokens``;
- the context window: vLLM and SGLang report ``max_model_len`` in ``/v1/models``,
  llama.cpp's server reports ``n_ctx`` in ``/props``, llama-cpp-python and Ollama's
  ``/v1`` report nothing (configure ``SLEEPTIME_CONTEXT_WINDOW``; the window is also
  learned from the server's first "maximum context length is N" error);
- token counting: tiktoken is the wrong tokenizer for a local model (and needs a
  download); vLLM, llama.cpp's server and llama-cpp-python expose their own tokenizer;
- the prefix cache: vLLM, SGLang and OpenAI keep many prompt prefixes, so a sleep-time
  pre-warm request helps; llama-cpp-python keeps only the last prompt and llama.cpp's
  server one per slot, so the next unrelated request evicts a pre-warmed prefix;
- constrained JSON: ``response_format`` ``json_schema`` (OpenAI, vLLM, SGLang, Ollama,
  llama.cpp's server) or ``json_object`` with a ``schema`` (llama-cpp-python).

:func:`server_model` probes the server once (lazily, at the first call) to tell which
it is, unless ``SLEEPTIME_SERVER_KIND`` says so.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import PrivateAttr, SecretStr

from sleeptime.errors import UnknownModel
from sleeptime.llm.estimate import estimate_tokens
from sleeptime.llm.gateway import json_schema_format

log = logging.getLogger("sleeptime.llm")

ServerKind = Literal[
    "openai", "vllm", "sglang", "llama-server", "llama-cpp-python", "ollama", "generic"
]
SERVER_KINDS: tuple[str, ...] = get_args(ServerKind)

#: How a server is told to decode JSON matching a schema.
JsonForm = Literal["json_schema", "json_object", "none"]

#: The OpenAI-style context-overflow message (OpenAI, vLLM and llama-cpp-python's server
#: all phrase it this way); its number is the server's window.
_OVERFLOW = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)


@dataclass(frozen=True)
class ServerTraits:
    """What one kind of server honours (see the module docstring)."""

    cap_field: str
    json_form: JsonForm
    #: True when the server keeps many prompt prefixes, so a pre-warm survives until the
    #: first question; False when the next unrelated request evicts it.
    many_prefixes: bool
    #: Paths (from the server root) a tokenizer endpoint may have, in the order tried
    #: (versions moved it), and its request field.
    tokenize_paths: tuple[str, ...] = ()
    tokenize_field: str = "input"


TRAITS: dict[str, ServerTraits] = {
    "openai": ServerTraits("max_completion_tokens", "json_schema", many_prefixes=True),
    "vllm": ServerTraits("max_tokens", "json_schema", True, ("/tokenize",), "prompt"),
    "sglang": ServerTraits("max_tokens", "json_schema", many_prefixes=True),
    "llama-server": ServerTraits("max_tokens", "json_schema", False, ("/tokenize",), "content"),
    "llama-cpp-python": ServerTraits(
        "max_tokens", "json_object", False, ("/extras/tokenize/count", "/tokenize/count")
    ),
    "ollama": ServerTraits("max_tokens", "json_schema", many_prefixes=False),
    "generic": ServerTraits("max_tokens", "none", many_prefixes=False),
}


@dataclass(frozen=True)
class ServerProfile:
    """What a probe learned about one server."""

    kind: str
    model: str
    context_window: int | None = None
    #: Where the window came from: "configured", "/v1/models", "/props", "error", or "".
    window_source: str = ""
    #: Parallel slots (llama.cpp's server): each keeps its own last prompt.
    slots: int = 1
    #: False when the probe could not reach the server (it is tried again later).
    reached: bool = True

    @property
    def traits(self) -> ServerTraits:
        return TRAITS[self.kind]

    @property
    def prewarm_helps(self) -> bool:
        """A pre-warmed prefix is still cached when the first question comes only on a
        server that keeps several prefixes."""
        return self.traits.many_prefixes or (self.kind == "llama-server" and self.slots > 1)


def server_root(base_url: str) -> str:
    """``http://h:8000/v1`` -> ``http://h:8000`` (tokenizer and props routes live there)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _kind_of(base_url: str, models: dict[str, Any]) -> str:
    host = urlsplit(base_url).hostname or ""
    if host.endswith("openai.com"):
        return "openai"
    data = models.get("data") or [{}]
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    owner = str(first.get("owned_by", "")).lower()
    return {
        "vllm": "vllm",
        "sglang": "sglang",
        "llamacpp": "llama-server",
        "me": "llama-cpp-python",
        "library": "ollama",
        "ollama": "ollama",
    }.get(owner, "generic")


def probe_server(
    base_url: str,
    *,
    api_key: str | None = None,
    kind: str = "auto",
    model: str | None = None,
    window: int | None = None,
    timeout: float = 5.0,
) -> ServerProfile:
    """Ask the server what it is, which model it serves and how long its window is.

    Never raises for an unreachable server: the profile then says ``reached=False``
    and the caller probes again before a later call."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = base_url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout, headers=headers) as http:
            resp = http.get(f"{base}/models")
            models: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
            server_kind = kind if kind != "auto" else _kind_of(base, models)
            data = models.get("data") if isinstance(models.get("data"), list) else []
            first = data[0] if data and isinstance(data[0], dict) else {}
            name = model or str(first.get("id") or "default")
            profile = ServerProfile(kind=server_kind, model=name)
            if window is not None:
                return replace(profile, context_window=window, window_source="configured")
            max_len = first.get("max_model_len")
            if isinstance(max_len, int) and max_len > 0:
                return replace(profile, context_window=max_len, window_source="/v1/models")
            if server_kind == "llama-server":
                return _llama_server_props(http, base, profile)
            return profile
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("could not probe the model server: %s", type(exc).__name__)
        fallback = "generic" if kind == "auto" else kind
        return ServerProfile(
            kind=fallback,
            model=model or "default",
            context_window=window,
            window_source="configured" if window else "",
            reached=False,
        )


def _llama_server_props(http: httpx.Client, base: str, profile: ServerProfile) -> ServerProfile:
    resp = http.get(f"{server_root(base)}/props")
    if resp.status_code != 200:
        return profile
    props = resp.json()
    settings = props.get("default_generation_settings") or {}
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    slots = props.get("total_slots")
    return replace(
        profile,
        context_window=n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None,
        window_source="/props" if isinstance(n_ctx, int) and n_ctx > 0 else "",
        slots=slots if isinstance(slots, int) and slots > 0 else 1,
    )


class ServerChatModel(BaseChatOpenAI):
    """A langchain-openai chat model that speaks to one OpenAI-compatible server in
    the form that server honours: the token cap under the name it reads, its own
    tokenizer for counting, its context window, and JSON mode as it accepts it.

    Build it with :func:`server_model`; the server is probed at the first use."""

    server_kind: str = "auto"
    configured_window: int | None = None
    _profile: ServerProfile | None = PrivateAttr(default=None)
    _learned_window: int | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _http: httpx.Client | None = PrivateAttr(default=None)
    _tokenize_path: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "sleeptime-openai-compatible"

    @property
    def base_url(self) -> str:
        return str(self.openai_api_base or "https://api.openai.com/v1")

    def _key(self) -> str | None:
        key = self.openai_api_key
        return key.get_secret_value() if isinstance(key, SecretStr) else None

    @property
    def server_profile(self) -> ServerProfile:
        """The server's profile, probed once (again later if it was unreachable)."""
        known = self._profile
        if known is not None and known.reached:  # every request reads it: no lock
            return known
        with self._lock:
            if self._profile is None or not self._profile.reached:
                self._profile = probe_server(
                    self.base_url,
                    api_key=self._key(),
                    kind=self.server_kind,
                    model=self.model_name if self.model_name != "default" else None,
                    window=self.configured_window,
                )
                if self._profile.reached:
                    self.model_name = self._profile.model
                    log.info(
                        "model server %s: %s, model %s, window %s (%s)",
                        self.base_url,
                        self._profile.kind,
                        self._profile.model,
                        self._profile.context_window or "unknown",
                        self._profile.window_source or "not reported",
                    )
            return self._profile

    @property
    def n_ctx(self) -> int | None:
        """The server's context window: configured, reported, or learned from its first
        context-overflow error; None while unknown."""
        return self.server_profile.context_window or self._learned_window

    @property
    def prewarm_helps(self) -> bool:
        return self.server_profile.prewarm_helps

    def json_kwargs(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Invocation kwargs asking this server for JSON matching ``schema``."""
        form = self.server_profile.traits.json_form
        if form == "json_object":
            return {"response_format": {"type": "json_object", "schema": schema}}
        if form == "json_schema":
            return json_schema_format(schema)
        return {}

    def _get_request_payload(
        self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        # langchain-openai's payload hook (private, hence the <2 pin on langchain-openai)
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        cap = payload.pop("max_completion_tokens", None)
        cap = payload.pop("max_tokens", None) if cap is None else cap
        payload.pop("max_tokens", None)
        if cap is not None:
            payload[self.server_profile.traits.cap_field] = cap
        payload["model"] = self.model_name
        return payload

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._learn_window(exc)
            raise

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        try:
            yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._learn_window(exc)
            raise

    def _learn_window(self, exc: BaseException) -> None:
        match = _OVERFLOW.search(str(exc))
        if match and self.server_profile.context_window is None:
            self._learned_window = int(match.group(1))
            log.warning(
                "model server %s has a %s-token window (from its error); set "
                "SLEEPTIME_CONTEXT_WINDOW=%s to plan for it from the start",
                self.base_url,
                match.group(1),
                match.group(1),
            )

    def get_num_tokens(self, text: str) -> int:
        """The server's own token count where it has a tokenizer endpoint; else a
        conservative estimate (never tiktoken: wrong tokenizer, and it downloads)."""
        traits = self.server_profile.traits
        if traits.tokenize_paths and self.server_profile.reached:
            count = self._server_count(text, traits)
            if count is not None:
                return count
        return estimate_tokens(text)

    def _server_count(self, text: str, traits: ServerTraits) -> int | None:
        body: dict[str, Any] = {traits.tokenize_field: text}
        if self.server_profile.kind == "vllm":
            body["model"] = self.model_name
        paths = [self._tokenize_path] if self._tokenize_path else list(traits.tokenize_paths)
        reply: dict[str, Any] = {}
        try:
            if self._http is None:
                key = self._key()
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                self._http = httpx.Client(timeout=10.0, headers=headers)
            for path in paths:
                resp = self._http.post(f"{server_root(self.base_url)}{path}", json=body)
                if resp.status_code == 200:
                    self._tokenize_path = path
                    reply = resp.json()
                    break
        except (httpx.HTTPError, ValueError):
            return None
        if isinstance(reply.get("count"), int):
            return int(reply["count"])
        tokens = reply.get("tokens")
        return len(tokens) if isinstance(tokens, list) else None

    def get_num_tokens_from_messages(
        self, messages: Sequence[BaseMessage], tools: Any = None, **kwargs: Any
    ) -> int:
        # role markers of a chat template: a few tokens per message
        return sum(self.get_num_tokens(str(m.content)) + 8 for m in messages)


def is_openai_host(base_url: str | None) -> bool:
    host = urlsplit(base_url or "https://api.openai.com/v1").hostname or ""
    return host.endswith("openai.com")


def server_model(
    base_url: str,
    model: str | None = None,
    *,
    kind: str = "auto",
    window: int | None = None,
    temperature: float | None = None,
) -> ServerChatModel:
    """A chat model for the OpenAI-compatible server at ``base_url`` (its ``/v1`` root).

    ``model`` defaults to the first model the server lists; ``kind`` (one of
    :data:`SERVER_KINDS`, or "auto") skips detection; ``window`` is the context window
    in tokens when the server does not report it. The API key is ``OPENAI_API_KEY``
    (local servers accept any)."""
    if kind != "auto" and kind not in SERVER_KINDS:
        raise UnknownModel(
            f"unknown server kind {kind!r}: use auto or one of {', '.join(SERVER_KINDS)}"
        )
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UnknownModel(
            f"server URL {base_url!r} must be http(s)://host:port/v1 (the OpenAI-compatible root)"
        )
    key = os.environ.get("OPENAI_API_KEY") or "not-needed"
    return ServerChatModel(
        model=model or "default",
        base_url=base_url.rstrip("/"),
        api_key=SecretStr(key),
        server_kind=kind,
        configured_window=window,
        temperature=temperature,
        stream_usage=True,
        max_retries=0,  # the gateway is the one retry layer
    )
