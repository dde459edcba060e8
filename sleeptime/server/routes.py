"""The ``/v1`` routes. Handlers are plain functions: FastAPI runs them in its thread
pool, so a model call or a database round trip never blocks the event loop.

Context ids may contain ``/`` (``docs/readme.md``), so they are ``:path`` parameters.
A route with a suffix (``/ledger``, ``/ask``, ...) is registered before the bare
route of the same method, which would otherwise take the suffix as part of the id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, Security
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sleeptime.api import SleepTime
from sleeptime.errors import InvalidInput, SleepTimeError
from sleeptime.models import Answer, Budget, ContextVersion, DeleteCounts, Ledger, SleepReport
from sleeptime.queue.base import EXPLICIT_PRIORITY, Job, JobQueue
from sleeptime.quotas import Quotas
from sleeptime.server.auth import Principal, authenticate
from sleeptime.validation import MAX_EXTEND, MAX_QUESTIONS, MAX_SLEEP_K

router = APIRouter()
log = logging.getLogger("sleeptime.server")


# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread
# pool, one hop per dependency per request, which cost more than a zero-token answer.
# Only the key lookup touches the database (see :func:`_principal`).


async def client(request: Request) -> SleepTime:
    """The app's one :class:`SleepTime` client (``create_app``)."""
    served: SleepTime = request.app.state.client
    return served


Client = Annotated[SleepTime, Depends(client)]


async def quotas(request: Request) -> Quotas:
    q: Quotas = request.app.state.quotas
    return q


QuotasDep = Annotated[Quotas, Depends(quotas)]


