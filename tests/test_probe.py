"""A llama.cpp build that crashes on this CPU is found in a child process and reported
in one line with the fix; a build that works is tried once, then remembered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sleeptime import UnknownModel
from sleeptime.llm import probe

CRASH = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
OK = "print('ok')"


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "_checked", set())


def model_file(tmp_path: Path) -> str:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


def test_a_build_that_crashes_is_one_line_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel) as err:
        probe.ensure_safe(model_file(tmp_path), script=CRASH)
    message = str(err.value)
    assert "\n" not in message and "SIGSEGV" in message and "GGML_NATIVE=OFF" in message
    assert not list(probe.cache_dir().glob("*.json"))  # a crash is never remembered as ok


def test_a_build_that_works_is_tried_once(tmp_path: Path) -> None:
    path = model_file(tmp_path)
    probe.ensure_safe(path, script=OK)
    assert len(list(probe.cache_dir().glob("*.json"))) == 1
    probe._checked.clear()
    probe.ensure_safe(path, script=CRASH)  # remembered on disk: not run again
    os.utime(path, ns=(1, 1))  # another model file (or build): tried again
    probe._checked.clear()
    with pytest.raises(UnknownModel):
        probe.ensure_safe(path, script=CRASH)


def test_an_ordinary_error_is_left_to_the_real_load(tmp_path: Path) -> None:
    probe.ensure_safe(model_file(tmp_path), script="raise SystemExit(1)")
    assert not list(probe.cache_dir().glob("*.json"))


@pytest.mark.slow
def test_the_bundled_model_passes_its_probe() -> None:
    pytest.importorskip("llama_cpp")
    from sleeptime.llm.local import bundled_model_path

    probe.ensure_safe(str(bundled_model_path()))
    assert len(list(probe.cache_dir().glob("*.json"))) == 1
