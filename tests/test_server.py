"""The HTTP API (`sleeptime serve`): the tenant-key matrix over every route, errors as
one-line JSON, keys stored as hashes, and the real server started as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the server extra (the README test command)")
import httpx
from fastapi.testclient import TestClient

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.errors import ModelUnavailable, StoreUnavailable
from sleeptime.server import create_app
from sleeptime.server.auth import create_key, hash_key
from sleeptime.server.dashboard import COOKIE, SESSION_S, Sessions
from sleeptime.store.schema import ApiKeyRow

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."
Q = "How many apples are there?"


@pytest.fixture
def st(sqlite_url: str) -> Iterator[SleepTime]:
    settings = Settings(model="fake", n_questions=2, idle_after=3600.0)
    client = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    for ns in ("a", "b"):
        client.ingest(ns, "doc", TEXT)
        client.sleep(ns, "doc")
    yield client
    client.close()


@pytest.fixture
def api(st: SleepTime) -> Iterator[TestClient]:
    with TestClient(create_app(st, close=False)) as tc:
        yield tc


@pytest.fixture
def keys(st: SleepTime) -> dict[str, str]:
    return {
        "a": create_key(st.store, "a")[1],
        "b": create_key(st.store, "b")[1],
        "admin": create_key(st.store, None, admin=True)[1],
    }


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


# Every route under /v1: (method, path, JSON body, admin only). The path's namespace
# is always "a"; a route missing here fails test_every_route_is_in_the_matrix.
Call = tuple[str, str, dict[str, Any] | None, bool]
MATRIX: dict[tuple[str, str], Call] = {
    ("GET", "/v1/{namespace}/contexts"): ("GET", "/v1/a/contexts", None, False),
    ("GET", "/v1/{namespace}/usage"): ("GET", "/v1/a/usage", None, False),
    ("PUT", "/v1/{namespace}/contexts/{context_id}"): (
        "PUT",
        "/v1/a/contexts/new",
        {"text": "Cid has 5 pears."},
        False,
    ),
    ("GET", "/v1/{namespace}/contexts/{context_id}"): ("GET", "/v1/a/contexts/doc", None, False),
    ("POST", "/v1/{namespace}/contexts/{context_id}/append"): (
        "POST",
        "/v1/a/contexts/more/append",
        {"text": "Dan has 2 cats."},
        False,
    ),
    ("POST", "/v1/{namespace}/contexts/{context_id}/ask"): (
        "POST",
        "/v1/a/contexts/doc/ask",
        {"question": Q},
        False,
    ),
    ("POST", "/v1/{namespace}/contexts/{context_id}/ask/stream"): (
        "POST",
        "/v1/a/contexts/doc/ask/stream",
        {"question": Q},
        False,
    ),
    ("POST", "/v1/{namespace}/contexts/{context_id}/sleep"): (
        "POST",
        "/v1/a/contexts/doc/sleep",
        {"wait": True},
        False,
    ),
    ("GET", "/v1/{namespace}/contexts/{context_id}/ledger"): (
        "GET",
        "/v1/a/contexts/doc/ledger",
        None,
        False,
    ),
    ("DELETE", "/v1/{namespace}/contexts/{context_id}"): (
        "DELETE",
        "/v1/a/contexts/doc",
        None,
        False,
    ),
    ("DELETE", "/v1/{namespace}"): ("DELETE", "/v1/a", None, False),
    ("GET", "/v1/admin/jobs"): ("GET", "/v1/admin/jobs", None, True),
    ("POST", "/v1/admin/jobs/{job_id}/retry"): ("POST", "/v1/admin/jobs/nope/retry", None, True),
    ("GET", "/dashboard"): ("GET", "/dashboard", None, True),
    ("POST", "/dashboard/jobs/{job_id}/retry"): ("POST", "/dashboard/jobs/nope/retry", None, True),
}
#: Routes that need no key (no tenant data).
OPEN = {"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
#: The dashboard's sign-in form checks the key it is given (tests/test_dashboard.py).
OPEN.add("/dashboard/login")


def test_every_route_is_in_the_matrix(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    seen = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path not in OPEN
        for method in ops
    }
    assert seen == set(MATRIX)


def _request(api: TestClient, call: Call, key: str | None) -> httpx.Response:
    method, path, body, _ = call
    return api.request(method, path, json=body, headers=auth(key))


def _intact(st: SleepTime) -> None:
    assert st.store.context_ids("a") == ["doc"]
    assert st.artifacts("a", "doc").complete


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_tenant_key_matrix(
    route: tuple[str, str], api: TestClient, st: SleepTime, keys: dict[str, str]
) -> None:
    call = MATRIX[route]
    admin_only = call[3]
    for key in (None, "stk_0000_bogus", "not-even-our-format", keys["a"] + "x"):
        r = _request(api, call, key)
        assert r.status_code == 401, (key, r.text)
        if call[1].startswith("/v1/"):
            assert r.headers["www-authenticate"] == "Bearer"
            assert set(r.json()) == {"error", "message"}
        else:  # the dashboard answers a browser with its sign-in page
            assert "Sign in" in r.text
    r = _request(api, call, keys["b"])  # another tenant's key
    assert r.status_code == 403, r.text
    _intact(st)  # a refused request wrote nothing
    if admin_only:
        r = _request(api, call, keys["a"])
        assert r.status_code == 403, r.text
        r = _request(api, call, keys["admin"])
        # the retry of an unknown job is a 404 *after* authentication
        assert r.status_code == (404 if "retry" in call[1] else 200), r.text
        return
    r = _request(api, call, keys["a"])
    assert r.status_code == 200, r.text
    # b's data is never touched by a's requests
    assert st.store.context_ids("b") == ["doc"] and st.artifacts("b", "doc").complete
    r = _request(api, ("PUT", "/v1/a/contexts/doc", {"text": TEXT}, False), keys["admin"])
    assert r.status_code == 200  # an admin key opens every namespace


def test_routes_do_what_they_say(api: TestClient, st: SleepTime, keys: dict[str, str]) -> None:
    h = auth(keys["a"])
    r = api.put("/v1/a/contexts/c1", json={"text": "Dan has 2 cats."}, headers=h)
    assert r.json()["version"] == 1 and r.json()["created"] is True
    r = api.put("/v1/a/contexts/c1", json={"text": "Dan has 2 cats."}, headers=h)
    assert r.json()["created"] is False
    r = api.post("/v1/a/contexts/c1/append", json={"text": " Eve has 1 dog."}, headers=h)
    assert r.json()["version"] == 2 and r.json()["chars"] == len("Dan has 2 cats. Eve has 1 dog.")
    ans = api.post("/v1/a/contexts/doc/ask", json={"question": Q, "max_tokens": 8}, headers=h)
    assert ans.status_code == 200
    body = ans.json()
    assert set(body) >= {"text", "source", "usage", "latency_ms", "version", "serve_reason"}
    shown = api.get("/v1/a/contexts/doc", headers=h).json()
    assert shown["context"]["version"] == 1 and shown["versions"] == [1]
    assert shown["artifacts"]["complete"] is True and len(shown["artifacts"]["qas"]) == 2
    assert shown["ledger"]["queries"] >= 1
    assert api.get("/v1/a/contexts", headers=h).json() == {"contexts": ["c1", "doc"]}
    gone = api.delete("/v1/a/contexts/c1", headers=h).json()
    assert gone["contexts"] == 1 and gone["versions"] == 2
    assert api.get("/v1/a/contexts/c1", headers=h).status_code == 404
    jobs = api.get("/v1/admin/jobs", headers=auth(keys["admin"])).json()
    assert set(jobs) == {"counts", "workers", "jobs"}
    assert "c1" in {j["context_id"] for j in jobs["jobs"]}  # ingests over HTTP are enqueued


def test_context_ids_with_slashes_work_on_every_route(
    api: TestClient, st: SleepTime, keys: dict[str, str]
) -> None:
    h = auth(keys["a"])
    base = "/v1/a/contexts/docs/2026/readme.md"
    assert api.put(base, json={"text": TEXT}, headers=h).status_code == 200
    assert st.store.context_ids("a") == ["doc", "docs/2026/readme.md"]
    assert api.post(f"{base}/sleep", json={"wait": True}, headers=h).status_code == 200
    shown = api.get(base, headers=h).json()
    assert shown["context"]["context_id"] == "docs/2026/readme.md"
    answer = api.post(f"{base}/ask", json={"question": Q}, headers=h).json()
    assert answer["version"] == 1
    ledger = api.get(f"{base}/ledger", headers=h).json()
    assert ledger["context_id"] == "docs/2026/readme.md" and ledger["queries"] == 1
    assert api.post(f"{base}/append", json={"text": "More."}, headers=h).status_code == 200
    assert api.delete(base, headers=h).status_code == 200
    assert st.store.context_ids("a") == ["doc"]


def test_errors_are_one_line_json(
    api: TestClient, st: SleepTime, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = auth(keys["a"])
    r = api.post("/v1/a/contexts/missing/ask", json={"question": Q}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "ContextNotFound"
    r = api.post("/v1/a/contexts/doc/ask", json={"question": "  "}, headers=h)
    assert r.status_code == 422 and r.json() == {
        "error": "InvalidInput",
        "message": "question is empty",
    }
    r = api.post("/v1/a/contexts/doc/ask", json={"question": Q, "verbosity": 9}, headers=h)
    assert r.status_code == 422 and "verbosity" in r.json()["message"]
    r = api.put("/v1/a/contexts/doc", content=b"not json", headers=h)
    assert r.status_code == 422 and r.json()["error"] == "InvalidInput"
    r = api.get("/v1/admin/jobs?state=bogus", headers=auth(keys["admin"]))
    assert r.status_code == 422

    def down(*_a: Any, **_k: Any) -> Any:
        raise ModelUnavailable("provider timed out after 4 tries; try later\nsecret detail")

    monkeypatch.setattr(st, "ask", down)
    r = api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=h)
    assert r.status_code == 503
    assert r.json() == {
        "error": "ModelUnavailable",
        "message": "provider timed out after 4 tries; try later",
    }

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("password=hunter2")

    monkeypatch.setattr(st, "ask", boom)
    with TestClient(create_app(st, close=False), raise_server_exceptions=False) as tc:
        r = tc.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=h)
    assert r.status_code == 500 and "hunter2" not in r.text and "Traceback" not in r.text


def test_open_routes(api: TestClient, keys: dict[str, str]) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=auth(keys["a"]))
    metrics = api.get("/metrics").text
    assert 'sleeptime_http_requests_total{route="/v1/{namespace}/contexts/{context_id}/ask"' in (
        metrics
    )
    spec = api.get("/openapi.json").json()
    assert "/v1/{namespace}/contexts/{context_id}/ask" in spec["paths"]
    assert api.get("/docs").status_code == 200


def test_keys_are_stored_as_hashes_only(st: SleepTime) -> None:
    key_id, key = create_key(st.store, "a")
    with st.store.session() as s:
        rows = s.query(ApiKeyRow).all()
    assert [r.key_hash for r in rows] == [hash_key(key)]
    assert all(key not in (r.key_hash, r.key_id, r.namespace) for r in rows)
    assert st.store.revoke_api_key(key_id)
    assert st.store.find_api_key(hash_key(key)) is None


def test_key_lookup_and_revocation_on_both_backends(database_url: str) -> None:
    """The per-request key lookup takes the fast read path (a per-thread SQLite
    connection, autocommit on PostgreSQL) and caches nothing: a key revoked by another
    process is refused at the very next request."""
    settings = Settings(model="fake")
    with (
        SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings) as server,
        SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings) as cli,
    ):
        tenant_id, tenant = create_key(cli.store, "acme")
        _admin_id, admin = create_key(cli.store, None, admin=True)
        assert server.store.find_api_key(hash_key(tenant)) == ("acme", False)
        assert server.store.find_api_key(hash_key(admin)) == ("", True)
        assert server.store.find_api_key(hash_key(tenant + "x")) is None
        with TestClient(create_app(server, close=False)) as api:
            auth = {"Authorization": f"Bearer {tenant}"}
            assert api.get("/v1/acme/contexts", headers=auth).status_code == 200
            assert cli.store.revoke_api_key(tenant_id)
            assert api.get("/v1/acme/contexts", headers=auth).status_code == 401
        assert server.store.find_api_key(hash_key(tenant)) is None


def test_a_database_outage_is_a_503_and_the_api_recovers_by_itself() -> None:
    """A real PostgreSQL cluster of the test's own is stopped under the API: every
    request, the key lookup included, gets a one-line 503 (no traceback, no URL
    secret), /health says so, a refused ingest stores nothing, and once the database
    is back the same server answers again without a restart."""
    import tempfile

    from postgres_cluster import PostgresCluster

    root = Path(tempfile.mkdtemp(prefix="sleeptime-pg-"))  # not under pytest's 0700 tree
    try:
        cluster = PostgresCluster(root)
    except RuntimeError:  # no pg_ctl
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip("PostgreSQL's server binaries (pg_ctl, initdb) are not installed")
    cluster.init()
    try:
        settings = Settings(model="fake", n_questions=2, idle_after=3600.0)
        st = SleepTime(model=FakeChatModel(), database_url=cluster.url, settings=settings)
        with st, TestClient(create_app(st, close=False)) as api:
            key = create_key(st.store, "a")[1]
            h = auth(key)
            assert api.put("/v1/a/contexts/doc", json={"text": TEXT}, headers=h).is_success
            assert api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=h).is_success

            cluster.stop()
            for method, path, body in (
                ("POST", "/v1/a/contexts/doc/ask", {"question": Q}),
                ("PUT", "/v1/a/contexts/doc", {"text": TEXT + " More."}),
                ("GET", "/v1/a/contexts/doc", None),
            ):
                r = api.request(method, path, json=body, headers=h)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["error"] == "StoreUnavailable" and "\n" not in r.text
                assert "Traceback" not in r.text
            assert api.get("/health").status_code == 503

            cluster.start()
            r = api.post("/v1/a/contexts/doc/ask", json={"question": Q}, headers=h)
            assert r.status_code == 200, r.text
            shown = api.get("/v1/a/contexts/doc", headers=h).json()
            assert shown["context"]["version"] == 1  # the refused ingest stored nothing
            assert api.get("/health").json() == {"status": "ok"}
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- the real command -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sleeptime", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _wait(check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.communicate()[1]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a subprocess's readiness, not measuring time
    pytest.fail("server did not answer in time")


def test_sleeptime_serve_subprocess(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    env.pop("SLEEPTIME_REDIS_URL", None)
    made = _cli(["keys", "create", "acme"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("stk_") and key not in made.stderr
    bad = _cli(["keys", "create"], env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sleeptime", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, proc)
        h = auth(key)
        r = httpx.put(f"{base}/v1/acme/contexts/d", json={"text": TEXT}, headers=h)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{base}/v1/acme/contexts/d/ask", json={"question": Q}, headers=h)
        assert r.status_code == 200 and r.json()["source"] == "cold"
        assert httpx.get(f"{base}/v1/acme/contexts/d").status_code == 401
        # uvicorn decodes %ff to U+FFFD: the raw path is checked before that
        r = httpx.put(f"{base}/v1/acme/contexts/inv%ff", json={"text": TEXT}, headers=h)
        assert r.status_code == 422 and r.json()["error"] == "InvalidInput", r.text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    listed = _cli(["keys", "list", "--json"], env)
    assert json.loads(listed.stdout)[0]["namespace"] == "acme" and key not in listed.stdout


def test_sleeptime_serve_with_several_processes(tmp_path: Path) -> None:
    """--workers N: every process answers with the options given on the command line
    (they reach the processes through the environment), and keys work in all."""
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTIME_")}
    key = _cli(["keys", "create", "acme", "--database-url", db], env).stdout.splitlines()[-1]
    made = _cli(["keys", "create", "--admin", "--database-url", db], env)
    admin = made.stdout.splitlines()[-1]
    refused = _cli(["serve", "--workers", "2", "--worker", "--database-url", db], env)
    assert refused.returncode == 2 and "sleeptime worker" in refused.stderr
    assert "Traceback" not in refused.stderr

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sleeptime", "serve", "--port", str(port), "--workers", "2",
         "--model", "fake", "--database-url", db, "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, proc)
        h = auth(key)
        assert httpx.put(f"{base}/v1/acme/contexts/d", json={"text": TEXT}, headers=h).is_success
        # fresh connections, so the kernel spreads them over the processes
        for _ in range(6):
            r = httpx.post(f"{base}/v1/acme/contexts/d/ask", json={"question": Q}, headers=h)
            assert r.status_code == 200 and r.json()["source"] == "cold", r.text
        ledger = httpx.get(f"{base}/v1/acme/contexts/d/ledger", headers=h).json()
        assert list(ledger["by_model"]) == ["fake"]  # --model reached every process
        assert ledger["test"]["calls"] == 6
        # one dashboard sign-in is valid in every process (they share the signing secret)
        signed = httpx.post(f"{base}/dashboard/login", data={"key": admin})
        assert signed.status_code == 303, signed.text
        cookie = {COOKIE: signed.cookies[COOKIE]}
        for _ in range(6):
            assert httpx.get(f"{base}/dashboard", cookies=cookie).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("load", ["httpx", "wrk"])
def test_http_bench_runs(load: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sleeptime.bench import http

    if load == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    assert http.main(["--seconds", "0.3", "--threads", "2", "--client", load]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["client"] == ("wrk" if load == "wrk" else "httpx threads")
    predicted, unpredicted = out["results"]
    assert predicted["sources"] == ["predicted"] and unpredicted["sources"] == ["learned"]
    assert predicted["errors"] == 0 and predicted["requests"] > 0
    assert predicted["p99_ms"] >= predicted["p50_ms"] > 0
    # the bare endpoint on the same server, measured in the same run
    assert out["bare"]["errors"] == 0 and out["bare"]["requests"] > 0
    assert out["bare"]["sources"] == ["bare"] and out["rate_limit"] == "1000000/second"
    assert out["zero_token_vs_bare"] > 0


# -- one input contract (issue 19, item 5) -------------------------------------------

NOT_INT = "Input should be a valid integer"


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "ask", {"question": Q, "verbosity": "1"}, f"verbosity: {NOT_INT}"),
        ("POST", "ask", {"question": Q, "verbosity": True}, f"verbosity: {NOT_INT}"),
        ("POST", "ask", {"question": Q, "max_tokens": 5.0}, f"max_tokens: {NOT_INT}"),
        ("POST", "ask", {"question": Q, "verbose": 1}, "verbose: unknown field"),
        ("POST", "ask/stream", {"question": Q, "verbose": 1}, "verbose: unknown field"),
        ("POST", "ask", {"question": 5}, "question: Input should be a valid string"),
        ("POST", "sleep", {"k": "2"}, f"k: {NOT_INT}"),
        ("POST", "sleep", {"questions": True}, f"questions: {NOT_INT}"),
        ("POST", "sleep", {"n_questions": 2}, "n_questions: unknown field"),
        ("PUT", "", {"text": TEXT, "verbose": 1}, "verbose: unknown field"),
        ("POST", "append", {"text": "More.", "mode": "replace"}, "mode: unknown field"),
        ("POST", "ask", [Q], "request body: Input should be a valid dictionary"),
    ],
)  # fmt: skip
def test_bodies_are_as_strict_as_the_library(
    api: TestClient,
    st: SleepTime,
    keys: dict[str, str],
    method: str,
    path: str,
    body: Any,
    message: str,
) -> None:
    """Before: "1" and true were coerced to integers and unknown fields ignored."""
    url = "/v1/a/contexts/doc" + (f"/{path}" if path else "")
    versions = st.store.versions("a", "doc")
    r = api.request(method, url, json=body, headers=auth(keys["a"]))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "InvalidInput" and r.json()["message"].startswith(message), r.text
    assert set(r.json()) == {"error", "message"} and "\n" not in r.text
    assert st.store.versions("a", "doc") == versions


@pytest.mark.parametrize(
    "body",
    [
        b'{"question": ',
        b'{"question": "\xff\xfe"}',  # not UTF-8
        b'{"question": "q", "max_tokens": ' + b"9" * 5000 + b"}",  # past int()'s digit limit
        b"not json",
        b"",
    ],
)
def test_a_malformed_body_is_the_documented_422(
    api: TestClient, keys: dict[str, str], body: bytes
) -> None:
    """Before: a body that is not UTF-8 got 400 "There was an error parsing the body"."""
    headers = auth(keys["a"]) | {"Content-Type": "application/json"}
    r = api.post("/v1/a/contexts/doc/ask", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "InvalidInput" and set(r.json()) == {"error", "message"}
    assert "\n" not in r.text


def test_undecodable_ids_are_refused(api: TestClient, st: SleepTime, keys: dict[str, str]) -> None:
    """Before: inv%ff and inv%fe both became inv\ufffd, one context under two names."""
    h = auth(keys["a"])
    for path in ("/v1/a/contexts/inv%ff", "/v1/a/contexts/inv%fe", "/v1/a/contexts/x%c3/ask"):
        r = api.put(path, json={"text": TEXT}, headers=h)
        assert r.status_code == 422 and r.json()["error"] == "InvalidInput", r.text
        assert "not valid UTF-8" in r.json()["message"]
    assert api.get("/v1/a/contexts/inv%ff", headers=h).status_code == 422
    assert st.store.context_ids("a") == ["doc"]
    # percent-encoded UTF-8 is fine, U+FFFD itself included
    for path, name in (("caf%C3%A9", "café"), ("inv%EF%BF%BD", "inv\ufffd")):
        r = api.put(f"/v1/a/contexts/{path}", json={"text": TEXT}, headers=h)
        assert r.status_code == 200 and r.json()["context_id"] == name, r.text


# -- secrets (issue 19, item 4) ----------------------------------------------------------

OUTAGE = (
    "database postgresql+psycopg://dbuser:***@db.internal:6543/proddb unavailable: "
    'connection to server at "db.internal" (10.0.0.7), port 6543 failed'
)


def test_an_outage_names_no_database_detail(
    api: TestClient, st: SleepTime, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: /health, without a key, answered with the database's user, host, port
    and name; so did every request, whose key lookup needs the database."""

    def down(*_a: Any, **_k: Any) -> Any:
        raise StoreUnavailable(OUTAGE)

    monkeypatch.setattr(st.store, "ping", down)
    monkeypatch.setattr(st.store, "find_api_key", down)
    for r in (
        api.get("/health"),
        api.get("/v1/a/contexts", headers=auth("stk_00000000_guess")),
        api.get("/v1/a/contexts", headers=auth(keys["a"])),
    ):
        assert r.status_code == 503
        assert r.json() == {
            "error": "StoreUnavailable",
            "message": "database unavailable; try again later",
        }
        for detail in ("dbuser", "db.internal", "6543", "proddb", "10.0.0.7", "postgresql"):
            assert detail not in r.text


