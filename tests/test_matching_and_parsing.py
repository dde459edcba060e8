"""Question matching (lexical and embeddings) and parsing of predicted questions."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from langchain_core.embeddings import Embeddings

from sleeptime.llm.parsing import parse_questions
from sleeptime.retrieval import EmbeddingMatcher, LexicalMatcher, ServePolicy, lexical_score

CANDIDATES = [
    "How many muffins does the bakery bake?",
    "What is the total cost of the order after the 15% discount?",
    "When does Rosa finish baking the cookies?",
]


def test_lexical_score_ranks_rewordings_above_other_topics() -> None:
    scores = LexicalMatcher().scores(
        "What's the total cost of the order after the 15% discount?", CANDIDATES
    )
    assert max(range(3), key=scores.__getitem__) == 1 and scores[1] > 0.75
    other = LexicalMatcher().scores("Who delivers the order on Sunday?", CANDIDATES)
    assert max(other) < 0.75
    assert lexical_score("What do 3 apples cost?", "what do 3 APPLES cost") == 1.0
    assert lexical_score("Costs $1,200?", "costs 1200?") == 1.0


def test_no_candidates() -> None:
    assert LexicalMatcher().scores("anything?", []) == []


class BagOfWords(Embeddings):
    """A tiny deterministic embedding: counts of a fixed vocabulary."""

    VOCAB = ("muffin", "cost", "discount", "rosa", "cookie", "finish", "bake", "total", "order")

    def embed_query(self, text: str) -> list[float]:
        low = text.lower()
        return [float(low.count(w)) for w in self.VOCAB]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls = getattr(self, "calls", 0) + 1
        return [self.embed_query(t) for t in texts]


def test_embedding_matcher_uses_the_embeddings_and_caches_candidates() -> None:
    emb = BagOfWords()
    matcher = EmbeddingMatcher(emb)
    scores = matcher.scores("When will Rosa finish the cookies?", CANDIDATES)
    assert max(range(3), key=scores.__getitem__) == 2 and 0.0 < scores[2] <= 1.0 + 1e-9
    matcher.scores("How much does the order cost in total?", CANDIDATES)
    assert emb.calls == 1  # candidate vectors were embedded once


def test_similar_embeddings_never_serve_a_different_question() -> None:
    """Embeddings rank related notes; they never decide a zero-token serve. The
    bag-of-words embedding cannot tell 15% from 20%: the policy still refuses."""
    policy = ServePolicy("verified", matcher=EmbeddingMatcher(BagOfWords()), threshold=0.5)
    live = "What is the total cost of the order after the 20% discount?"
    decision = policy.decide(live, CANDIDATES)
    assert decision.serve is None and decision.verify is None
    assert decision.related and decision.related[0] == 1  # still offered as a note


def test_parse_numbered_bulleted_and_json() -> None:
    text = (
        "Here are some questions:\n1. How many muffins?\n2) What is the cost?\n- Who bakes them?\n"
    )
    assert parse_questions(text, 5) == ["How many muffins?", "What is the cost?", "Who bakes them?"]
    js = '[{"question": "How many cakes are ordered?"}, "When does baking start?"]'
    assert parse_questions(js, 5) == ["How many cakes are ordered?", "When does baking start?"]
    assert parse_questions("**1. What is the total cost?**", 5) == ["What is the total cost?"]


def test_parse_drops_prose_duplicates_and_respects_the_limit() -> None:
    text = "Sure.\n1. How many muffins?\n2. how many muffins?\n3. Why? What?\n4. Is it cheap?"
    got = parse_questions(text, 2)
    assert len(got) == 2 and got[0] == "How many muffins?"
    assert parse_questions("No questions here. Just prose.", 5) == []


@given(
    st.lists(
        st.text(
            alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=3, max_size=30
        ).map(lambda s: f"What about {s}?"),
        min_size=1,
        max_size=8,
        unique_by=str.lower,
    )
)
def test_parse_round_trips_numbered_lists(questions: list[str]) -> None:
    text = "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
    assert parse_questions(text, len(questions)) == questions


def test_cosine_is_bounded() -> None:
    from sleeptime.retrieval import cosine

    assert math.isclose(cosine([1.0, 0.0], [1.0, 0.0]), 1.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