def _authorize(request: Request, key: str) -> Principal:
    """The key's principal (401 when unknown) with its rate limit counted."""
    who = authenticate(request.app.state.client.store, key)
    if who is None:
        raise HTTPException(
            401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    limiter = request.app.state.limiter
    if limiter is not None:
        limiter.hit(who.key_id)  # RateLimited: 429 with Retry-After
    return who


async def _principal(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
    """401 without a key, or with one the store does not know; 429 over the key's
    rate limit. The lookup is one indexed read, never cached (a key revoked by another
    process is refused at the next request). On a SQLite file without Redis it runs
    here, on the event loop: a local read of a few microseconds costs less than a hop
    to the thread pool. On a database server (a network round trip, or an outage's
    timeout) or with the rate limit's counters in Redis, it runs in the thread pool."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "missing API key: send Authorization: Bearer KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.app.state.inline:
        return _authorize(request, creds.credentials)
    return await run_in_threadpool(_authorize, request, creds.credentials)


class _KeyAuth(HTTPBearer):
    """The ``Authorization: Bearer KEY`` security scheme of the schema, which also
    authenticates the key (:func:`_principal`) and checks what it opens: the path's
    namespace (403 when the key is another tenant's) or, with ``operator``, the
    operator routes (403 without an admin key). One dependency per route: FastAPI
    resolves each dependency level per request, at a cost the zero-token ask feels."""

    def __init__(self, *, operator: bool) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="a key from `sleeptime keys create`",
        )
        self.operator = operator

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        who = await _principal(request, await super().__call__(request))
        if self.operator:
            if not who.admin:
                raise HTTPException(403, "operator route: needs an admin key")
        else:
            namespace = request.path_params.get("namespace", "")
            if not who.may_use(namespace):
                raise HTTPException(403, f"this key is not valid for namespace {namespace!r}")
        return who


#: A tenant key for the path's namespace, or an admin key.
Tenant = Annotated[Principal, Security(_KeyAuth(operator=False))]
#: An admin key (`sleeptime keys create --admin`).
Admin = Annotated[Principal, Security(_KeyAuth(operator=True))]


# -- bodies and replies -------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every error the API returns: one JSON object with two one-line fields."""

    error: str = Field(
        description="the kind: InvalidInput, Unauthorized, Forbidden, ContextNotFound, "
        "JobNotFound, NotFound, ContentTooLarge, RateLimited, QuotaExceeded, "
        "StoreUnavailable, QueueUnavailable, ModelUnavailable, ModelCallError, ..."
    )
    message: str = Field(description="one line saying what went wrong and what to do")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait: until the key's rate-limit window resets, or "
        "until 00:00 UTC for a daily quota",
        "schema": {"type": "integer", "minimum": 1},
    }
}

#: What each error status means, for the schema (the body is always :class:`ErrorOut`).
_ERRORS: dict[int, str] = {
    401: "no key, or one the store does not know (Unauthorized)",
    403: "the key is for another namespace, or the route needs an admin key (Forbidden)",
    404: "no such context or job, or no such route (ContextNotFound, JobNotFound, NotFound)",
    413: "request body over SLEEPTIME_MAX_BODY_BYTES (ContentTooLarge)",
    422: "bad input: a body that is not JSON, an unknown field, a wrong type, a value out "
    "of bounds, an id that is not UTF-8 (InvalidInput)",
    429: "over the key's SLEEPTIME_RATE_LIMIT (RateLimited) or the namespace's daily token "
    "quota (QuotaExceeded); Retry-After says when to try again",
    502: "the model failed or kept answering unparseably (ModelCallError, ModelOutputError)",
    503: "the database, the job queue or the model is unavailable; try again later",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer ``codes`` with :class:`ErrorOut`."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorOut, "description": _ERRORS[code]}
        if code == 429:
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


#: Statuses of every route that takes a key (the key checks, the body limit, bad
#: input, the rate limit, an outage) and of every route with a path parameter (404).
KEYED = (401, 403, 404, 413, 422, 429, 503)
#: Routes that call the model.
MODEL = (*KEYED, 502)

#: Request bodies are as strict as the library: no coercion ("1" and true are not
#: integers, 1.0 is not one either) and no unknown fields (a misspelt option is an
#: error, not silently ignored). The bounds are sleeptime.validation's, which the
#: library checks again (the token ceiling and the model's window only there).
STRICT = ConfigDict(extra="forbid", strict=True)


class ContextIn(BaseModel):
    model_config = STRICT

    text: str = Field(
        pattern=r"\S",
        description="the context's full text (not empty or only whitespace; at most "
        "SLEEPTIME_MAX_CONTEXT_CHARS); a new version when it changed",
    )


class ContextOut(BaseModel):
    namespace: str
    context_id: str
    version: int
    created: bool = Field(description="a new version was stored (false: text unchanged)")
    content_hash: str
    chars: int


class AskIn(BaseModel):
    model_config = STRICT

    question: str = Field(
        pattern=r"\S",
        description="the question (not empty or only whitespace; at most "
        "SLEEPTIME_MAX_QUESTION_CHARS)",
    )
    verbosity: int | None = Field(None, ge=0, le=4, description="0 answer only ... 4 thorough")
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="cap on answer tokens: at most SLEEPTIME_MAX_TOKENS_CEILING and the "
        "model's window when known",
    )
    think_tokens: int | None = Field(
        None, ge=0, description="budget forcing: cap thinking (the same bound as max_tokens)"
    )
    extend: int = Field(
        0, ge=0, le=MAX_EXTEND, description="budget forcing: append 'Wait' up to N times"
    )


class SleepIn(BaseModel):
    model_config = STRICT

    k: int | None = Field(
        None, ge=1, le=MAX_SLEEP_K, description="independent rethinks of the context"
    )
    questions: int | None = Field(None, ge=0, le=MAX_QUESTIONS, description="questions to predict")
    wait: bool | None = Field(
        None,
        description="run the sleep in this request and answer with its report (as "
        "?wait=true); default: queue it for the workers and answer 202 with the job",
    )


class JobOut(BaseModel):
    """One sleep-time job of the queue."""

    id: str
    namespace: str
    context_id: str
    version: int
    state: str = Field(description="waiting, running, dead, deferred (or done)")
    deliveries: int
    priority: float
    enqueued_at: float = Field(description="epoch seconds")
    ready_at: float = Field(description="epoch seconds: its earliest start")
    worker: str | None = None
    error: str | None = None


class SleepQueued(BaseModel):
    """An explicit sleep queued for the workers (202)."""

    job: JobOut
    note: str = Field(description="what happens next, in one line")


class JobsOut(BaseModel):
    counts: dict[str, int] = Field(description="jobs per state, and the done/retried counters")
    workers: list[dict[str, Any]] = Field(description="health records of the live workers")
    jobs: list[JobOut]


class QuotaUse(BaseModel):
    used: int = Field(description="tokens used today (UTC)")
    limit: int | None = Field(description="the daily quota; null: none")
    left: int | None = Field(description="tokens left today; null: unlimited")


class UsageOut(BaseModel):
    """A namespace's use of its daily token quotas."""

    namespace: str
    day: str = Field(description="the UTC day counted, YYYY-MM-DD")
    resets_in_s: int = Field(description="seconds until 00:00 UTC, when the counts restart")
    test: QuotaUse = Field(description="answer tokens (SLEEPTIME_QUOTA_TEST_TOKENS)")
    sleep: QuotaUse = Field(description="sleep-time tokens (SLEEPTIME_QUOTA_SLEEP_TOKENS)")


class ShowOut(BaseModel):
    context: ContextOut
    versions: list[int] = Field(description="versions still stored (retention prunes older)")
    artifacts: dict[str, Any]
    ledger: Ledger


# -- open routes ----------------------------------------------------------------------


@router.get("/health", tags=["operations"], responses=errors(503))
def health(client: Client) -> dict[str, str]:
    """Liveness and database reachability (503 ``database unavailable`` when the
    database is down; the reason goes to the server log, never to this open route)."""
    client.store.ping()
    return {"status": "ok"}


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this server (requests by route and status, latency,
    quota use per namespace, refusals)."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


# -- tenant routes --------------------------------------------------------------------


@router.get("/v1/{namespace}/contexts", tags=["contexts"], responses=errors(*KEYED))
def list_contexts(namespace: str, _who: Tenant, client: Client) -> dict[str, list[str]]:
    """Ids of the contexts stored in a namespace."""
    return {"contexts": client.store.context_ids(namespace)}


@router.get("/v1/{namespace}/usage", tags=["contexts"], responses=errors(*KEYED))
def usage(namespace: str, request: Request, _who: Tenant, q: QuotasDep) -> UsageOut:
    """The namespace's use of its daily token quotas today (UTC): answer tokens
    (``SLEEPTIME_QUOTA_TEST_TOKENS``) and sleep-time tokens from the ledger
    (``SLEEPTIME_QUOTA_SLEEP_TOKENS``); a limit of null means none is set."""
    out = UsageOut.model_validate(q.usage(namespace))
    gauge = request.app.state.metrics.quota_used
    gauge.labels(namespace, "test").set(out.test.used)
    gauge.labels(namespace, "sleep").set(out.sleep.used)
    return out


def _context_out(ctx: ContextVersion) -> ContextOut:
    return ContextOut(
        namespace=ctx.namespace,
        context_id=ctx.context_id,
        version=ctx.version,
        created=ctx.created,
        content_hash=ctx.content_hash,
        chars=len(ctx.text),
    )


@router.put(
    "/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"], responses=errors(*KEYED)
)
def put_context(
    namespace: str, context_id: str, body: ContextIn, _who: Tenant, client: Client
) -> ContextOut:
    """Store a context (a new version when its text changed); sleep-time compute is
    queued for the workers."""
    ctx = client.ingest(namespace, context_id, body.text)
    return _context_out(ctx)


