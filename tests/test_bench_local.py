"""The parallel-sampling baseline on the real local model (slow: llama.cpp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleeptime import SleepTime, prompts
from sleeptime.bench.runner import _sample_seed

pytestmark = pytest.mark.slow


def test_local_samples_differ_and_repeat() -> None:
    """llama.cpp samples with a fixed seed, so without a per-sample seed the K samples of
    the baseline would be K copies of one answer."""
    st = SleepTime(model="local", database_url="sqlite:///:memory:")
    messages = prompts.query_messages(
        "How many apples are left?",
        context="Ann has 5 apples. She eats 2.",
        learned=None,
        verbosity=2,
    )

    def sample(i: int) -> str:
        res = st.gateway.call(
            messages,
            phase="test",
            step="parallel",
            max_tokens=24,
            temperature=0.9,
            seed=_sample_seed(st.gateway, i),
        )
        return res.text

    texts = [sample(i) for i in range(3)]
    assert len(set(texts)) > 1
    assert sample(0) == texts[0]
    st.close()


def test_paper_protocol_on_the_local_model(tmp_path: Path) -> None:
    """Uncapped local calls ask for what is left of the window (llama.cpp would decode a
    small default otherwise) and every loop ends for a recorded reason."""
    from sleeptime.bench.runner import CALLS, RESULTS, SLEEP, RunConfig, read_jsonl, run
    from sleeptime.settings import Settings

    data = tmp_path / "one.jsonl"
    data.write_text(
        json.dumps(
            {
                "id": "a",
                "context": "Ann has 5 apples. She eats 2.",
                "queries": [{"question": "How many apples are left?", "answer": "3"}],
            }
        )
        + "\n"
    )
    cfg = RunConfig(
        dataset=str(data),
        model="local",
        out=tmp_path / "run",
        verbosity=[0],
        sleep_k=[0, 1],
        predictability=False,
        protocol="paper",
        rethink_rounds=2,
    )
    run(cfg, settings=Settings(local_n_ctx=768))
    calls = read_jsonl(tmp_path / "run" / CALLS)
    assert calls and all(c["max_tokens"] is None for c in calls)
    assert all(0 < c["limit_tokens"] < 768 for c in calls)
    assert all(c["completion_tokens"] <= c["limit_tokens"] for c in calls)
    assert {r["arm"] for r in read_jsonl(tmp_path / "run" / RESULTS)} == {"k0-v0", "k1-v0"}
    (sleep,) = read_jsonl(tmp_path / "run" / SLEEP)
    stops = {"finished", "unchanged", "empty", "window", "rounds"}
    assert sleep["rethinks"][0]["stop"] in stops and sleep["error"] is None
