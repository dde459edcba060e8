"""The overhead benchmark's worker run drives real worker processes to the end (a
figure computed from zero finished jobs would be meaningless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeptime.bench.overhead import worker_run


def test_worker_run_finishes_every_job(redis_server: Any, tmp_path: Path) -> None:
    out = worker_run(tmp_path, redis_server.url, 1, 8, "t", f"sqlite:///{tmp_path / 'w.db'}")
    assert out["exit_codes"] == [0]
    assert out["done"] == 8 and out["dead"] == 0
    assert out["jobs_per_s"] > 0 and out["sleep_ms_per_job"] > 0
