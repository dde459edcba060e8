"""Argument checks of the public entry points, run before any model call or write.

Each check raises :class:`~sleeptime.errors.InvalidInput` with one line that says
what is wrong and what to do, never a library's exception. Types are strict: a
string where a number belongs (``max_tokens='5'``) is refused, not coerced, and
``True`` is not an integer. Text must be storable everywhere: no NUL character
(PostgreSQL rejects it) and no lone surrogate (not encodable as UTF-8; that is also
what undecodable bytes in command-line arguments turn into).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from sleeptime.errors import InvalidInput
from sleeptime.models import Budget

#: A namespace: 1-128 characters of letters, digits, '.', '_', ':', '-', starting with
#: a letter or digit. ``\Z``, not ``$``: ``$`` also matches before a final newline.
NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
MAX_CONTEXT_ID_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _show(value: object, limit: int = 60) -> str:
    """A short printable repr for messages (huge inputs are cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_text(value: object, what: str) -> str:
    """``value`` is a str that every store can hold: no NUL, no lone surrogate."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character (\\x00) at {value.index(chr(0))}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} is not valid Unicode: a lone surrogate at {exc.start} (undecodable "
            "input? decode it as UTF-8 first)"
        ) from None
    return value


def check_ids(namespace: object, context_id: object) -> None:
    if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
        raise InvalidInput(
            f"bad namespace {_show(namespace)}: 1-128 chars of letters, digits, '.', '_', ':', "
            "'-', starting with a letter or digit"
        )
    if (
        not isinstance(context_id, str)
        or not context_id.strip()
        or len(context_id) > MAX_CONTEXT_ID_CHARS
    ):
        raise InvalidInput(f"bad context id {_show(context_id)}: 1-256 characters, not blank")
    if _CONTROL.search(context_id):
        raise InvalidInput(
            f"bad context id {_show(context_id)}: control characters are not allowed"
        )
    check_text(context_id, "context id")


def check_int(value: object, name: str, *, lo: int, hi: int | None = None) -> int:
    """A real ``int`` (not a bool, not a numeric string) in ``[lo, hi]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be an integer, not {type(value).__name__} {_show(value)}")
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo}-{hi}" if hi is not None else f">= {lo}"
        raise InvalidInput(f"{name} must be {bounds} (got {value})")
    return value


def check_optional_int(value: object, name: str, *, lo: int, hi: int | None = None) -> None:
    if value is not None:
        check_int(value, name, lo=lo, hi=hi)


def validate_ingest(namespace: object, context_id: object, text: object, *, max_chars: int) -> None:
    check_ids(namespace, context_id)
    where = f"context {namespace}/{context_id}"
    if not isinstance(text, str):
        raise InvalidInput(f"context text must be a string, not {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidInput(
            f"{where} has {len(text):,} characters; the limit is {max_chars:,} "
            "(SLEEPTIME_MAX_CONTEXT_CHARS)"
        )
    check_text(text, f"{where} text")
    if not text.strip():
        raise InvalidInput(f"{where} is empty")


def validate_sleep(
    namespace: object,
    context_id: object,
    *,
    version: object = None,
    k: object = None,
    n_questions: object = None,
    progress: object = None,
    on_step: object = None,
) -> None:
    check_ids(namespace, context_id)
    check_optional_int(version, "version", lo=1)
    if k is not None:
        check_int(k, "k", lo=0)
        if k == 0:
            raise InvalidInput("k must be >= 1 (got 0); k=0 means: do not call sleep()")
    check_optional_int(n_questions, "n_questions", lo=0)
    for name, fn in (("progress", progress), ("on_step", on_step)):
        if fn is not None and not callable(fn):
            raise InvalidInput(f"{name} must be a callable, not {type(fn).__name__}")


def validate_ask(
    namespace: object,
    context_id: object,
    question: object,
    *,
    verbosity: object = None,
    max_tokens: object = None,
    budget: object = None,
    max_question_chars: int,
) -> None:
    check_ids(namespace, context_id)
    if not isinstance(question, str):
        raise InvalidInput(f"question must be a string, not {type(question).__name__}")
    if len(question) > max_question_chars:
        raise InvalidInput(
            f"question has {len(question):,} characters; the limit is {max_question_chars:,} "
            "(SLEEPTIME_MAX_QUESTION_CHARS)"
        )
    check_text(question, "question")
    if not question.strip():
        raise InvalidInput("question is empty")
    check_optional_int(verbosity, "verbosity", lo=0, hi=4)
    check_optional_int(max_tokens, "max_tokens", lo=1)
    if budget is not None and not isinstance(budget, Budget):
        raise InvalidInput(f"budget must be a sleeptime.Budget, not {type(budget).__name__}")


def one_line(exc: ValidationError, name: Callable[[tuple[Any, ...]], str] | None = None) -> str:
    """A pydantic ValidationError as one line, without the input values (which may
    hold secrets, such as a URL's password)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error.get("loc", ()))
        where = name(loc) if name else ".".join(str(p) for p in loc)
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid value"
