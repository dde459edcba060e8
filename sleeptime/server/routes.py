"""The ``/v1`` routes. Handlers are plain functions: FastAPI runs them in its thread
pool, so a model call or a database round trip never blocks the event loop.

Context ids may contain ``/`` (``docs/readme.md``), so they are ``:path`` parameters.
A route with a suffix (``/ledger``, ``/ask``, ...) is registered before the bare
route of the same method, which would otherwise take the suffix as part of the id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from sleeptime.api import SleepTime
from sleeptime.errors import InvalidInput, SleepTimeError
from sleeptime.models import Answer, Budget, ContextVersion, DeleteCounts, Ledger
from sleeptime.server.auth import Principal, authenticate
from sleeptime.validation import MAX_EXTEND, MAX_QUESTIONS, MAX_SLEEP_K

router = APIRouter()
log = logging.getLogger("sleeptime.server")
_bearer = HTTPBearer(auto_error=False, description="a key from `sleeptime keys create`")


def client(request: Request) -> SleepTime:
    st: SleepTime = request.app.state.st
    return st


Client = Annotated[SleepTime, Depends(client)]


def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """401 without a key, or with one the store does not know."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "missing API key: send Authorization: Bearer KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = authenticate(client(request).store, creds.credentials)
    if found is None:
        raise HTTPException(
            401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return found


def tenant(namespace: str, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """403 when the key belongs to another namespace."""
    if not who.may_use(namespace):
        raise HTTPException(403, f"this key is not valid for namespace {namespace!r}")
    return who


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """403 unless the key is an admin key (`sleeptime keys create --admin`)."""
    if not who.admin:
        raise HTTPException(403, "operator route: needs an admin key")
    return who


Tenant = Annotated[Principal, Depends(tenant)]
Admin = Annotated[Principal, Depends(admin)]


# -- bodies and replies -------------------------------------------------------------

#: Request bodies are as strict as the library: no coercion ("1" and true are not
#: integers, 1.0 is not one either) and no unknown fields (a misspelt option is an
#: error, not silently ignored). The bounds are sleeptime.validation's, which the
#: library checks again (the token ceiling and the model's window only there).
STRICT = ConfigDict(extra="forbid", strict=True)


class ContextIn(BaseModel):
    model_config = STRICT

    text: str = Field(description="the context's full text; a new version when it changed")


class ContextOut(BaseModel):
    namespace: str
    context_id: str
    version: int
    created: bool = Field(description="a new version was stored (false: text unchanged)")
    content_hash: str
    chars: int


class AskIn(BaseModel):
    model_config = STRICT

    question: str
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


class ShowOut(BaseModel):
    context: ContextOut
    versions: list[int] = Field(description="versions still stored (retention prunes older)")
    artifacts: dict[str, Any]
    ledger: Ledger


# -- open routes ----------------------------------------------------------------------


@router.get("/health", tags=["operations"])
def health(st: Client) -> dict[str, str]:
    """Liveness and database reachability (503 ``database unavailable`` when the
    database is down; the reason goes to the server log, never to this open route)."""
    st.store.ping()
    return {"status": "ok"}


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this server (requests by route and status, latency)."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


# -- tenant routes --------------------------------------------------------------------


@router.get("/v1/{namespace}/contexts", tags=["contexts"])
def list_contexts(namespace: str, _who: Tenant, st: Client) -> dict[str, list[str]]:
    """Ids of the contexts stored in a namespace."""
    return {"contexts": st.store.context_ids(namespace)}


def _context_out(ctx: ContextVersion) -> ContextOut:
    return ContextOut(
        namespace=ctx.namespace,
        context_id=ctx.context_id,
        version=ctx.version,
        created=ctx.created,
        content_hash=ctx.content_hash,
        chars=len(ctx.text),
    )


@router.put("/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"])
def put_context(
    namespace: str, context_id: str, body: ContextIn, _who: Tenant, st: Client
) -> ContextOut:
    """Store a context (a new version when its text changed); sleep-time compute is
    queued for the workers."""
    ctx = st.ingest(namespace, context_id, body.text)
    return _context_out(ctx)


@router.post("/v1/{namespace}/contexts/{context_id:path}/append", tags=["contexts"])
def append_context(
    namespace: str, context_id: str, body: ContextIn, _who: Tenant, st: Client
) -> ContextOut:
    """Append ``text`` to a context (a log, a thread) as a new version; sleep-time work
    on it is incremental."""
    ctx = st.append(namespace, context_id, body.text)
    return _context_out(ctx)


@router.get("/v1/{namespace}/contexts/{context_id:path}/ledger", tags=["contexts"])
def ledger(namespace: str, context_id: str, _who: Tenant, st: Client) -> Ledger:
    """Sleep-time vs test-time tokens spent on a context, and queries answered."""
    st.context(namespace, context_id)  # 404 for a context that does not exist
    return st.ledger(namespace, context_id)


@router.get("/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"])
def show_context(namespace: str, context_id: str, _who: Tenant, st: Client) -> ShowOut:
    """The current version, its artifacts (learned context, predicted Q&As) and the ledger."""
    ctx = st.context(namespace, context_id)
    arts = st.artifacts(namespace, context_id)
    return ShowOut(
        context=_context_out(ctx),
        versions=st.store.versions(namespace, context_id),
        artifacts=arts.model_dump(mode="json"),
        ledger=st.ledger(namespace, context_id),
    )


