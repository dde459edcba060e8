"""The long-running commands: ``worker``, ``serve`` (the HTTP API) and ``mcp``."""

from __future__ import annotations

import os
import secrets
from typing import Annotated

import typer

from sleeptime.api import SleepTime
from sleeptime.cli.common import (
    DbOpt,
    ModelOpt,
    RedisOpt,
    app,
)
from sleeptime.errors import InvalidInput


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="jobs run at once (threads) (default: $SLEEPTIME_WORKER_CONCURRENCY or 1)"
        ),
    ] = None,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    redis_url: RedisOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="serve /metrics on this port (0 = off) (default: $SLEEPTIME_METRICS_PORT or 0)"
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            help="address of /metrics; 0.0.0.0 exposes it (default: $SLEEPTIME_METRICS_HOST "
            "or 127.0.0.1)"
        ),
    ] = None,
    burst: Annotated[bool, typer.Option(help="exit once the queue is empty")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    log_format: Annotated[
        str,
        typer.Option(help="text (key=value lines) or json (one JSON object per line)"),
    ] = "text",
) -> None:
    """Run a sleep-time worker until SIGTERM/SIGINT (drains the jobs in hand first)."""
    from sleeptime.worker.service import serve

    raise typer.Exit(
        serve(
            concurrency=concurrency,
            model=model,
            database_url=database_url,
            redis_url=redis_url,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            burst=burst,
            log_level=log_level,
            log_format=log_format,
        )
    )


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to bind; 0.0.0.0 exposes the API to the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="server processes sharing the port (each one its own client of the "
            "database and Redis)",
        ),
    ] = 1,
    worker: Annotated[
        bool, typer.Option(help="also run a sleep-time worker in this process")
    ] = False,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Serve the HTTP API (docs/service.md; OpenAPI docs at /docs). Requests need a key
    from `sleeptime keys create`."""
    try:
        import uvicorn

        from sleeptime.server import create_app
    except ImportError as exc:
        raise InvalidInput(
            f"the HTTP server needs the server extra: pip install 'sleeptime[server]' ({exc})"
        ) from exc
    if workers > 1 and worker:
        raise InvalidInput(
            "--worker runs one sleep-time worker inside a single server process: with "
            "--workers N, run `sleeptime worker` beside the server instead"
        )
    client = SleepTime(model=model, database_url=database_url, background=worker)
    if workers == 1:
        uvicorn.run(
            create_app(client, close=True), host=host, port=port, log_level=log_level.lower()
        )
        return
    # Each process builds its own client from the environment (uvicorn starts them
    # from an import string); the options reach them through it. The client built
    # above has checked the options and brought the schema up to date once.
    client.close()
    if model is not None:
        os.environ["SLEEPTIME_MODEL"] = model
    if database_url is not None:
        os.environ["SLEEPTIME_DATABASE_URL"] = database_url
    if not client.settings.session_secret:
        # one signing secret for every process: a dashboard sign-in made on one is
        # valid on the others (inherited by the processes, never printed)
        os.environ["SLEEPTIME_SESSION_SECRET"] = secrets.token_urlsafe(32)
    uvicorn.run(
        "sleeptime.server:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level.lower(),
    )


@app.command("mcp")
def mcp_cmd(
    namespace: Annotated[
        str | None,
        typer.Option(
            help="pin the server to this namespace: its tools then take no namespace argument"
        ),
    ] = None,
    model: ModelOpt = None,
    database_url: DbOpt = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="run sleep-time work in this process (default); --no-worker when separate "
            "`sleeptime worker` processes share the queue",
        ),
    ] = True,
) -> None:
    """Serve ingest, ask and show as MCP tools over stdio (for MCP clients), with a
    worker in the same process preparing notes for what is ingested."""
    try:
        from sleeptime.server.mcp_server import create_mcp
    except ImportError as exc:
        raise InvalidInput(
            f"the MCP server needs the mcp extra: pip install 'sleeptime[mcp]' ({exc})"
        ) from exc
    client = SleepTime(model=model, database_url=database_url)
    client.open_queue()  # ingests enqueue sleep-time jobs
    if worker:
        client.start_worker()
    try:
        create_mcp(client, namespace, worker=worker).run("stdio")
    finally:
        client.close()
