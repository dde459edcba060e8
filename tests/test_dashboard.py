"""The operator dashboard in a real headless browser (Debian's chromium through
Selenium): sign in with an admin key, see queue depth, a dead job with its error, the
contexts and the savings ledger, and revive the dead job with its retry button.
Skips when chromium, chromedriver or selenium is missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the server extra (the README test command)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extra)")
import httpx  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from sleeptime import FakeChatModel, Settings, SleepTime  # noqa: E402
from sleeptime.server.auth import create_key  # noqa: E402
from sleeptime.worker.runtime import Worker  # noqa: E402

CHROMIUM = os.environ.get("SLEEPTIME_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SLEEPTIME_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
TEXT = "Ann has 3 apples. Bob has 4 apples. They pool them."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1400",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A `sleeptime serve` subprocess over a database with one served context, two dead
    jobs (one whose context was deleted before the worker ran it, one whose model call
    failed) and an admin key."""
    db = f"sqlite:///{tmp_path / 'dash.db'}"
    settings = Settings(
        model="fake", n_questions=2, idle_after=0.0, max_deliveries=1, retry_attempts=1
    )
    model = FakeChatModel()
    with SleepTime(model=model, database_url=db, settings=settings) as st:
        queue = st.open_queue()
        st.ingest("acme", "doc", TEXT)
        st.sleep("acme", "doc")
        st.ask("acme", "doc", st.artifacts("acme", "doc").qas[0].question)  # zero tokens
        st.ask("acme", "doc", "Why?")
        st.ingest("acme", "gone", "Cid has 5 pears.")
        st.delete("acme", "gone")
        st.ingest("acme", "flaky", "Dee has 6 plums.")
        model.errors = [ValueError("provider said 400: bad request")]
        Worker(st, queue).run(burst=True, install_signals=False)
        dead = queue.list("dead")
        assert sorted(j.context_id for j in dead) == ["flaky", "gone"]
        admin = create_key(st.store, None, admin=True)[1]
        tenant = create_key(st.store, "acme")[1]
    env = {**os.environ, "SLEEPTIME_DATABASE_URL": db, "SLEEPTIME_MODEL": "fake"}
    env.pop("SLEEPTIME_REDIS_URL", None)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sleeptime", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, "sleeptime serve exited"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)  # waiting for a subprocess to listen, not timing anything
        yield base, admin, tenant
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(browser: Any, element_id: str) -> Any:
    """The element once the browser has loaded the page that has it (a click that
    submits a form returns before the next page is there)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def test_dashboard_shows_a_dead_job_and_retries_it(
    browser: object, server: tuple[str, str, str], tmp_path: Path
) -> None:
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    base, admin, tenant = server
    browser.get(f"{base}/dashboard")
    assert browser.find_elements(By.ID, "sign-in")  # no cookie yet: the sign-in form

    browser.find_element(By.ID, "key").send_keys(tenant)
    browser.find_element(By.ID, "sign-in").click()
    assert "admin key" in _wait_for(browser, "login-error").text

    browser.find_element(By.ID, "key").send_keys(admin)
    browser.find_element(By.ID, "sign-in").click()
    _wait_for(browser, "count-dead")  # the form posts, then redirects to the page
    dead_rows = {
        row.find_elements(By.TAG_NAME, "td")[1].text: row
        for row in browser.find_elements(By.CSS_SELECTOR, "tr.job.dead")
    }
    assert set(dead_rows) == {"acme/gone", "acme/flaky"}
    gone = dead_rows["acme/gone"]
    assert "no context" in gone.find_element(By.CLASS_NAME, "error").text
    # a deleted context's job is not offered for retry: it could only fail again
    assert not gone.find_elements(By.CLASS_NAME, "retry")
    assert "context deleted" in gone.text
    assert browser.find_element(By.ID, "count-dead").text.endswith("2")
    contexts = browser.find_element(By.ID, "contexts").text
    assert "doc" in contexts and "complete" in contexts and "gone" not in contexts
    assert browser.find_element(By.ID, "total-queries").text == "2"
    assert browser.find_element(By.ID, "total-zero").text == "1"
    assert int(browser.find_element(By.ID, "total-sleep").text.replace(",", "")) > 0
    assert browser.find_elements(By.ID, "ledger-chart")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))

    dead_rows["acme/flaky"].find_element(By.CLASS_NAME, "retry").click()
    assert "waiting again" in _wait_for(browser, "note").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.job.dead")) == 1
    assert browser.find_element(By.ID, "count-dead").text.endswith("1")
    jobs = httpx.get(f"{base}/v1/admin/jobs", headers={"Authorization": f"Bearer {admin}"}).json()
    assert jobs["counts"]["dead"] == 1
    waiting = [j["context_id"] for j in jobs["jobs"] if j["state"] in ("waiting", "queued")]
    assert waiting == ["flaky"]


def test_dashboard_cookie_does_not_open_the_api(server: tuple[str, str, str]) -> None:
    base, admin, _tenant = server
    with httpx.Client(base_url=base) as c:
        r = c.post("/dashboard/login", data={"key": admin})
        assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
        assert "samesite=strict" in r.headers["set-cookie"].lower()
        assert admin not in r.headers["set-cookie"]  # a signed session, not the key
        session = r.cookies["sleeptime_session"]
        c.cookies.set("sleeptime_session", session)
        assert c.get("/dashboard").status_code == 200
        assert c.get("/v1/admin/jobs").status_code == 401  # the API wants the header
        bearer = {"Authorization": f"Bearer {session}"}
        assert c.get("/v1/admin/jobs", headers=bearer).status_code == 401  # and a key
        c.cookies.set("sleeptime_session", admin)
        assert c.get("/dashboard").status_code == 401  # the key is no session
