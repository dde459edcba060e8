"""One worker process: what ``sleeptime worker`` and ``python -m sleeptime.worker`` run."""

from __future__ import annotations

import logging
import os

from sleeptime.errors import InvalidInput
from sleeptime.worker.logs import LOG_FORMATS, configure
from sleeptime.worker.runtime import Worker


def serve(
    *,
    concurrency: int | None = None,
    model: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    burst: bool = False,
    log_level: str = "INFO",
    log_format: str = "text",
) -> int:
    """Run one worker process until SIGTERM/SIGINT (or an empty queue with ``burst``).

    Exit code 0 after a clean drain. If jobs were still running when the grace period
    ended the process exits at once (code 1) and those jobs are reclaimed by others.
    ``log_format``: ``text`` (one line per record) or ``json`` (one JSON object per
    line); either way each finished job step and each job end is one structured line.
    """
    from sleeptime.api import SleepTime  # the worker process's own client
    from sleeptime.settings import Settings

    if log_format not in LOG_FORMATS:
        raise InvalidInput(f"--log-format must be text or json (got {log_format!r})")
    configure(log_level, log_format)
    overrides: dict[str, object] = {}
    if redis_url is not None:
        overrides["redis_url"] = redis_url or None
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if metrics_host is not None:
        overrides["metrics_host"] = metrics_host
    settings = Settings(**overrides)  # type: ignore[arg-type]
    client = SleepTime(model=model, database_url=database_url, settings=settings)
    worker = Worker(client, client.open_queue(), concurrency=concurrency)
    if settings.metrics_port:
        worker.metrics.serve(settings.metrics_port, settings.metrics_host)
        logging.getLogger("sleeptime.worker").info(
            "metrics on %s:%d/metrics", settings.metrics_host, settings.metrics_port
        )
    left = worker.run(burst=burst)
    if left:
        logging.shutdown()
        os._exit(1)  # job threads cannot be interrupted; their jobs will be reclaimed
    client.close()
    return 0
