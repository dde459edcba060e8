"""The benchmark runner: the paper's experiments on any model and dataset.

Two protocols (``--protocol``):

- ``product`` (default, ours): what sleeptime does for an app. Sleep time is an
  iterative rethink of the learned context c' within a token budget (``--sleep-budget``,
  a budget, not a truncation), k rethinks merged, then predicted questions answered in
  advance; test time is ``SleepTime.ask`` at the verbosity's token cap, serving a
  precomputed answer at zero tokens when the serve policy allows it; lenient scorer.
- ``paper``: the Sleep-time Compute paper's protocol. Its prompts (ours in our words,
  or the paper's own files with ``--prompts DIR``), no test-time token caps,
  temperature 0 (1.0 for the sleep agents when k > 1, as the paper's k runs), the
  rethink loop into a memory block of ~5,000 characters, k sleep agents each paired 1:1
  with a test agent (no merge), no predicted questions, the paper's scorer.

Both protocols sleep through the library: ``SleepTime.sleep(strategy="rethink_tools")``
runs the rethink loop (:mod:`sleeptime.paper`) in the sleep graph, with the options of
the protocol (:class:`~sleeptime.paper.RethinkOptions`).

Temperature and reasoning effort are options per phase (``test_temperature``,
``sleep_temperature``, ``test_effort``, ``sleep_effort``), recorded in every call row.
Errors are errors: a model call that fails is recorded in ``calls.jsonl`` with its
error, its answer is recorded as an error (retried by a re-run), and a run with failed
calls or items raises :class:`BenchRunFailed` at its end unless ``allow_errors``.

Arms, each over every query of every item:

- ``k0-v{v}``: test-time only (never slept on).
- ``k{k}-v{v}`` (k >= 1): sleep-time compute with k rethinks, then answers at verbosity v.
- ``par{K}-v{v}``: the parallel-sampling baseline: K samples of the test-time-only
  prompt at temperature T; scored by majority vote and pass@K.

A product-protocol answer also records the cold prompt's tokens, the passages its
prompt carried and, for a query that knows its supporting sentences, whether they
reached the prompt (support coverage, :mod:`sleeptime.bench.coverage`).

Everything lands in the output directory as append-only JSONL (``results``, ``sleep``,
``calls``: every model call with phase, tokens, latency, token cap, temperature and
prompt version), so a re-run skips finished work and an interrupted run loses at most
the call in flight.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sleeptime import prompts
from sleeptime.bench.datasets import Item, load_dataset
from sleeptime.bench.paper_prompts import (
    BUILTIN,
    PaperPrompts,
    load_prompt_dir,
)
from sleeptime.bench.protocol import (
    ON_FAILURE,
    phase_options,
    takes_effort,
)
from sleeptime.bench.run_answers import AnswerSteps, _as_float
from sleeptime.bench.run_answers import _sample_seed as _sample_seed
from sleeptime.bench.run_answers import vote as vote
from sleeptime.bench.run_config import DEFAULT_SLEEP_BUDGET as DEFAULT_SLEEP_BUDGET
from sleeptime.bench.run_config import PAPER_K_TEMPERATURE as PAPER_K_TEMPERATURE
from sleeptime.bench.run_config import PROTOCOLS as PROTOCOLS
from sleeptime.bench.run_config import RunConfig
from sleeptime.bench.run_config import parse_levels as parse_levels
from sleeptime.bench.run_files import (
    CALLS,
    DB,
    ERRORS,
    PRED,
    RESULTS,
    RUN,
    SLEEP,
    BenchRunFailed,
    JsonlLog,
    RunStats,
    _prepare_out,
    read_jsonl,
)
from sleeptime.bench.run_files import DATASET as DATASET
from sleeptime.bench.run_files import is_aime as is_aime
from sleeptime.bench.run_sleep import SleepSteps
from sleeptime.bench.run_state import _BenchSleepTime
from sleeptime.errors import InvalidInput
from sleeptime.settings import Settings


def _predictability_fn() -> Callable[[str, str], Any] | None:
    try:
        from sleeptime.predictability import predictability
    except ImportError:
        return None
    return predictability


class Runner(SleepSteps, AnswerSteps):
    """Runs a :class:`RunConfig`; see the module docstring for the protocols and arms."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        settings: Settings | None = None,
        console: Console | None = None,
        scorer: Callable[[str, str], Any] | None = None,
    ) -> None:
        cfg.check()
        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.paper: PaperPrompts = (
            load_prompt_dir(cfg.prompts_dir) if cfg.prompts_dir is not None else BUILTIN
        )
        self.prompt_version = (
            self.paper.version if cfg.protocol == "paper" else prompts.PROMPT_VERSION
        )
        items = load_dataset(cfg.dataset, limit=cfg.limit, keep_apart=cfg.keep_apart)
        base = settings or Settings()
        library_temperature = base.sleep_temperature
        warnings = cfg.warnings(library_temperature)
        for warning in warnings:
            self.console.print(f"[yellow]warning:[/yellow] {warning}")
        self.items = _prepare_out(
            cfg, items, self.prompt_version, library_temperature, warnings=warnings
        )
        update: dict[str, Any] = {"n_questions": cfg.questions}
        if cfg.sleep_temperature is not None:  # the library's own sleep-time choices too
            update["sleep_temperature"] = cfg.sleep_temperature
        self.settings = base.model_copy(update=update)
        self.library_temperature = library_temperature
        self.st = _BenchSleepTime(
            model=cfg.model, database_url=f"sqlite:///{cfg.out / DB}", settings=self.settings
        )
        if (cfg.test_effort or cfg.sleep_effort) and not takes_effort(self.st.gateway.model):
            raise InvalidInput(
                f"model {self.st.gateway.name} takes no reasoning effort: drop --test-effort "
                "and --sleep-effort"
            )
        self.results = JsonlLog(cfg.out / RESULTS)
        self.sleeps = JsonlLog(cfg.out / SLEEP)
        self.calls = JsonlLog(cfg.out / CALLS)
        self.errors = JsonlLog(cfg.out / ERRORS)
        self.preds = JsonlLog(cfg.out / PRED)
        # an answer whose model call failed is done again (the later row supersedes it)
        last = {(r["item"], r["q"], r["arm"]): r for r in read_jsonl(cfg.out / RESULTS)}
        self.done = {key for key, r in last.items() if r.get("source") != "error"}
        self.sleep_records = {(r["item"], r["k"]): r for r in read_jsonl(cfg.out / SLEEP)}
        self.slept = set(self.sleep_records)
        self.scored = {(r["item"], r["q"]) for r in read_jsonl(cfg.out / PRED)}
        self.stats = RunStats(out=cfg.out, items=len(self.items))
        self._stats_lock = threading.Lock()
        #: predictability(context, question) -> mean log P(q | c); None: not scored
        # scored with the bundled local model: by default only when that is the model
        # under test, so a run on another model never loads llama.cpp unasked
        wanted = cfg.predictability
        if wanted is None:
            wanted = isinstance(cfg.model, str) and cfg.model.split(":")[0] == "local"
        self._pred_fn = scorer or (_predictability_fn() if wanted else None)
        if cfg.predictability and self._pred_fn is None:
            raise InvalidInput(
                "--predictability needs sleeptime.predictability, which is not installed"
            )

    # -- work ---------------------------------------------------------------------------

    def _units(self, item: Item) -> int:
        """Units of progress left for an item (sleeps + answers)."""
        n = 0
        for k in set(self.cfg.sleep_k):
            if k > 0 and (item.id, k) not in self.slept:
                n += 1
        for arm in self.cfg.arms():
            n += sum((item.id, qi, arm) not in self.done for qi in range(len(item.queries)))
        return n

    def run(self) -> RunStats:
        """Run every unfinished unit; raise :class:`BenchRunFailed` at the end when a
        model call or an item failed, unless ``allow_errors``."""
        token = ON_FAILURE.set(self._failed)
        try:
            self._run_all()
        finally:
            ON_FAILURE.reset(token)
        failed = self.stats.failed_calls or self.stats.error_answers or self.stats.errors
        if failed and not self.cfg.allow_errors:
            raise BenchRunFailed(self.stats)
        return self.stats

    def _run_all(self) -> None:
        start = time.perf_counter()
        gateway = self.st.gateway
        gateway.recorder = self._record  # every model call, whichever path makes it
        run_path = self.cfg.out / RUN
        meta = json.loads(run_path.read_text("utf-8"))
        meta["model_name"] = gateway.name
        run_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        total = sum(self._units(it) for it in self.items)
        self.stats.skipped_results = len(self.done)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(
                f"bench {self.cfg.dataset} ({self.cfg.protocol}) on {gateway.name}", total=total
            )

            def advance() -> None:
                progress.advance(task)

            def one(item: Item) -> None:
                try:
                    self._run_item(item, advance)
                except Exception as exc:  # keep going; the item is retried on the next run
                    with self._stats_lock:
                        self.stats.errors += 1
                    self.errors.append(
                        {
                            "item": item.id,
                            "error": f"{type(exc).__name__}: {exc}",
                            "ts": time.time(),
                        }
                    )
                    self.console.print(f"[red]{item.id}: {type(exc).__name__}: {exc}[/red]")

            if self.cfg.concurrency == 1:
                for item in self.items:
                    one(item)
            else:
                with ThreadPoolExecutor(self.cfg.concurrency) as pool:
                    futures = [
                        pool.submit(contextvars.copy_context().run, one, it) for it in self.items
                    ]
                    for fut in as_completed(futures):
                        fut.result()
        self.stats.seconds = time.perf_counter() - start

    def _run_item(self, item: Item, advance: Callable[[], None]) -> None:
        if self._pred_fn is not None:
            self._score_predictability(item)
        paper = self.cfg.protocol == "paper"
        for k in sorted(set(self.cfg.sleep_k)):
            with phase_options(**self.options(k)):
                self._run_arm(item, k, paper, advance)
        if self.cfg.samples:
            with phase_options(**self.options(0)):
                for v in sorted(set(self.cfg.verbosity)):
                    arm = f"par{self.cfg.samples}-v{v}"
                    for qi in range(len(item.queries)):
                        if (item.id, qi, arm) in self.done:
                            continue
                        with self._tag(item.id, arm):
                            self._sample(item, qi, v, arm)
                        advance()

    def _run_arm(self, item: Item, k: int, paper: bool, advance: Callable[[], None]) -> None:
        ns = f"bench-k{k}"
        if not paper:
            self.st.ingest(ns, item.id, item.context)
        if k > 0 and (item.id, k) not in self.slept:
            if paper:
                self._paper_sleep(item, k)
            else:
                self._sleep(item, ns, k)
            advance()
        for v in sorted(set(self.cfg.verbosity)):
            arm = f"k{k}-v{v}"
            for qi in range(len(item.queries)):
                if (item.id, qi, arm) in self.done:
                    continue
                with self._tag(item.id, arm):
                    if paper:
                        self._paper_ask(item, qi, k, v, arm)
                    else:
                        self._ask(item, qi, ns, k, v, arm)
                advance()

    def _score_predictability(self, item: Item) -> None:
        assert self._pred_fn is not None
        for qi, query in enumerate(item.queries):
            if (item.id, qi) in self.scored:
                continue
            try:
                value = _as_float(self._pred_fn(item.context, query.question))
                error = None
            except Exception as exc:  # a scorer failure must not sink the benchmark
                value, error = None, f"{type(exc).__name__}: {exc}"
            self.preds.append({"item": item.id, "q": qi, "predictability": value, "error": error})
            self.scored.add((item.id, qi))


def run(
    cfg: RunConfig,
    *,
    settings: Settings | None = None,
    console: Console | None = None,
    scorer: Callable[[str, str], Any] | None = None,
) -> RunStats:
    """Run (or resume) a benchmark; returns what this invocation did.

    ``scorer(context, question)`` replaces :func:`sleeptime.predictability.predictability`.
    """
    runner = Runner(cfg, settings=settings, console=console, scorer=scorer)
    try:
        return runner.run()
    finally:
        runner.st.close()
