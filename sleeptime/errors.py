"""Exceptions. Every error a user can cause derives from :class:`SleepTimeError`
and carries a one-line message that says what to do about it."""

from __future__ import annotations


class SleepTimeError(Exception):
    """Base class: a problem the caller can act on (bad input, missing data, config)."""


class ContextNotFound(SleepTimeError):
    """No such context in the namespace; or, with ``version``, the context exists but
    that version does not (``versions``: the ones it has)."""

    def __init__(
        self,
        namespace: str,
        context_id: str,
        *,
        version: int | None = None,
        versions: list[int] | None = None,
    ) -> None:
        if version is not None and versions:
            super().__init__(
                f"context {context_id!r} in namespace {namespace!r} has no version {version} "
                f"(it has {_spans(versions)}); leave version unset for the current one"
            )
        else:
            super().__init__(
                f"no context {context_id!r} in namespace {namespace!r}: ingest it first"
            )
        self.namespace = namespace
        self.context_id = context_id
        self.version = version


def _spans(versions: list[int]) -> str:
    """[1, 2, 3, 5] -> 'versions 1-3, 5'; [4] -> 'version 4'."""
    runs: list[list[int]] = []
    for v in sorted(versions):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    parts = [f"{a}-{b}" if b > a else str(a) for a, b in runs]
    return ("versions " if len(versions) > 1 else "version ") + ", ".join(parts)


class InvalidInput(SleepTimeError):
    """Empty text, oversized context, bad identifiers, out-of-range budgets."""


class InvalidSettings(InvalidInput, ValueError):
    """A setting (``SLEEPTIME_*`` or a ``Settings`` argument) has a bad value.
    Also a ``ValueError``, as pydantic's validation errors were."""


class ContextTooLong(InvalidInput):
    """The context does not fit the model's window on a path that needs all of it."""


class UnknownModel(SleepTimeError):
    """The model spec could not be resolved to a chat model."""


class ModelOutputError(SleepTimeError):
    """The model kept producing output we could not parse, even after repair and retries."""


class ModelUnavailable(SleepTimeError):
    """A model call kept failing transiently (timeouts, 429, 5xx) through every retry.
    Trying again later may succeed; the provider's exception is the ``__cause__``."""


class ModelCallError(SleepTimeError):
    """A model call failed permanently (4xx, bad request, context window exceeded)."""


class StoreUnavailable(SleepTimeError):
    """The SQL database could not be reached."""


class QueueUnavailable(SleepTimeError):
    """The job queue (Redis, or the embedded SQLite queue file) could not be reached.
    Sleep-time work is delayed, not lost: the worker's sweep enqueues what was missed."""

    def __init__(self, queue: str, reason: str) -> None:
        super().__init__(f"{queue} unavailable: {reason}")
        self.queue = queue
        self.reason = reason


class JobNotFound(SleepTimeError):
    """No job with that id (or, for ``jobs retry``, it is not dead but ``state``)."""

    def __init__(self, job_id: str, state: str | None = None) -> None:
        among_dead = f" among dead jobs (it is {state})" if state else ""
        super().__init__(f"no job {job_id!r}{among_dead}: see `sleeptime jobs` for the job ids")
        self.job_id = job_id
        self.state = state


class QuotaExceeded(SleepTimeError):
    """A namespace used up its daily token quota (``phase`` ``"test"``: answer tokens,
    ``SLEEPTIME_QUOTA_TEST_TOKENS``; ``"sleep"``: sleep-time tokens,
    ``SLEEPTIME_QUOTA_SLEEP_TOKENS``). Quotas are per UTC day: ``retry_after`` is the
    seconds until the next UTC midnight, when the namespace's count starts again. Over
    HTTP: 429 with a ``Retry-After`` header."""

    def __init__(self, namespace: str, phase: str, used: int, limit: int, retry_after: int) -> None:
        setting = f"SLEEPTIME_QUOTA_{phase.upper()}_TOKENS"
        super().__init__(
            f"namespace {namespace!r} used {used} of its {limit} {phase}-time tokens today "
            f"({setting}); the quota starts again at 00:00 UTC, in {retry_after} s"
        )
        self.namespace = namespace
        self.phase = phase
        self.used = used
        self.limit = limit
        self.retry_after = retry_after


class RateLimited(SleepTimeError):
    """A key sent more requests than ``SLEEPTIME_RATE_LIMIT`` allows. Over HTTP: 429
    with a ``Retry-After`` header (``retry_after`` seconds, when the window resets)."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(
            f"rate limit of {limit} per key reached (SLEEPTIME_RATE_LIMIT); "
            f"retry in {retry_after} s"
        )
        self.limit = limit
        self.retry_after = retry_after
