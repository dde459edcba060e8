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
import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
from sleeptime.api import SleepTime
from sleeptime.bench.coverage import answer_prompt, support_coverage
from sleeptime.bench.datasets import Item, load_dataset, parse_jsonl
from sleeptime.bench.extract import SCORERS, Scorer, get_scorer
from sleeptime.bench.paper_prompts import (
    BUILTIN,
    EMPTY_MEMORY,
    MEMORY_CHARS,
    PaperPrompts,
    answer_messages,
    load_prompt_dir,
)
from sleeptime.bench.protocol import (
    CALL_META,
    EFFORTS,
    ON_FAILURE,
    PHASE_OPTIONS,
    BenchGateway,
    PhaseOptions,
    call,
    call_meta,
    phase_options,
    takes_effort,
)
from sleeptime.errors import InvalidInput, ModelOutputError, SleepTimeError
from sleeptime.llm.budget import call_max_tokens
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.resolve import ModelSpec
from sleeptime.models import Answer, Budget, Phase, Usage
from sleeptime.paper import RethinkOptions, rethink_key
from sleeptime.settings import Settings
from sleeptime.store.kinds import Kind
from sleeptime.store.sql import QUESTIONS

RESULTS, SLEEP, CALLS, ERRORS, PRED = (
    "results.jsonl",
    "sleep.jsonl",
    "calls.jsonl",
    "errors.jsonl",
    "predictability.jsonl",
)
RUN, DATASET, DB = "run.json", "dataset.jsonl", "bench.db"
PROTOCOLS = ("product", "paper")
#: Completion tokens one product-protocol rethink loop may spend (per rethink).
DEFAULT_SLEEP_BUDGET = 2048
#: The paper protocol's sleep temperature when k > 1 (the paper's k runs used 1.0):
#: at 0 a deterministic model writes the same memory k times, and is paid k times.
PAPER_K_TEMPERATURE = 1.0

#: (item id, arm) of the work in progress, so the gateway recorder can file each call.
_TAG: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "bench_tag", default=("?", "?")
)


