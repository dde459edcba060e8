"""Passages: splitting never cuts a sentence or a turn; the full-text index on SQLite
(FTS5) and PostgreSQL (tsvector); learned answers about long texts send notes plus
passages instead of the whole text; every answer knows the cold prompt it saved."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from langchain_core.embeddings import Embeddings

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.conversation import render_messages
from sleeptime.passages import (
    answer_type,
    exchange_spans,
    focus_order,
    is_conversation,
    query_terms,
    sentence_spans,
    split_passages,
)
from sleeptime.store.sql import SQLStore


def words(text: str) -> int:
    return len(text.split())


def report(i: int) -> str:
    return (
        f"Depot {i} in the district of Vale{i} shipped {i * 7 + 3} crates on day {i}. "
        f"Its manager, Ms. Quill{i}, said the forklift fleet needs {i % 5 + 2} repairs! "
        f"Why? Because the ramp at gate {i} is cracked."
    )


def document(n: int) -> str:
    return "\n\n".join(report(i) for i in range(n))


def test_sentences_are_whole_and_cover_the_text() -> None:
    text = document(5) + "\n- item one\n- item two: 3 kg"
    spans = sentence_spans(text)
    # every sentence ends where the text has an ending, and nothing but space is lost
    assert "".join(text[a:b] for a, b in spans).replace(" ", "") == re.sub(r"\s", "", text)
    for a, b in spans:
        piece = text[a:b]
        assert piece == piece.strip()
        assert piece[-1] in ".!?" or "\n" in text[b : b + 1] or b == len(text)


@pytest.mark.parametrize("target", [1, 8, 30, 200])
def test_passages_never_cut_a_sentence(target: int) -> None:
    text = document(12)
    passages = split_passages(text, target, words)
    sentences = sentence_spans(text)
    starts = {a for a, _ in sentences}
    ends = {b for _, b in sentences}
    assert [p.idx for p in passages] == list(range(len(passages)))
    for p in passages:
        assert p.start in starts and p.end in ends
        assert p.n_tokens == words(text[p.start : p.end])
    # in order, no overlap, every sentence in exactly one passage
    assert all(a.end <= b.start for a, b in itertools.pairwise(passages))
    assert sum(len(sentence_spans(text[p.start : p.end])) for p in passages) == len(sentences)
    # packing: passages over the target are single sentences
    for p in passages:
        if p.n_tokens > target:
            assert len(sentence_spans(text[p.start : p.end])) == 1


def test_a_document_passage_never_crosses_a_paragraph() -> None:
    text = document(6)
    for p in split_passages(text, 10_000, words):
        assert "\n\n" not in text[p.start : p.end]


def thread(n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append({"role": "user", "content": f"Question {i}: what about item {i}?\n\nMore."})
        out.append({"role": "assistant", "content": f"Item {i} costs {i * 3} dollars. Done."})
    return out


def test_passages_of_a_conversation_are_whole_exchanges() -> None:
    text = render_messages(thread(9))
    assert is_conversation(text) and not is_conversation(document(3))
    exchanges = exchange_spans(text)
    assert len(exchanges) == 9
    assert all(text[a:b].startswith("[user] ") for a, b in exchanges)
    for target in (1, 20, 60, 10_000):
        for p in split_passages(text, target, words):
            piece = text[p.start : p.end]
            assert piece.startswith("[user] ") and piece.endswith("Done.")
            # a user turn's own blank line does not start a new passage
            assert piece.count("[user] ") == piece.count("[assistant] ")


def test_query_terms_are_plain_words() -> None:
    terms = query_terms('How many crates did "Depot 7" ship? OR NEAR(x) AND * -- \'; DROP')
    assert terms == ["many", "crates", "depot", "ship", "near", "drop"]
    assert all(re.fullmatch(r"\w+", t) for t in terms)
    assert query_terms("is it the?") == []


def index_long(store: SQLStore, ns: str, cid: str, text: str) -> tuple[int, int] | None:
    version = store.put_context(ns, cid, text).version
    return store.passages.put(ns, cid, version, text, split_passages(text, 40, words))


def test_full_text_search_finds_the_passage_and_keeps_tenants_apart(database_url: str) -> None:
    store = SQLStore(database_url)
    text = document(40)
    ids = index_long(store, "acme", "doc", text)
    assert ids is not None
    # the same text in another namespace and another context: never returned
    index_long(store, "other", "doc", text)
    index_long(store, "acme", "doc2", text.replace("Quill17", "Heron17"))
    # stems and case: "Shipping", "crates" match "shipped", "crates"
    found = store.passages.search("acme", "doc", 1, "Who is Quill17?", limit=3, ids=ids)
    assert found and "Quill17" in found[0].text
    assert text[found[0].start : found[0].end] == found[0].text
    hits = store.passages.search("acme", "doc", 1, "Heron17 manager", limit=50, ids=ids)
    assert all("Heron17" not in h.text for h in hits)
    # no id range (an older manifest): the same answer, still keyed by tenant
    again = store.passages.search("acme", "doc", 1, "Who is Quill17?", limit=3)
    assert [p.idx for p in again] == [p.idx for p in found]
    # indexing twice keeps the first set
    assert store.passages.put("acme", "doc", 1, text, split_passages(text, 40, words)) == ids
    # deleting a context removes its passages from the index too
    store.delete_context("acme", "doc")
    assert store.passages.search("acme", "doc", 1, "Quill17", limit=3) == []
    assert store.passages.search("other", "doc", 1, "Quill17", limit=3)
    store.dispose()


def long_settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "model": "fake",
        "n_questions": 2,
        "passage_threshold_tokens": 500,
        "passage_budget_tokens": 200,
        "passage_tokens": 40,
        "sleep_max_tokens": 60,
    }
    base.update(kw)
    return Settings(**base)


def test_a_learned_answer_about_a_long_text_sends_passages_not_the_text(
    database_url: str,
) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=database_url, settings=long_settings())
    text = document(60)  # ~2,000 words
    st.ingest("acme", "doc", text)
    cold = st.ask("acme", "doc", "How many crates did depot 17 ship?", verbosity=0)
    assert cold.source == "cold" and not cold.passages
    st.sleep("acme", "doc")
    arts = st.artifacts("acme", "doc")
    assert arts.index is not None and arts.index.passages > 10
    assert arts.index.text_tokens == words(text)
    ans = st.ask("acme", "doc", "How many crates did depot 17 ship?", verbosity=0)
    assert ans.source == "learned" and ans.passages
    quoted = [text[p.start : p.end] for p in ans.passages]
    assert any("Depot 17 " in q for q in quoted)
    # notes (capped at 60) + passages (budget 200) + question: far below the whole text
    assert ans.usage.prompt_tokens < 0.25 * cold.usage.prompt_tokens
    assert ans.cold_prompt_tokens is not None
    assert abs(ans.cold_prompt_tokens - cold.usage.prompt_tokens) < 20  # typical question
    assert ans.saved_prompt_tokens == ans.cold_prompt_tokens - ans.usage.prompt_tokens
    ledger = st.ledger("acme", "doc")
    assert ledger.saved_prompt_tokens == ans.saved_prompt_tokens  # cold saves nothing
    assert ledger.break_even_queries is not None
    assert ledger.break_even_queries == pytest.approx(
        ledger.sleep.total_tokens / (ledger.saved_prompt_tokens / ledger.queries), abs=0.1
    )
    st.close()


def test_short_texts_are_answered_as_before(database_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=database_url, settings=long_settings())
    text = document(3)  # under the threshold
    st.ingest("acme", "short", text)
    st.sleep("acme", "short")
    arts = st.artifacts("acme", "short")
    assert arts.index is not None and arts.index.passages == 0
    ans = st.ask("acme", "short", "How many crates did depot 2 ship?", verbosity=0)
    assert ans.source == "learned" and ans.passages == []
    prompt = ans.usage.prompt_tokens
    assert prompt > words(text)  # the whole text went with the notes
    assert ans.cold_prompt_tokens == arts.index.cold_prompt_tokens
    st.close()


def test_a_version_asked_before_its_index_exists_is_answered_as_today(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=long_settings())
    text = document(60)
    st.ingest("acme", "doc", text)
    st.sleep("acme", "doc")
    # a newer version, not slept: stale notes beside the whole current text
    st.ingest("acme", "doc", text + "\n\nDepot 99 shipped 5 crates.")
    ans = st.ask("acme", "doc", "How many crates did depot 99 ship?", verbosity=0)
    assert ans.stale and ans.passages == [] and ans.cold_prompt_tokens is None
    assert ans.usage.prompt_tokens > words(text)
    st.close()


def test_passages_follow_the_budget_and_the_text_order(sqlite_url: str) -> None:
    rng = random.Random(7)
    st = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url,
        settings=long_settings(passage_budget_tokens=120),
    )
    text = document(60)
    st.ingest("acme", "doc", text)
    st.sleep("acme", "doc")
    for _ in range(10):
        i = rng.randrange(60)
        ans = st.ask("acme", "doc", f"What did Ms. Quill{i} say about repairs?", verbosity=0)
        assert ans.passages and [p.start for p in ans.passages] == sorted(
            p.start for p in ans.passages
        )
        assert sum(words(text[p.start : p.end]) for p in ans.passages) <= 120
        assert any(f"Quill{i}," in text[p.start : p.end] for p in ans.passages)
    st.close()


class Concepts(Embeddings):
    """A toy embedding by meaning: words of one concept share a dimension, so a
    paraphrase lands near its passage though they share no word."""

    CONCEPTS = (
        {"refrigerated", "chilled", "cold", "frozen", "fridge"},
        {"warehouse", "store", "depot", "storeroom"},
        {"pallets", "crates", "boxes"},
    )

    def _vec(self, text: str) -> list[float]:
        words = set(re.findall(r"[a-z]+", text.lower()))
        return [float(len(words & c)) for c in self.CONCEPTS] + [0.01]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


def test_an_embeddings_model_finds_passages_in_other_words(sqlite_url: str) -> None:
    filler = [f"Paragraph {i} talks about the parade and the music of year {i}." for i in range(80)]
    filler[50] = "The refrigerated warehouse kept 40 pallets of apples."
    text = "\n\n".join(filler)
    question = "How much fruit was left in the chilled depot?"
    plain = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=long_settings())
    plain.ingest("acme", "doc", text)
    plain.sleep("acme", "doc")
    miss = plain.ask("acme", "doc", question, verbosity=0)
    assert all("refrigerated" not in text[p.start : p.end] for p in miss.passages)
    plain.close()
    st = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url.replace(".db", "-2.db"),
        settings=long_settings(),
        embeddings=Concepts(),
    )
    st.ingest("acme", "doc", text)
    st.sleep("acme", "doc")
    hit = st.ask("acme", "doc", question, verbosity=0)
    assert any("refrigerated" in text[p.start : p.end] for p in hit.passages)
    st.close()


def test_sqlite_without_math_functions_ranks_the_same(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some SQLite builds lack ln(): the product form of the weights must pick the same
    passages in the same order."""
    from sleeptime.store import passages as repo

    store = SQLStore(sqlite_url)
    text = document(40)
    ids = index_long(store, "acme", "doc", text)
    questions = ["Who is Quill17?", "How many crates did depot 3 ship on day 3?", "gate ramp"]
    with_ln = [
        [p.idx for p in store.passages.search("acme", "doc", 1, q, limit=5, ids=ids)]
        for q in questions
    ]
    monkeypatch.setattr(repo, "_sqlite_has_ln", lambda: False)
    without = [
        [p.idx for p in store.passages.search("acme", "doc", 1, q, limit=5, ids=ids)]
        for q in questions
    ]
    assert with_ln == without and all(with_ln)
    store.dispose()


