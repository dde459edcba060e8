"""The FastAPI application: one :class:`SleepTime` client shared by every request,
tenant-key authentication, and errors as one-line JSON (never a traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
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
    QuotaExceeded,
    RateLimited,
    SleepTimeError,
    StoreUnavailable,
    UnknownModel,
)

log = logging.getLogger("sleeptime.server")

#: HTTP status of each error a caller can cause; other SleepTimeErrors are 400.
STATUS: tuple[tuple[type[SleepTimeError], int], ...] = (
    (InvalidInput, 422),
    (QuotaExceeded, 429),
    (RateLimited, 429),
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


#: What an outage of the database or the queue says to the caller. The reason (a
#: driver's message: host, port, user, database) goes to the server log only: the
#: key lookup runs before authentication, so anyone could read it otherwise.
OUTAGE = {
    StoreUnavailable: "database unavailable; try again later",
    QueueUnavailable: "job queue unavailable; try again later",
}


def _public_message(exc: SleepTimeError) -> str:
    for cls, message in OUTAGE.items():
        if isinstance(exc, cls):
            log.warning("%s: %s", type(exc).__name__, exc)
            return message
    return str(exc)


def _validation_message(errors: Any) -> str:
    """The first of pydantic's errors as one line: ``where: what``, the input never
    echoed; a body that is not JSON at all says so."""
    first: dict[str, Any] = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        at_char = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        reason = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON{at_char}" + (f" ({reason})" if reason else "")
    kind = first.get("type")
    parts = [str(p) for p in (loc[1:] if loc[:1] == ("body",) else loc)]
    field = ".".join(parts) or ("request body" if loc[:1] == ("body",) else "")
    if kind == "string_pattern_mismatch" and (first.get("ctx") or {}).get("pattern") == r"\S":
        return f"{field or 'text'} is empty"  # the schema's "not only whitespace" rule
    msg = "unknown field" if kind == "extra_forbidden" else first.get("msg", "invalid request")
    return f"{field}: {msg}" if field else str(msg)


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
        self.quota_used = Gauge(
            "sleeptime_quota_used_tokens",
            "tokens a namespace used today (UTC) against its quota, as last seen by this server",
            ["namespace", "phase"],
            registry=r,
        )
        self.quota_refused = Counter(
            "sleeptime_quota_refused",
            "requests refused because a namespace's daily quota was spent",
            ["namespace", "phase"],
            registry=r,
        )
        self.rate_limited = Counter(
            "sleeptime_http_rate_limited", "requests refused by SLEEPTIME_RATE_LIMIT", registry=r
        )


def create_app(client: SleepTime | None = None, *, close: bool | None = None) -> FastAPI:
    """The API over ``client`` (default: one from the environment's settings).
    ``close``: close the client at shutdown (default: when it was created here)."""
    from sleeptime.quotas import Quotas
    from sleeptime.server import dashboard, routes
    from sleeptime.server.ratelimit import RateLimit

    served = client if client is not None else SleepTime()
    owns = client is None if close is None else close
    served.open_queue()  # ingests over HTTP enqueue sleep-time jobs for the workers

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        quotas.close()
        if owns:
            served.close()

    app = FastAPI(
        title="sleeptime",
        summary="Sleep-time compute over HTTP: store contexts, ask questions, watch the queue.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: /docs works offline
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    _offline_docs(app)
    app.state.client = served
    app.state.sessions = dashboard.Sessions(served.settings.session_secret)
    app.state.metrics = metrics = ServerMetrics()
    app.state.limiter = RateLimit.from_settings(served.settings)
    # With a SQLite file (or memory) and no Redis, the key lookup, the rate limit, the
    # quota counters and a precomputed answer are local reads: they run on the event
    # loop (routes._principal, routes.ask). With a database server or Redis they could
    # wait on a network, so they run in the thread pool.
    # A user's judge of near matches (SleepTime(judge=...)) may call a model: not there.
    judge = getattr(getattr(served, "_online", None), "judge", None)
    app.state.inline = (
        served.store.db.dialect == "sqlite" and not served.settings.redis_url and judge is None
    )
    app.state.quotas = quotas = Quotas.from_settings(served.settings, served.store.accounting)

    @app.exception_handler(SleepTimeError)
    async def sleeptime_error(_req: Request, exc: SleepTimeError) -> JSONResponse:
        response = _error(status_of(exc), type(exc).__name__, _public_message(exc))
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int):  # QuotaExceeded, RateLimited
            response.headers["Retry-After"] = str(retry_after)
            if isinstance(exc, RateLimited):
                metrics.rate_limited.inc()
            elif isinstance(exc, QuotaExceeded):
                metrics.quota_refused.labels(exc.namespace, exc.phase).inc()
                metrics.quota_used.labels(exc.namespace, exc.phase).set(exc.used)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(_req: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI's own "There was an error parsing the body": a body that does not
            # decode (not UTF-8, an integer past Python's digit limit) is bad input too
            return _error(
                422,
                "InvalidInput",
                "request body is not valid JSON: it must be UTF-8 text (and numbers under "
                "4,300 digits)",
            )
        kinds = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
        response = _error(exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "InvalidInput", _validation_message(exc.errors()))

    @app.exception_handler(Exception)
    async def internal(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")  # the traceback goes to the server log only
        return _error(500, "InternalError", "internal error; see the server log")

    app.include_router(routes.router)
    app.include_router(dashboard.router)
    # added first, so it runs inside _Measure (a 413 is counted) and before any route:
    # the body is refused before authentication reads the key or the route parses it
    app.add_middleware(_LimitBody, limit=served.settings.max_body_bytes)
    app.add_middleware(_Utf8Path)
    app.add_middleware(_Measure, metrics=metrics)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the assets the ``fastapi-offline`` package ships,
    served by this server under ``/docs/assets`` (FastAPI's own page loads them from
    a CDN, so it is blank offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    try:
        import fastapi_offline
    except ImportError:  # pragma: no cover - the server extra has it
        log.warning(
            "fastapi-offline is not installed: /docs is off (the schema is at "
            "/openapi.json); pip install 'sleeptime[server]'"
        )
        return
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url or '/openapi.json'}",
            title="sleeptime API",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon.png",
            oauth2_redirect_url=None,
        )


class _LimitBody:
    """Refuses a request body over ``limit`` bytes with a 413 before it is read. A
    Content-Length over the limit is answered at once: the body is never received. A
    chunked body is received here, counted chunk by chunk, and refused as soon as the
    count passes the limit, so no more than the limit plus one chunk is ever held; a
    body within it is handed to the route as one message. This runs before the route
    and so before authentication (a dependency of each route): a caller without a key
    cannot make the server read or hold a large body either. A plain ASGI middleware,
    like :class:`_Measure`: a request with a Content-Length costs one header scan."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if declared is not None and not chunked:
            if declared > self.limit:
                await self._refuse(scope, receive, send)
                return
            # the server reads no more than the declared length (h11 and httptools
            # enforce it), so the body needs no counting
            await self.app(scope, receive, send)
            return
        if not chunked:  # HTTP/1.1: no length and no chunked coding means no body
            await self.app(scope, receive, send)
            return
        # Read and count here rather than raise from a wrapped receive while the route
        # reads: FastAPI turns that error into an exception chain (a reference cycle) that
        # keeps the chunks read so far alive until the cyclic garbage collector runs
        # (measured: ten refused 200 MB bodies took a server from 151 MB up to 265 MB).
        # Chunks held here are freed at once (the same ten: 151 MB after each).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                chunks.clear()
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: bytes | None = b"".join(chunks)
        chunks.clear()

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # after the body: a disconnect, when it comes
            message = {"type": "http.request", "body": body, "more_body": False}
            body = None
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(
            413,
            "ContentTooLarge",
            f"request body over {self.limit} bytes (SLEEPTIME_MAX_BODY_BYTES)",
        )
        # the rest of the body is never read: closing the connection tells the client to
        # stop sending it (and keeps the server from reading it to reach the next request)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    """The declared body length (None without one, or when it does not parse: the HTTP
    server refuses those itself, and counting is then the safe choice) and whether the
    body is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                chunked = True
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


class _Utf8Path:
    """Refuses a path whose percent-encoded bytes are not UTF-8 with a 422, before any
    route sees it. The HTTP server decodes such bytes with replacement characters, so
    ``/contexts/inv%ff`` and ``/contexts/inv%fe`` would both name ``inv\ufffd``: the
    same context under two names. The library refuses undecodable text the same way
    (a lone surrogate). Costs nothing on a path without a ``%``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%" in raw:
            try:
                unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
            except UnicodeDecodeError as exc:
                response = _error(
                    422,
                    "InvalidInput",
                    f"the path is not valid UTF-8 (byte {exc.start} of the decoded path): "
                    "namespaces and context ids are UTF-8 text, percent-encoded",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
