"""Keep ``sleeptime.__all__`` honest, as httpx does."""

from __future__ import annotations

import sleeptime


def test_all_names_exist() -> None:
    for name in sleeptime.__all__:
        assert hasattr(sleeptime, name), name


def test_every_public_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(sleeptime).items()
        if not name.startswith("_") and not isinstance(value, type(sleeptime))
    }
    assert public == set(sleeptime.__all__) - {"__version__"}


def test_all_is_sorted_and_unique() -> None:
    assert list(sleeptime.__all__) == sorted(set(sleeptime.__all__))


def test_queue_errors_are_sleeptime_errors_with_their_data() -> None:
    from sleeptime.queue import JobNotFound, QueueUnavailable

    assert JobNotFound is sleeptime.JobNotFound and QueueUnavailable is sleeptime.QueueUnavailable
    err = sleeptime.JobNotFound("123-ab", state="running")
    assert isinstance(err, sleeptime.SleepTimeError)
    assert (err.job_id, err.state) == ("123-ab", "running")
    assert (
        str(err)
        == "no job '123-ab' among dead jobs (it is running): see `sleeptime jobs` for the job ids"
    )
    down = sleeptime.QueueUnavailable("job queue /tmp/q.db", "disk I/O error")
    assert isinstance(down, sleeptime.SleepTimeError)
    assert (down.queue, down.reason) == ("job queue /tmp/q.db", "disk I/O error")
    assert str(down) == "job queue /tmp/q.db unavailable: disk I/O error"


def test_async_twins_have_the_same_parameters() -> None:
    import inspect

    for name in ("ingest", "append", "ingest_messages", "sleep", "ask", "ledger"):
        sync = inspect.signature(getattr(sleeptime.SleepTime, name))
        twin = inspect.signature(getattr(sleeptime.SleepTime, "a" + name))
        assert list(twin.parameters) == list(sync.parameters), name
        for p in sync.parameters.values():
            q = twin.parameters[p.name]
            assert (q.kind, q.default, q.annotation) == (p.kind, p.default, p.annotation), p.name
