"""The price sheet: tokens to dollars, the ledger's savings and break-even in money."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleeptime import FakeChatModel, InvalidSettings, Settings, SleepTime, Usage
from sleeptime.pricing import PriceSheet

SHEET = {"fake": {"input": 2.0, "cached_input": 0.5, "output": 8.0}, "*": {"input": 1, "output": 1}}


def test_a_sheet_prices_usage_per_million_tokens(tmp_path: Path) -> None:
    sheet = PriceSheet.load(json.dumps(SHEET))
    assert sheet is not None
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000)
    assert sheet.cost("fake", usage) == pytest.approx(2.0 + 4.0)
    assert sheet.cost("fake", usage, cached_prompt=400_000) == pytest.approx(1.2 + 0.2 + 4.0)
    assert sheet.cost("other", usage) == pytest.approx(1.5)  # the "*" fallback
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"fake": SHEET["fake"]}))
    from_file = PriceSheet.load(str(path))
    assert from_file is not None and from_file.cost("other", usage) is None
    assert PriceSheet.load(None) is None and PriceSheet.load("  ") is None


@pytest.mark.parametrize(
    "spec",
    ['{"fake": {"input": -1, "output": 1}}', '{"fake": {"inp": 1}}', "{not json", "/no/such/file"],
)
def test_a_bad_sheet_is_one_line_naming_the_setting(spec: str) -> None:
    with pytest.raises(InvalidSettings, match="SLEEPTIME_PRICES") as err:
        SleepTime(model=FakeChatModel(), database_url="sqlite://", settings=Settings(prices=spec))
    assert "\n" not in str(err.value)


def test_the_ledger_says_what_was_spent_and_saved_in_money(sqlite_url: str) -> None:
    settings = Settings(
        model="fake",
        n_questions=1,
        passage_threshold_tokens=300,
        sleep_max_tokens=40,
        prices=json.dumps(SHEET),
    )
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=settings)
    text = "\n\n".join(f"Shelf {i} holds {i * 4} jars of honey from farm {i}." for i in range(80))
    st.ingest("acme", "doc", text)
    st.sleep("acme", "doc")
    for i in (3, 17, 42):
        st.ask("acme", "doc", f"How many jars does shelf {i} hold?", verbosity=0)
    ledger = st.ledger("acme", "doc")
    money = ledger.money
    assert money is not None and ledger.saved_prompt_tokens > 0
    sleep = ledger.by_model["fake"]["sleep"]
    assert money.sleep_usd == pytest.approx(
        (sleep.prompt_tokens * 2 + sleep.completion_tokens * 8) / 1e6
    )
    assert money.saved_usd == pytest.approx(ledger.saved_prompt_tokens * 2 / 1e6)
    assert money.break_even_queries == pytest.approx(
        money.sleep_usd / (money.saved_usd / 3), abs=0.1
    )
    st.close()
