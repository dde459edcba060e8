"""``sleeptime bench economics`` at a small scale: the workloads' shape, each policy's
behaviour through the real store, queue and worker (model fake), and ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sleeptime.bench.economics import (
    EconomicsConfig,
    contexts,
    run_economics,
    targets,
    workload,
)

CFG = EconomicsConfig(contexts=12, words=1000, queries_per_asked=6.0)


def test_workloads_have_their_unasked_share_edits_and_predicted_queries() -> None:
    corpus = contexts(CFG)
    assert len(corpus) == 12 and all(len(text.split()) > 1000 for text, _, _ in corpus)
    for name, unasked in (("unasked0", 0), ("unasked50", 6), ("unasked90", 11)):
        events = workload(name, CFG, corpus)
        asked = {e.ctx for e in events if e.kind == "query"}
        assert len(asked) == 12 - unasked
        assert sum(e.kind == "ingest" for e in events) == 12
        assert [e.at for e in events] == sorted(e.at for e in events)
    events = workload("unasked0", CFG, corpus)
    assert any(e.kind == "edit" for e in events)
    queries = [e for e in events if e.kind == "query"]
    assert 0 < sum(e.predicted for e in queries) < len(queries)
    assert workload("unasked0", CFG, corpus) == events  # the same for every policy


def test_each_policy_through_the_real_queue_and_worker() -> None:
    result = run_economics(CFG, ["unasked50"])
    (row,) = result["workloads"]
    p = row["policies"]
    assert set(p) == {"eager", "on_demand", "budgeted", "never"}
    assert p["never"]["sleep_tokens"] == 0 and p["never"]["slept_versions"] == 0
    assert p["eager"]["slept_versions"] >= 12  # every version, edits included
    # on_demand sleeps only versions that were asked about: fewer than eager
    assert 0 < p["on_demand"]["slept_versions"] < p["eager"]["slept_versions"]
    assert p["never"]["sources"] == {"cold": p["never"]["queries"]}
    assert p["eager"]["sources"].get("predicted", 0) > 0  # the oracle questions served
    for v in p.values():
        assert v["cost"] == v["sleep_cost"] + v["test_cost"]
        assert v["queries"] == p["never"]["queries"] and v["p50_ms"] > 0
    assert set(targets(result)) == {"unasked50: budgeted <= 1.05 x min(eager, never)"}


def test_json_prints_only_the_json(tmp_path: Path) -> None:
    from sleeptime.cli import app

    out = CliRunner().invoke(
        app,
        [
            "bench", "economics", "--contexts", "10", "--words", "1000",
            "--workloads", "unasked90", "--policies", "eager,never",
            "--jobs", "1", "--out", str(tmp_path), "--json",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    (row,) = data["workloads"]
    assert row["name"] == "unasked90" and set(row["policies"]) == {"eager", "never"}
    assert {"cost", "sleep_tokens", "test_tokens", "p50_ms"} <= set(row["policies"]["eager"])
    assert (tmp_path / "economics.png").stat().st_size > 0
    assert (tmp_path / "economics.md").read_text("utf-8").startswith("| workload |")
