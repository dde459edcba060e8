"""Request bodies are bounded before they are read and before authentication
(``SLEEPTIME_MAX_BODY_BYTES``): a declared length over the limit is refused without
receiving the body, a chunked body as soon as its count passes the limit, with or
without a key, on the app and on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the server extra (the README test command)")
import httpx
import uvicorn
from fastapi.testclient import TestClient

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.server import create_app
from sleeptime.server.auth import create_key

LIMIT = 1024
TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."
PUT = "/v1/a/contexts/doc"


@pytest.fixture
def st(sqlite_url: str) -> Iterator[SleepTime]:
    settings = Settings(model="fake", idle_after=3600.0, max_body_bytes=LIMIT)
    client = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    client.ingest("a", "doc", TEXT)
    yield client
    client.close()


@pytest.fixture
def key(st: SleepTime) -> str:
    return create_key(st.store, "a")[1]


@pytest.fixture
def api(st: SleepTime) -> Iterator[TestClient]:
    with TestClient(create_app(st, close=False)) as tc:
        yield tc


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def too_large(status: int, body: bytes) -> None:
    assert status == 413, body
    doc = json.loads(body)
    assert doc["error"] == "ContentTooLarge"
    assert set(doc) == {"error", "message"} and "\n" not in doc["message"]
    assert str(LIMIT) in doc["message"]


def big_body() -> dict[str, str]:
    return {"text": "x" * (2 * LIMIT)}


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "valid key"])
def test_a_declared_length_over_the_limit_is_refused(
    api: TestClient, st: SleepTime, key: str, with_key: bool
) -> None:
    r = api.put(PUT, json=big_body(), headers=auth(key if with_key else None))
    too_large(r.status_code, r.content)
    assert r.headers["connection"] == "close"
    assert st.context("a", "doc").version == 1  # nothing was stored


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "valid key"])
def test_a_chunked_body_over_the_limit_is_refused(
    api: TestClient, st: SleepTime, key: str, with_key: bool
) -> None:
    def chunks() -> Iterator[bytes]:  # a generator: no Content-Length, chunked
        yield b'{"text": "'
        for _ in range(8):
            yield b"x" * 256
        yield b'"}'

    headers = {**auth(key if with_key else None), "content-type": "application/json"}
    r = api.put(PUT, content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    too_large(r.status_code, r.content)
    assert st.context("a", "doc").version == 1  # nothing was stored


def test_bodies_under_the_limit_work_as_before(api: TestClient, key: str) -> None:
    small = {"text": "Cid has 5 pears."}
    assert api.put(PUT, json=small).status_code == 401  # authentication still decides
    r = api.put(PUT, json=small, headers=auth(key))
    assert r.status_code == 200 and r.json()["version"] == 2

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "Dan has '
        yield b'2 cats."}'

    headers = {**auth(key), "content-type": "application/json"}
    r = api.put(PUT, content=chunks(), headers=headers)
    assert r.status_code == 200 and r.json()["version"] == 3
    exact = json.dumps({"text": "y" * (LIMIT - 12)}).encode()
    assert len(exact) == LIMIT  # exactly at the limit is allowed
    r = api.put(PUT, content=exact, headers=headers)
    assert r.status_code == 200, r.text
    r = api.post(f"{PUT}/ask", json={"question": "How many apples?"}, headers=auth(key))
    assert r.status_code == 200


def test_a_413_is_counted_in_the_metrics(api: TestClient) -> None:
    api.put(PUT, json=big_body())
    text = api.get("/metrics").text
    assert 'status="413"' in text


def test_the_app_stops_receiving_a_chunked_body_at_the_limit(st: SleepTime) -> None:
    """Called as ASGI with a body far over the limit: the app pulls only as many chunks
    as take it past the limit, then answers 413 (it never buffers the rest)."""
    app = create_app(st, close=False)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 256, "more_body": pulled < 4096}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": PUT,
        "raw_path": PUT.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    assert pulled == LIMIT // 256 + 1  # the chunk that crossed the limit is the last one
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    too_large(start["status"], body)


# -- a real uvicorn server: the 413 comes while the body is still being sent -----------


@pytest.fixture
def server(st: SleepTime) -> Iterator[tuple[str, int]]:
    """uvicorn in a thread on a socket that listens before the server starts, so
    connections queue in its backlog instead of a readiness poll."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(create_app(st, close=False), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _exchange(address: tuple[str, int], head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body bytes, never the end of the body, and read
    what the server answers until it closes the connection."""
    with socket.create_connection(address, timeout=30) as conn:
        conn.sendall(head)
        for part in body_parts:
            conn.sendall(part)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _head(extra: str, key: str | None) -> bytes:
    bearer = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"PUT {PUT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{bearer}{extra}\r\n"
    ).encode()


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "valid key"])
def test_real_server_refuses_a_declared_length_before_any_body(
    server: tuple[str, int], st: SleepTime, key: str, with_key: bool
) -> None:
    # 200 MB announced, not one byte of it sent: the answer can only come before it
    head = _head("Content-Length: 200000000\r\n", key if with_key else None)
    status, headers, body = _parse(_exchange(server, head, []))
    too_large(status, body)
    assert headers["connection"] == "close"
    assert st.context("a", "doc").version == 1


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "valid key"])
def test_real_server_refuses_a_chunked_body_that_passes_the_limit(
    server: tuple[str, int], key: str, with_key: bool
) -> None:
    # chunks of 512 bytes, three of them (past the 1024-byte limit), and no final
    # zero-length chunk: the body never ends, yet the 413 comes
    head = _head("Transfer-Encoding: chunked\r\n", key if with_key else None)
    chunk = b"200\r\n" + b"x" * 512 + b"\r\n"
    status, _, body = _parse(_exchange(server, head, [chunk] * 3))
    too_large(status, body)


def test_real_server_takes_bodies_under_the_limit(server: tuple[str, int], key: str) -> None:
    base = f"http://{server[0]}:{server[1]}"

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "Eve has '
        yield b'7 figs."}'

    headers = {**auth(key), "content-type": "application/json"}
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.put(PUT, content=chunks(), headers=headers)
        assert r.status_code == 200 and r.json()["version"] == 2
        r = client.put(PUT, json={"text": "Fay has 8 plums."}, headers=headers)
        assert r.status_code == 200 and r.json()["version"] == 3
