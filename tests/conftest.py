"""Shared fixtures: real Redis servers on free loopback ports, SQLite files, and
PostgreSQL when one is reachable (tests marked ``postgres`` skip otherwise)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from redis_server import RedisServer

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.redact import redact_text, redact_url

POSTGRES_URL = os.environ.get(
    "SLEEPTIME_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port; fsync on every write so a
    restart in a test never loses an acknowledged write."""
    try:
        server = RedisServer(tmp_path, appendfsync="always").start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}: run the README test command (it installs redis-server)")
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sleeptime.db'}"


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, in one line (None: they can)."""
    try:
        import psycopg
    except ImportError:
        return 'PostgreSQL driver not installed: pip install "sleeptime[postgres]"'
    url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=2):
            return None
    except Exception as exc:
        detail = " ".join(redact_text(exc, url).split())[:200]
        where = redact_url(POSTGRES_URL)
        return f"PostgreSQL not reachable at {where} ({detail}); set SLEEPTIME_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both SQL backends; PostgreSQL gets a fresh schema per test and skips if absent."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sleeptime.db'}"
        return
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    raw = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def settings() -> Settings:
    return Settings(model="fake", n_questions=3, idle_after=0.0)


@pytest.fixture
def st(database_url: str, settings: Settings) -> Iterator[SleepTime]:
    client = SleepTime(model=FakeChatModel(), database_url=database_url, settings=settings)
    yield client
    client.close()


# -- tiers: ``./scripts/test.sh --fast`` runs the fast tier ----------------------------------
#
# The fast tier is every test that starts no process and no server (no redis-server,
# PostgreSQL or uvicorn) and calls no model but the fake or a scripted one. A test is
# left out of it, with no mark to add, when it uses a fixture below (directly or through
# another fixture), takes a parameter below, has a mark below, or is listed below; mark
# any other slow test ``@pytest.mark.full`` (the full suite only). In the fast tier a
# test that starts a process anyway is skipped, saying so.

#: Fixtures that start a server or a process, or load the real local model.
FULL_ONLY_FIXTURES = frozenset(
    {"redis_server", "browser", "server", "serve", "llama_server", "local_model", "local", "procs"}
)
#: Fixture parameters that start a server (``make_queue[redis]``, ``database_url[postgres]``).
FULL_ONLY_PARAMS = frozenset({"redis", "postgres"})
FULL_ONLY_MARKS = frozenset({"slow", "postgres", "full"})
#: Test files whose tests start processes or servers without a fixture saying so.
FULL_ONLY_FILES = frozenset(
    {
        "test_bench_local.py",  # the real local model
        # whole benchmark runs (model fake, but every arm and file of a run) and
        # property-based runs: seconds each, the fast tier's time budget
        "test_bench_coverage.py",
        "test_bench_overhead.py",
        "test_bench_protocol.py",
        "test_bench_reliability.py",
        "test_bench_report.py",
        "test_bench_runner.py",
        "test_properties.py",
        "test_cli.py",  # runs the sleeptime command as a process
        "test_dashboard.py",  # chromium
        "test_local_model.py",
        "test_servers_real.py",  # llama-cpp-python's server
        "test_workers.py",  # worker processes
        "test_openapi_fuzz.py",  # a long property run over the whole API
    }
)
#: Single tests that start processes or servers themselves ("file::name" prefixes).
FULL_ONLY_TESTS = frozenset(
    {
        "test_bench_extra.py::test_an_install_without_the_extra_still_runs_the_command_line",
        "test_bench_generator.py::test_deterministic_across_processes",
        "test_delete.py::test_cli_delete",
        "test_limits.py::test_cli_bounds",
        "test_mcp.py::test_sleeptime_mcp_over_stdio",
        "test_mcp.py::test_sleeptime_mcp_prepares_notes_on_its_own",
        "test_migrations.py::test_many_processes_start_on_a_fresh_database",
        "test_no_silent_failures.py::test_a_burst_worker_on_a_wrong_redis_port_fails_in_one_line",
        "test_no_silent_failures.py::test_jobs_piped_at_80_columns_cuts_no_cell",
        "test_no_silent_failures.py::test_one_name_per_option_the_old_ones_hidden",
        "test_no_silent_failures.py::test_show_in_an_empty_folder_creates_no_database",
        "test_no_silent_failures.py::test_version_option",
        "test_operability.py::test_cli_ingest_enqueues_on_the_embedded_queue_before_it_exits",
        "test_operability.py::test_help_shows_defaults",
        "test_operability.py::test_job_state_names_match_json",
        "test_operability.py::test_jobs_shows_when_a_waiting_job_can_start",
        "test_operability.py::test_sleep_prints_progress_when_piped",
        "test_probe.py::test_a_build_that_crashes_is_one_line_with_the_fix",
        "test_probe.py::test_a_build_that_works_is_tried_once",
        "test_probe.py::test_an_ordinary_error_is_left_to_the_real_load",
        "test_rate_quota.py::test_rate_limit_survives_a_redis_outage",
        "test_redaction.py::test_cli_errors_hide_the_password",
        "test_server.py::test_a_database_outage_is_a_503_and_the_api_recovers_by_itself",
        "test_server.py::test_http_bench_runs",
        "test_server.py::test_sleeptime_serve_subprocess",
        "test_server.py::test_sleeptime_serve_with_several_processes",
        "test_sleep_strategy.py::test_cli_sleep_takes_the_strategy",
        "test_staleness.py::test_without_redis_another_process_never_serves_the_old_version",
        "test_validation.py::test_cli_bad_question_and_namespace",
        "test_validation.py::test_cli_invalid_utf8_and_nul_in_ingested_text",
        "test_validation.py::test_cli_invalid_utf8_arguments",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier: no process, no server, no model but fake or scripted ones",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full: in the full suite only, not the fast tier")


def full_only(item: pytest.Item) -> bool:
    """Whether a test is left out of the fast tier (see above)."""
    if item.path.name in FULL_ONLY_FILES:
        return True
    if any(item.nodeid.split("/")[-1].startswith(t) for t in FULL_ONLY_TESTS):
        return True
    if FULL_ONLY_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and FULL_ONLY_PARAMS & {
        v for v in callspec.params.values() if isinstance(v, str)
    }:
        return True
    return any(m.name in FULL_ONLY_MARKS for m in item.iter_markers())


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast tier does not even import the files it leaves out."""
    if config.getoption("--fast") and collection_path.name in FULL_ONLY_FILES:
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    keep = [i for i in items if not full_only(i)]
    dropped = [i for i in items if full_only(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the fast tier, a test that starts a process anyway (one not listed above) is
    skipped there, saying so: it runs in the full suite."""
    if not request.config.getoption("--fast"):
        return

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        pytest.skip("starts a process: the full suite runs it (tests/conftest.py, tiers)")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(multiprocessing.Process, "start", refuse)


@pytest.fixture(params=["sqlite", "redis"])
def policy_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Settings]:
    """Settings of a worker under a sleep policy, on the embedded queue (a file of its
    own) and on a real Redis: ``policy_settings("on_demand")``."""

    def make(policy: str) -> Settings:
        extra: dict[str, object] = {}
        if request.param == "redis":
            extra["redis_url"] = request.getfixturevalue("redis_server").url
        else:
            extra["queue_path"] = str(tmp_path / "queue.db")
        return Settings(
            model="fake",
            n_questions=2,
            idle_after=0.0,
            poll_s=0.05,
            relay_s=0.05,
            sleep_policy=policy,  # type: ignore[arg-type]
            **extra,  # type: ignore[arg-type]
        )

    return make
