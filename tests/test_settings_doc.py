"""README.md documents every setting in one table, and nothing that is not a setting."""

from __future__ import annotations

import re
from pathlib import Path

from sleeptime.llm.retry import RetryPolicy
from sleeptime.queue.base import QueueConfig
from sleeptime.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def documented() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Configuration", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"^\| `SLEEPTIME_([A-Z0-9_]+)` \|", section, flags=re.M)


def test_every_setting_is_in_the_readme_table_once() -> None:
    names = documented()
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert {n.lower() for n in names} == set(Settings.model_fields)


def test_policies_take_their_defaults_from_settings() -> None:
    s = Settings()
    assert QueueConfig() == QueueConfig.from_settings(s)
    assert RetryPolicy() == RetryPolicy.from_settings(s)


def test_retry_policy_comes_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SLEEPTIME_RETRY_ATTEMPTS", "7")
    monkeypatch.setenv("SLEEPTIME_RETRY_MAX_WAIT_S", "3")
    monkeypatch.setenv("SLEEPTIME_QUEUE_SCAN", "16")
    from sleeptime import SleepTime

    st = SleepTime(model="fake", database_url="sqlite:///:memory:")
    assert (st.retry.attempts, st.retry.max_wait) == (7, 3.0)
    assert QueueConfig.from_settings(st.settings).scan == 16
    st.close()
