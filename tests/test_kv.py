"""KV-prefill blobs: the store (real SQLite/PostgreSQL + files) and, marked slow, the
round trip through llama.cpp on the bundled model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from sleeptime import prompts
from sleeptime.llm import llama_internals as lli
from sleeptime.llm.kv import KVStore, prefill_query_prefix
from sleeptime.llm.tokens import common_prefix, stable_prefix, tokens_hash
from sleeptime.store import kv_index
from sleeptime.store.schema import KVBlobRow
from sleeptime.store.sql import SQLStore

MODEL = "m" * 40 + ":llama-cpp-python-test"
TOKENS = list(range(1, 101))


@pytest.fixture
def store(database_url: str) -> Iterator[SQLStore]:
    s = SQLStore(database_url)
    yield s
    s.dispose()


def make(store: SQLStore, tmp_path: Path, cap: int = 1 << 20) -> KVStore:
    return KVStore(store, tmp_path / "kv", cap)


def test_put_find_load_round_trip(store: SQLStore, tmp_path: Path) -> None:
    kv = make(store, tmp_path)
    data = bytes(range(256)) * 40
    blob = kv.put(namespace="a", model_key=MODEL, tokens=TOKENS[:60], data=data)
    assert blob is not None and blob.n_tokens == 60
    assert (tmp_path / "kv" / blob.file).stat().st_size == blob.size_bytes
    assert kv.total_bytes() == blob.size_bytes
    # the longest stored prefix of a longer prompt is found ...
    kv.put(namespace="a", model_key=MODEL, tokens=TOKENS[:30], data=b"short")
    found = kv.find(namespace="a", model_key=MODEL, tokens=[*TOKENS, 7, 8])
    assert (
        found is not None and found.n_tokens == 60 and found.prefix_hash == tokens_hash(TOKENS[:60])
    )
    loaded = kv.load(found, TOKENS)
    assert loaded is not None and bytes(loaded) == data
    # ... never one that leaves nothing to decode, nor one that is not a prefix
    assert kv.find(namespace="a", model_key=MODEL, tokens=TOKENS[:60]).n_tokens == 30  # type: ignore[union-attr]
    assert kv.find(namespace="a", model_key=MODEL, tokens=[0, *TOKENS]) is None


def test_other_namespace_or_model_never_matches(store: SQLStore, tmp_path: Path) -> None:
    kv = make(store, tmp_path)
    kv.put(namespace="a", model_key=MODEL, tokens=TOKENS[:50], data=b"x" * 100)
    assert kv.find(namespace="a", model_key=MODEL, tokens=TOKENS) is not None
    assert kv.find(namespace="b", model_key=MODEL, tokens=TOKENS) is None
    assert kv.find(namespace="a", model_key="other" + MODEL, tokens=TOKENS) is None


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped", "garbage", "tokens"])
def test_stale_or_damaged_blob_is_ignored_and_dropped(
    store: SQLStore, tmp_path: Path, damage: str
) -> None:
    kv = make(store, tmp_path)
    blob = kv.put(namespace="a", model_key=MODEL, tokens=TOKENS[:50], data=b"state" * 200)
    assert blob is not None
    path = tmp_path / "kv" / blob.file
    raw = path.read_bytes()
    tokens = TOKENS
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(raw[:-10])
    elif damage == "flipped":
        path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    elif damage == "garbage":
        path.write_bytes(b"not a kv file at all")
    else:  # the row says these tokens, the caller's prompt differs after the hash lookup
        tokens = [*TOKENS[:10], 999, *TOKENS[11:]]
    assert kv.load(blob, tokens) is None
    assert kv.blobs() == [] and not path.exists()


def test_lru_eviction_under_the_size_cap(
    store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kv_index, "TOUCH_EVERY", timedelta(0))  # every hit bumps the clock
    kv = make(store, tmp_path)
    a = kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[:10], data=b"a" * 1000)
    b = kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[10:20], data=b"b" * 1000)
    assert a is not None and b is not None
    one = max(a.size_bytes, b.size_bytes)
    kv.max_bytes = 2 * one + 10  # room for two of these blobs, not three
    assert kv.find(namespace="n", model_key=MODEL, tokens=[*TOKENS[:10], 0]) == a  # a is fresher
    c = kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[20:30], data=b"c" * 1000)
    assert c is not None
    assert {x.prefix_hash for x in kv.blobs()} == {a.prefix_hash, c.prefix_hash}
    assert kv.total_bytes() <= kv.max_bytes
    assert sorted(p.name for p in (tmp_path / "kv").iterdir()) == sorted([a.file, c.file])
    # a blob larger than the whole cap is not stored (and evicts nothing)
    assert kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[:5], data=b"z" * 5000) is None
    assert len(kv.blobs()) == 2
    # lowering the cap and evicting keeps the most recently used one
    kv.max_bytes = one
    assert kv.evict() == 1
    assert len(kv.blobs()) == 1


def test_new_context_version_frees_the_old_versions_blobs(store: SQLStore, tmp_path: Path) -> None:
    kv = make(store, tmp_path)
    kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[:10], data=b"1", context_id="d", version=1)
    kv.put(namespace="n", model_key=MODEL, tokens=TOKENS[:20], data=b"2", context_id="d", version=2)
    with store.session() as s:
        versions = [r.version for r in s.scalars(select(KVBlobRow))]
    assert versions == [2]


def test_stable_prefix_cuts_at_a_line_end() -> None:
    pieces = [b"<s>", b"Context", b":\n", b"text", b".\n", b"\n", b"Question", b":", b" What"]
    a = list(range(len(pieces)))
    b = [*a[:8], 99]
    assert common_prefix(a, b) == 8
    assert stable_prefix([a, b], pieces) == 6  # after ".\n" "\n", before "Question"
    assert common_prefix([], [1]) == 0 and common_prefix([1, 2], [1, 2, 3]) == 2


# -- the real model -------------------------------------------------------------------

CONTEXT = (
    "The Riverside library ordered 12 dozen muffins at $18 per dozen, 8 dozen cookies at "
    "$10 per dozen and 6 carrot cakes at $32 each. Delivery costs $25 and is not "
    "discounted. The bakery gives the library a 15% discount on the food because it is a "
    "non-profit. The bakery has one oven; a batch of muffins makes 2 dozen in 35 minutes."
)
NOTES = "Food: 12*18 + 8*10 + 6*32 = 488 dollars; after 15% off: 414.80; plus delivery: 439.80."


@pytest.fixture(scope="module")
def local_model():  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    from sleeptime.llm.local import LocalChatModel, bundled_model_path

    return LocalChatModel(model_path=str(bundled_model_path()), n_ctx=2048)


def clear(model) -> None:  # type: ignore[no-untyped-def]
    llama, lock = model.llama()
    with lock:
        lli.clear_cache(llama)


@pytest.mark.slow
def test_restored_prefix_gives_the_cold_answer(
    local_model, sqlite_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = SQLStore(sqlite_url)
    kv = KVStore(store, tmp_path / "kv", 1 << 30)
    question = "How much does the library pay in total?"
    messages = prompts.query_messages(question, context=CONTEXT, learned=NOTES, verbosity=0)
    local_model.attach_kv(None)
    clear(local_model)
    cold = local_model.invoke(messages, max_tokens=12)
    assert cold.response_metadata["kv_restored_tokens"] == 0

    clear(local_model)
    res = prefill_query_prefix(local_model, kv, namespace="lib", context=CONTEXT, learned=NOTES)
    assert res is not None and res.blob is not None
    parts = local_model.format_prompt(messages)
    assert parts is not None
    # the saved prefix is a true token prefix of the real prompt, ending before the question
    assert tokens_hash(parts.tokens[: res.n_tokens]) == res.blob.prefix_hash
    assert question not in local_model.llama()[0].detokenize(parts.tokens[: res.n_tokens]).decode()
    assert len(parts.tokens) - res.n_tokens < 40

    local_model.attach_kv(kv)
    try:
        clear(local_model)
        warm = local_model.invoke(messages, max_tokens=12, namespace="lib")
        assert warm.response_metadata["kv_restored_tokens"] == res.n_tokens
        assert warm.content == cold.content
        assert warm.usage_metadata == cold.usage_metadata

        # budget forcing starts from the same saved prefix
        from sleeptime import Budget
        from sleeptime.llm.budget import apply_budget

        clear(local_model)
        forced = apply_budget(local_model, Budget(think_tokens=4)).invoke(
            messages, max_tokens=4, namespace="lib"
        )
        assert forced.response_metadata["kv_restored_tokens"] == res.n_tokens

        # another namespace gets neither this tenant's saved state nor its cached prompt
        other = local_model.invoke(messages, max_tokens=12, namespace="other")
        assert other.response_metadata["kv_restored_tokens"] == 0 and other.content == cold.content
        assert other.response_metadata["prompt_cached_tokens"] == 0

        # a blob llama.cpp rejects (right tokens, intact file, nonsense state) falls back to cold
        blob = res.blob
        kv.drop(blob)
        bad = kv.put(
            namespace="lib",
            model_key=local_model.model_key(),
            tokens=parts.tokens[: res.n_tokens],
            data=b"\x00" * 64,
        )
        assert bad is not None
        clear(local_model)
        fallback = local_model.invoke(messages, max_tokens=12, namespace="lib")
        assert fallback.response_metadata["kv_restored_tokens"] == 0
        assert fallback.content == cold.content
        assert kv.blobs() == []

        # an unreachable blob index never fails the call either
        down = SQLStore("postgresql+psycopg://nobody@127.0.0.1:9/none", create=False)
        local_model.attach_kv(KVStore(down, tmp_path / "down", 1 << 30))
        clear(local_model)
        assert local_model.invoke(messages, max_tokens=12, namespace="lib").content == cold.content
    finally:
        local_model.attach_kv(None)
        store.dispose()


@pytest.mark.slow
def test_sleep_saves_the_prefix_the_query_path_restores(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp")
    from sleeptime import Settings, SleepTime

    settings = Settings(
        model="local", n_questions=0, sleep_max_tokens=16, kv_dir=tmp_path / "kv", local_n_ctx=2048
    )
    st = SleepTime(database_url=sqlite_url, settings=settings)
    st.ingest("lib", "order", CONTEXT)
    notes: list[str] = []
    st.sleep("lib", "order", progress=notes.append)
    assert any(n.startswith("saved the KV state") for n in notes), notes
    kv = KVStore(st.store, settings.kv_dir, settings.kv_max_bytes)
    (blob,) = kv.blobs("lib")
    assert (blob.context_id, blob.version) == ("order", 1)

    question = "How much does the library pay in total?"
    monkeypatch.setattr(kv_index, "TOUCH_EVERY", timedelta(0))
    clear(st.gateway.model)
    warm = st.ask("lib", "order", question, max_tokens=8)
    with st.store.session() as s:
        row = s.scalars(select(KVBlobRow)).one()
        assert row.last_used_at > row.created_at  # the query path looked it up and used it
    off = SleepTime(
        database_url=sqlite_url, settings=settings.model_copy(update={"kv_prefill": False})
    )
    clear(off.gateway.model)
    cold = off.ask("lib", "order", question, max_tokens=8)
    assert warm.source == cold.source == "learned"
    assert warm.text == cold.text and warm.usage == cold.usage
    st.close()
    off.close()


def test_blob_directory_follows_the_sqlite_file(tmp_path: Path) -> None:
    from sleeptime import Settings
    from sleeptime.llm.kv import kv_directory

    db = tmp_path / "sub" / "st.db"
    db.parent.mkdir()
    store = SQLStore(f"sqlite:///{db}")
    assert kv_directory(store, Settings()) == db.parent / ".sleeptime" / "kv"
    assert kv_directory(store, Settings(kv_dir=tmp_path / "abs")) == tmp_path / "abs"
    memory = SQLStore("sqlite:///:memory:")
    tmp = kv_directory(memory, Settings())
    assert tmp.is_dir() and tmp == kv_directory(memory, Settings())
    store.dispose()
    memory.dispose()


def test_sweep_removes_only_old_unreferenced_files(store: SQLStore, tmp_path: Path) -> None:
    import os

    kv = make(store, tmp_path)
    blob = kv.put(namespace="a", model_key=MODEL, tokens=TOKENS[:5], data=b"kept")
    assert blob is not None
    orphan = tmp_path / "kv" / "orphan.kv"
    fresh = tmp_path / "kv" / "fresh.kv"
    other = tmp_path / "kv" / "notes.txt"
    for path in (orphan, fresh, other):
        path.write_bytes(b"x")
    old = 1_000_000_000
    for path in (orphan, other, tmp_path / "kv" / blob.file):
        os.utime(path, (old, old))
    assert kv.sweep(older_than=60) == 1
    assert not orphan.exists() and fresh.exists() and other.exists()
    assert (tmp_path / "kv" / blob.file).exists()


@pytest.mark.slow
def test_an_evicted_prefix_is_rebuilt_by_the_next_sleep(sqlite_url: str, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from sleeptime import Settings, SleepTime

    settings = Settings(
        model="local", n_questions=0, sleep_max_tokens=16, kv_dir=tmp_path / "kv", local_n_ctx=2048
    )
    st = SleepTime(database_url=sqlite_url, settings=settings)
    st.ingest("lib", "order", CONTEXT)
    st.sleep("lib", "order")
    kv = KVStore(st.store, settings.kv_dir, settings.kv_max_bytes)
    (blob,) = kv.blobs("lib")
    kv.drop(blob)  # as eviction under the size cap would
    assert kv.blobs("lib") == []
    notes: list[str] = []
    calls = st.ledger("lib", "order").sleep.calls
    report = st.sleep("lib", "order", progress=notes.append)
    assert report.skipped  # the artifacts were complete: no model call ...
    assert st.ledger("lib", "order").sleep.calls == calls
    assert any(n.startswith("saved the KV state") for n in notes), notes  # ... but a new state
    assert len(kv.blobs("lib")) == 1
    notes.clear()
    assert st.sleep("lib", "order", progress=notes.append).skipped
    assert notes == []  # stored: nothing to rebuild
    st.close()


@pytest.mark.slow
def test_prompt_cache_is_not_shared_across_namespaces(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp keeps the last prompt's KV cells and skips re-evaluating a common
    prefix. A cold ask in one namespace right after another namespace asked about the
    same text must evaluate the whole prompt (else its latency tells one tenant what
    another asked about); within one namespace the prefix is reused."""
    pytest.importorskip("llama_cpp")
    from sleeptime import Settings, SleepTime
    from sleeptime.llm.local import LocalChatModel

    calls: list[tuple[str | None, int]] = []
    generate = LocalChatModel._generate

    def spy(self: LocalChatModel, messages: list, stop=None, run_manager=None, **kw):  # type: ignore[no-untyped-def]
        out = generate(self, messages, stop, run_manager, **kw)
        meta = out.generations[0].message.response_metadata
        calls.append((kw.get("namespace"), int(meta["prompt_cached_tokens"])))
        return out

    monkeypatch.setattr(LocalChatModel, "_generate", spy)
    settings = Settings(model="local", kv_prefill=False, kv_dir=tmp_path / "kv", local_n_ctx=2048)
    st = SleepTime(database_url=sqlite_url, settings=settings)
    for ns in ("alice", "mallory"):
        st.ingest(ns, "order", CONTEXT)
    question = "How much does the library pay in total?"
    assert st.ask("alice", "order", question, max_tokens=4).source == "cold"
    st.ask("mallory", "order", question, max_tokens=4)  # same text, right after alice
    st.ask("mallory", "order", "How many muffins were ordered?", max_tokens=4)
    assert [ns for ns, _ in calls] == ["alice", "mallory", "mallory"]
    assert calls[1][1] == 0, "mallory's first prompt reused alice's cached tokens"
    assert calls[2][1] > 100, "a namespace's own context prefix is reused"
    st.close()
