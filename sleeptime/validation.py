"""Argument checks of the public entry points, run before any model call or write.

Each check raises :class:`~sleeptime.errors.InvalidInput` with one line that says
what is wrong and what to do, never a library's exception. Types are strict: a
string where a number belongs (``max_tokens='5'``) is refused, not coerced, and
``True`` is not an integer. Text must be storable everywhere: no NUL character
(PostgreSQL rejects it) and no lone surrogate (not encodable as UTF-8; that is also
what undecodable bytes in command-line arguments turn into).

The bounds of every entry point are here, once: the library's methods, the HTTP
routes, the MCP tools and the CLI all reach them through :class:`SleepTime`, so a
request the library refuses is refused everywhere with the same line (over HTTP a 422
``InvalidInput``). ``Settings`` takes its caps of ``sleep_k`` and ``n_questions``
from here too; the token ceiling is a setting (``SLEEPTIME_MAX_TOKENS_CEILING``).
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
#: Independent rethinks of one sleep (``k``): the cap of ``SLEEPTIME_SLEEP_K`` as well.
MAX_SLEEP_K = 16
#: Questions predicted by one sleep: the cap of ``SLEEPTIME_N_QUESTIONS`` as well.
MAX_QUESTIONS = 50
#: Budget forcing: the most "Wait"s one answer may append (each is one more model call).
MAX_EXTEND = 16
#: The default of ``SLEEPTIME_MAX_TOKENS_CEILING``: no answer or thinking budget above it.
MAX_TOKENS_CEILING = 131_072
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _show(value: object, limit: int = 60) -> str:
    """A short printable repr for messages (huge inputs are cut)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit conversion limit
        return f"a {type(value).__name__} too large to print"
    if len(text) <= limit:
        return text
    quote = text[-1] if text[-1] in "'\"" else ""
    return text[: limit - 3 - len(quote)] + "..." + quote


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
        raise InvalidInput(f"{name} must be {bounds} (got {_show(value, 30)})")
    return value


def check_optional_int(value: object, name: str, *, lo: int, hi: int | None = None) -> None:
    if value is not None:
        check_int(value, name, lo=lo, hi=hi)


def validate_ingest(namespace: object, context_id: object, text: object, *, max_chars: int) -> None:
    check_ids(namespace, context_id)
    subject = f"context {namespace}/{context_id}"
    if not isinstance(text, str):
        raise InvalidInput(f"context text must be a string, not {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidInput(
            f"{subject} has {len(text):,} characters; the limit is {max_chars:,} "
            "(SLEEPTIME_MAX_CONTEXT_CHARS)"
        )
    check_text(text, f"{subject} text")
    if not text.strip():
        raise InvalidInput(f"{subject} is empty")


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
        check_int(k, "k", lo=1, hi=MAX_SLEEP_K)
    check_optional_int(n_questions, "n_questions", lo=0, hi=MAX_QUESTIONS)
    for name, fn in (("progress", progress), ("on_step", on_step)):
        if fn is not None and not callable(fn):
            raise InvalidInput(f"{name} must be a callable, not {type(fn).__name__}")


def token_cap(ceiling: int, window: int | None) -> tuple[int, str]:
    """The most tokens an answer (or its thinking) may ask for, and where that limit
    comes from (for the message): the ceiling, or the model's window when it is known
    and smaller."""
    if window is not None and window < ceiling:
        return window, f"the model's {window:,}-token window"
    return ceiling, "SLEEPTIME_MAX_TOKENS_CEILING"


def _check_tokens(value: object, name: str, *, lo: int, cap: tuple[int, str]) -> None:
    if value is None:
        return
    n = check_int(value, name, lo=lo)
    limit, why = cap
    if n > limit:
        raise InvalidInput(f"{name} must be {lo}-{limit} ({why}; got {_show(value, 30)})")


def validate_ask(
    namespace: object,
    context_id: object,
    question: object,
    *,
    verbosity: object = None,
    max_tokens: object = None,
    budget: object = None,
    max_question_chars: int,
    max_tokens_ceiling: int = MAX_TOKENS_CEILING,
    window: int | None = None,
) -> None:
    """An ask's arguments: ids, the question, and a budget within the bounds (verbosity
    0-4; ``max_tokens`` and thinking tokens at most ``max_tokens_ceiling`` and the
    model's ``window`` when known; ``extend`` at most :data:`MAX_EXTEND`)."""
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
    cap = token_cap(max_tokens_ceiling, window)
    check_optional_int(verbosity, "verbosity", lo=0, hi=4)
    _check_tokens(max_tokens, "max_tokens", lo=1, cap=cap)
    if budget is not None:
        if not isinstance(budget, Budget):
            raise InvalidInput(f"budget must be a sleeptime.Budget, not {type(budget).__name__}")
        validate_budget(budget, cap=cap)


def validate_budget(budget: Budget, *, cap: tuple[int, str]) -> None:
    """A :class:`Budget`'s fields within the same bounds as the arguments of ask
    (pydantic has checked their types and lower bounds)."""
    _check_tokens(budget.max_tokens, "max_tokens", lo=1, cap=cap)
    _check_tokens(budget.think_tokens, "think_tokens", lo=0, cap=cap)
    check_int(budget.extend, "extend", lo=0, hi=MAX_EXTEND)


def one_line(exc: ValidationError, name: Callable[[tuple[Any, ...]], str] | None = None) -> str:
    """A pydantic ValidationError as one line, without the input values (which may
    hold secrets, such as a URL's password)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error.get("loc", ()))
        field = name(loc) if name else ".".join(str(p) for p in loc)
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {msg}" if field else msg)
    return "; ".join(parts) or "invalid value"
