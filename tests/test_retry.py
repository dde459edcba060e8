"""Retry policy: transient errors are retried with backoff, permanent ones are not."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from sleeptime import FakeChatModel, ModelCallError, ModelUnavailable, RetryPolicy
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.retry import is_transient

FAST = RetryPolicy(attempts=4, initial=0.0, max_wait=0.0, jitter=0.0)


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class RateLimitError(Exception):
    """Named like the openai SDK's error, with no status attribute."""


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class SDKError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"sdk {status}")
        self.response = Response(status)


@pytest.mark.parametrize(
    "exc,expected",
    [
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (HTTPError(429), True),
        (HTTPError(500), True),
        (HTTPError(503), True),
        (HTTPError(408), True),
        (SDKError(502), True),
        (RateLimitError(), True),
        (HTTPError(400), False),
        (HTTPError(401), False),
        (HTTPError(404), False),
        (SDKError(422), False),
        (ValueError("context window exceeded"), False),
        (KeyError("x"), False),
    ],
)
def test_classification(exc: BaseException, expected: bool) -> None:
    assert is_transient(exc) is expected


def call(model: FakeChatModel, policy: RetryPolicy = FAST) -> str:
    gw = ModelGateway(model=model, retry=policy)
    return gw.call([HumanMessage("hi")], phase="test", step="t").text


def test_transient_errors_are_retried_until_success() -> None:
    model = FakeChatModel(responses=["ok"], errors=[TimeoutError(), HTTPError(429), HTTPError(503)])
    assert call(model) == "ok"
    assert model.calls == 4


def test_permanent_error_is_not_retried() -> None:
    model = FakeChatModel(responses=["never"], errors=[HTTPError(400)])
    with pytest.raises(ModelCallError, match="HTTP 400"):
        call(model)
    assert model.calls == 1


def test_transient_errors_give_up_after_the_attempts() -> None:
    model = FakeChatModel(responses=["late"], errors=[HTTPError(500)] * 5)
    with pytest.raises(ModelUnavailable, match="after 3 attempts: HTTPError: HTTP 500") as info:
        call(model, RetryPolicy(attempts=3, initial=0.0, max_wait=0.0, jitter=0.0))
    assert model.calls == 3
    assert isinstance(info.value.__cause__, HTTPError)
    assert is_transient(info.value)  # workers retry the job later


def test_backoff_waits_grow() -> None:
    policy = RetryPolicy(attempts=5, initial=0.01, max_wait=1.0, jitter=0.0)
    retrying = policy.retrying()
    waits = []
    for n in range(1, 5):
        state = type("S", (), {"attempt_number": n})()
        waits.append(retrying.wait(state))  # type: ignore[arg-type]
    assert waits == sorted(waits) and waits[-1] > waits[0]


def test_usage_is_counted_when_the_provider_reports_none() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    gw = ModelGateway(model=FakeListChatModel(responses=["The answer is 4."]), retry=FAST)
    res = gw.call([HumanMessage("How many apples are there?")], phase="test", step="t")
    assert res.usage.completion_tokens > 0 and res.usage.prompt_tokens > 0
