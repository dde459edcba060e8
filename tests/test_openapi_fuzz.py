"""Issue 19, item 6: the OpenAPI schema is the truth.

Every route declares every status it returns, with the error body (``ErrorOut``),
and the constraints the server enforces; a bounded schemathesis run against the app
in-process (an admin key, so every namespace opens) finds no server error and no
response outside the schema: an undeclared status, a body or a header that does not
match, a wrong content type. ``/docs`` works offline: its page names no external URL
and its assets are served by the app itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the server extra (the README test command)")
pytest.importorskip("schemathesis", reason="needs the dev extra")
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.server import create_app
from sleeptime.server.auth import create_key

TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."
#: The admin key of the app under test (set by the fixture, read by the test).
KEY: dict[str, str] = {}


def _app(sqlite_url: str) -> tuple[SleepTime, Any]:
    st = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url,
        settings=Settings(model="fake", n_questions=1, idle_after=3600.0),
    )
    st.ingest("a", "doc", TEXT)
    st.sleep("a", "doc")
    KEY["admin"] = create_key(st.store, None, admin=True)[1]
    return st, create_app(st, close=False)


#: Examples per operation and generation mode (valid and invalid by the schema).
EXAMPLES = 25
#: Checks of every response: no 5xx, and nothing outside the schema.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_responses_conform_to_the_schema(sqlite_url: str) -> None:
    """Each operation: schemathesis's examples (valid and invalid by the schema),
    bounded so the run takes well under a minute on two cores. Driven through
    hypothesis directly (its pytest plugin is not needed)."""
    st, app = _app(sqlite_url)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {KEY['admin']}"}
    ran: set[str] = set()
    calls: list[int] = []
    try:
        for result, mode in itertools.product(
            list(schema.get_all_operations()), schemathesis.GenerationMode
        ):
            operation = result.ok()

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def check(case: Any) -> None:
                calls.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

            try:
                check()
            except Unsatisfiable:
                # nothing to make invalid (no parameters, no body): valid cases only
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
            ran.add(operation.label)
    finally:
        st.close()
    assert len(ran) >= 18, ran
    assert len(calls) >= 200 and {200, 404, 422} <= set(calls), len(calls)


# -- what the schema declares ---------------------------------------------------------


@pytest.fixture
def spec(sqlite_url: str) -> Iterator[dict[str, Any]]:
    st, app = _app(sqlite_url)
    with TestClient(app) as api:
        yield api.get("/openapi.json").json()
    st.close()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_keyed_route_declares_its_errors(spec: dict[str, Any]) -> None:
    error_ref = "#/components/schemas/ErrorOut"
    for method, path, op in _operations(spec):
        responses = op["responses"]
        if path in ("/health", "/metrics"):
            continue
        if path.startswith("/dashboard"):  # pages for a browser; JSON errors otherwise
            assert "text/html" in responses["401"]["content"], path
            assert "application/json" in responses["503"]["content"], path
            continue
        for code in ("401", "403", "404", "413", "422", "429", "503"):
            assert code in responses, (method, path, code)
            body = responses[code]["content"]["application/json"]["schema"]
            assert body == {"$ref": error_ref}, (method, path, code)
        assert "Retry-After" in responses["429"]["headers"], (method, path)
    assert "503" in spec["paths"]["/health"]["get"]["responses"]
    for path in ("ask", "ask/stream", "sleep"):
        op = spec["paths"][f"/v1/{{namespace}}/contexts/{{context_id}}/{path}"]["post"]
        assert "502" in op["responses"], path
    error = spec["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"error", "message"}


def test_sleep_declares_202_and_200(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/v1/{namespace}/contexts/{context_id}/sleep"]["post"]
    queued = op["responses"]["202"]["content"]["application/json"]["schema"]
    ran = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert queued == {"$ref": "#/components/schemas/SleepQueued"}
    assert ran == {"$ref": "#/components/schemas/SleepReport"}
    assert {p["name"] for p in op["parameters"]} >= {"wait"}


def test_constraints_are_declared(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["AskIn"]["properties"]["question"]["pattern"] == r"\S"
    assert schemas["ContextIn"]["properties"]["text"]["pattern"] == r"\S"
    assert schemas["AskIn"]["additionalProperties"] is False
    sleep_in = schemas["SleepIn"]["properties"]
    assert sleep_in["k"]["anyOf"][0]["maximum"] == 16
    assert sleep_in["questions"]["anyOf"][0]["maximum"] == 50
    params = {p["name"]: p for p in spec["paths"]["/v1/admin/jobs"]["get"]["parameters"]}
    states = params["state"]["schema"]["anyOf"][0]["enum"]
    assert set(states) == {"waiting", "pending", "running", "dead", "deferred"}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 10_000


# -- /docs offline --------------------------------------------------------------------


def test_docs_work_offline(sqlite_url: str) -> None:
    st, app = _app(sqlite_url)
    with TestClient(app) as api:
        page = api.get("/docs")
        assert page.status_code == 200
        external = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]?(https?://[^'"\s>]+)""", page.text)
        assert not external, external
        assert "https://" not in page.text and "http://" not in page.text
        assets = re.findall(r"""['"](/docs/assets/[^'"]+)['"]""", page.text)
        assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
        for asset in assets:
            got = api.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset
        assert api.get("/openapi.json").status_code == 200
        assert api.get("/redoc").status_code == 404  # its script would come from a CDN
        dashboard = api.get("/dashboard", headers={"Authorization": f"Bearer {KEY['admin']}"})
        assert not re.search(r"""(?:src|href)\s*=\s*['"]?https?://""", dashboard.text)
    st.close()


def test_a_streamed_answer_conforms_event_by_event(sqlite_url: str) -> None:
    """``ask/stream`` on a context that exists (the fuzzer reaches one only by chance):
    each server-sent event (``token`` pieces, then ``answer``) matches the schema's
    per-event object, and the status, content type and headers are the declared ones."""
    st, app = _app(sqlite_url)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operation = schema["/v1/{namespace}/contexts/{context_id}/ask/stream"]["POST"]
        headers = {"Authorization": f"Bearer {KEY['admin']}"}
        for question in ("Why do they pool them?", st.artifacts("a", "doc").qas[0].question):
            case = operation.Case(
                path_parameters={"namespace": "a", "context_id": "doc"},
                body={"question": question},
            )
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            assert response.status_code == 200
            assert "event: answer" in response.text
    finally:
        st.close()