@dataclass
class RunConfig:
    """One benchmark run. Lists are the sweep; every combination is an arm."""

    dataset: str
    model: ModelSpec
    out: Path
    limit: int | None = None
    verbosity: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    sleep_k: list[int] = field(default_factory=lambda: [0, 1])
    samples: int = 0
    #: Temperature of the parallel-sampling baseline (recorded only when it runs).
    temperature: float = 0.7
    concurrency: int = 1
    #: Predicted questions per context (product protocol; None: 3, or 0 for paper).
    n_questions: int | None = None
    predictability: bool | None = None  # None: when sleeptime.predictability exists
    protocol: str = "product"
    #: Scorer (None: the protocol's own, ``paper`` for paper and ``lenient`` for product).
    scorer: str | None = None
    #: The paper's prompt files (a local checkout of its repository); paper protocol only.
    prompts_dir: Path | None = None
    #: Completion tokens per rethink loop (product protocol); the paper sets none.
    sleep_budget: int = DEFAULT_SLEEP_BUDGET
    #: Safety stop of the rethink loop (model calls per loop).
    rethink_rounds: int = 10
    #: Memory block size in characters.
    memory_chars: int = MEMORY_CHARS
    #: ``auto`` (tool calls when the model has them), ``tools`` or ``text``.
    rethink_mode: str = "auto"
    #: Sleep-time temperature (None: paper 0 for k = 1 and 1.0 for k > 1; product: the
    #: library's, the model's default for k = 1 and SLEEPTIME_SLEEP_TEMPERATURE for k > 1).
    sleep_temperature: float | None = None
    #: Test-time temperature (None: paper 0; product: the library's, the model's default).
    test_temperature: float | None = None
    #: Reasoning effort per phase (None: the model's default); the model must take one.
    sleep_effort: str | None = None
    test_effort: str | None = None
    #: Product protocol: answer the dataset's own questions at sleep time instead of the
    #: model's predictions (an upper bound on prediction; exercises the serve policy).
    oracle_questions: bool = False
    #: Finish without raising when model calls or items failed (they stay recorded).
    allow_errors: bool = False
    #: Stateful GSM-Symbolic / AIME: records that share a context stay one item each
    #: (the paper's runs) instead of one item with several queries.
    keep_apart: bool = False

    @property
    def questions(self) -> int:
        if self.n_questions is not None:
            return self.n_questions
        return 0 if self.protocol == "paper" else 3

    @property
    def scorer_name(self) -> str:
        return self.scorer or ("paper" if self.protocol == "paper" else "lenient")

    def test_temp(self) -> float | None:
        """Test-time temperature: explicit, else paper 0, product None (model default)."""
        if self.test_temperature is not None:
            return self.test_temperature
        return 0.0 if self.protocol == "paper" else None

    def sleep_temp(self, k: int, library_default: float) -> float | None:
        """Sleep-time temperature of the k rethinks: explicit, else paper 0 (k = 1) or
        :data:`PAPER_K_TEMPERATURE` (k > 1), product the library's (None: the model's
        default for k = 1, ``library_default`` = SLEEPTIME_SLEEP_TEMPERATURE for k > 1)."""
        if self.sleep_temperature is not None:
            return self.sleep_temperature
        if k <= 1:
            return 0.0 if self.protocol == "paper" else None
        return PAPER_K_TEMPERATURE if self.protocol == "paper" else library_default

    def warnings(self, library_default: float) -> list[str]:
        """What runs but is probably not what was meant."""
        out = []
        for k in sorted({k for k in self.sleep_k if k > 1}):
            if self.sleep_temp(k, library_default) == 0:
                out.append(
                    f"k={k} runs its {k} sleep-time loops at temperature 0: a deterministic "
                    f"model writes the same memory {k} times, and is paid {k} times "
                    "(set --sleep-temperature above 0)"
                )
        return out

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"--protocol takes paper or product (got {self.protocol!r})")
        if self.scorer is not None and self.scorer not in SCORERS:
            raise InvalidInput(f"--scorer takes paper or lenient (got {self.scorer!r})")
        if not self.verbosity or any(v not in range(5) for v in self.verbosity):
            raise InvalidInput(f"--verbosity takes levels 0-4 (got {self.verbosity})")
        if not self.sleep_k or any(k < 0 or k > 16 for k in self.sleep_k):
            raise InvalidInput(
                f"--sleep-k takes values 0-16, 0 = test-time only (got {self.sleep_k})"
            )
        if self.samples < 0 or self.samples == 1:
            raise InvalidInput(f"--samples is 0 (off) or K >= 2 (got {self.samples})")
        if self.concurrency < 1:
            raise InvalidInput(f"--concurrency must be >= 1 (got {self.concurrency})")
        if self.questions < 0:
            raise InvalidInput(f"--n-questions must be >= 0 (got {self.questions})")
        if self.temperature <= 0 and self.samples:
            raise InvalidInput("parallel sampling needs --temperature > 0")
        if self.sleep_budget < 16:
            raise InvalidInput(f"--sleep-budget must be >= 16 tokens (got {self.sleep_budget})")
        if not 1 <= self.rethink_rounds <= 100:
            raise InvalidInput(f"--rethink-rounds takes 1-100 (got {self.rethink_rounds})")
        if self.memory_chars < 100:
            raise InvalidInput(f"--memory-chars must be >= 100 (got {self.memory_chars})")
        if self.rethink_mode not in ("auto", "tools", "text"):
            raise InvalidInput(
                f"--rethink-mode takes auto, tools or text (got {self.rethink_mode!r})"
            )
        for name, temp in (
            ("--sleep-temperature", self.sleep_temperature),
            ("--test-temperature", self.test_temperature),
        ):
            if temp is not None and not 0 <= temp <= 2:
                raise InvalidInput(f"{name} takes 0-2 (got {temp})")
        for name, effort in (
            ("--sleep-effort", self.sleep_effort),
            ("--test-effort", self.test_effort),
        ):
            if effort is not None and effort not in EFFORTS:
                raise InvalidInput(f"{name} takes {', '.join(EFFORTS)} (got {effort!r})")
        if self.protocol == "paper":
            if self.questions:
                raise InvalidInput(
                    "--protocol paper has no predicted questions: drop --n-questions "
                    "(or use --protocol product)"
                )
            if self.oracle_questions:
                raise InvalidInput("--oracle-questions is a product-protocol option")
        elif self.prompts_dir is not None:
            raise InvalidInput("--prompts loads the paper's prompt files: add --protocol paper")
        if self.oracle_questions and not self.questions:
            raise InvalidInput("--oracle-questions needs --n-questions >= 1")

    def arms(self) -> list[str]:
        arms = [
            f"k{k}-v{v}" for k in sorted(set(self.sleep_k)) for v in sorted(set(self.verbosity))
        ]
        if self.samples:
            arms += [f"par{self.samples}-v{v}" for v in sorted(set(self.verbosity))]
        return arms


