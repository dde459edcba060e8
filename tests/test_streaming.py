"""Streamed answers: the library's ask_stream/aask_stream and the HTTP route's
server-sent events. The scripted model streams its reply a word at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sleeptime import Answer, FakeChatModel, Settings, SleepTime
from sleeptime.errors import ContextNotFound, InvalidInput, ModelUnavailable

TEXT = "Ann has 3 apples. Bob has 4 apples. Carol has 12 pears."


@pytest.fixture
def model() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def st(sqlite_url: str, model: FakeChatModel) -> Iterator[SleepTime]:
    settings = Settings(model="fake", n_questions=2, retry_attempts=3, retry_wait_s=0.0)
    client = SleepTime(model=model, database_url=sqlite_url, settings=settings)
    client.ingest("acme", "doc", TEXT)
    client.sleep("acme", "doc")
    yield client
    client.close()


def _split(items: list[str | Answer]) -> tuple[list[str], Answer]:
    *pieces, answer = items
    assert isinstance(answer, Answer)
    assert all(isinstance(p, str) for p in pieces)
    return [str(p) for p in pieces], answer


def test_a_model_answer_streams_in_pieces_that_add_up_to_the_answer(st: SleepTime) -> None:
    before = st.ledger("acme", "doc").test
    pieces, answer = _split(list(st.ask_stream("acme", "doc", "Who has the fewest apples?")))
    assert answer.source == "learned"
    assert len(pieces) > 1
    assert "".join(pieces).strip() == answer.text
    # streamed answers are booked like any other
    after = st.ledger("acme", "doc").test
    assert after.completion_tokens - before.completion_tokens == answer.usage.completion_tokens
    assert answer.usage.completion_tokens == len(answer.text.split())


def test_a_precomputed_answer_streams_in_one_piece_at_zero_tokens(st: SleepTime) -> None:
    predicted = next(qa for qa in st.artifacts("acme", "doc").qas if qa.servable)
    pieces, answer = _split(list(st.ask_stream("acme", "doc", predicted.question)))
    assert answer.source == "predicted"
    assert pieces == [answer.text]
    assert answer.usage.total_tokens == 0


def test_on_token_sees_the_same_text_as_the_answer(st: SleepTime) -> None:
    seen: list[str] = []
    answer = st.ask("acme", "doc", "How many pears are there?", on_token=seen.append)
    assert "".join(seen).strip() == answer.text


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("acme", "doc", ""), InvalidInput),
        (("acme", "nope", "How many?"), ContextNotFound),
        (("ac me", "doc", "How many?"), InvalidInput),
    ],
)
def test_bad_input_is_refused_before_the_stream_starts(
    st: SleepTime, model: FakeChatModel, args: tuple[str, str, str], error: type[Exception]
) -> None:
    calls = model.calls
    with pytest.raises(error):
        st.ask_stream(*args)  # raised by the call itself, not at the first next()
    assert model.calls == calls


def test_a_failure_before_the_first_piece_is_retried(st: SleepTime, model: FakeChatModel) -> None:
    model.errors.append(TimeoutError("slow"))
    pieces, answer = _split(list(st.ask_stream("acme", "doc", "Who has the fewest apples?")))
    assert "".join(pieces).strip() == answer.text  # nothing seen twice


def test_a_failure_midway_is_not_retried_and_reaches_the_reader(
    st: SleepTime, model: FakeChatModel
) -> None:
    model.stream_error = ConnectionError("reset")
    calls = model.calls
    got: list[str | Answer] = []
    with pytest.raises(ModelUnavailable, match="midway"):
        for item in st.ask_stream("acme", "doc", "Who has the fewest apples?"):
            got.append(item)
    assert len(got) == 1 and isinstance(got[0], str)  # the piece sent before the failure
    assert model.calls == calls + 1


def test_aask_stream(st: SleepTime) -> None:
    async def collect() -> list[str | Answer]:
        return [item async for item in st.aask_stream("acme", "doc", "How many pears?")]

    pieces, answer = _split(asyncio.run(collect()))
    assert "".join(pieces).strip() == answer.text


def _events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_http_stream_sends_token_events_then_the_answer(st: SleepTime) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sleeptime.server import create_app
    from sleeptime.server.auth import create_key

    key = create_key(st.store, "acme")[1]
    with TestClient(create_app(st, close=False)) as api:
        headers = {"Authorization": f"Bearer {key}"}
        with api.stream(
            "POST",
            "/v1/acme/contexts/doc/ask/stream",
            json={"question": "Who has the fewest apples?"},
            headers=headers,
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r.read().decode())
        kinds = [k for k, _ in events]
        assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
        answer = events[-1][1]
        assert "".join(e["text"] for _, e in events[:-1]).strip() == answer["text"]
        assert answer["source"] == "learned" and answer["usage"]["completion_tokens"] > 0

        # bad input: a plain JSON error before any event
        r2 = api.post("/v1/acme/contexts/nope/ask/stream", json={"question": "Q?"}, headers=headers)
        assert r2.status_code == 404 and r2.json()["error"] == "ContextNotFound"


def test_http_stream_reports_a_failure_midway_as_an_error_event(
    st: SleepTime, model: FakeChatModel
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sleeptime.server import create_app
    from sleeptime.server.auth import create_key

    key = create_key(st.store, "acme")[1]
    model.stream_error = ConnectionError("reset")
    with TestClient(create_app(st, close=False)) as api:
        r = api.post(
            "/v1/acme/contexts/doc/ask/stream",
            json={"question": "Who has the fewest apples?"},
            headers={"Authorization": f"Bearer {key}"},
        )
    events = _events(r.text)
    assert [k for k, _ in events] == ["token", "error"]
    assert events[-1][1]["error"] == "ModelUnavailable"
