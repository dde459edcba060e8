"""The benchmark is an extra: without its dependencies a ``sleeptime bench`` command is
one line naming the install command (exit code 2); the rest of the command line, and
``sleeptime bench --help``, work as before."""

from __future__ import annotations

import subprocess
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


def test_an_install_without_the_extra_still_runs_the_command_line() -> None:
    """A process where matplotlib and langchain cannot be imported (as without the
    extra; httpx comes with langgraph): ``sleeptime --help`` works, a bench command is
    one line."""
    block = (
        "import sys\n"
        "for name in ('matplotlib', 'langchain'):\n"
        "    sys.modules[name] = None\n"
        "sys.argv = ['sleeptime', *sys.argv[1:]]\n"
        "from sleeptime.cli import main\n"
        "main()\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", block, *args], capture_output=True, text=True, timeout=120
        )

    helped = run("--help")
    assert helped.returncode == 0 and "bench" in helped.stdout
    refused = run("bench", "report", "somewhere")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: sleeptime bench needs the bench extra (matplotlib, langchain missing): "
        "pip install 'sleeptime[bench]'"
    ]
