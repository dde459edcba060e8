"""The dashboard page's job table without a browser: a job the sleep policy deferred
is listed with its reason beside running and dead ones."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the server extra")

from fastapi.testclient import TestClient

from sleeptime import Settings, SleepTime
from sleeptime.background import relay_outbox
from sleeptime.server import create_app
from sleeptime.server.auth import create_key


def test_a_deferred_job_is_listed_with_the_policys_reason(tmp_path: Path) -> None:
    settings = Settings(model="fake", idle_after=0.0)
    st = SleepTime(database_url=f"sqlite:///{tmp_path / 'd.db'}", settings=settings)
    try:
        queue = st.open_queue()
        st.ingest("acme", "later", "Ann has 3 apples. Bob has 4 apples.")
        relay_outbox(st.store, queue)  # the version's job, as a client's relay moves it
        jobs = queue.claim("w1")
        assert len(jobs) == 1
        reason = "skipped: expected 0.1 queries, sleep costs more than they save"
        assert queue.defer("w1", jobs[0], reason)
        admin = create_key(st.store, None, admin=True)[1]
        with TestClient(create_app(st, close=False)) as api:
            page = api.get("/dashboard", headers={"Authorization": f"Bearer {admin}"})
        assert page.status_code == 200
        html = page.text
        assert "Running, deferred and dead jobs" in html
        assert "class='job deferred'" in html and "acme/later" in html
        assert "expected 0.1 queries" in html
        assert "class='retry'" not in html  # only a dead job has a retry button
    finally:
        st.close()
