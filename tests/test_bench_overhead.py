"""The overhead benchmark's worker run drives real worker processes to the end (a
figure computed from zero finished jobs would be meaningless); its passage-path run
measures learned answers that really carry passages, on both SQL backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeptime.bench.overhead import passages, worker_run


def test_worker_run_finishes_every_job(redis_server: Any, tmp_path: Path) -> None:
    out = worker_run(tmp_path, redis_server.url, 1, 8, "t", f"sqlite:///{tmp_path / 'w.db'}")
    assert out["exit_codes"] == [0]
    assert out["done"] == 8 and out["dead"] == 0
    assert out["jobs_per_s"] > 0 and out["sleep_ms_per_job"] > 0


def test_passage_path_measures_the_lookup_and_both_learned_answers(database_url: str) -> None:
    out = passages(database_url, 100)
    # the long text took the passage path (the run checks every answer's passages)
    assert out["passages_indexed"] > 10 and out["text_tokens"] > 2000
    for key in ("lookup", "learned_with_passages", "learned_without_passages"):
        assert out[key]["n"] >= 100 and 0 < out[key]["p50"] <= out[key]["p99"]
    assert out["added_p50"] == round(
        out["learned_with_passages"]["p50"] - out["learned_without_passages"]["p50"], 4
    )