def _budget(body: AskIn) -> Budget | None:
    """A thinking budget when one is asked for; else ask() builds the default."""
    return Budget.thinking(
        verbosity=body.verbosity,
        max_tokens=body.max_tokens,
        think_tokens=body.think_tokens,
        extend=body.extend,
    )


@router.post("/v1/{namespace}/contexts/{context_id:path}/ask", tags=["contexts"])
def ask(namespace: str, context_id: str, body: AskIn, _who: Tenant, st: Client) -> Answer:
    """Answer a question with whatever sleep-time work exists (the `Answer` fields)."""
    return st.ask(
        namespace,
        context_id,
        body.question,
        verbosity=body.verbosity,
        max_tokens=body.max_tokens,
        budget=_budget(body),
    )


def _event(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


@router.post(
    "/v1/{namespace}/contexts/{context_id:path}/ask/stream",
    tags=["contexts"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def ask_stream(
    namespace: str, context_id: str, body: AskIn, _who: Tenant, st: Client
) -> StreamingResponse:
    """The answer as server-sent events while the model writes it: `token` events
    (`{"text": ...}`, a precomputed answer in one piece), then one `answer` event with
    the `Answer` fields, or an `error` event (`{"error": kind, "detail": message}`) if
    the model fails midway. Bad input and unknown contexts get a plain JSON error
    before the stream starts."""
    items = st.ask_stream(
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


@router.post("/v1/{namespace}/contexts/{context_id:path}/sleep", tags=["contexts"])
def sleep(
    namespace: str, context_id: str, _who: Tenant, st: Client, body: SleepIn | None = None
) -> dict[str, Any]:
    """Run sleep-time compute on the current version now, in this server (blocks until
    done; workers do this in the background without being asked)."""
    body = body or SleepIn()
    report = st.sleep(namespace, context_id, k=body.k, n_questions=body.questions)
    return report.model_dump(mode="json")


@router.delete("/v1/{namespace}/contexts/{context_id:path}", tags=["contexts"])
def delete_context(namespace: str, context_id: str, _who: Tenant, st: Client) -> DeleteCounts:
    """Delete a context: text, versions, artifacts, KV blobs, cache entries. The
    ledger keeps token counts; the query log keeps rows without their text."""
    return st.delete(namespace, context_id)


@router.delete("/v1/{namespace}", tags=["contexts"])
def delete_namespace(namespace: str, _who: Tenant, st: Client) -> DeleteCounts:
    """Delete every context of the namespace (as the context delete)."""
    return st.delete_namespace(namespace)


# -- operator routes ------------------------------------------------------------------

#: "pending" is the earlier name of "waiting" (the state jobs report) and still accepted.
_STATES = ("waiting", "pending", "running", "dead")


@router.get("/v1/admin/jobs", tags=["operations"])
def jobs(_who: Admin, st: Client, state: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Waiting, running and dead jobs, the counts per state and the live workers."""
    if state is not None and state not in _STATES:
        raise InvalidInput(f"state must be waiting, running or dead (got {state!r})")
    if not 1 <= limit <= 10_000:
        raise InvalidInput(f"limit must be 1-10000 (got {limit})")
    queue = st.open_queue()
    return {
        "counts": queue.counts(),
        "workers": [w for w in queue.workers() if w.get("state") != "stopped"],
        "jobs": [j.to_dict() for j in queue.list(state, limit=limit)],
    }


@router.post("/v1/admin/jobs/{job_id}/retry", tags=["operations"])
def retry_job(job_id: str, _who: Admin, st: Client) -> dict[str, Any]:
    """Put a dead job back in the queue with its delivery count reset."""
    return st.open_queue().retry(job_id).to_dict()
