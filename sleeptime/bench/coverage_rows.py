"""The coverage table's rows: generated reports asked through ``SleepTime.ask``, and
generated threads asked through ``create_agent`` + ``SleepTimeMiddleware``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import Field

from sleeptime.bench.items import Item
from sleeptime.llm.fake import FakeChatModel

if TYPE_CHECKING:
    from sleeptime.api import SleepTime
    from sleeptime.settings import Settings
from sleeptime.bench.support import answer_prompt, support_coverage

#: Default sizes: report lengths (words) and thread lengths (exchanges).
LENGTHS = (3000, 10_000, 20_000, 40_000)
THREADS = (20, 40, 60)
NOTES_MODES = ("rules", "one-line")
SYSTEM_PROMPT = "You are a helpful assistant."
ONE_LINE_NOTES = "Notes: a long text about many things; read the passages for the facts."


class OneLineNotes(FakeChatModel):
    """Model ``fake`` whose sleep-time notes are one short line (a weak model's): the
    passages alone must then carry the facts."""

    def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
        last = str(messages[-1].content)
        if any(f"Write the {what} notes" in last for what in ("study", "merged", "revised")):
            return ONE_LINE_NOTES
        return super()._rule_based(messages, structured)


def notes_model(mode: str) -> FakeChatModel:
    """``rules``: model ``fake`` (notes: the text's sentences with numbers, as many
    as a sleep-time call's cap allows); ``one-line``: :class:`OneLineNotes`."""
    if mode == "rules":
        return FakeChatModel()
    if mode == "one-line":
        return OneLineNotes()
    from sleeptime.errors import InvalidInput

    raise InvalidInput(f"--notes takes {', '.join(NOTES_MODES)} (got {mode!r})")


@dataclass
class Row:
    """One line of the table: contexts of one size with one notes model."""

    family: str  # longdoc | thread
    size: int  # words (longdoc) or exchanges (thread)
    notes: str
    contexts: int = 0
    #: words of a report (mean), or the exchanges a thread's notes cover
    learned_at: int | None = None
    questions: int = 0
    served: int = 0
    prompt_tokens: float = 0.0  # mean, learned / compacted
    full_tokens: float = 0.0  # mean, cold / uncompacted
    covered: int = 0
    replaced: float = 0.0  # thread: exchanges replaced by notes + passages, mean
    embeddings: str = "none"  # the --embeddings the SleepTime was given
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [covered, n]

    @property
    def ratio(self) -> float | None:
        return self.prompt_tokens / self.full_tokens if self.full_tokens else None

    @property
    def coverage(self) -> float | None:
        return self.covered / self.questions if self.questions else None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        out["coverage"] = None if self.coverage is None else round(self.coverage, 4)
        out["prompt_tokens"] = round(self.prompt_tokens, 1)
        out["full_tokens"] = round(self.full_tokens, 1)
        return out


def _settings(base: Settings | None) -> Settings:
    from sleeptime.settings import Settings

    return (base or Settings()).model_copy(update={"model": "fake"})


def _tally(row: Row, kind: str, covered: bool) -> None:
    row.questions += 1
    row.covered += covered
    counts = row.by_kind.setdefault(kind, [0, 0])
    counts[0] += covered
    counts[1] += 1


def _generated(family: str, contexts: int, queries: int, seed: int, **size: int) -> list[Item]:
    """``contexts`` generated items of a long family, ``queries`` questions each."""
    from sleeptime.bench.generator import Spec, generate

    spec = Spec(
        n=contexts,
        seed=seed,
        families=(family,),
        min_queries=queries,
        max_queries=queries,
        **size,
    )
    return generate(spec)


@contextmanager
def _client(
    mode: str,
    settings: Settings | None,
    database_url: str | None,
    embeddings: Embeddings | None,
) -> Iterator[SleepTime]:
    """A library client on model ``fake`` (notes of ``mode``), on ``database_url`` or a
    SQLite file of its own that is gone afterwards."""
    from sleeptime.api import SleepTime

    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'coverage.db'}"
        st = SleepTime(
            model=notes_model(mode),
            database_url=url,
            settings=_settings(settings),
            embeddings=embeddings,
        )
        try:
            yield st
        finally:
            st.close()


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def document_row(
    size: int,
    mode: str,
    *,
    contexts: int = 3,
    queries: int = 10,
    seed: int = 0,
    settings: Settings | None = None,
    database_url: str | None = None,
    embeddings: Embeddings | None = None,
    embeddings_name: str = "none",
) -> Row:
    """``contexts`` generated reports of ``size`` words, each ingested, slept on and
    asked its ``queries`` questions through :meth:`SleepTime.ask`: the learned prompt
    against the cold prompt the version stored, and the support coverage."""
    items = _generated("longdoc", contexts, queries, seed, tokens=size)
    row = Row(family="longdoc", size=size, notes=mode, embeddings=embeddings_name)
    prompt: list[int] = []
    cold: list[int] = []
    with _client(mode, settings, database_url, embeddings) as st:
        ns = f"coverage-{mode}-{size}"
        for item in items:
            row.contexts += 1
            st.ingest(ns, item.id, item.context)
            st.sleep(ns, item.id)
            for q in item.queries:
                ans = st.ask(ns, item.id, q.question)
                got = answer_prompt(st, ns, item.id, item.context, q.question, ans)
                if got is None:
                    row.served += 1
                    continue
                prompt.append(ans.usage.prompt_tokens)
                cold.append(ans.cold_prompt_tokens or ans.usage.prompt_tokens)
                cov = support_coverage(q.meta.get("support", []), got.text, got.notes)
                _tally(row, str(q.meta.get("kind")), cov.covered)
    row.learned_at = round(sum(len(it.context.split()) for it in items) / len(items))
    row.prompt_tokens = _mean(prompt)
    row.full_tokens = _mean(cold)
    return row


def _content_tokens(st: SleepTime, messages: Sequence[BaseMessage]) -> int:
    """Tokens of the messages' text (the model's counter; no per-message overhead)."""
    return sum(st.gateway.count_tokens(str(m.content)) for m in messages)


class _Received(FakeChatModel):
    """Model ``fake`` as an app's own model, keeping every list of messages it got."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.received.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@dataclass
class _ThreadTally:
    """What the thread rows average: tokens sent and uncompacted, turns replaced."""

    sent: list[int] = field(default_factory=list)
    full: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)


def thread_row(
    exchanges: int,
    mode: str,
    *,
    learned_before: int = 10,
    contexts: int = 3,
    queries: int = 10,
    seed: int = 0,
    settings: Settings | None = None,
    database_url: str | None = None,
    embeddings: Embeddings | None = None,
    embeddings_name: str = "none",
) -> Row:
    """``contexts`` generated threads of ``exchanges`` exchanges, stored as
    ``SleepTimeMiddleware`` stores them (every turn; the first ``exchanges -
    learned_before`` exchanges slept on, the newest not). Each question is then asked
    as the next user message through ``create_agent`` + ``SleepTimeMiddleware``: the
    text the agent's model received (system prompt included) against the uncompacted
    messages, and, for questions about facts stated in the replaced turns (in the
    turns the notes cover, when nothing was replaced), whether each supporting
    sentence is still in it. An answer the middleware serves without the model is
    counted as served."""
    items = _generated("thread", contexts, queries, seed, exchanges=exchanges)
    learned = max(1, exchanges - learned_before)
    row = Row(
        family="thread",
        size=exchanges,
        notes=mode,
        learned_at=learned,
        embeddings=embeddings_name,
    )
    tally = _ThreadTally()
    with _client(mode, settings, database_url, embeddings) as st:
        ns = f"coverage-{mode}-t{exchanges}"
        for item in items:
            row.contexts += 1
            _thread_item(st, ns, item, learned, row, tally)
    row.replaced = _mean(tally.replaced)
    row.prompt_tokens = _mean(tally.sent)
    row.full_tokens = _mean(tally.full)
    return row


def _thread_item(
    st: SleepTime, ns: str, item: Item, learned: int, row: Row, tally: _ThreadTally
) -> None:
    """One thread: its first ``learned`` exchanges slept on, then each question asked
    through an agent with the middleware."""
    from langchain.agents import create_agent

    from sleeptime.agents import SleepTimeMiddleware
    from sleeptime.bench.generator import thread_messages
    from sleeptime.conversation import as_messages

    messages = as_messages(thread_messages(item.context))
    st.ingest_messages(ns, item.id, messages[: 2 * learned])
    st.sleep(ns, item.id)
    st.ingest_messages(ns, item.id, messages)  # the newest turns: not learned
    model = _Received()
    agent = create_agent(
        model,
        tools=[],
        system_prompt=SYSTEM_PROMPT,
        middleware=[SleepTimeMiddleware(st, namespace=ns, context_id=item.id)],
    )
    for q in item.queries:
        asked = [*messages, HumanMessage(q.question)]
        before = len(model.received)
        state: Any = {"messages": asked}
        agent.invoke(state)
        if len(model.received) == before:
            row.served += 1
            continue
        got = model.received[-1]
        kept = sum(isinstance(m, HumanMessage) for m in got)
        cut = sum(isinstance(m, HumanMessage) for m in asked) - kept
        limit = cut if cut else learned
        if not all(x < limit for x in q.meta.get("exchanges", [])):
            continue  # a fact of the turns kept verbatim: not what is measured
        tally.replaced.append(cut)
        tally.sent.append(_content_tokens(st, got))
        tally.full.append(_content_tokens(st, [SystemMessage(SYSTEM_PROMPT), *asked]))
        notes = st.notes(ns, item.id)
        text = "\n\n".join(str(m.content) for m in got)
        cov = support_coverage(q.meta.get("support", []), text, notes.text if notes else "")
        _tally(row, str(q.meta.get("kind")), cov.covered)


def coverage_table(
    *,
    lengths: Sequence[int] = LENGTHS,
    threads: Sequence[int] = THREADS,
    notes: Sequence[str] = NOTES_MODES,
    learned_before: int = 10,
    contexts: int = 3,
    queries: int = 10,
    seed: int = 0,
    settings: Settings | None = None,
    embeddings: Embeddings | None = None,
    embeddings_name: str = "none",
) -> list[Row]:
    """Every row: each report length, then each thread length, with each notes model.
    ``embeddings``: the ``Embeddings`` every ``SleepTime`` gets (None: full-text ranking
    alone), named ``embeddings_name`` in the rows."""
    for mode in notes:
        notes_model(mode)  # a clear error before any work
    rows = [
        document_row(
            n,
            mode,
            contexts=contexts,
            queries=queries,
            seed=seed,
            settings=settings,
            embeddings=embeddings,
            embeddings_name=embeddings_name,
        )
        for n in lengths
        for mode in notes
    ]
    rows += [
        thread_row(
            n,
            mode,
            learned_before=learned_before,
            contexts=contexts,
            queries=queries,
            seed=seed,
            settings=settings,
            embeddings=embeddings,
            embeddings_name=embeddings_name,
        )
        for n in threads
        for mode in notes
    ]
    return rows
