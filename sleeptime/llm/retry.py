"""Retry policy: transient failures (timeouts, connection resets, 408/429/5xx) are
retried with exponential backoff and jitter; anything else (4xx, bad requests,
context-window overflows) fails at once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from sleeptime.errors import ModelUnavailable
from sleeptime.settings import Settings, default

_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAMES = (
    "Timeout",
    "RateLimit",
    "APIConnectionError",
    "ServiceUnavailable",
    "InternalServerError",
    "Overloaded",
    "ConnectionError",
    "RemoteProtocolError",
)


def status_code(exc: BaseException) -> int | None:
    """HTTP status carried by provider SDK errors (openai, anthropic, httpx), if any."""
    for obj in (exc, getattr(exc, "response", None)):
        code = getattr(obj, "status_code", None) if obj is not None else None
        if isinstance(code, int):
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True when trying again later may succeed."""
    if isinstance(exc, ModelUnavailable):
        return True
    code = status_code(exc)
    if code is not None:
        return code in _TRANSIENT_STATUS or code >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    return any(part in name for part in _TRANSIENT_NAMES)


class RetryPolicy(BaseModel):
    """How hard to retry a transient model failure (defaults: ``SLEEPTIME_RETRY_*``)."""

    attempts: int = Field(default("retry_attempts"), ge=1)
    initial: float = Field(default("retry_wait_s"), ge=0.0)
    max_wait: float = Field(default("retry_max_wait_s"), ge=0.0)
    jitter: float = Field(default("retry_jitter_s"), ge=0.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=settings.retry_attempts,
            initial=settings.retry_wait_s,
            max_wait=settings.retry_max_wait_s,
            jitter=settings.retry_jitter_s,
        )

    def retrying(self, **overrides: Any) -> Retrying:
        """A tenacity ``Retrying`` with this policy; ``overrides`` replace any of its
        arguments (a streamed call narrows ``retry`` to failures before any output)."""
        params: dict[str, Any] = {
            "stop": stop_after_attempt(self.attempts),
            "wait": wait_exponential_jitter(
                multiplier=self.initial, max=self.max_wait, jitter=self.jitter
            ),
            "retry": retry_if_exception(is_transient),
            "reraise": True,
        }
        return Retrying(**{**params, **overrides})
