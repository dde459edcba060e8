"""The operator dashboard: one server-rendered HTML page at ``/dashboard`` (queue
depth and ages, running, deferred and dead jobs with their errors (a deferred job: the
sleep policy's reason) and a retry button, contexts
with their versions and artifact status, the savings ledger with a small chart).

A browser cannot send a Bearer header, so the page signs in with an admin key pasted
into a form once. The cookie it gets is not the key: it is a session token (the key's
id and an expiry, signed with HMAC-SHA256 under the server's secret,
``SLEEPTIME_SESSION_SECRET`` or a random one per process), in an HttpOnly,
SameSite=Strict cookie (which also keeps other sites from posting the retry form). The
token opens the dashboard routes only, for :data:`SESSION_S` seconds and while its key
is an admin key: it is no Bearer key, and a revoked key's sessions end at once.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sleeptime.api import SleepTime
from sleeptime.server.auth import Principal, authenticate

router = APIRouter(tags=["dashboard"])

COOKIE = "sleeptime_session"
#: How long a dashboard sign-in lasts.
SESSION_S = 12 * 3600


class Sessions:
    """Issues and checks the dashboard's session tokens: ``KEYID.EXPIRES.MAC``, the MAC
    an HMAC-SHA256 of the rest under ``secret`` (a random one when None: sessions then
    last as long as this process). Stateless: server processes sharing the secret
    accept each other's tokens."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret.encode("utf-8") if secret else secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, now: float | None = None) -> str:
        expires = int(time.time() if now is None else now) + SESSION_S
        payload = f"{key_id}.{expires}"
        return f"{payload}.{self._mac(payload)}"

    def key_id(self, token: str, now: float | None = None) -> str | None:
        """The key id a valid, unexpired token was issued for; None otherwise."""
        payload, _, mac = token.rpartition(".")
        key_id, _, expires = payload.partition(".")
        if not key_id or not expires.isdigit():
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        return key_id


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.dead{color:#a00}.ok{color:#070}.muted{color:#777}.cards span{display:inline-block;
margin-right:1.2rem;padding:.4rem .7rem;border:1px solid #ddd;border-radius:6px}
svg{display:block;margin-top:.8rem}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _login(message: str = "", status: int = 401) -> HTMLResponse:
    note = f"<p class='dead' id='login-error'>{html.escape(message)}</p>" if message else ""
    return _page(
        "sleeptime: sign in",
        "<h1>sleeptime dashboard</h1>"
        f"{note}<form method='post' action='/dashboard/login'>"
        "<label>Admin key <input type='password' name='key' id='key' size='60'></label> "
        "<button type='submit' id='sign-in'>Sign in</button></form>"
        "<p class='muted'>Create one with <code>sleeptime keys create --admin</code>.</p>",
        status,
    )


def _who(request: Request) -> Principal | None:
    """An admin key's Bearer header, or a signed session cookie whose key is still an
    admin key (looked up by id: a revoked key's sessions end with it)."""
    client: SleepTime = request.app.state.client
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
        return authenticate(client.store, key) if key else None
    token = request.cookies.get(COOKIE)
    sessions: Sessions = request.app.state.sessions
    key_id = sessions.key_id(token) if token else None
    if key_id is None:
        return None
    for found_id, namespace, admin in client.store.api_keys():
        if found_id == key_id and admin:
            return Principal(key_id=key_id, namespace=namespace, admin=True)
    return None


def _guard(request: Request) -> Response | None:
    """None for an admin; otherwise the response to send (401 sign-in page, 403)."""
    who = _who(request)
    if who is None:
        return _login()
    if not who.admin:
        return _page(
            "sleeptime: forbidden", "<h1>403</h1><p>The dashboard needs an admin key.</p>", 403
        )
    return None


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _chart(rows: list[dict[str, Any]]) -> str:
    """Sleep vs test tokens of the busiest contexts, as an inline SVG bar chart."""
    top = sorted(rows, key=lambda r: r["sleep_tokens"] + r["test_tokens"], reverse=True)[:8]
    if not top:
        return ""
    peak = max(max(r["sleep_tokens"], r["test_tokens"]) for r in top) or 1
    bar_h, gap, label_w, width = 10, 8, 220, 320
    parts = []
    for i, r in enumerate(top):
        y = i * (2 * bar_h + gap)
        name = html.escape(f"{r['namespace']}/{r['context_id']}"[:32])
        sw = width * r["sleep_tokens"] / peak
        tw = width * r["test_tokens"] / peak
        parts.append(
            f"<text x='0' y='{y + bar_h + 3}' font-size='11'>{name}</text>"
            f"<rect x='{label_w}' y='{y}' width='{sw:.1f}' height='{bar_h}' fill='#5b8def'/>"
            f"<rect x='{label_w}' y='{y + bar_h}' width='{tw:.1f}' height='{bar_h}' "
            "fill='#e8a33d'/>"
        )
    height = len(top) * (2 * bar_h + gap)
    return (
        f"<svg id='ledger-chart' width='{label_w + width + 10}' height='{height}' role='img' "
        "aria-label='sleep-time (blue) vs test-time (orange) tokens per context'>"
        + "".join(parts)
        + "</svg><p class='muted'>blue: sleep-time tokens, orange: test-time tokens</p>"
    )


def _responses(html: dict[int, str], *json_codes: int) -> dict[int | str, dict[str, Any]]:
    """The schema's statuses of a dashboard route: pages (``html``) and JSON errors."""
    from sleeptime.server.routes import errors

    page = {"text/html": {"schema": {"type": "string"}}}
    out: dict[int | str, dict[str, Any]] = {
        code: {"description": what, "content": page} for code, what in html.items()
    }
    for code, entry in errors(*json_codes).items():
        # the JSON error body by reference: "model" would be put under text/html here
        ref = {"$ref": "#/components/schemas/ErrorOut"}
        json_entry = {k: v for k, v in entry.items() if k != "model"}
        out[code] = {**json_entry, "content": {"application/json": {"schema": ref}}}
    return out


_SIGN_IN = {401: "the sign-in page: no key or session", 403: "a tenant key (needs an admin key)"}
_BACK = {303: "back to the dashboard, with a note"}


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    responses=_responses({200: "the dashboard", **_SIGN_IN}, 413, 422, 503),
)
def dashboard(request: Request, note: str = "") -> Response:
    """The operator dashboard (an admin key, as a Bearer header or the sign-in cookie)."""
    refused = _guard(request)
    if refused is not None:
        return refused
    client: SleepTime = request.app.state.client
    queue = client.open_queue()
    counts = queue.counts()
    jobs = queue.list(None, limit=200)
    workers = [w for w in queue.workers() if w.get("state") != "stopped"]
    contexts = client.store.overview()
    now = time.time()
    waiting = [j for j in jobs if j.state in ("waiting", "queued")]
    oldest = max((now - j.enqueued_at for j in waiting), default=0.0)
    e = html.escape

    cards = "".join(f"<span id='count-{e(k)}'>{e(k)} <b>{v}</b></span>" for k, v in counts.items())
    cards += f"<span>oldest waiting <b>{_age(oldest) if waiting else '-'}</b></span>"
    cards += f"<span>live workers <b>{len(workers)}</b></span>"

    job_rows = []
    for j in jobs:
        if j.state not in ("running", "deferred", "dead"):
            continue
        button = ""
        if j.state == "dead":
            # a retry of a deleted context's job could only fail again ("no context")
            button = (
                f"<form method='post' action='/dashboard/jobs/{quote(j.id, safe='')}/retry'>"
                f"<button type='submit' class='retry' data-job='{e(j.id)}'>Retry</button></form>"
                if client.store.current_version(j.namespace, j.context_id) is not None
                else "<span class='muted gone'>context deleted</span>"
            )
        job_rows.append(
            f"<tr class='job {e(j.state)}' data-job='{e(j.id)}'><td>{e(j.state)}</td>"
            f"<td>{e(j.namespace)}/{e(j.context_id)}</td><td class='num'>{j.version}</td>"
            f"<td class='num'>{j.deliveries}</td><td>{_age(now - j.enqueued_at)}</td>"
            f"<td>{e(j.worker or '')}</td><td class='error'>{e(j.error or '')}</td>"
            f"<td>{button}</td></tr>"
        )
    jobs_html = (
        "<table id='jobs'><tr><th>state</th><th>context</th><th>v</th><th>tries</th>"
        "<th>age</th><th>worker</th><th>error or reason</th><th></th></tr>"
        + "".join(job_rows)
        + "</table>"
        if job_rows
        else "<p class='muted' id='jobs'>no running, deferred or dead jobs</p>"
    )

    ctx_rows = "".join(
        f"<tr><td>{e(r['namespace'])}</td><td>{e(r['context_id'])}</td>"
        f"<td class='num'>{r['version']}</td><td class='num'>{r['versions']}</td>"
        f"<td class='{'ok' if r['complete'] else 'muted'}'>"
        f"{'complete' if r['complete'] else 'pending'}</td>"
        f"<td class='num'>{r['sleep_tokens']:,}</td><td class='num'>{r['test_tokens']:,}</td>"
        f"<td class='num'>{r['queries']:,}</td><td class='num'>{r['zero_token_answers']:,}</td>"
        f"<td class='num'>{_per_query(r)}</td><td class='num'>{r['saved_tokens']:,}</td>"
        f"<td class='num'>{_break_even(r)}</td></tr>"
        for r in contexts
    )
    quotas_html = _quotas(request, sorted({r["namespace"] for r in contexts}))
    total_sleep = sum(r["sleep_tokens"] for r in contexts)
    total_test = sum(r["test_tokens"] for r in contexts)
    total_q = sum(r["queries"] for r in contexts)
    total_zero = sum(r["zero_token_answers"] for r in contexts)
    total_saved = sum(r["saved_tokens"] for r in contexts)
    amortized = f"{(total_sleep + total_test) / total_q:,.0f}" if total_q else "-"
    notice = f"<p class='ok' id='note'>{e(note)}</p>" if note else ""
    body = (
        "<h1>sleeptime dashboard</h1>"
        f"{notice}<h2>Queue</h2><div class='cards'>{cards}</div>"
        f"<h2>Running, deferred and dead jobs</h2>{jobs_html}"
        "<h2>Savings ledger</h2><div class='cards'>"
        f"<span>sleep-time tokens <b id='total-sleep'>{total_sleep:,}</b></span>"
        f"<span>test-time tokens <b id='total-test'>{total_test:,}</b></span>"
        f"<span>queries <b id='total-queries'>{total_q:,}</b></span>"
        f"<span>zero-token answers <b id='total-zero'>{total_zero:,}</b></span>"
        f"<span>tokens per query, amortized <b>{amortized}</b></span>"
        f"<span>prompt tokens saved vs cold <b id='total-saved'>{total_saved:,}</b></span></div>"
        f"{_chart(contexts)}{quotas_html}"
        "<h2>Contexts</h2><table id='contexts'><tr><th>namespace</th><th>context</th>"
        "<th>version</th><th>versions kept</th><th>artifacts</th><th>sleep tokens</th>"
        "<th>test tokens</th><th>queries</th><th>zero-token</th><th>tokens/query</th>"
        "<th>saved vs cold</th><th>break-even (queries)</th></tr>"
        f"{ctx_rows}</table>"
    )
    return _page("sleeptime dashboard", body)


