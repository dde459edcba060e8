"""The worker's structured log lines: one per finished sleep-time step and one per job
end, each a single line of ``key=value`` pairs (``--log-format text``, the default) or
a JSON object (``--log-format json``).

A line names its job by ids only (job id, namespace, context id, version): never the
context's text, the notes, a question or a secret, so worker logs can be shipped
anywhere.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from sleeptime.models import SleepStep

#: The log record attribute that carries a structured line's fields.
FIELDS = "sleeptime_fields"
LOG_FORMATS = ("text", "json")


def kv(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs separated by spaces; a value with a space, a quote, an ``=``
    or a backslash (or an empty one) is JSON-quoted, so every line splits unambiguously
    (``shlex.split`` reads it). None values are left out."""
    parts: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not text or any(c.isspace() or c in '"=\\' for c in text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_event(
    logger: logging.Logger, fields: Mapping[str, object], level: int = logging.INFO
) -> None:
    """Log one structured line: the ``key=value`` text as the message, the fields
    themselves on the record for :class:`JsonFormatter`."""
    if logger.isEnabledFor(level):
        kept = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, "%s", kv(kept), extra={FIELDS: kept})


class StepLog:
    """The ``on_step`` callback of one job: a structured log line per finished step
    (ids, step, status, duration, tokens; never text), and the tokens so far. Steps of
    one run may finish on several threads at once (the parallel rethinks)."""

    def __init__(self, log: logging.Logger, ids: dict[str, object]) -> None:
        self.log = log
        self.ids = ids
        self.tokens = 0
        self._lock = threading.Lock()

    def __call__(self, step: SleepStep) -> None:
        with self._lock:
            self.tokens += step.tokens
        log_event(
            self.log,
            {
                "event": "step",
                **self.ids,
                "step": step.step,
                "part": step.part,
                "status": step.status,
                "duration_ms": step.duration_ms,
                "tokens": step.tokens if step.status == "done" else None,
                "calls": step.calls if step.status == "done" else None,
                "error": step.error,
            },
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, then a
    structured line's fields, or ``msg`` for any other log line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """The worker process's logging: to stderr, as plain lines or JSON lines."""
    handler = logging.StreamHandler()  # stderr
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