def parse_levels(text: str, name: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] with a clear error."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInput(
            f"{name} takes comma-separated integers, e.g. 0,1,2 (got {text!r})"
        ) from exc
    if not values:
        raise InvalidInput(f"{name} is empty")
    return values


class JsonlLog:
    """Append-only JSON lines, one writer lock, flushed and fsynced per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:  # a crash mid-write: start the next record on its own line
                with open(path, "a", encoding="utf-8") as f:
                    f.write("\n")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a log; a torn last line (crash mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass
class RunStats:
    out: Path
    items: int
    new_results: int = 0
    skipped_results: int = 0
    new_calls: int = 0
    #: Items that stopped on an error (``errors.jsonl``).
    errors: int = 0
    #: Model calls that failed (rows of ``calls.jsonl`` with an ``error``).
    failed_calls: int = 0
    #: Answers recorded as errors (``source: error`` in ``results.jsonl``).
    error_answers: int = 0
    first_failure: str | None = None
    seconds: float = 0.0


class BenchRunFailed(SleepTimeError):
    """A run finished with failed model calls or items (and ``allow_errors`` off).
    Everything is recorded; ``stats`` says what this invocation did."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        parts = []
        if stats.failed_calls:
            parts.append(
                f"{stats.failed_calls} model call{'s' if stats.failed_calls > 1 else ''} "
                f"failed (first: {stats.first_failure})"
            )
        if stats.error_answers and not stats.failed_calls:
            parts.append(f"{stats.error_answers} answers failed")
        if stats.errors:
            parts.append(f"{stats.errors} item{'s' if stats.errors > 1 else ''} failed")
        super().__init__(
            f"{' and '.join(parts)}: see {CALLS} and {ERRORS} in {stats.out}; a re-run retries "
            "them, --allow-errors accepts them"
        )


#: Query meta that describes a question without changing it (added to generated items
#: after some runs were made): a run directory made before it still resumes.
_DESCRIPTIVE_META = ("support", "exchanges")


def _fingerprint(item: Item) -> str:
    data = item.to_json()
    for q in data["queries"]:
        meta = {k: v for k, v in q.get("meta", {}).items() if k not in _DESCRIPTIVE_META}
        q.pop("meta", None)
        if meta:
            q["meta"] = meta
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_label(spec: ModelSpec) -> str:
    return spec if isinstance(spec, str) else type(spec).__name__


def is_aime(item: Item) -> bool:
    """Stateful AIME items are scored by the paper's AIME rule and get its sleep prompt."""
    return item.meta.get("format") == "stateful-aime"


def _run_meta(
    cfg: RunConfig, prompt_version: str, library_temperature: float, warnings: list[str]
) -> dict[str, Any]:
    """What ``run.json`` says about the settings: each temperature that a call is made
    with (null: the model's default), none that no call uses."""
    ks = sorted({k for k in cfg.sleep_k if k > 0})
    meta: dict[str, Any] = {
        "dataset": cfg.dataset,
        "model": _model_label(cfg.model),
        "protocol": cfg.protocol,
        "scorer": cfg.scorer_name,
        "n_questions": cfg.questions,
        "oracle_questions": cfg.oracle_questions,
        "prompts": prompt_version,
        "sleep": {
            "budget_tokens": cfg.sleep_budget if cfg.protocol == "product" else None,
            "rethink_rounds": cfg.rethink_rounds,
            "memory_chars": cfg.memory_chars,
            "rethink_mode": cfg.rethink_mode,
            "effort": cfg.sleep_effort,
            # per k: the temperature of the sleep-time calls (null: the model's default)
            "temperature_by_k": {str(k): cfg.sleep_temp(k, library_temperature) for k in ks},
        },
        "test": {
            "token_caps": "verbosity caps" if cfg.protocol == "product" else None,
            "temperature": cfg.test_temp(),
            "effort": cfg.test_effort,
        },
        "allow_errors": cfg.allow_errors,
    }
    if cfg.keep_apart:  # absent when off: runs from before the option resume unchanged
        meta["keep_apart"] = True
    if cfg.samples:  # the baseline's temperature, only where the baseline runs
        meta["parallel"] = {"temperature": cfg.temperature}
    if warnings:
        meta["warnings"] = warnings
    return meta


