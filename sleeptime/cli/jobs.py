"""``sleeptime jobs``: the sleep-time job queue (list, ``retry``)."""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from sleeptime.cli.common import (
    DbOpt,
    JsonOpt,
    RedisOpt,
    app,
    console,
    print_table,
    require_database,
    short,
)
from sleeptime.errors import InvalidInput
from sleeptime.settings import Settings

jobs_app = typer.Typer(help="Inspect the sleep-time job queue; `jobs retry ID` revives a dead job.")
app.add_typer(jobs_app, name="jobs")


def _queue(redis_url: str | None, database_url: str | None) -> Any:
    from sleeptime.queue import open_queue

    overrides: dict[str, Any] = {"redis_url": redis_url} if redis_url else {}
    settings = Settings(**overrides)
    if not settings.redis_url and not settings.queue_path:  # the queue is in the database
        require_database(database_url)
    return open_queue(settings, database_url)


def _eta(seconds: float) -> str:
    """How long until a waiting job can start: "now", "in 12s", "in 5m", "in 1.5h"."""
    if seconds <= 0:
        return "now"
    if seconds < 90:
        return f"in {math.ceil(seconds)}s"
    if seconds < 90 * 60:
        return f"in {round(seconds / 60)}m"
    return f"in {seconds / 3600:.1f}h"


#: ``--state`` values; "pending" is the earlier name of "waiting" and still accepted.
JOB_STATES = ("waiting", "pending", "running", "dead", "deferred")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option(
            help="waiting, running, dead or deferred (a sleep policy's; default: all four)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonOpt = False,
    redis_url: RedisOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List waiting, running, dead and deferred jobs (a deferred job's "error" is the
    sleep policy's reason, e.g. "skipped: expected 0.1 queries"; a query on its version
    brings it back); a waiting job's "ready" is when it can start
    (its backoff and the namespace's idle time, with this process's
    SLEEPTIME_IDLE_AFTER / SLEEPTIME_MAX_DELAY, which should be the workers')."""
    if ctx.invoked_subcommand is not None:
        return
    if state not in (None, *JOB_STATES):
        raise InvalidInput(f"--state must be waiting, running, dead or deferred (got {state!r})")
    queue = _queue(redis_url, database_url)
    listed = queue.list("waiting" if state == "pending" else state, limit=limit)
    counts = queue.counts()
    live = [w for w in queue.workers() if w.get("state") != "stopped"]
    queue.close()
    if as_json:
        print(
            json.dumps(
                {"counts": counts, "workers": live, "jobs": [j.to_dict() for j in listed]}, indent=2
            )
        )
        return
    now = time.time()
    table = Table("state", "context", "v", "tries", "ready", "worker", "error")
    table.add_column("id", no_wrap=True)
    for j in listed:
        table.add_row(
            j.state,
            f"{j.namespace}/{j.context_id}",
            str(j.version),
            str(j.deliveries),
            _eta(j.ready_at - now) if j.state == "waiting" else "",
            j.worker or "",
            short(j.error or "", 60),
            j.id,
        )
    print_table(table)
    console.print(
        ", ".join(f"{name} {n}" for name, n in counts.items()) + f"; {len(live)} live worker(s)"
    )


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[
        str | None, typer.Argument(help="a dead job's id (`sleeptime jobs --state dead`)")
    ] = None,
    all_dead: Annotated[
        bool,
        typer.Option(
            "--all",
            help="every dead job whose version is still the current one "
            "(dead jobs of older versions stay dead)",
        ),
    ] = False,
    redis_url: RedisOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Put a dead job back in the queue with its delivery count reset."""
    if (job_id is None) == (not all_dead):
        raise InvalidInput("give a job id or --all (not both)")
    queue = _queue(redis_url, database_url)
    if not all_dead:
        assert job_id is not None
        job = queue.retry(job_id)
        queue.close()
        ctx = f"{job.namespace}/{job.context_id} v{job.version}"
        console.print(f"job {job.id} ({ctx}) is waiting again")
        return
    from sleeptime.store.sql import SQLStore

    require_database(database_url)
    store = SQLStore(database_url or Settings().database_url)
    revived = skipped = 0
    try:
        for dead in queue.list("dead", limit=100_000):
            current = store.current_version(dead.namespace, dead.context_id)
            if current != dead.version:
                skipped += 1  # superseded: its version will never be served
                continue
            if queue.enqueue(dead.namespace, dead.context_id, dead.version) is not None:
                revived += 1
    finally:
        queue.close()
        store.dispose()
    console.print(f"{revived} dead job(s) waiting again; {skipped} superseded left dead")