def test_the_dashboard_cookie_is_a_session_not_the_key(
    api: TestClient, st: SleepTime, keys: dict[str, str]
) -> None:
    """Before: the cookie was the admin key itself, which also worked as a Bearer key."""
    admin = keys["admin"]
    r = api.post("/dashboard/login", data={"key": admin}, follow_redirects=False)
    assert r.status_code == 303
    token = r.cookies[COOKIE]
    secret_part = admin.rsplit("_", 1)[1]
    assert admin not in r.headers["set-cookie"] and secret_part not in r.headers["set-cookie"]
    assert "httponly" in r.headers["set-cookie"].lower()
    assert api.get("/dashboard").status_code == 200  # the session works where it should
    api.cookies.clear()
    assert api.get("/v1/admin/jobs", headers=auth(token)).status_code == 401  # not a key
    assert api.get("/v1/a/contexts", headers=auth(token)).status_code == 401
    assert api.get("/dashboard", headers=auth(token)).status_code == 401
    for forged in (admin, token[:-1] + ("0" if token[-1] != "0" else "1"), "", "a.b.c"):
        api.cookies.set(COOKIE, forged)
        assert api.get("/dashboard").status_code == 401, forged
        api.cookies.clear()
    # a revoked key's session ends with it
    api.cookies.set(COOKIE, token)
    assert api.get("/dashboard").status_code == 200
    key_id = admin.split("_")[1]
    assert st.store.revoke_api_key(key_id)
    assert api.get("/dashboard").status_code == 401


def test_sessions_expire_and_need_the_secret() -> None:
    one, same, other = Sessions("s" * 32), Sessions("s" * 32), Sessions(None)
    token = one.issue("abcd1234", now=1000.0)
    assert one.key_id(token, now=1000.0) == "abcd1234"
    assert same.key_id(token, now=1000.0 + SESSION_S) == "abcd1234"  # another process
    assert one.key_id(token, now=1001.0 + SESSION_S) is None  # expired
    assert other.key_id(token, now=1000.0) is None  # another secret
    forged = token.replace("abcd1234", "ffff0000", 1)
    assert one.key_id(forged, now=1000.0) is None
