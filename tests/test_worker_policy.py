"""A worker under a sleep policy, end to end with model ``fake``, on the embedded queue
and on Redis: a version the policy skips is deferred with its reason (not lost), a
query on it revives the job and the next pass sleeps it, once, whichever worker looks;
an explicit sleep always runs; the worker depends on its port, not on SleepTime."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from sleeptime import Settings, SleepTime
from sleeptime.policy import SleepPolicy
from sleeptime.queue.base import EXPLICIT_PRIORITY
from sleeptime.worker.port import WorkerPort
from sleeptime.worker.runtime import Worker

TEXT = "Ann has 3 apples. Bob has 4 pears. Cid has 5 plums."


def _client(tmp_path: Path, settings: Settings) -> SleepTime:
    return SleepTime(database_url=f"sqlite:///{tmp_path / 'st.db'}", settings=settings)


def test_on_demand_defers_then_a_query_revives_and_sleeps(
    tmp_path: Path, policy_settings: Callable[[str], Settings], caplog: pytest.LogCaptureFixture
) -> None:
    st = _client(tmp_path, policy_settings("on_demand"))
    queue = st.open_queue()
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    caplog.set_level(logging.INFO, logger="sleeptime.worker")
    Worker(st, queue).run(burst=True, install_signals=False)

    (job,) = queue.list("deferred")
    assert job.version == 1 and job.error == "skipped: on_demand, no query on v1 yet"
    assert queue.counts()["deferred"] == 1
    assert not st.artifacts("acme", "doc").complete
    assert any("status=deferred" in r.getMessage() for r in caplog.records)
    assert any("policy_reason=" in r.getMessage() for r in caplog.records)

    answer = st.ask("acme", "doc", "How many apples does Ann have?")
    assert answer.source == "cold"  # answered without notes, as the online path does
    st.store.flush()
    Worker(st, queue).run(burst=True, install_signals=False)
    assert st.artifacts("acme", "doc").complete
    counts = queue.counts()
    assert counts["deferred"] == 0 and counts["waiting"] == 0
    assert any("event=revived" in r.getMessage() for r in caplog.records)
    # a second worker finds nothing to revive: the decision is idempotent
    again = Worker(st, queue)
    assert again._revive() == 0
    st.close()


def test_eager_sleeps_at_once(tmp_path: Path, policy_settings: Callable[[str], Settings]) -> None:
    st = _client(tmp_path, policy_settings("eager"))
    queue = st.open_queue()
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    Worker(st, queue).run(burst=True, install_signals=False)
    assert st.artifacts("acme", "doc").complete
    assert queue.counts()["deferred"] == 0
    st.close()


def test_an_explicit_job_is_never_held_back(
    tmp_path: Path, policy_settings: Callable[[str], Settings]
) -> None:
    st = _client(tmp_path, policy_settings("on_demand"))
    queue = st.open_queue()
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    # what POST .../sleep does: the version's job, at the explicit priority
    queue.enqueue("acme", "other", 1, priority=EXPLICIT_PRIORITY)
    st.ingest("acme", "other", "Eve has 7 limes.")
    assert st.outbox_relay.wait_idle(20)
    Worker(st, queue).run(burst=True, install_signals=False)
    assert st.artifacts("acme", "other").complete  # explicit: ran under on_demand
    assert not st.artifacts("acme", "doc").complete  # the workers' own: deferred
    st.close()


def test_the_worker_runs_on_its_port_alone(
    tmp_path: Path, policy_settings: Callable[[str], Settings]
) -> None:
    """Worker(port, queue): a port that is not the facade (here the facade's adapter,
    wrapped) is all the worker needs; the policy can be injected too."""
    settings = policy_settings("eager")
    st = _client(tmp_path, settings)
    queue = st.open_queue()
    port = st.worker_port()
    assert isinstance(port, WorkerPort) and not isinstance(st, WorkerPort)
    never = SleepPolicy("never", settings)
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    Worker(port, queue, policy=never).run(burst=True, install_signals=False)
    (job,) = queue.list("deferred")
    assert job.error == "skipped: policy never"
    st.close()


def test_sleeptime_jobs_lists_a_deferred_job_with_its_reason(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    settings = Settings(model="fake", idle_after=0.0, sleep_policy="on_demand")
    st = _client(tmp_path, settings)  # the queue next to the SQLite database
    queue = st.open_queue()
    st.ingest("acme", "doc", TEXT)
    assert st.outbox_relay is not None and st.outbox_relay.wait_idle(20)
    Worker(st, queue).run(burst=True, install_signals=False)
    st.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTIME_")}
    env |= {"SLEEPTIME_DATABASE_URL": f"sqlite:///{tmp_path / 'st.db'}", "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sleeptime", "jobs", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    listed = json.loads(cli("--state", "deferred", "--json").stdout)
    [job] = listed["jobs"]
    assert job["state"] == "deferred"
    assert job["error"] == "skipped: on_demand, no query on v1 yet"
    table = cli()
    assert table.returncode == 0, table.stderr
    assert "deferred" in table.stdout and "skipped: on_demand" in table.stdout


def test_the_budgeted_policy_spends_the_namespaces_sleep_quota(tmp_path: Path) -> None:
    """The worker's policy reads the namespace's sleep-time tokens left today from
    Quotas.sleep_left (SLEEPTIME_QUOTA_SLEEP_TOKENS, counted from the ledger)."""
    settings = Settings(
        model="fake", n_questions=1, sleep_policy="budgeted", quota_sleep_tokens=10_000
    )
    st = _client(tmp_path, settings)
    policy = st.worker_port().sleep_policy()
    assert policy.name == "budgeted"
    assert policy.sleep_tokens_left("acme") == 10_000
    st.ingest("acme", "doc", TEXT)
    used = st.sleep("acme", "doc").usage.total_tokens  # an explicit sleep, in the ledger
    assert used > 0
    assert policy.sleep_tokens_left("acme") == 10_000 - used
    assert policy.sleep_tokens_left("other") == 10_000
    st.close()
    unlimited = SleepTime(
        database_url=f"sqlite:///{tmp_path / 'u.db'}", settings=Settings(model="fake")
    )
    eager = unlimited.worker_port().sleep_policy()
    assert eager.name == "eager" and eager.sleep_tokens_left("acme") is None
    unlimited.close()
