"""OpenAI-compatible servers: requests in the form each server honours.

A small real HTTP server stands in for each kind of server: it answers ``/v1/models``
the way that server does (``owned_by``, ``max_model_len``, ``/props``), records every
chat request's JSON body and answers it, so the tests check what goes over the wire.
The real thing (llama-cpp-python's server on the bundled model) is in
``test_servers_real.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sleeptime import Settings, SleepTime
from sleeptime.errors import ModelCallError, UnknownModel
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.kv.prefill import supports_prewarm
from sleeptime.llm.resolve import resolve_model
from sleeptime.llm.retry import RetryPolicy
from sleeptime.llm.servers import ServerChatModel, probe_server, server_model

pytest.importorskip("langchain_openai")

OWNER = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llama-server": "llamacpp",
    "llama-cpp-python": "me",
    "ollama": "library",
    "generic": "someone",
}


@dataclass
class Scripted:
    """What the scripted server says about itself, and what it was sent."""

    owner: str = "me"
    max_model_len: int | None = None
    props: dict[str, Any] | None = None
    #: prompts longer than this many characters get the OpenAI-style overflow error
    overflow_chars: int | None = None
    window_in_error: int = 512
    tokenize_route: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokenize_calls: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def _handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            script.auth.append(self.headers.get("Authorization", ""))
            if self.path == "/v1/models":
                model: dict[str, Any] = {"id": "served-model", "owned_by": script.owner}
                if script.max_model_len:
                    model["max_model_len"] = script.max_model_len
                self._reply(200, {"object": "list", "data": [model]})
            elif self.path == "/props" and script.props is not None:
                self._reply(200, script.props)
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            script.auth.append(self.headers.get("Authorization", ""))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == script.tokenize_route:
                script.tokenize_calls.append(body)
                text = next(iter(v for k, v in body.items() if k != "model"))
                self._reply(200, {"count": len(text.split())})
                return
            if self.path != "/v1/chat/completions":
                self._reply(404, {"error": "not found"})
                return
            script.requests.append(body)
            chars = sum(len(m["content"]) for m in body["messages"])
            if script.overflow_chars is not None and chars > script.overflow_chars:
                message = (
                    f"This model's maximum context length is {script.window_in_error} "
                    f"tokens. However, you requested {chars} tokens."
                )
                self._reply(400, {"error": {"message": message, "type": "invalid_request_error"}})
                return
            self._reply(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Final answer: 7"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
                },
            )

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Scripted) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def gateway(model: ServerChatModel, window: int | None = None) -> ModelGateway:
    return ModelGateway(model=model, retry=RetryPolicy(attempts=1), window=window)


def _one_call(model: ServerChatModel, max_tokens: int = 32) -> None:
    gateway(model).call(
        [("user", "What is three plus four?")],  # type: ignore[list-item]
        phase="test",
        step="answer",
        max_tokens=max_tokens,
    )


@pytest.mark.parametrize("kind", sorted(OWNER))
def test_the_token_cap_goes_under_the_name_the_server_reads(serve: Any, kind: str) -> None:
    script = Scripted(owner=OWNER[kind])
    model = server_model(serve(script))
    _one_call(model, max_tokens=32)
    assert model.server_profile.kind == kind
    (body,) = script.requests
    # every one of these servers reads max_tokens; llama-cpp-python's ignores
    # max_completion_tokens (langchain-openai's name for it) and fills its window
    assert body["max_tokens"] == 32
    assert "max_completion_tokens" not in body
    assert body["model"] == "served-model"  # the model the server lists


def test_openai_itself_gets_max_completion_tokens(serve: Any) -> None:
    script = Scripted(owner="system")
    model = server_model(serve(script), "gpt-x", kind="openai")
    _one_call(model, max_tokens=20)
    (body,) = script.requests
    assert body["max_completion_tokens"] == 20
    assert "max_tokens" not in body
    assert body["model"] == "gpt-x"


def test_context_window_is_discovered_where_the_server_reports_it(serve: Any) -> None:
    vllm = server_model(serve(Scripted(owner="vllm", max_model_len=4096)))
    assert vllm.n_ctx == 4096
    assert vllm.server_profile.window_source == "/v1/models"
    assert gateway(vllm).context_window == 4096

    props = {"default_generation_settings": {"n_ctx": 3072}, "total_slots": 4}
    llama_server = server_model(serve(Scripted(owner="llamacpp", props=props)))
    assert llama_server.n_ctx == 3072
    assert llama_server.server_profile.slots == 4

    silent = server_model(serve(Scripted(owner="me")))
    assert silent.n_ctx is None  # llama-cpp-python does not say: configure it


def test_a_configured_window_wins_over_the_reported_one(serve: Any) -> None:
    model = server_model(serve(Scripted(owner="vllm", max_model_len=4096)), window=1024)
    assert model.n_ctx == 1024
    assert model.server_profile.window_source == "configured"


def test_the_window_is_learned_from_the_first_overflow_error(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    script = Scripted(owner="me", overflow_chars=10, window_in_error=2048)
    model = server_model(serve(script))
    assert model.n_ctx is None
    with caplog.at_level(logging.WARNING, logger="sleeptime.llm"), pytest.raises(ModelCallError):
        _one_call(model)
    assert model.n_ctx == 2048
    assert "SLEEPTIME_CONTEXT_WINDOW=2048" in caplog.text
    assert gateway(model).context_window == 2048


def test_tokens_are_counted_by_the_servers_own_tokenizer(serve: Any) -> None:
    script = Scripted(owner="me", tokenize_route="/extras/tokenize/count")
    model = server_model(serve(script))
    assert model.get_num_tokens("one two three four five") == 5
    assert script.tokenize_calls == [{"input": "one two three four five"}]

    vllm = Scripted(owner="vllm", tokenize_route="/tokenize")
    counted = server_model(serve(vllm))
    assert counted.get_num_tokens("a b c") == 3
    assert vllm.tokenize_calls == [{"prompt": "a b c", "model": "served-model"}]


def test_without_a_tokenizer_the_estimate_does_not_undercount_subwords(serve: Any) -> None:
    model = server_model(serve(Scripted(owner="library")))
    word = "antidisestablishmentarianism"  # one word, several BPE tokens
    assert model.get_num_tokens(word) >= len(word) // 4


@pytest.mark.parametrize(
    ("kind", "form"),
    [("llama-cpp-python", "json_object"), ("vllm", "json_schema"), ("generic", None)],
)
def test_json_mode_in_the_form_the_server_accepts(serve: Any, kind: str, form: str | None) -> None:
    script = Scripted(owner=OWNER[kind])
    model = server_model(serve(script))
    schema = {"title": "questions", "type": "object", "properties": {"q": {"type": "string"}}}
    gateway(model).call(
        [("user", "List questions")],  # type: ignore[list-item]
        phase="sleep",
        step="predict",
        max_tokens=16,
        json_schema=schema,
    )
    fmt = script.requests[0].get("response_format")
    if form is None:
        assert fmt is None
    else:
        assert fmt["type"] == form
        carried = fmt.get("schema") or fmt["json_schema"]["schema"]
        assert carried == schema


def test_prewarm_only_where_the_prefix_survives(serve: Any) -> None:
    # one cached prompt: the next unrelated request evicts a pre-warmed prefix
    assert not supports_prewarm(server_model(serve(Scripted(owner="me"))))
    single = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 1}
    assert not supports_prewarm(server_model(serve(Scripted(owner="llamacpp", props=single))))
    # prefix caches with many entries
    assert supports_prewarm(server_model(serve(Scripted(owner="vllm"))))
    several = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 4}
    assert supports_prewarm(server_model(serve(Scripted(owner="llamacpp", props=several))))


def test_sleep_sends_no_prewarm_to_a_one_prompt_server(serve: Any, sqlite_url: str) -> None:
    script = Scripted(owner="me")
    st = SleepTime(
        model=server_model(serve(script)),
        database_url=sqlite_url,
        settings=Settings(model="fake", n_questions=0, prewarm=True),
    )
    st.ingest("acme", "d", "Ann has 3 apples. Bob has 4 apples.")
    st.sleep("acme", "d")
    assert script.requests, "sleep-time made no model call"
    assert all(r.get("max_tokens") != 1 for r in script.requests)


def test_an_unreachable_server_is_probed_again(serve: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = probe_server(f"http://127.0.0.1:{port}/v1", timeout=0.5)
    assert not profile.reached
    assert profile.kind == "generic"


def test_server_spec_and_openai_base_url_resolve_to_the_compat_model(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve(Scripted(owner="vllm", max_model_len=8192))
    model = resolve_model(f"server:{url}#my-model", Settings(model="fake"))
    assert isinstance(model, ServerChatModel)
    assert model.model_name == "my-model"

    monkeypatch.setenv("OPENAI_BASE_URL", url)
    via_env = resolve_model("openai:served-model", Settings(model="fake"))
    assert isinstance(via_env, ServerChatModel)
    assert via_env.n_ctx == 8192

    configured = resolve_model(f"server:{url}", Settings(model="fake", context_window=2048))
    assert isinstance(configured, ServerChatModel)
    assert configured.n_ctx == 2048


@pytest.mark.parametrize("spec", ["server:ftp://h/v1", "server:", "server:localhost:8000"])
def test_a_bad_server_url_is_one_clear_error(spec: str) -> None:
    with pytest.raises(UnknownModel, match="http"):
        resolve_model(spec, Settings(model="fake"))


def test_the_api_key_is_sent_but_never_shown(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    script = Scripted(owner="vllm")
    with caplog.at_level(logging.DEBUG):
        model = server_model(serve(script))
        _one_call(model)
    assert "Bearer sk-secret-123" in script.auth
    assert "sk-secret-123" not in repr(model)
    assert "sk-secret-123" not in caplog.text
