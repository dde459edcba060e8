"""Sleep policies decide from an injected query log and clock (no model, no queue):
eager always sleeps, on_demand after the version's first query, budgeted when the
expected queries times the saving per query beat the sleep's cost, sized by the
margin, inside the namespace's daily sleep-time budget."""

from __future__ import annotations

import pytest

from sleeptime.errors import InvalidInput
from sleeptime.policy import Demand, MemoryHistory, SleepPolicy, decay
from sleeptime.settings import Settings

DAY = 86400.0
T0 = 1_800_000_000.0
CHARS = 16_000  # about 4k tokens: a document long enough for the passage path


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(
    name: str,
    history: MemoryHistory | None = None,
    *,
    clock: Clock | None = None,
    left: int | None = None,
    **settings: object,
) -> SleepPolicy:
    return SleepPolicy(
        name,
        Settings(**settings),  # type: ignore[arg-type]
        history=history if history is not None else MemoryHistory(),
        sleep_tokens_left=lambda _ns: left,
        clock=clock or Clock(),
    )


def test_eager_always_sleeps_and_a_bad_name_is_refused() -> None:
    assert policy("eager").decide("ns", "doc", 1, chars=CHARS).sleep
    with pytest.raises(InvalidInput, match="sleep policy must be one of"):
        policy("sometimes")
    with pytest.raises(InvalidInput, match="needs the query log"):
        SleepPolicy("budgeted", Settings(), history=None)


def test_on_demand_sleeps_a_version_after_its_first_query() -> None:
    history = MemoryHistory()
    p = policy("on_demand", history)
    first = p.decide("ns", "doc", 1, chars=CHARS)
    assert not first.sleep and first.reason == "skipped: on_demand, no query on v1 yet"
    history.query("ns", "doc", 1, T0)
    assert p.decide("ns", "doc", 1, chars=CHARS).sleep
    # a query on the previous version is no demand for this one
    assert not p.decide("ns", "doc", 2, chars=CHARS).sleep


def test_budgeted_skips_a_new_context_without_history() -> None:
    d = policy("budgeted").decide("ns", "doc", 1, chars=CHARS)
    assert not d.sleep
    assert d.reason.startswith("skipped: expected 1.0 queries")
    assert d.expected_queries == 1.0 and d.estimated_tokens and d.estimated_tokens > 0


def test_budgeted_prior_is_a_setting() -> None:
    d = policy("budgeted", policy_prior_queries=50.0).decide("ns", "doc", 1, chars=CHARS)
    assert d.sleep and d.expected_queries == 50.0


def _namespace(history: MemoryHistory, asked: int, unasked: int, per_asked: int) -> None:
    """Contexts ingested three days before T0; ``asked`` of them queried ``per_asked``
    times, two days before T0."""
    for i in range(asked + unasked):
        history.ingest("ns", f"old-{i}", T0 - 3 * DAY)
    for i in range(asked):
        for _ in range(per_asked):
            history.query("ns", f"old-{i}", 1, T0 - 2 * DAY, saved=3000.0)


def test_budgeted_learns_the_namespace_prior_from_the_query_log() -> None:
    busy = MemoryHistory()
    _namespace(busy, asked=10, unasked=0, per_asked=10)
    d = policy("budgeted", busy).decide("ns", "new", 1, chars=CHARS)
    assert d.sleep and d.expected_queries == pytest.approx(10.0)
    quiet = MemoryHistory()
    _namespace(quiet, asked=1, unasked=9, per_asked=10)
    d = policy("budgeted", quiet).decide("ns", "new", 1, chars=CHARS)
    assert not d.sleep and d.expected_queries == pytest.approx(1.0)


def test_budgeted_sleeps_a_skipped_version_once_demand_arrives() -> None:
    history = MemoryHistory()
    _namespace(history, asked=1, unasked=9, per_asked=10)
    p = policy("budgeted", history)
    assert not p.decide("ns", "new", 1, chars=CHARS).sleep
    history.query("ns", "new", 1, T0)
    d = p.decide("ns", "new", 1, chars=CHARS)
    # asked contexts of this namespace get 10 queries: 9 more expected
    assert d.sleep and d.expected_queries == pytest.approx(9.0)


