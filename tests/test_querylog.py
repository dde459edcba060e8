"""The query log is written off the answer's path, and loses nothing on a clean
shutdown or while the database is briefly down."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.errors import StoreUnavailable
from sleeptime.store.querylog import QueryLog
from sleeptime.store.schema import QueryRow


class Flaky:
    """A writer that fails with StoreUnavailable until ``up`` is set."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.rows: list[dict[str, Any]] = []
        self.failures = 0
        self.failed = threading.Event()

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        if not self.up.is_set():
            self.failures += 1
            self.failed.set()
            raise StoreUnavailable("database down")
        self.rows.extend(rows)


def test_rows_survive_an_outage_and_flush_is_a_barrier() -> None:
    writer = Flaky()
    qlog = QueryLog(writer, retry_s=0.01, linger_s=0.0)
    for i in range(100):
        qlog.append({"i": i})
    assert writer.failed.wait(10)
    assert not qlog.flush(timeout=0.05)  # still down: not written, not lost
    writer.up.set()
    assert qlog.flush(timeout=10)
    assert [r["i"] for r in writer.rows] == list(range(100))  # once each, in order
    qlog.close()


def test_a_row_that_can_never_be_written_does_not_block_the_rest() -> None:
    written: list[dict[str, Any]] = []

    def write(rows: list[dict[str, Any]]) -> None:
        if any(r.get("bad") for r in rows):
            raise ValueError("bad row")
        written.extend(rows)

    qlog = QueryLog(write, linger_s=0.0, batch=1)
    qlog.append({"bad": True})
    qlog.append({"i": 1})
    assert qlog.flush(timeout=10)
    assert written == [{"i": 1}]
    qlog.close()


def test_every_ask_is_logged_after_close(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=Settings(model="fake"))
    st.ingest("acme", "doc", "Ann has 3 apples.")
    for i in range(50):
        st.ask("acme", "doc", f"How many apples are in box {i}?")
    st.close()  # drains the buffer
    st2 = SleepTime(model="fake", database_url=sqlite_url)
    with st2.store.session() as s:
        assert s.scalar(select(func.count()).select_from(QueryRow)) == 50
    assert st2.ledger("acme", "doc").queries == 50
    st2.close()
