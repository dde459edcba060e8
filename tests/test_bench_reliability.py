"""``sleeptime bench load`` and ``sleeptime bench chaos`` with tiny parameters: the
output has every field and the counts add up (figures are not checked: they depend
on the machine)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sleeptime.bench.chaos import SCENARIOS, run_chaos
from sleeptime.bench.load import run_load
from sleeptime.cli import app

CHAOS_FIELDS = {
    "scenario",
    "jobs",
    "done_exactly_once",
    "duplicates",
    "lost",
    "dead_lettered",
    "stale_answers",
}


def test_load_reports_every_field(redis_server) -> None:  # type: ignore[no-untyped-def]
    for url in (None, redis_server.url):
        out = run_load(0.3, 2, url, contexts=2, ingest_every=0.05, drain=30)
        for key in ("requests", "errors", "asks_per_s", "p50_ms", "p99_ms"):
            assert key in out
        assert out["requests"] > 0 and out["errors"] == 0
        assert out["jobs_enqueued"] >= 1
        assert (
            out["jobs_done"] + out["jobs_pending"] + out["jobs_dead"] + out["jobs_lost"]
            >= (out["jobs_enqueued"])
        )
        assert out["jobs_lost"] == 0
        assert out["backend"] == ("redis" if url else "embedded")


def test_load_cli_prints_json() -> None:
    res = CliRunner().invoke(
        app, ["bench", "load", "--duration", "0.2", "--clients", "1", "--contexts", "1"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert {"requests", "errors", "asks_per_s", "p50_ms", "p99_ms", "jobs_lost"} <= set(out)


def test_chaos_cli_json_has_the_fields() -> None:
    res = CliRunner().invoke(
        app, ["bench", "chaos", "--json", "--jobs", "2", "-s", "model-garbage"]
    )
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output[res.output.index("[") :])
    assert set(row) >= CHAOS_FIELDS and row["scenario"] == "model-garbage"
    assert row["jobs"] == 2 and row["lost"] == 0


def test_chaos_rejects_an_unknown_scenario() -> None:
    res = CliRunner().invoke(app, ["bench", "chaos", "-s", "meteor"])
    assert res.exit_code == 2 and "unknown scenario" in res.output


@pytest.mark.parametrize(
    "scenario",
    ["model-flaky-30pct", "redis-blackhole-ingest", "redis-restart-aof", "redis-restart-no-aof"],
)
def test_chaos_fast_scenarios(scenario: str) -> None:
    [row] = run_chaos([scenario], jobs=3)
    assert row.scenario == scenario and row.jobs == 3
    assert row.done_exactly_once + row.dead_lettered + row.lost <= row.jobs
    assert (row.lost, row.duplicates, row.stale_answers) == (0, 0, 0), row


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["kill-9", "db-down-60s"])
def test_chaos_slow_scenarios(scenario: str) -> None:
    [row] = run_chaos([scenario], jobs=3, long_outage=1.0)
    assert scenario in SCENARIOS and row.jobs in (0, 3)  # 0: no throwaway PostgreSQL here
    assert (row.lost, row.duplicates, row.stale_answers) == (0, 0, 0), row