# -- the focus re-rank -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many hens does Ingrid keep?", "number"),
        ("how much did the sofa cost", "number"),
        ("When was the invoice due?", "number"),
        ("Which city does Ingrid live in now?", "name"),
        ("Who signed the lease?", "name"),
        ("Why was the ramp closed?", None),
    ],
)
def test_the_answer_type_is_read_from_the_wording(question: str, kind: str | None) -> None:
    assert answer_type(question) == kind


def test_the_sentence_with_the_name_and_the_asked_for_number_ranks_first() -> None:
    # every exchange names Ingrid; only one says a number in the same sentence, and the
    # question calls the animals by another word than the text does
    exchanges = [
        "I had tea with Ingrid on Monday. The train was late again this morning.",
        "Ingrid says hello, by the way. I walked 5 kilometres along the river today.",
        "The weather has been grey. Ingrid, my sister, looks after 8 ewes these days.",
        "Ingrid sent me a photo of the ewes at the farm shop. Work was busy but fine.",
    ]
    assert focus_order("How many sheep does Ingrid have now?", exchanges)[0] == 2
    # a "which city" question prefers the sentence naming a place beside the name
    places = ["Ingrid is tired of the rain.", "Last year Ingrid moved to Porto for work."]
    assert focus_order("Which city does Ingrid live in?", places)[0] == 1


def test_the_focus_order_is_a_permutation_that_keeps_ties_in_the_engines_order() -> None:
    texts = ["nothing here", "the crate count", "another crate", "nothing either"]
    order = focus_order("crate", texts)
    assert sorted(order) == [0, 1, 2, 3]
    assert order[:2] == [1, 2] and order[2:] == [0, 3]  # ties: the engine's order
    assert focus_order("the of and", texts) == [0, 1, 2, 3]  # no terms: unchanged
    assert focus_order("crate", []) == []
    # a term is a word start, not any substring: "ann" is not found in "planned"
    assert focus_order("Ann", ["it was planned", "Ann came"]) == [1, 0]