@router.post(
    "/v1/{namespace}/contexts/{context_id:path}/append",
    tags=["contexts"],
    responses=errors(*KEYED),
)
def append_context(
    namespace: str, context_id: str, body: ContextIn, _who: Tenant, client: Client
) -> ContextOut:
    """Append ``text`` to a context (a log, a thread) as a new version; sleep-time work
    on it is incremental."""
    ctx = client.append(namespace, context_id, body.text)
    return _context_out(ctx)


@router.get(
    "/v1/{namespace}/contexts/{context_id:path}/ledger",
    tags=["contexts"],
    responses=errors(*KEYED),
)
def ledger(namespace: str, context_id: str, _who: Tenant, client: Client) -> Ledger:
    """Sleep-time vs test-time tokens spent on a context, and queries answered."""
    client.context(namespace, context_id)  # 404 for a context that does not exist
    return client.ledger(namespace, context_id)


@router.get(
    "/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"], responses=errors(*KEYED)
)
def show_context(namespace: str, context_id: str, _who: Tenant, client: Client) -> ShowOut:
    """The current version, its artifacts (learned context, predicted Q&As) and the ledger."""
    ctx = client.context(namespace, context_id)
    arts = client.artifacts(namespace, context_id)
    return ShowOut(
        context=_context_out(ctx),
        versions=client.store.versions(namespace, context_id),
        artifacts=arts.model_dump(mode="json"),
        ledger=client.ledger(namespace, context_id),
    )


def _budget(body: AskIn) -> Budget | None:
    """A thinking budget when one is asked for; else ask() builds the default."""
    return Budget.thinking(
        verbosity=body.verbosity,
        max_tokens=body.max_tokens,
        think_tokens=body.think_tokens,
        extend=body.extend,
    )


def _count_test(request: Request, q: Quotas, namespace: str, answer: Answer) -> None:
    """Count an answer's tokens against the namespace's test-time quota."""
    used = q.add_test(namespace, answer.usage.total_tokens)
    if used is not None:
        request.app.state.metrics.quota_used.labels(namespace, "test").set(used)


def _ask_here(
    request: Request, q: Quotas, client: SleepTime, namespace: str, context_id: str, body: AskIn
) -> Answer:
    """The ask with its quota check and count (in the thread pool: it may call a model)."""
    q.check_test(namespace)
    answer = client.ask(
        namespace,
        context_id,
        body.question,
        verbosity=body.verbosity,
        max_tokens=body.max_tokens,
        budget=_budget(body),
    )
    _count_test(request, q, namespace, answer)
    return answer


