"""The online path: answer one question from whatever sleep-time work exists.

A plain function, not a graph: it runs on every query, and its whole job is one keyed
read (done by the caller) plus at most one model call::

    artifacts of the current version
      ├─ same question as a servable predicted one (serve policy) ► 0 tokens   predicted
      ├─ near candidate confirmed by the verifier (``serve="verified"``)        predicted
      ├─ learned context c' ► model(c' + passages or c + related Q&As + q)     learned
      └─ nothing yet ► model(c + q, full budget)                                cold

A long text (over ``passage_threshold_tokens``, indexed at sleep time) is not sent
whole beside its notes: the passages the question needs are, found by the store's
full-text engine within ``passage_budget_tokens``. That is where the test-time saving
of sleep-time compute comes from on long contexts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from sleeptime import prompts
from sleeptime.errors import ContextNotFound, ContextTooLong
from sleeptime.llm.budget import call_max_tokens, with_budget
from sleeptime.llm.gateway import ModelGateway, TokenSink
from sleeptime.models import (
    Answer,
    Artifacts,
    Budget,
    PassageIndex,
    PassageRef,
    PredictedQA,
    Usage,
)
from sleeptime.passages import focus_order, replaces_text
from sleeptime.retrieval import Judge, ServePolicy, cosine
from sleeptime.settings import Settings
from sleeptime.store.passages import Found
from sleeptime.store.sql import SQLStore

#: Passages a learned answer has room for at least (within ``passage_budget_tokens``).
MIN_PASSAGES = 3

#: (namespace, context id) -> (current version, its artifacts) or None if unknown.
ArtifactSource = Callable[[str, str], tuple[int, Artifacts] | None]


@dataclass
class OnlineDeps:
    """What answering needs; built once per :class:`~sleeptime.SleepTime`."""

    store: SQLStore
    gateway: Callable[[], ModelGateway]
    policy: ServePolicy
    settings: Settings
    judge: Judge | None = None
    #: With a LangChain ``Embeddings``, passages are also ranked by meaning (fused with
    #: the full-text ranking); without, the full-text engine alone ranks them.
    embeddings: Embeddings | None = None


def answer_question(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    question: str,
    budget: Budget,
    *,
    explicit_budget: bool,
    current: tuple[int, Artifacts],
    on_token: TokenSink | None = None,
) -> Answer:
    """Answer ``question`` about the version in ``current`` (the caller's one read).
    With ``on_token`` the answer's text is also sent there as it is produced (a
    precomputed answer in one piece)."""
    version, arts = current
    served, related, spent = _prepared(deps, namespace, context_id, question, current, model=True)
    if served is not None:
        if on_token is not None:
            on_token(served.text)
        return served
    out = _generate(
        deps,
        namespace,
        context_id,
        question,
        budget,
        explicit_budget,
        version,
        arts,
        related,
        on_token,
    )
    if spent.calls:  # the verification call is part of this answer's cost
        out = out.model_copy(update={"usage": out.usage + spent})
    return out


def serve_prepared(
    deps: OnlineDeps, question: str, current: tuple[int, Artifacts]
) -> Answer | None:
    """The precomputed answer the serve policy allows for ``question`` without any
    model call (an exact match, or a near one the user's judge confirms), else None."""
    return _prepared(deps, "", "", question, current, model=False)[0]


def _prepared(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    question: str,
    current: tuple[int, Artifacts],
    *,
    model: bool,
) -> tuple[Answer | None, list[PredictedQA], Usage]:
    """The serve decision, written once: (the precomputed answer served, or None; the
    related prepared Q&As to show the model otherwise; what a verification cost). A
    near candidate is confirmed by the user's judge, else (``model``) by the model."""
    version, arts = current
    servable = [qa for qa in arts.qas if qa.servable]
    decision = deps.policy.decide(question, [qa.question for qa in servable])
    if decision.serve is not None:
        qa = servable[decision.serve]
        return _served(qa, current, 1.0, decision.reason, Usage()), [], Usage()
    spent = Usage()
    if decision.verify is not None and (model or deps.judge is not None):
        qa = servable[decision.verify]
        same, spent, how = _verify(deps, namespace, context_id, version, question, qa.question)
        if same:
            return _served(qa, current, decision.score, f"verified by {how}", spent), [], spent
    return None, [servable[i] for i in decision.related], spent


def learned_notes(
    deps: OnlineDeps, namespace: str, context_id: str, current: tuple[int, Artifacts]
) -> tuple[str, int, bool] | None:
    """(learned context, the version it was learned on, stale) for prompting an
    agent's own model: the current version's, else the newest older one (stale)."""
    learned, learned_version, stale = _notes(deps, namespace, context_id, current)
    return (learned, learned_version, stale) if learned and learned_version else None


def _notes(
    deps: OnlineDeps, namespace: str, context_id: str, current: tuple[int, Artifacts]
) -> tuple[str | None, int | None, bool]:
    """The stale-notes lookup, written once: (learned context, the version it was
    learned on, stale). Until a version is learned, the newest learned context of an
    older one stands in (stale-while-revalidate), never its precomputed answers: they
    answer questions about a text that has changed."""
    version, arts = current
    if arts.learned:
        return arts.learned, version, False
    older = deps.store.latest_learned(namespace, context_id, version) if version > 1 else None
    return (older[1], older[0], True) if older else (None, None, False)


def _served(
    qa: PredictedQA, current: tuple[int, Artifacts], score: float, reason: str, usage: Usage
) -> Answer:
    version, arts = current
    return Answer(
        text=qa.answer,
        source="predicted",
        usage=usage,
        latency_ms=0.0,
        version=version,
        cold_prompt_tokens=arts.index.cold_prompt_tokens if arts.index else None,
        matched_question=qa.question,
        match_score=round(score, 4),
        serve_reason=reason,
    )


def _verify(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    version: int,
    live: str,
    stored: str,
) -> tuple[bool, Usage, str]:
    """Ask the judge, else the model (one token, yes/no), whether two questions ask
    the same thing. Returns (same, test-time usage, who decided)."""
    if deps.judge is not None:
        return bool(deps.judge(live, stored)), Usage(), "judge"
    gateway = deps.gateway()
    record = deps.store.recorder(namespace, context_id, version, gateway.name)
    res = gateway.call(
        prompts.verify_messages(live, stored),
        phase="test",
        step="verify",
        max_tokens=2,
        temperature=0.0,
        recorder=record,
        namespace=namespace,
    )
    return res.text.strip().lower().startswith("yes"), res.usage, "model"


def _generate(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    question: str,
    budget: Budget,
    explicit_budget: bool,
    version: int,
    arts: Artifacts,
    related: list[PredictedQA],
    on_token: TokenSink | None,
) -> Answer:
    ctx = deps.store.get_context(namespace, context_id, version)
    if ctx is None:  # the version vanished between the two reads
        raise ContextNotFound(namespace, context_id)
    notes = [(qa.question, _with_agreement(qa)) for qa in related]
    learned, learned_version, stale = _notes(deps, namespace, context_id, (version, arts))
    picked: list[Found] = []
    if learned:
        source = "learned"
        raw = deps.settings.include_raw_context or stale
        context = ctx.text if raw else None
        if raw and replaces_text(arts.index, deps.settings.passage_threshold_tokens):
            assert arts.index is not None
            picked = pick_passages(deps, namespace, context_id, version, question, arts.index)
            context = None
    else:
        source = "cold"
        if not explicit_budget:  # no artifacts to lean on: full budget (thinking kept)
            budget = budget.model_copy(update={"verbosity": deps.settings.cold_verbosity})
        context = ctx.text
    gateway = with_budget(deps.gateway(), budget)
    record = deps.store.recorder(namespace, context_id, version, gateway.name)
    cap = call_max_tokens(gateway.model, budget)

    def build(raw: str | None) -> list[BaseMessage]:
        return prompts.query_messages(
            question,
            context=raw,
            learned=learned,
            verbosity=budget.verbosity,
            related=notes,
            passages=[(p.idx, p.text) for p in picked],
        )

    messages = build(context)
    if not gateway.fits(messages, cap):
        if source == "cold":
            raise ContextTooLong(
                f"context {namespace}/{context_id} (~{gateway.count_tokens(ctx.text):,} tokens) "
                f"does not fit the window of {gateway.name} ({gateway.context_window:,} tokens) "
                f"with a {cap}-token answer; run sleep-time on it first (its learned context "
                "fits) or use a model with a larger window"
            )
        # the learned context is what makes a long context answerable: drop the raw
        # text (a stale answer says so in ``Answer.stale``), then the passages
        messages = build(None)
        if picked and not gateway.fits(messages, cap):
            picked = []
            messages = build(None)
    res = gateway.call(
        messages,
        phase="test",
        step=source,
        max_tokens=cap,
        recorder=record,
        namespace=namespace,
        on_token=on_token,
    )
    return Answer(
        text=res.text.strip(),
        source=source,
        usage=res.usage,
        latency_ms=0.0,
        version=version,
        related_questions=[qa.question for qa in related],
        stale=stale,
        learned_version=learned_version,
        passages=[PassageRef(id=p.idx, start=p.start, end=p.end) for p in picked],
        cold_prompt_tokens=(
            res.usage.prompt_tokens
            if source == "cold"
            else arts.index.cold_prompt_tokens
            if arts.index
            else None
        ),
    )


def passage_budget(settings: Settings, text_tokens: int) -> int:
    """Tokens of passages a learned answer carries for a text of ``text_tokens``:
    ``passage_budget_tokens``, and at most ``passage_share`` of the text the passages
    stand in for, but room for ``MIN_PASSAGES`` passages at least: an answer often spans
    two or three places of a text, and on a text just over the threshold a share alone
    leaves room for one (measured: 70% support coverage on 3k-word reports with one
    passage, 100% with three)."""
    share = int(text_tokens * settings.passage_share)
    room_for_min = MIN_PASSAGES * settings.passage_tokens
    return min(settings.passage_budget_tokens, max(room_for_min, share))


#: Candidates the full-text engine returns per passage the budget holds: the focus
#: re-rank (:func:`~sleeptime.passages.focus_order`) chooses among them.
CANDIDATES_PER_SLOT = 4


def pick_passages(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    version: int,
    question: str,
    index: PassageIndex,
    *,
    budget: int | None = None,
) -> list[Found]:
    """The best passages for ``question`` that fit ``budget`` tokens together (by their
    counts stored at sleep time; default :func:`passage_budget`), in text order.

    The store's full-text engine (fused with the embeddings' ranking when there are
    embeddings) proposes candidates, several per passage the budget holds; they are
    re-ranked by the question's focus, the best sentence of each (its terms, and the
    kind of token the question asks for), the engine's order breaking ties."""
    settings = deps.settings
    if budget is None:
        budget = passage_budget(settings, index.text_tokens)
    limit = 4 + CANDIDATES_PER_SLOT * budget // max(1, settings.passage_tokens)
    ranked = deps.store.passages.search(
        namespace, context_id, version, question, limit=limit, ids=index.ids
    )
    if deps.embeddings is not None:
        embedded = deps.store.passages.embedded(namespace, context_id, version)
        if embedded:
            q = deps.embeddings.embed_query(question)
            by_meaning = sorted(embedded, key=lambda pv: -cosine(q, pv[1]))[:limit]
            ranked = fuse(ranked, [p for p, _ in by_meaning])[:limit]
    order = focus_order(question, [p.text for p in ranked])
    chosen: list[Found] = []
    used = 0
    for i in order:
        p = ranked[i]
        if used + p.n_tokens <= budget:
            chosen.append(p)
            used += p.n_tokens
    return sorted(chosen, key=lambda p: p.idx)


def fuse(*rankings: list[Found], k: int = 60) -> list[Found]:
    """Reciprocal-rank fusion: passages ranked high by any ranking come first. Robust
    to the rankings' incomparable scores (BM25 vs cosine)."""
    score: dict[int, float] = {}
    passage: dict[int, Found] = {}
    for ranking in rankings:
        for rank, p in enumerate(ranking):
            score[p.idx] = score.get(p.idx, 0.0) + 1.0 / (k + rank + 1)
            passage[p.idx] = p
    return [passage[i] for i in sorted(score, key=lambda i: (-score[i], i))]


def _with_agreement(qa: PredictedQA) -> str:
    """A prepared answer as the model sees it: with how many samples agreed on it, so
    the model can weigh a contested one against the notes."""
    if qa.agreement is None:
        return qa.answer
    return f"{qa.answer}\n(agreement: {qa.agreement:.0%} of the samples gave this answer)"