def _prepare_out(
    cfg: RunConfig,
    items: list[Item],
    prompt_version: str,
    library_temperature: float = 0.7,
    warnings: list[str] | None = None,
) -> list[Item]:
    """Create or re-open the run directory; refuse to mix models, protocols or items."""
    warnings = warnings or []
    cfg.out.mkdir(parents=True, exist_ok=True)
    run_path = cfg.out / RUN
    meta = _run_meta(cfg, prompt_version, library_temperature, warnings)
    fixed = ("model", "protocol", "n_questions", "oracle_questions", "prompts", "sleep", "test")
    if run_path.exists():
        old = json.loads(run_path.read_text("utf-8"))
        old.setdefault("protocol", "product")
        for key in fixed:
            mine, theirs = meta[key], old.get(key)
            old_by_k = theirs.get("temperature_by_k") if isinstance(theirs, dict) else None
            if key == "sleep" and isinstance(old_by_k, dict):
                # other k may be added; the k both runs have must have the same temperature
                new_by_k = mine["temperature_by_k"]
                if all(old_by_k[k] == new_by_k[k] for k in old_by_k.keys() & new_by_k.keys()):
                    merged = {**old_by_k, **new_by_k}
                    mine = {**mine, "temperature_by_k": merged}
                    theirs = {**theirs, "temperature_by_k": merged}
            if key in old and theirs != mine:
                raise InvalidInput(
                    f"{cfg.out} holds a run with {key}={old.get(key)!r}, not {meta[key]!r}: "
                    "use another --out directory"
                )
            if key == "sleep":
                meta["sleep"] = mine
        if cfg.samples and old.get("parallel") and old["parallel"] != meta["parallel"]:
            raise InvalidInput(
                f"{cfg.out} sampled at temperature {old['parallel']['temperature']}: "
                "use another --out"
            )
        keep = {k: v for k, v in old.items() if k not in meta and k != "warnings"}
        meta = {**keep, **meta, "dataset": old.get("dataset", meta["dataset"])}
    known: dict[str, Item] = {}
    ds_path = cfg.out / DATASET
    if ds_path.exists():
        known = {
            it.id: it
            for it in parse_jsonl(ds_path.read_text("utf-8").splitlines(), source=str(ds_path))
        }
    fresh = []
    for item in items:
        if item.id in known:
            if _fingerprint(known[item.id]) != _fingerprint(item):
                raise InvalidInput(
                    f"item {item.id!r} differs from the one already benchmarked in {cfg.out}: "
                    "use another --out directory"
                )
        else:
            fresh.append(item)
    if fresh:
        with open(ds_path, "a", encoding="utf-8") as f:
            for item in fresh:
                f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    arms = sorted({*meta.get("arms", []), *cfg.arms()})
    meta.update({"arms": arms, "updated": datetime.now(UTC).isoformat(timespec="seconds")})
    meta.setdefault("started", meta["updated"])
    run_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return items


def _predictability_fn() -> Callable[[str, str], Any] | None:
    try:
        from sleeptime.predictability import predictability
    except ImportError:
        return None
    return predictability


def _as_float(value: Any) -> float | None:
    for attr in ("logprob", "score", "value", "mean_logprob"):
        if hasattr(value, attr):
            value = getattr(value, attr)
            break
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def vote(samples: list[dict[str, Any]]) -> tuple[str | None, bool]:
    """Majority vote over scored answers (``key``, ``correct``): the most frequent key,
    ties going to the answer seen first; correct when an answer with that key is."""
    keys = [s["key"] for s in samples if s.get("key") is not None]
    if not keys:
        return None, False
    counts = Counter(keys)
    top = max(counts.values())
    majority = next(k for k in keys if counts[k] == top)
    return majority, any(s["correct"] for s in samples if s.get("key") == majority)


#: The library's warning when every rethink loop wrote nothing and c' was learned by
#: one notes call (RethinkOptions.fallback).
_FELL_BACK = "rethink: the loops wrote nothing; learned c'"


class _BenchSleepTime(SleepTime):
    """The library, with a :class:`~sleeptime.bench.protocol.BenchGateway` for its model
    calls: per-phase options applied and recorded, failed calls reported."""

    def _new_gateway(self, spec: ModelSpec, *, kv: bool) -> ModelGateway:
        gw = super()._new_gateway(spec, kv=kv)
        return BenchGateway(model=gw.model, retry=gw.retry, recorder=gw.recorder, window=gw.window)