def _quotas(request: Request, namespaces: list[str]) -> str:
    """Today's (UTC) use of each namespace's daily token quotas, when any is set."""
    q = getattr(request.app.state, "quotas", None)
    if q is None or not q.enabled:
        return ""
    e = html.escape

    def cell(part: dict[str, Any]) -> str:
        if part["limit"] is None:
            return f"<td class='num'>{part['used']:,}</td>"
        full = part["left"] == 0
        return (
            f"<td class='num{' error' if full else ''}'>{part['used']:,} / {part['limit']:,}</td>"
        )

    rows = []
    for ns in namespaces[:200]:
        use = q.usage(ns)
        rows.append(
            f"<tr class='quota' data-namespace='{e(ns)}'><td>{e(ns)}</td>"
            f"{cell(use['test'])}{cell(use['sleep'])}</tr>"
        )
    return (
        "<h2>Quotas today (UTC)</h2><table id='quotas'><tr><th>namespace</th>"
        "<th>test-time tokens</th><th>sleep-time tokens</th></tr>" + "".join(rows) + "</table>"
    )


def _break_even(row: dict[str, Any]) -> str:
    """Queries whose prompt-token savings repay the context's sleep-time tokens, at
    the mean saving so far (as ``Ledger.break_even_queries``)."""
    if not row["queries"] or not row["saved_tokens"]:
        return "-"
    return f"{row['sleep_tokens'] / (row['saved_tokens'] / row['queries']):,.1f}"


