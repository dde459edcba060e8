"""The FastAPI application: one :class:`SleepTime` client shared by every request,
tenant-key authentication, and errors as one-line JSON (never a traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sleeptime.api import SleepTime
from sleeptime.errors import (
    ContextNotFound,
    InvalidInput,
    JobNotFound,
    ModelCallError,
    ModelOutputError,
    ModelUnavailable,
    QueueUnavailable,
    SleepTimeError,
    StoreUnavailable,
    UnknownModel,
)

log = logging.getLogger("sleeptime.server")

#: HTTP status of each error a caller can cause; other SleepTimeErrors are 400.
STATUS: tuple[tuple[type[SleepTimeError], int], ...] = (
    (InvalidInput, 422),
    (ContextNotFound, 404),
    (JobNotFound, 404),
    (ModelUnavailable, 503),
    (StoreUnavailable, 503),
    (QueueUnavailable, 503),
    (ModelCallError, 502),
    (ModelOutputError, 502),
    (UnknownModel, 500),
)


def status_of(exc: SleepTimeError) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 400


def _error(status: int, kind: str, message: str) -> JSONResponse:
    # one line: a message that spans lines (or echoes input) is cut to its first line
    line = message.splitlines()[0] if message else kind
    return JSONResponse({"error": kind, "message": line[:500]}, status_code=status)


class ServerMetrics:
    """Prometheus metrics of the HTTP API, in the app's own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "sleeptime_http_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "sleeptime_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 120),
            registry=r,
        )


def create_app(st: SleepTime | None = None, *, close: bool | None = None) -> FastAPI:
    """The API over ``st`` (default: a client from the environment's settings).
    ``close``: close the client at shutdown (default: when it was created here)."""
    from sleeptime.server import dashboard, routes

    client = st if st is not None else SleepTime()
    owns = st is None if close is None else close
    client.open_queue()  # ingests over HTTP enqueue sleep-time jobs for the workers

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns:
            client.close()

    app = FastAPI(
        title="sleeptime",
        summary="Sleep-time compute over HTTP: store contexts, ask questions, watch the queue.",
        version="1",
        lifespan=lifespan,
    )
    app.state.st = client
    app.state.metrics = metrics = ServerMetrics()

    @app.exception_handler(SleepTimeError)
    async def sleeptime_error(_req: Request, exc: SleepTimeError) -> JSONResponse:
        return _error(status_of(exc), type(exc).__name__, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_req: Request, exc: HTTPException) -> JSONResponse:
        kinds = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
        response = _error(exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return _error(422, "InvalidInput", msg)

    @app.exception_handler(Exception)
    async def internal(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")  # the traceback goes to the server log only
        return _error(500, "InternalError", "internal error; see the server log")

    app.include_router(routes.router)
    app.include_router(dashboard.router)
    app.add_middleware(_Measure, metrics=metrics)
    return app


class _Measure:
    """Counts requests by route and status and times them. A plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` runs every request through an extra task and
    memory stream, which cost more than a zero-token answer."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router writes the matched route into the scope; path_format drops
            # convertors ("{context_id:path}" -> "{context_id}"), so ids never become labels
            route = scope.get("route")
            name = getattr(route, "path_format", None) or getattr(route, "path", "unmatched")
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
