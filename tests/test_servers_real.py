"""Sleep-time compute against a real OpenAI-compatible server: llama-cpp-python's,
serving the bundled SmolLM2 model on a free loopback port with a 2,048-token window
(the set-up where langchain-openai's ``max_completion_tokens`` was ignored and a
384-token cap came back as 1,577 tokens).

Only properties are asserted (caps honoured, usage accounted, no overflow, the window
learned): the model's wording differs between CPUs and thread counts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field
from redis_server import free_port

from sleeptime import Settings, SleepTime
from sleeptime.errors import ModelCallError
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.retry import RetryPolicy

pytestmark = pytest.mark.slow

pytest.importorskip("langchain_openai")
pytest.importorskip("llama_cpp")
pytest.importorskip("sse_starlette", reason="llama-cpp-python's server needs its [server] deps")
pytest.importorskip("starlette_context", reason="llama-cpp-python's server needs its [server] deps")

from sleeptime.llm.servers import ServerChatModel, server_model  # noqa: E402

WINDOW = 2048
SENTENCE = (
    "The bakery on Elm Street sells muffins for 3 dollars each and loaves of bread "
    "for 5 dollars each, and it opens at 7 in the morning on weekdays. "
)


class Recorded(ServerChatModel):
    """Keeps, for every call, the cap it asked for and the usage the server reported."""

    calls: list[tuple[int | None, int]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        usage = (result.llm_output or {}).get("token_usage") or {}
        self.calls.append((kwargs.get("max_tokens"), int(usage.get("completion_tokens", 0))))
        return result


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from sleeptime.llm.local import bundled_model_path

    port = free_port()
    threads = os.environ.get("SLEEPTIME_LOCAL_THREADS", "2")
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(bundled_model_path()),
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(WINDOW), "--n_threads", threads,
                "--seed", "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll the readiness route until it answers (loading takes a few seconds)."""
    with httpx.Client(timeout=2.0) as http:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"llama-cpp-python's server exited: {log.read_text()[-2000:]}")
            try:
                if http.get(f"{url}/models").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    pytest.fail("llama-cpp-python's server did not come up in 2 minutes")


def _model(url: str) -> Recorded:
    # the arguments server_model() uses, on the recording subclass
    return Recorded(
        model="default", base_url=url, api_key="not-needed", stream_usage=True, max_retries=0
    )


def test_sleep_and_ask_through_the_server_honour_every_cap(
    llama_server: str, sqlite_url: str
) -> None:
    model = _model(llama_server)
    st = SleepTime(
        model=model,
        database_url=sqlite_url,
        settings=Settings(model="fake", n_questions=2, sleep_max_tokens=64, context_window=WINDOW),
    )
    st.ingest("acme", "bakery", SENTENCE * 20)  # about 700 tokens
    report = st.sleep("acme", "bakery")
    assert report.learned  # the learn step produced notes

    answer = st.ask("acme", "bakery", "How much do two muffins cost in total?", verbosity=0)
    assert answer.usage.calls >= 1 or answer.source == "precomputed"

    assert model.server_profile.kind == "llama-cpp-python"
    assert model.calls, "no request reached the server"
    for cap, completion in model.calls:
        assert cap is not None, "a call went out without a token cap"
        assert completion <= cap, f"the server generated {completion} tokens past a cap of {cap}"
    # the ledger books exactly what the server reported
    ledger = st.ledger("acme", "bakery")
    assert ledger.sleep.completion_tokens + ledger.test.completion_tokens == sum(
        c for _, c in model.calls
    )


def test_a_context_longer_than_the_window_is_learned_in_chunks_without_overflow(
    llama_server: str, sqlite_url: str
) -> None:
    model = _model(llama_server)
    st = SleepTime(
        model=model,
        database_url=sqlite_url,
        settings=Settings(model="fake", n_questions=0, sleep_max_tokens=48, context_window=WINDOW),
    )
    st.ingest("acme", "long", SENTENCE * 90)  # about 3,100 tokens: more than the window
    assert model.get_num_tokens(SENTENCE * 90) > WINDOW  # counted by the server itself
    report = st.sleep("acme", "long")
    assert report.learned
    assert len(model.calls) >= 3  # chunks, then their merge
    assert all(completion <= cap for cap, completion in model.calls if cap is not None)


def test_the_servers_window_is_learned_from_its_overflow_error(llama_server: str) -> None:
    model = server_model(llama_server)  # nothing configured: llama-cpp-python reports none
    assert model.n_ctx is None
    gateway = ModelGateway(model=model, retry=RetryPolicy(attempts=1))
    too_long = [HumanMessage(SENTENCE * 90)]
    with pytest.raises(ModelCallError, match="maximum context length"):
        gateway.call(too_long, phase="test", step="answer", max_tokens=8)
    assert model.n_ctx == WINDOW
    assert not gateway.fits(too_long, 8)  # from now on the graphs plan for the window