def _per_query(row: dict[str, Any]) -> str:
    if not row["queries"]:
        return "-"
    return f"{(row['sleep_tokens'] + row['test_tokens']) / row['queries']:,.0f}"


@router.post(
    "/dashboard/login",
    response_class=HTMLResponse,
    status_code=303,
    responses=_responses({**_BACK, **_SIGN_IN}, 413, 422, 503),
)
async def login(request: Request) -> Response:
    """Sign in with an admin key (form field ``key``); sets the dashboard cookie."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    client: SleepTime = request.app.state.client
    who = authenticate(client.store, key) if key else None
    if who is None:
        return _login("unknown or revoked key")
    if not who.admin:
        return _login("that is a tenant key; the dashboard needs an admin key", 403)
    response = RedirectResponse("/dashboard", status_code=303)
    sessions: Sessions = request.app.state.sessions
    response.set_cookie(
        COOKIE,
        sessions.issue(who.key_id),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/dashboard",
    )
    return response


@router.post(
    "/dashboard/jobs/{job_id}/retry",
    response_class=HTMLResponse,
    status_code=303,
    responses=_responses({**_BACK, **_SIGN_IN}, 404, 413, 422, 503),
)
def retry(request: Request, job_id: str) -> Response:
    """The retry button: put a dead job back in the queue, then show the page again."""
    refused = _guard(request)
    if refused is not None:
        return refused
    client: SleepTime = request.app.state.client
    queue = client.open_queue()
    dead = next((j for j in queue.list("dead", limit=10_000) if j.id == job_id), None)
    if dead is not None and client.store.current_version(dead.namespace, dead.context_id) is None:
        note = (
            f"job {dead.id} not retried: its context {dead.namespace}/{dead.context_id} was deleted"
        )
        return RedirectResponse(f"/dashboard?note={quote(note)}", status_code=303)
    job = queue.retry(job_id)
    note = f"job {job.id} ({job.namespace}/{job.context_id} v{job.version}) is waiting again"
    return RedirectResponse(f"/dashboard?note={quote(note)}", status_code=303)
