"""The benchmark is an extra: without its dependencies a ``sleeptime bench`` command is
one line naming the install command (exit code 2); the rest of the command line, and
``sleeptime bench --help``, work as before."""

from __future__ import annotations

import sys

import pytest

import sleeptime.cli.bench as bench_door
from sleeptime.cli import main


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["sleeptime", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def test_a_bench_command_without_the_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    real = bench_door.find_spec
    monkeypatch.setattr(
        bench_door, "find_spec", lambda name: None if name == "matplotlib" else real(name)
    )
    assert bench_door.missing_bench_modules() == ["matplotlib"]
    assert _run(monkeypatch, "bench", "report", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "matplotlib" in err and "pip install 'sleeptime[bench]'" in err


def test_with_the_extra_a_bench_command_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert bench_door.missing_bench_modules() == []
    assert _run(monkeypatch, "bench", "report", str(tmp_path)) == 2  # not a run directory
    assert "is not a benchmark run directory" in capsys.readouterr().err