class Runner:
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

    def scorer(self, item: Item) -> Scorer:
        return get_scorer(self.cfg.scorer_name, aime=is_aime(item))

    def options(self, k: int) -> dict[str, PhaseOptions]:
        """The phase options of the work on arm k. The paper protocol passes its
        temperatures with every call; the product protocol leaves the library's choices
        alone unless a temperature was given explicitly."""
        cfg = self.cfg
        if cfg.protocol == "paper":
            sleep_t, test_t = cfg.sleep_temp(k, self.library_temperature), cfg.test_temp()
        else:
            sleep_t, test_t = cfg.sleep_temperature, cfg.test_temperature
        return {
            "sleep": PhaseOptions(temperature=sleep_t, effort=cfg.sleep_effort),
            "test": PhaseOptions(temperature=test_t, effort=cfg.test_effort),
        }

    # -- accounting -------------------------------------------------------------------

    def _record(self, phase: Any, step: str, usage: Usage, latency_ms: float) -> None:
        item, arm = _TAG.get()
        meta = CALL_META.get() or {}
        limit = meta.get("limit", meta.get("max_tokens"))
        with self._stats_lock:
            self.stats.new_calls += 1
        self.calls.append(
            {
                "item": item,
                "arm": arm,
                "phase": phase,
                "step": step,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "latency_ms": round(latency_ms, 2),
                "max_tokens": meta.get("max_tokens"),
                "limit_tokens": limit,
                "capped": limit is not None and usage.completion_tokens >= limit,
                "temperature": meta.get("temperature"),
                "effort": meta.get("effort"),
                "prompts": self.prompt_version,
                "protocol": self.cfg.protocol,
                "ts": time.time(),
            }
        )

    def _failed(self, phase: Phase, step: str, exc: BaseException) -> None:
        """A model call that failed: a row of ``calls.jsonl`` with its error (no
        ``capped``: cap rates count finished calls), counted for the run's verdict."""
        item, arm = _TAG.get()
        meta = CALL_META.get() or {}
        opts = (PHASE_OPTIONS.get() or {}).get(phase) or PhaseOptions()
        error = f"{type(exc).__name__}: {exc}"
        with self._stats_lock:
            self.stats.failed_calls += 1
            if self.stats.first_failure is None:
                self.stats.first_failure = f"{item} {arm} {phase}/{step}: {error}"
        self.calls.append(
            {
                "item": item,
                "arm": arm,
                "phase": phase,
                "step": step,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_ms": None,
                "max_tokens": meta.get("max_tokens"),
                "limit_tokens": meta.get("limit", meta.get("max_tokens")),
                "temperature": meta.get("temperature", opts.temperature),
                "effort": meta.get("effort", opts.effort),
                "error": error,
                "prompts": self.prompt_version,
                "protocol": self.cfg.protocol,
                "ts": time.time(),
            }
        )

    @contextmanager
    def _tag(self, item: str, arm: str) -> Iterator[None]:
        token = _TAG.set((item, arm))
        try:
            yield
        finally:
            _TAG.reset(token)

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

    # -- sleep time ---------------------------------------------------------------------

    def _rethink(self, item: Item, k: int, *, paper: bool) -> RethinkOptions:
        """The options of the library's ``rethink_tools`` sleep strategy for this run:
        paper, the paper's task, no budget, the k blocks kept apart (one per test agent)
        and an empty block left empty; product, our learn task with a token budget per
        loop, the k blocks merged, and one notes call when every loop wrote nothing."""
        return RethinkOptions(
            prompts=self.paper,
            max_rounds=self.cfg.rethink_rounds,
            memory_chars=self.cfg.memory_chars,
            mode=self.cfg.rethink_mode,
            aime=paper and is_aime(item),
            task=None if paper else prompts.LEARN_SYSTEM,
            token_budget=None if paper else self.cfg.sleep_budget,
            temperature=self.cfg.sleep_temp(k, self.library_temperature),
            merge=not paper,
            fallback=not paper,
        )

    def _rethinks(self, ns: str, item: Item, version: int, k: int) -> list[dict[str, Any]]:
        """Each loop's block and record (stop, calls, rewrites), as the library stored
        them (draft artifacts of the ``rethink_tools`` strategy)."""
        out: list[dict[str, Any]] = []
        for i in range(k):
            art = self.st.store.get_artifact(ns, item.id, version, Kind.DRAFT, rethink_key(i))
            if art is not None:
                out.append({"memory": art.get("text", ""), **(art.get("rethink") or {})})
        return out

    def _paper_sleep(self, item: Item, k: int) -> None:
        """k sleep agents, each rewriting its own memory block; no merge. The library
        runs them: ``SleepTime.sleep(strategy="rethink_tools")``, no predicted questions."""
        start = time.perf_counter()
        ns = f"paper-k{k}"
        st = self.st
        st.ingest(ns, item.id, item.context)
        version = st.store.current_version(ns, item.id)
        assert version is not None
        with self._tag(item.id, f"sleep-k{k}"):
            report = st.sleep(
                ns,
                item.id,
                k=k,
                n_questions=0,
                strategy="rethink_tools",
                rethink=self._rethink(item, k, paper=True),
            )
        self._sleep_record(
            item,
            k,
            usage=self._sleep_usage(ns, item),
            predicted=0,
            seconds=time.perf_counter() - start,
            error=None,
            rethinks=self._rethinks(ns, item, version, k),
            warnings=report.warnings,
        )

    def _sleep_usage(self, ns: str, item: Item) -> Usage:
        used = self.st.ledger(ns, item.id).sleep  # every sleep-time call on this context
        return Usage(
            prompt_tokens=used.prompt_tokens,
            completion_tokens=used.completion_tokens,
            calls=used.calls,
        )

    def _sleep(self, item: Item, ns: str, k: int) -> None:
        """Product protocol: ``SleepTime.sleep`` with the ``rethink_tools`` strategy:
        k budgeted rethink loops (merged when k > 1) give c'; the library then predicts
        and answers questions."""
        start = time.perf_counter()
        error = None
        warnings: list[str] = []
        st = self.st
        version = st.store.current_version(ns, item.id)
        assert version is not None
        with self._tag(item.id, f"sleep-k{k}"):
            if self.cfg.oracle_questions:
                self._oracle_questions(item, ns, version)
            try:
                with call_meta(max_tokens=self.settings.sleep_max_tokens, temperature=None):
                    report = st.sleep(
                        ns,
                        item.id,
                        k=k,
                        n_questions=self.cfg.questions,
                        strategy="rethink_tools",
                        rethink=self._rethink(item, k, paper=False),
                    )
                predicted, warnings = len(report.qas), report.warnings
                if any(w.startswith(_FELL_BACK) for w in report.warnings):
                    # nothing usable came out of the loops: the library learned c' itself
                    # (one capped call); the sleep record says so
                    error = "rethink loops wrote nothing; the library's learn step ran"
            except ModelOutputError as exc:
                # The model could not produce parseable output: c' is kept (it is persisted
                # before prediction), the questions are not; record it and answer anyway.
                error, predicted = str(exc), 0
        self._sleep_record(
            item,
            k,
            usage=self._sleep_usage(ns, item),
            predicted=predicted,
            seconds=time.perf_counter() - start,
            error=error,
            rethinks=self._rethinks(ns, item, version, k),
            warnings=warnings,
        )

    def _oracle_questions(self, item: Item, ns: str, version: int) -> None:
        """Have sleep time answer the dataset's own (non-near-miss) questions: stored as
        the predicted-question artifact, so the library's predict step keeps them."""
        base = [q.question for q in item.queries if "near_miss_of" not in q.meta]
        questions = base[: self.cfg.questions]
        if questions:
            self.st.store.put_artifact(
                ns,
                item.id,
                version,
                QUESTIONS,
                "0",
                {"questions": questions, "raw": "oracle: the dataset's own questions"},
                model="oracle",
            )

    def _sleep_record(
        self,
        item: Item,
        k: int,
        *,
        usage: Usage,
        predicted: int,
        seconds: float,
        error: str | None,
        rethinks: list[dict[str, Any]],
        warnings: list[str] | None = None,
    ) -> None:
        record = {
            "item": item.id,
            "k": k,
            "protocol": self.cfg.protocol,
            "sleep_prompt_tokens": usage.prompt_tokens,
            "sleep_completion_tokens": usage.completion_tokens,
            "calls": usage.calls,
            "predicted": predicted,
            "rethinks": rethinks,
            "seconds": round(seconds, 3),
            "error": error,
        }
        if warnings:  # what the library's sleep step degraded (a loop at its round cap, ...)
            record["warnings"] = list(warnings)
        self.sleeps.append(record)
        self.sleep_records[(item.id, k)] = record
        self.slept.add((item.id, k))

    # -- test time ----------------------------------------------------------------------

    def _result(self, item: Item, qi: int, arm: str, **fields: Any) -> None:
        query = item.queries[qi]
        record = {
            "item": item.id,
            "q": qi,
            "arm": arm,
            "n_queries": len(item.queries),
            "ts": time.time(),
            **fields,
        }
        if "near_miss_of" in query.meta:
            base = int(query.meta["near_miss_of"])
            record["near_miss_of"] = base
            record["near_miss_category"] = query.meta.get("category")
            record["base_question"] = item.queries[base].question
        self.results.append(record)
        if record.get("source") != "error":
            self.done.add((item.id, qi, arm))
        with self._stats_lock:
            self.stats.new_results += 1
            self.stats.error_answers += record.get("source") == "error"

    def _gold(self, item: Item, qi: int) -> str:
        """The gold the run's scorer compares with (the paper's: the raw answer field)."""
        query = item.queries[qi]
        return self.scorer(item).gold(query.answer, query.meta)

    def _ask(self, item: Item, qi: int, ns: str, k: int, v: int, arm: str) -> None:
        question, gold = item.queries[qi].question, item.queries[qi].answer
        scorer = self.scorer(item)
        scoring_gold = self._gold(item, qi)
        fields: dict[str, Any]
        budget = Budget(verbosity=v)
        try:
            cap = call_max_tokens(self.st.gateway.model, budget)
            with call_meta(max_tokens=cap, temperature=None):
                ans = self.st.ask(ns, item.id, question, budget=budget)
            fields = {
                "response": ans.text,
                "extracted": scorer.key(ans.text),
                "correct": scorer.correct(ans.text, scoring_gold),
                "source": ans.source,
                "matched_question": ans.matched_question,
                "serve_reason": getattr(ans, "serve_reason", None),
                "test_prompt_tokens": ans.usage.prompt_tokens,
                "test_completion_tokens": ans.usage.completion_tokens,
                "max_tokens": cap,
                "latency_ms": round(ans.latency_ms, 2),
                **self._prompt_fields(item, qi, ns, ans),
            }
        except SleepTimeError as exc:
            # a failed call is an error, not a wrong answer: recorded (the call in
            # calls.jsonl), counted, redone by a re-run; the run fails at its end
            fields = _error_fields(exc)
        self._result(
            item, qi, arm, kind="sleep" if k else "test", k=k, verbosity=v, gold=gold, **fields
        )

    def _prompt_fields(self, item: Item, qi: int, ns: str, ans: Answer) -> dict[str, Any]:
        """What a library answer's prompt carried, against the cold prompt: the cold
        prompt's tokens (stored once per version), the passages it sent (character
        offsets into the context) and, when the query knows its supporting sentences,
        how many of them reached the prompt (:mod:`sleeptime.bench.coverage`)."""
        out: dict[str, Any] = {
            "cold_prompt_tokens": ans.cold_prompt_tokens,
            "passages": [[p.start, p.end] for p in ans.passages],
        }
        query = item.queries[qi]
        support = query.meta.get("support")
        if support:
            got = answer_prompt(self.st, ns, item.id, item.context, query.question, ans)
            if got is not None:
                cov = support_coverage(support, got.text, got.notes)
                out["support"] = {
                    "sentences": cov.sentences,
                    "reached": cov.reached,
                    "covered": cov.covered,
                    "whole_text": got.whole_text,
                }
        return out

    def _answer(
        self,
        item: Item,
        qi: int,
        v: int,
        *,
        memory: str,
        step: str,
        temperature: float | None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """One paper-protocol test-time call (no token cap), scored; a failed call gives
        a sample with its ``error`` (the call is in ``calls.jsonl``)."""
        query = item.queries[qi]
        scorer = self.scorer(item)
        messages = answer_messages(
            self.paper, v, context=item.context, question=query.question, memory=memory
        )
        try:
            res = call(
                self.st.gateway,
                messages,
                phase="test",
                step=step,
                max_tokens=None,
                temperature=temperature,
                seed=seed,
            )
        except SleepTimeError as exc:
            return {
                "text": "",
                "key": None,
                "correct": False,
                "error": f"{type(exc).__name__}: {exc}",
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_ms": 0.0,
            }
        return {
            "text": res.text,
            "key": scorer.key(res.text),
            "correct": scorer.correct(res.text, self._gold(item, qi)),
            "prompt_tokens": res.usage.prompt_tokens,
            "completion_tokens": res.usage.completion_tokens,
            "latency_ms": round(res.latency_ms, 2),
        }

    def _paper_ask(self, item: Item, qi: int, k: int, v: int, arm: str) -> None:
        """Test-only (empty memory) or k test agents, each reading its own sleep agent's
        block; scored by majority vote over the k answers (pass@k recorded too). Tokens
        are summed over the k pairs (``pairs`` holds each pair's)."""
        if k == 0:
            memories = [EMPTY_MEMORY]
        else:
            sleep = self.sleep_records[(item.id, k)]
            memories = [r.get("memory") or EMPTY_MEMORY for r in sleep["rethinks"]]
        temperature = self.cfg.test_temp()
        pairs = [
            self._answer(
                item, qi, v, memory=m, step=f"test-{i}" if k else "test", temperature=temperature
            )
            for i, m in enumerate(memories)
        ]
        majority, correct = vote(pairs)
        first = next((p for p in pairs if p["key"] == majority), pairs[0])
        failed = [p["error"] for p in pairs if p.get("error")]
        self._result(
            item,
            qi,
            arm,
            kind="sleep" if k else "test",
            k=k,
            verbosity=v,
            gold=item.queries[qi].answer,
            response=first["text"],
            extracted=None if failed else majority,
            correct=correct and not failed,
            pass_at_k=any(p["correct"] for p in pairs) and not failed,
            pairs=pairs if k > 1 else None,
            source="error" if failed else ("learned" if k else "cold"),
            **({"error": failed[0]} if failed else {}),
            test_prompt_tokens=sum(p["prompt_tokens"] for p in pairs),
            test_completion_tokens=sum(p["completion_tokens"] for p in pairs),
            max_tokens=None,
            latency_ms=sum(p["latency_ms"] for p in pairs),
        )

    def _sample(self, item: Item, qi: int, v: int, arm: str) -> None:
        question, gold = item.queries[qi].question, item.queries[qi].answer
        gateway = self.st.gateway
        scorer = self.scorer(item)
        samples = []
        for i in range(self.cfg.samples):
            if self.cfg.protocol == "paper":
                s = self._answer(
                    item,
                    qi,
                    v,
                    memory=EMPTY_MEMORY,
                    step="parallel",
                    temperature=self.cfg.temperature,
                    seed=_sample_seed(gateway, i),
                )
                samples.append(s)
                continue
            messages = prompts.query_messages(
                question, context=item.context, learned=None, verbosity=v
            )
            try:
                res = call(
                    gateway,
                    messages,
                    phase="test",
                    step="parallel",
                    max_tokens=call_max_tokens(gateway.model, Budget(verbosity=v)),
                    temperature=self.cfg.temperature,
                    seed=_sample_seed(gateway, i),
                )
            except SleepTimeError as exc:
                samples.append(
                    {
                        "text": "",
                        "key": None,
                        "correct": False,
                        "error": f"{type(exc).__name__}: {exc}",
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                    }
                )
                continue
            samples.append(
                {
                    "text": res.text,
                    "key": scorer.key(res.text),
                    "correct": scorer.correct(res.text, self._gold(item, qi)),
                    "prompt_tokens": res.usage.prompt_tokens,
                    "completion_tokens": res.usage.completion_tokens,
                }
            )
        majority, majority_correct = vote(samples)
        failed = [smp["error"] for smp in samples if smp.get("error")]
        self._result(
            item,
            qi,
            arm,
            kind="parallel",
            k=0,
            verbosity=v,
            gold=gold,
            response=samples[0]["text"],
            extracted=None if failed else majority,
            correct=majority_correct and not failed,
            pass_at_k=any(smp["correct"] for smp in samples) and not failed,
            samples=samples,
            distinct=len({smp["text"] for smp in samples}),
            source="error" if failed else "parallel",
            **({"error": failed[0]} if failed else {}),
            test_prompt_tokens=sum(smp["prompt_tokens"] for smp in samples),
            test_completion_tokens=sum(smp["completion_tokens"] for smp in samples),
            latency_ms=None,
        )


def _error_fields(exc: BaseException) -> dict[str, Any]:
    """The fields of an answer whose model call failed."""
    return {
        "response": "",
        "extracted": None,
        "correct": False,
        "source": "error",
        "error": f"{type(exc).__name__}: {exc}",
        "test_prompt_tokens": 0,
        "test_completion_tokens": 0,
        "latency_ms": 0.0,
    }


def _sample_seed(gateway: Any, i: int) -> int | None:
    """Sample i's seed, where the backend needs one.

    The local llama.cpp model samples with a fixed seed, so K calls at temperature > 0
    would return K identical samples; a seed per sample makes them independent and
    reproducible. Remote backends already differ per call (and some reject ``seed``).
    """
    from sleeptime.llm.local import LocalChatModel

    return 1000 + i if isinstance(gateway.model, LocalChatModel) else None


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
