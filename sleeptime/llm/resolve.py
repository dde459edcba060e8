"""Model specs -> LangChain chat models."""

from __future__ import annotations

import os
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from sleeptime.errors import UnknownModel
from sleeptime.redact import redact_text, redact_url
from sleeptime.settings import Settings

ModelSpec = str | BaseChatModel


def describe_spec(spec: ModelSpec) -> str:
    """A model spec for a log line, without resolving it: the string (a server URL's
    password hidden), or a chat model object's class name."""
    if not isinstance(spec, str):
        return type(spec).__name__
    kind, sep, rest = spec.strip().partition(":")
    if sep and kind == "server":
        url, hash_, name = rest.partition("#")
        return f"server:{redact_url(url)}{hash_}{name}"
    return redact_text(spec.strip())


def resolve_model(spec: ModelSpec, settings: Settings | None = None) -> BaseChatModel:
    """Accept a chat model, ``"local"`` (offline llama.cpp, optionally
    ``"local:/path/model.gguf"``), ``"fake"`` (deterministic, for tests and overhead
    benchmarks), ``"server:http://host:port/v1"`` (an OpenAI-compatible server: vLLM,
    SGLang, Ollama, llama.cpp's or llama-cpp-python's server; ``#name`` picks a model)
    or any ``init_chat_model`` string such as ``"openai:gpt-4o-mini"``. With
    ``OPENAI_BASE_URL`` pointing anywhere but OpenAI, ``"openai:NAME"`` is that server's
    model NAME, spoken to in the form the server honours (``llm/servers.py``)."""
    settings = settings or Settings()
    if isinstance(spec, BaseChatModel):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownModel(f"model must be a string spec or a BaseChatModel, not {spec!r}")
    spec = spec.strip()
    if spec == "fake" or spec.startswith("fake?"):
        from urllib.parse import parse_qs

        from sleeptime.llm.fake import FakeChatModel

        # "fake?latency=0.05": each call sleeps that long (worker tests and benchmarks)
        opts = parse_qs(spec.partition("?")[2])
        try:
            latency = float(opts.get("latency", ["0"])[0])
        except ValueError as exc:
            raise UnknownModel(f"bad fake model spec {spec!r}: latency must be seconds") from exc
        return FakeChatModel(latency_s=latency)
    if spec == "local" or spec.startswith("local:"):
        from sleeptime.llm.local import LocalChatModel, bundled_model_path

        path = spec.partition(":")[2] or settings.local_model_path or bundled_model_path()
        if not Path(path).is_file():
            raise UnknownModel(f"local model file not found: {path}")
        return LocalChatModel(
            model_path=str(path),
            n_ctx=settings.local_n_ctx,
            n_threads=settings.local_threads,
            probe=settings.local_probe,
        )
    if spec.startswith("server:"):
        url, _, name = spec.partition(":")[2].partition("#")
        return _server(url, name or None, settings)
    base_url = os.environ.get("OPENAI_BASE_URL")
    if spec.startswith("openai:") and base_url:
        from sleeptime.llm.servers import is_openai_host

        if not is_openai_host(base_url):
            return _server(base_url, spec.partition(":")[2] or None, settings)
    if ":" not in spec:
        raise UnknownModel(
            f"unknown model {spec!r}: use 'local', 'fake', 'provider:model' "
            "(e.g. 'openai:gpt-4o-mini') or pass a BaseChatModel"
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise UnknownModel(
            f"model {spec!r} needs the provider packages: pip install 'sleeptime[openai]'"
        ) from exc
    try:
        return init_chat_model(spec)
    except Exception as exc:  # init_chat_model raises ValueError/ImportError/others
        raise UnknownModel(f"cannot load model {spec!r}: {exc}") from exc


def _server(url: str, name: str | None, settings: Settings) -> BaseChatModel:
    try:
        from sleeptime.llm.servers import server_model
    except ImportError as exc:
        raise UnknownModel(
            "an OpenAI-compatible server needs langchain-openai: pip install 'sleeptime[openai]'"
        ) from exc
    return server_model(
        url.strip(), name, kind=settings.server_kind, window=settings.context_window
    )
