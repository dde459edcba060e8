"""README.md documents every setting in one table, with its actual default, and
nothing that is not a setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sleeptime.llm.retry import RetryPolicy
from sleeptime.queue.base import QueueConfig
from sleeptime.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def configuration() -> str:
    section = README.read_text(encoding="utf-8").split("## Configuration", 1)[1]
    return section.split("\n## ", 1)[0]


def documented() -> list[str]:
    return re.findall(r"^\| `SLEEPTIME_([A-Z0-9_]+)` \|", configuration(), flags=re.M)


def table() -> dict[str, str]:
    """The settings table's default cell by setting name."""
    rows = re.findall(r"^\| `SLEEPTIME_([A-Z0-9_]+)` \| ([^|]*) \|", configuration(), flags=re.M)
    return {name.lower(): cell.strip() for name, cell in rows}


def matches_default(cell: str, value: Any) -> bool:
    """Whether a table cell states ``value``: ``unset`` for None, else one code span
    with the value as the environment variable would spell it."""
    if value is None:
        return cell == "unset"
    m = re.fullmatch(r"`([^`]+)`", cell)
    if m is None:
        return False
    shown = m.group(1)
    if isinstance(value, bool):
        return shown == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(shown) == float(value)
        except ValueError:
            return False
    return shown == str(value)


def test_every_setting_is_in_the_readme_table_once() -> None:
    names = documented()
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert {n.lower() for n in names} == set(Settings.model_fields)


def test_the_readme_table_states_every_actual_default() -> None:
    cells = table()
    wrong = [
        f"SLEEPTIME_{name.upper()}: README says {cells.get(name)!r}, the code {field.default!r}"
        for name, field in Settings.model_fields.items()
        if not matches_default(cells.get(name, ""), field.default)
    ]
    assert not wrong, "; ".join(wrong)


def test_the_default_check_can_fail() -> None:
    assert matches_default("`0.5`", 0.5) and matches_default("`20`", 20.0)
    assert matches_default("`true`", True) and not matches_default("`false`", True)
    assert matches_default("unset", None) and not matches_default("`0`", None)
    assert not matches_default("`4`", 5) and not matches_default("4", 4)
    assert matches_default("`.sleeptime/kv`", Path(".sleeptime/kv"))


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