@router.post(
    "/v1/{namespace}/contexts/{context_id:path}/ask",
    tags=["contexts"],
    response_model=Answer,
    responses=errors(*MODEL),
)
async def ask(
    namespace: str, context_id: str, body: AskIn, request: Request, _who: Tenant
) -> Response:
    """Answer a question with whatever sleep-time work exists (the `Answer` fields).
    429 ``QuotaExceeded`` once the namespace's answer tokens today reach
    ``SLEEPTIME_QUOTA_TEST_TOKENS``."""
    client: SleepTime = request.app.state.client
    q: Quotas = request.app.state.quotas
    if request.app.state.inline and _no_budget(body):
        # A precomputed answer is served here, on the event loop: with a SQLite file
        # and no Redis it is two local reads (the version, the artifacts cached in
        # the process) and no model call, and a hop to the thread pool would cost
        # more than the whole answer. Anything else (a model answer) goes there.
        q.check_test(namespace)
        served = client.prepared_answer(namespace, context_id, body.question)
        if served is not None:
            return _json(served)
    answer = await run_in_threadpool(_ask_here, request, q, client, namespace, context_id, body)
    return _json(answer)


def _json(model: BaseModel) -> Response:
    """A model as the JSON reply, serialised once: it is already valid (FastAPI would
    validate it against the response model again)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _no_budget(body: AskIn) -> bool:
    """The ask names no thinking budget (the checks of one are the library's ask's)."""
    return (
        body.verbosity is None
        and body.max_tokens is None
        and body.think_tokens is None
        and body.extend == 0
    )


def _event(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


#: One event of ``ask/stream`` (OpenAPI 3.1: the schema of each event of the stream).
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["token", "answer", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.post(
    "/v1/{namespace}/contexts/{context_id:path}/ask/stream",
    tags=["contexts"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the answer as server-sent events: `token` pieces, then one "
            "`answer` (the Answer fields) or one `error`",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        **errors(*MODEL),
    },
)
def ask_stream(
    namespace: str,
    context_id: str,
    body: AskIn,
    request: Request,
    _who: Tenant,
    client: Client,
    q: QuotasDep,
) -> StreamingResponse:
    """The answer as server-sent events while the model writes it: `token` events
    (`{"text": ...}`, a precomputed answer in one piece), then one `answer` event with
    the `Answer` fields, or an `error` event (`{"error": kind, "detail": message}`) if
    the model fails midway. Bad input, unknown contexts and a spent quota get a plain
    JSON error before the stream starts."""
    q.check_test(namespace)
    items = client.ask_stream(
        namespace,
        context_id,
        body.question,
        verbosity=body.verbosity,
        max_tokens=body.max_tokens,
        budget=_budget(body),
    )

    def events() -> Iterator[bytes]:
        try:
            for item in items:
                if isinstance(item, Answer):
                    _count_test(request, q, namespace, item)
                    yield _event("answer", item.model_dump_json())
                else:
                    yield _event("token", json.dumps({"text": item}))
        except SleepTimeError as exc:
            yield _event("error", json.dumps({"error": type(exc).__name__, "detail": str(exc)}))
        except Exception:
            log.exception("streamed answer failed")
            yield _event("error", json.dumps({"error": "InternalError", "detail": "see the log"}))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


#: Waiting and running jobs an explicit sleep looks through for its version's job.
_FIND_SCAN = 1000


def _find_job(queue: JobQueue, namespace: str, context_id: str, version: int) -> Job | None:
    """The waiting or running job of this version, if the queue holds one."""
    for state in ("waiting", "running"):
        for job in queue.list(state, limit=_FIND_SCAN):
            if (job.namespace, job.context_id, job.version) == (namespace, context_id, version):
                return job
    return None


#: Tries to pin the version's existing job at the explicit priority while it moves on
#: (claimed and deferred, or finished, between the read and the promote).
_PROMOTE_TRIES = 5


def _explicit_job(queue: JobQueue, namespace: str, context_id: str, version: int) -> Job | None:
    """The version's job already in the queue, made explicit: a deferred one revived,
    a waiting or running one promoted to :data:`EXPLICIT_PRIORITY` (a running one's
    worker then cannot defer it: the queue refuses, and it sleeps the job). None when
    the version has no job left to pin (finished): the caller sleeps in the request."""
    for _ in range(_PROMOTE_TRIES):
        job = queue.revive(namespace, context_id, version, "explicit sleep") or _find_job(
            queue, namespace, context_id, version
        )
        if job is None:
            return None
        if job.priority >= EXPLICIT_PRIORITY:
            return job
        promoted = queue.promote(job.id, EXPLICIT_PRIORITY)
        if promoted is not None:
            return promoted
    return None


@router.post(
    "/v1/{namespace}/contexts/{context_id:path}/sleep",
    tags=["contexts"],
    status_code=202,
    response_model=None,
    responses={
        202: {"model": SleepQueued, "description": "queued for the workers (the default)"},
        200: {
            "model": SleepReport,
            "description": "with wait=true: the run's report; also when the version's "
            "job had finished already (the report of a run that makes no call when its "
            "artifacts are complete)",
        },
        **errors(*MODEL),
    },
)
def sleep(
    namespace: str,
    context_id: str,
    _who: Tenant,
    client: Client,
    q: QuotasDep,
    body: Annotated[SleepIn | None, Body()] = None,
    wait: Annotated[
        bool, Query(description="run the sleep in this request and answer with its report")
    ] = False,
) -> Response:
    """Sleep-time compute on the current version. By default it is queued for the
    workers (`sleeptime worker`, or `sleeptime serve --worker`) ahead of their other
    due jobs and answered at once: 202 with the job (a job already waiting, running or
    deferred for this version is that job, raised to the explicit priority, so no
    sleep policy defers it). `wait=true` (query or body) runs it in this request
    and answers with its report, as do `k` and `questions`, which apply to a run in
    this request only (422 without `wait`). 429 ``QuotaExceeded`` once the namespace's
    sleep-time tokens today reach ``SLEEPTIME_QUOTA_SLEEP_TOKENS``."""
    body = body or SleepIn()
    q.check_sleep(namespace)
    if wait or body.wait:
        report = client.sleep(namespace, context_id, k=body.k, n_questions=body.questions)
        return JSONResponse(report.model_dump(mode="json"), status_code=200)
    if body.k is not None or body.questions is not None:
        raise InvalidInput(
            "k and questions apply to a sleep run in this request: add wait=true (a "
            "queued sleep runs with the workers' settings)"
        )
    version = client.context(namespace, context_id).version  # 404 for an unknown context
    queue = client.open_queue()
    job = queue.enqueue(namespace, context_id, version, priority=EXPLICIT_PRIORITY)
    if job is None:
        job = _explicit_job(queue, namespace, context_id, version)
    if job is None:
        # The version's job finished (or kept moving on under the promote): an
        # explicit sleep always runs. A version whose
        # artifacts are complete is skipped at once (no model call).
        report = client.sleep(namespace, context_id, version=version)
        return JSONResponse(report.model_dump(mode="json"), status_code=200)
    out = SleepQueued(
        job=JobOut.model_validate(job.to_dict()),
        note="queued for the workers; GET the context to see its artifacts when done",
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=202)


@router.delete(
    "/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"], responses=errors(*KEYED)
)
def delete_context(namespace: str, context_id: str, _who: Tenant, client: Client) -> DeleteCounts:
    """Delete a context: text, versions, artifacts, KV blobs, cache entries. The
    ledger keeps token counts; the query log keeps rows without their text."""
    return client.delete(namespace, context_id)


@router.delete("/v1/{namespace}", tags=["contexts"], responses=errors(*KEYED))
def delete_namespace(namespace: str, _who: Tenant, client: Client) -> DeleteCounts:
    """Delete every context of the namespace (as the context delete)."""
    return client.delete_namespace(namespace)


# -- operator routes ------------------------------------------------------------------

#: "pending" is the earlier name of "waiting" (the state jobs report) and still accepted.
JobState = Literal["waiting", "pending", "running", "dead", "deferred"]


@router.get("/v1/admin/jobs", tags=["operations"], responses=errors(*KEYED))
def jobs(
    _who: Admin,
    client: Client,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most jobs listed")] = 100,
) -> JobsOut:
    """Waiting, running and dead jobs, the counts per state and the live workers."""
    queue = client.open_queue()
    return JobsOut(
        counts=queue.counts(),
        workers=[w for w in queue.workers() if w.get("state") != "stopped"],
        jobs=[JobOut.model_validate(j.to_dict()) for j in queue.list(state, limit=limit)],
    )


@router.post("/v1/admin/jobs/{job_id}/retry", tags=["operations"], responses=errors(*KEYED))
def retry_job(job_id: str, _who: Admin, client: Client) -> JobOut:
    """Put a dead job back in the queue with its delivery count reset."""
    return JobOut.model_validate(client.open_queue().retry(job_id).to_dict())
