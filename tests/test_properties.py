"""Property-based tests of the public API and the CLI on arbitrary input.

Whatever the input (any Unicode including NUL, lone surrogates, separators and
quotes; empty and oversized text; wrongly typed arguments; concurrent ingests of one
id), a call either succeeds or raises a ``SleepTimeError``, a rejected call writes
nothing and calls no model, and the store's invariants hold after every example
(tests/store_invariants.py), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_invariants import check_invariants, row_counts
from typer.testing import CliRunner

from sleeptime import FakeChatModel, Settings, SleepTime, SleepTimeError
from sleeptime.cli import app

MAX_CONTEXT = 3000
MAX_QUESTION = 300

PROFILE = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Any code point, lone surrogates and NUL included.
ANY_CHAR = st.characters(exclude_categories=())
NASTY = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udcff",
    "acme\n",
    "ac/me",
    "a:b",
    "a.b_c-d",
    "'; DROP TABLE st_contexts; --",
    '"quoted"',
    "..",
    "%s%n",
    "\u2028\u2029",
    "\ufeffbom",
    "🙂",
    "x" * 129,
    "y" * 257,
]
#: A character that has broken something once: NUL, surrogates, separators, quotes.
BAD_CHAR = st.sampled_from(["\x00", "\ud800", "\udfff", "\n", "'", '"', "/", ":", "\u2028"])
spiked = st.builds(lambda a, c, b: a + c + b, st.text(max_size=20), BAD_CHAR, st.text(max_size=20))
texts = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(max_size=200),
    spiked,
    spiked,
    st.sampled_from(NASTY),
    st.sampled_from(["z" * (MAX_CONTEXT + 1), "Ann has 3 apples. " * 100]),
)
valid_namespaces = st.one_of(
    st.sampled_from(["acme", "beta", "t1.x_y:z-9"]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}", fullmatch=True),
)
namespaces = st.one_of(
    valid_namespaces,
    valid_namespaces,
    st.text(ANY_CHAR, max_size=8),
    st.sampled_from(NASTY),
)
ids = st.one_of(
    st.sampled_from(["doc-1", "doc 2", "a/b", "x'y\"z"]),
    st.text(max_size=12),
    spiked,
    st.text(ANY_CHAR, min_size=0, max_size=12),
    st.sampled_from(NASTY),
)
ints = st.one_of(
    st.none(),
    st.integers(-2, 6),
    st.sampled_from(["2", "", 1.0, True, b"1", [1]]),
)


def client(database_url: str, model: FakeChatModel) -> SleepTime:
    cfg = Settings(
        model="fake",
        n_questions=2,
        idle_after=0.0,
        max_context_chars=MAX_CONTEXT,
        max_question_chars=MAX_QUESTION,
    )
    return SleepTime(model=model, database_url=database_url, settings=cfg)


@pytest.fixture
def model() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def sleeptime(database_url: str, model: FakeChatModel) -> Iterator[SleepTime]:
    st_ = client(database_url, model)
    yield st_
    st_.close()


def attempt(s: SleepTime, model: FakeChatModel, call: Callable[[], Any]) -> Any | None:
    """Run ``call``; a rejection must be a SleepTimeError that wrote nothing and
    called no model. Returns the result, or None when rejected."""
    before, calls = row_counts(s.store), model.calls
    try:
        return call()
    except SleepTimeError:
        assert row_counts(s.store) == before, "a rejected call wrote rows"
        assert model.calls == calls, "a rejected call called the model"
        return None


def test_ingest_any_input(sleeptime: SleepTime, model: FakeChatModel) -> None:
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)

    @PROFILE
    @given(ops=st.lists(st.tuples(namespaces, ids, texts), min_size=1, max_size=6))
    def run(ops: list[tuple[str, str, str]]) -> None:
        for ns, cid, text in ops:
            ctx = attempt(sleeptime, model, lambda: sleeptime.ingest(ns, cid, text))  # noqa: B023
            if ctx is None:
                continue
            history = expected[(ns, cid)]
            if history and history[-1] == text:
                assert not ctx.created and ctx.version == len(history)
            else:
                history.append(text)
                assert ctx.created and ctx.version == len(history)
            assert ctx.text == text and ctx.namespace == ns and ctx.context_id == cid
        assert check_invariants(sleeptime.store) == dict(expected)

    run()


def test_ask_and_sleep_any_input(sleeptime: SleepTime, model: FakeChatModel) -> None:
    sleeptime.ingest("acme", "doc-1", "Ann has 3 apples. Bob gives her 4 more apples.")
    sleeptime.ingest("beta", "doc-1", "A train leaves at 9 and travels 120 km at 60 km/h.")

    @PROFILE
    @given(
        ns=st.one_of(st.sampled_from(["acme", "beta"]), namespaces),
        cid=st.one_of(st.just("doc-1"), ids),
        question=texts,
        verbosity=ints,
        max_tokens=ints,
        sleep_first=st.booleans(),
        k=ints,
    )
    def run(
        ns: str, cid: str, question: str, verbosity: Any, max_tokens: Any, sleep_first: bool, k: Any
    ) -> None:
        if sleep_first:
            attempt(sleeptime, model, lambda: sleeptime.sleep(ns, cid, k=k))
        before = row_counts(sleeptime.store)["st_queries"]
        answer = attempt(
            sleeptime,
            model,
            lambda: sleeptime.ask(ns, cid, question, verbosity=verbosity, max_tokens=max_tokens),
        )
        if answer is not None:
            assert answer.source in ("predicted", "learned", "cold")
            assert row_counts(sleeptime.store)["st_queries"] == before + 1
            arts = sleeptime.artifacts(ns, cid)
            assert arts.namespace == ns and arts.context_id == cid  # never another tenant's
        check_invariants(sleeptime.store)

    run()


def test_concurrent_ingests_of_one_id(sleeptime: SleepTime, model: FakeChatModel) -> None:
    @settings(PROFILE, max_examples=25)
    @given(
        batch=st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), min_size=2, max_size=6)
    )
    def run(batch: list[str]) -> None:
        cid = f"doc-{uuid.uuid4().hex[:8]}"
        results: list[Any] = [None] * len(batch)
        errors: list[BaseException] = []
        start = threading.Barrier(len(batch))

        def ingest(i: int, text: str) -> None:
            try:
                start.wait(30)
                results[i] = sleeptime.ingest("acme", cid, text)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=ingest, args=(i, t)) for i, t in enumerate(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        stored = check_invariants(sleeptime.store)[("acme", cid)]
        assert set(stored) == set(batch)  # every text was stored; nothing else was
        for text, ctx in zip(batch, results, strict=True):
            assert stored[ctx.version - 1] == text == ctx.text
        assert 1 <= len(stored) <= len(batch)

    run()


def test_cli_any_input(sqlite_url: str) -> None:
    runner = CliRunner()
    common = ["--database-url", sqlite_url]

    def invoke(args: list[str], stdin: bytes | None = None) -> None:
        result = runner.invoke(app, args, input=stdin)
        if result.exit_code == 0:
            return
        exc = result.exception
        # a SleepTimeError (main() prints it as one line, exit 2) or a usage error
        # (click: exit 2, e.g. an id that starts with '-')
        assert isinstance(exc, SleepTimeError) or (
            isinstance(exc, SystemExit) and result.exit_code == 2
        ), f"{args!r}: {type(exc).__name__}: {exc}"

    @settings(PROFILE, max_examples=30)
    @given(ns=namespaces, cid=ids, text=texts, question=texts)
    def run(ns: str, cid: str, text: str, question: str) -> None:
        data = text.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8
        invoke(["ingest", ns, cid, "-", *common], stdin=data)
        invoke(["ask", ns, cid, question, "--model", "fake", "--json", *common])
        invoke(["show", ns, cid, "--json", *common])

    run()
    store = client(sqlite_url, FakeChatModel()).store
    check_invariants(store)
    store.dispose()


def test_a_dozen_concurrent_writers_of_one_id(sleeptime: SleepTime) -> None:
    """Twelve threads each ingesting a different text into one id, five times over: no
    writer gives up (PostgreSQL used to run out of version-number retries)."""
    errors: list[BaseException] = []
    for round_ in range(5):
        cid = f"busy-{round_}"
        start = threading.Barrier(12)

        def ingest(i: int, cid: str = cid, start: threading.Barrier = start) -> None:
            try:
                start.wait(30)
                sleeptime.ingest("acme", cid, f"text number {i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=ingest, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(check_invariants(sleeptime.store)[("acme", cid)]) == 12
