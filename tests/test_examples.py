"""The examples run as written (the scripted model here; the local model in the slow
test), and what they print is what happened."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # typing resolves the example's annotations through it
    spec.loader.exec_module(module)
    return module


def test_agent_app_serves_prepared_answers_and_uses_notes() -> None:
    out = load("agent_app").main(["--model", "fake"])
    first, second = out["agent"]["turns"]
    assert first["source"] == "predicted" and first["test_tokens_with_sleeptime"] == 0
    assert first["test_tokens_without"] > 0
    assert second["source"].startswith("model") and second["test_tokens_with_sleeptime"] > 0
    graph = out["graph"]
    assert graph["answers"][0]["source"] in {"predicted", "learned"}
    assert graph["tool_chars"] > 0 and graph["sleep_tokens"] > 0


def test_document_qa_prints_the_savings_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Ann has 3 apples. Bob has 4 apples.", encoding="utf-8")
    (tmp_path / "b.md").write_text("The shop opens at 9. It sells 40 loaves.", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    rows = load("document_qa").main([str(tmp_path), "--model", "fake", "--questions", "2"])
    assert [r["document"] for r in rows] == ["a", "b"]
    for r in rows:
        assert r["zero_token"] >= 1 and r["sleep_tokens"] > 0
        assert r["test_tokens"] < r["cold_test_tokens"]


@pytest.mark.slow
def test_agent_app_on_the_local_model() -> None:
    pytest.importorskip("llama_cpp")
    out = load("agent_app").main(["--model", "local"])
    assert out["agent"]["sleep_tokens"] > 0
    for turn in out["agent"]["turns"]:  # wording differs between CPUs: check accounting
        if turn["source"] == "predicted":
            assert turn["test_tokens_with_sleeptime"] == 0
        else:
            assert turn["test_tokens_with_sleeptime"] > 0
    assert out["graph"]["answers"][0]["source"] in {"predicted", "learned"}