def test_budgeted_uses_a_contexts_own_decayed_rate() -> None:
    history = MemoryHistory(half_life_s=DAY)
    clock = Clock()
    for _ in range(40):
        history.query("ns", "doc", 1, T0)
    p = policy("budgeted", history, clock=clock)
    d = p.decide("ns", "doc", 2, chars=CHARS)  # an edit of a popular context
    assert d.sleep and d.expected_queries == pytest.approx(40.0)
    clock.now = T0 + 6 * DAY  # six half-lives later: the context went quiet
    d = p.decide("ns", "doc", 2, chars=CHARS)
    assert not d.sleep and d.expected_queries == pytest.approx(40 * decay(6 * DAY, DAY))


def test_budgeted_sizes_the_sleep_by_the_margin() -> None:
    p = policy("budgeted", answer_samples=1, sleep_k=2)
    cost = p.sleep_cost(Demand(), CHARS, 2, 5)
    saving = p.saving(Demand(), CHARS)
    lean = p._budgeted("ns", 1, Demand(context_rate=1.5 * cost / saving), CHARS)
    assert lean.sleep and lean.reason.startswith("budgeted (lean)")
    assert (lean.k, lean.answer_samples) == (1, 1)
    standard = p._budgeted("ns", 1, Demand(context_rate=5 * cost / saving), CHARS)
    assert standard.reason.startswith("budgeted (standard)") and standard.k == 2
    rich = p._budgeted("ns", 1, Demand(context_rate=50 * cost / saving), CHARS)
    assert rich.reason.startswith("budgeted (rich)") and rich.answer_samples == 3


def test_budgeted_stays_inside_the_namespaces_sleep_budget() -> None:
    history = MemoryHistory()
    for _ in range(100):
        history.query("ns", "doc", 1, T0)
    d = policy("budgeted", history, left=10).decide("ns", "doc", 2, chars=CHARS)
    assert not d.sleep
    assert d.reason.startswith("skipped: sleep-time budget of ns (10 tokens left today")
    assert policy("budgeted", history, left=10**9).decide("ns", "doc", 2, chars=CHARS).sleep
    assert policy("budgeted", history, left=None).decide("ns", "doc", 2, chars=CHARS).sleep


def test_measured_costs_and_savings_replace_the_estimates() -> None:
    history = MemoryHistory()
    history.slept("ns", cost=1000.0, text_tokens=1000)  # 1 weighted token per text token
    history.query("ns", "doc", 1, T0, saved=500.0)
    d = history.demand("ns", "doc", 2, T0)
    assert d.sleep_cost_per_token == 1.0 and d.saving_per_query == 500.0
    p = policy("budgeted", history)
    assert p.sleep_cost(d, 4000, 1, 5) == 1000.0
    assert p.saving(d, 4000) == 500.0


def test_the_decision_says_why_in_the_logs() -> None:
    d = policy("budgeted").decide("ns", "doc", 1, chars=CHARS)
    fields = d.log_fields()
    assert fields["policy_reason"] == d.reason and fields["expected_queries"] == 1.0


def test_the_sql_history_reads_the_query_log_and_the_ledger(database_url: str) -> None:
    """SQLHistory on a real store (model fake): a version's queries, the context's
    decayed rate, the namespace's asked share (young contexts while none is mature),
    what non-cold answers saved and what sleeps cost; queried_versions for revival."""
    import time as _time

    from sleeptime import SleepTime
    from sleeptime.policy import SQLHistory, queried_versions

    st = SleepTime(
        model="fake",
        database_url=database_url,
        settings=Settings(model="fake", n_questions=2),
    )
    text = "Ann has 3 apples. Bob has 4 pears. Cid has 5 plums. " * 200  # passage path
    st.ingest("ns", "doc", text)
    st.ingest("ns", "quiet", text + " Dee has 6 figs.")
    _, start = queried_versions(st.store, -1)
    st.ask("ns", "doc", "How many apples does Ann have?")  # cold
    st.sleep("ns", "doc")
    for _ in range(3):
        st.ask("ns", "doc", "How many pears does Bob have?")  # learned or predicted
    history = SQLHistory(st.store, half_life_s=DAY, window_s=7 * DAY, mature_s=DAY)
    now = _time.time()
    d = history.demand("ns", "doc", 1, now)
    assert d.version_queries == 4 and d.context_rate == pytest.approx(4.0, rel=0.01)
    assert d.asked_share == 0.5 and d.queries_if_asked == 4.0  # young contexts: both
    assert d.saving_per_query is not None and d.saving_per_query > 0
    assert d.sleep_cost_per_token is not None and d.sleep_cost_per_token > 0
    assert history.demand("ns", "quiet", 1, now).version_queries == 0
    found, last = queried_versions(st.store, start)
    assert found == [("ns", "doc", 1)] and last > start
    assert queried_versions(st.store, last) == ([], last)
    st.close()
