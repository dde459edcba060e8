"""The multi-query benchmark runner: the paper's experiments on any model and dataset.

Arms, each over every query of every item:

- ``k0-v{v}``: test-time only. The context is ingested in namespace ``bench-k0`` and never
  slept on, so ``SleepTime.ask(..., verbosity=v)`` answers cold at exactly that budget.
- ``k{k}-v{v}`` (k >= 1): sleep-time compute with k rethinks (``st.sleep(ns, cid, k=k)``
  in namespace ``bench-k{k}``, once per context), then ``ask`` at verbosity v. Answers
  served from predicted questions cost 0 test-time tokens and say so (``source``).
- ``par{K}-v{v}``: the parallel-sampling baseline: K samples of the cold prompt at
  temperature T through ``ModelGateway.call``; scored by majority vote and pass@K.

Everything lands in the output directory as append-only JSONL (``results``, ``sleep``,
``calls``: every model call with phase, tokens and latency), so a re-run skips finished
work and an interrupted run loses at most the call in flight.
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
from sleeptime.bench.datasets import Item, load_dataset, parse_jsonl
from sleeptime.bench.extract import extract_number, final_span, is_correct
from sleeptime.errors import InvalidInput, ModelCallError, ModelOutputError
from sleeptime.llm.gateway import CallResult
from sleeptime.llm.resolve import ModelSpec
from sleeptime.models import VERBOSITY_MAX_TOKENS, Usage
from sleeptime.settings import Settings

RESULTS, SLEEP, CALLS, ERRORS, PRED = (
    "results.jsonl",
    "sleep.jsonl",
    "calls.jsonl",
    "errors.jsonl",
    "predictability.jsonl",
)
RUN, DATASET, DB = "run.json", "dataset.jsonl", "bench.db"

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
    temperature: float = 0.7
    concurrency: int = 1
    n_questions: int = 3
    predictability: bool | None = None  # None: when sleeptime.predictability exists

    def check(self) -> None:
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
        if self.n_questions < 0:
            raise InvalidInput(f"--n-questions must be >= 0 (got {self.n_questions})")
        if self.temperature <= 0 and self.samples:
            raise InvalidInput("parallel sampling needs --temperature > 0")

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
    errors: int = 0
    seconds: float = 0.0


def _fingerprint(item: Item) -> str:
    return hashlib.sha256(json.dumps(item.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def _model_label(spec: ModelSpec) -> str:
    return spec if isinstance(spec, str) else type(spec).__name__


def _prepare_out(cfg: RunConfig, items: list[Item]) -> list[Item]:
    """Create or re-open the run directory; refuse to mix models or changed items."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    run_path = cfg.out / RUN
    meta: dict[str, Any] = {
        "dataset": cfg.dataset,
        "model": _model_label(cfg.model),
        "n_questions": cfg.n_questions,
        "temperature": cfg.temperature,
        "prompts": prompts.PROMPT_VERSION,
    }
    if run_path.exists():
        old = json.loads(run_path.read_text("utf-8"))
        for key in ("model", "n_questions", "prompts"):
            if old.get(key) != meta[key]:
                raise InvalidInput(
                    f"{cfg.out} holds a run with {key}={old.get(key)!r}, not {meta[key]!r}: "
                    "use another --out directory"
                )
        if cfg.samples and old.get("temperature") != cfg.temperature:
            raise InvalidInput(
                f"{cfg.out} sampled at temperature {old.get('temperature')}: use another --out"
            )
        meta = {**old, **{k: v for k, v in meta.items() if k not in old}}
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


class Runner:
    """Runs a :class:`RunConfig`; see the module docstring for the arms."""

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
        items = load_dataset(cfg.dataset, limit=cfg.limit)
        self.items = _prepare_out(cfg, items)
        base = settings or Settings()
        self.settings = base.model_copy(update={"n_questions": cfg.n_questions})
        self.st = SleepTime(
            model=cfg.model, database_url=f"sqlite:///{cfg.out / DB}", settings=self.settings
        )
        self.results = JsonlLog(cfg.out / RESULTS)
        self.sleeps = JsonlLog(cfg.out / SLEEP)
        self.calls = JsonlLog(cfg.out / CALLS)
        self.errors = JsonlLog(cfg.out / ERRORS)
        self.preds = JsonlLog(cfg.out / PRED)
        self.done = {(r["item"], r["q"], r["arm"]) for r in read_jsonl(cfg.out / RESULTS)}
        self.slept = {(r["item"], r["k"]) for r in read_jsonl(cfg.out / SLEEP)}
        self.scored = {(r["item"], r["q"]) for r in read_jsonl(cfg.out / PRED)}
        self.stats = RunStats(out=cfg.out, items=len(self.items))
        self._stats_lock = threading.Lock()
        #: predictability(context, question) -> mean log P(q | c); None: not scored
        self._pred_fn = scorer or (
            _predictability_fn() if cfg.predictability is not False else None
        )
        if cfg.predictability and self._pred_fn is None:
            raise InvalidInput(
                "--predictability needs sleeptime.predictability, which is not installed"
            )

    # -- accounting -------------------------------------------------------------------

    def _record(self, phase: Any, step: str, usage: Usage, latency_ms: float) -> None:
        item, arm = _TAG.get()
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
            task = progress.add_task(f"bench {self.cfg.dataset} on {gateway.name}", total=total)

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
        return self.stats

    def _run_item(self, item: Item, advance: Callable[[], None]) -> None:
        if self._pred_fn is not None:
            self._score_predictability(item)
        for k in sorted(set(self.cfg.sleep_k)):
            ns = f"bench-k{k}"
            self.st.ingest(ns, item.id, item.context)
            if k > 0 and (item.id, k) not in self.slept:
                self._sleep(item, ns, k)
                advance()
            for v in sorted(set(self.cfg.verbosity)):
                arm = f"k{k}-v{v}"
                for qi, query in enumerate(item.queries):
                    if (item.id, qi, arm) in self.done:
                        continue
                    with self._tag(item.id, arm):
                        self._ask(item, qi, query.question, query.answer, ns, k, v, arm)
                    advance()
        if self.cfg.samples:
            for v in sorted(set(self.cfg.verbosity)):
                arm = f"par{self.cfg.samples}-v{v}"
                for qi, query in enumerate(item.queries):
                    if (item.id, qi, arm) in self.done:
                        continue
                    with self._tag(item.id, arm):
                        self._sample(item, qi, query.question, query.answer, v, arm)
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

    def _sleep(self, item: Item, ns: str, k: int) -> None:
        start = time.perf_counter()
        error = None
        with self._tag(item.id, f"sleep-k{k}"):
            try:
                report = self.st.sleep(ns, item.id, k=k, n_questions=self.cfg.n_questions)
                predicted = len(report.qas)
            except ModelOutputError as exc:
                # The model could not produce parseable output: c' is kept (it is persisted
                # before prediction), the questions are not; record it and answer anyway.
                error, predicted = str(exc), 0
        used = self.st.ledger(ns, item.id).sleep  # every sleep-time call on this context
        self.sleeps.append(
            {
                "item": item.id,
                "k": k,
                "sleep_prompt_tokens": used.prompt_tokens,
                "sleep_completion_tokens": used.completion_tokens,
                "calls": used.calls,
                "predicted": predicted,
                "seconds": round(time.perf_counter() - start, 3),
                "error": error,
            }
        )
        self.slept.add((item.id, k))

    def _result(self, item: Item, qi: int, arm: str, **fields: Any) -> None:
        record = {
            "item": item.id,
            "q": qi,
            "arm": arm,
            "n_queries": len(item.queries),
            "ts": time.time(),
            **fields,
        }
        self.results.append(record)
        self.done.add((item.id, qi, arm))
        with self._stats_lock:
            self.stats.new_results += 1

    def _ask(
        self, item: Item, qi: int, question: str, gold: str, ns: str, k: int, v: int, arm: str
    ) -> None:
        fields: dict[str, Any]
        try:
            ans = self.st.ask(ns, item.id, question, verbosity=v)
            fields = {
                "response": ans.text,
                "extracted": _extracted(ans.text),
                "correct": is_correct(ans.text, gold),
                "source": ans.source,
                "test_prompt_tokens": ans.usage.prompt_tokens,
                "test_completion_tokens": ans.usage.completion_tokens,
                "latency_ms": round(ans.latency_ms, 2),
            }
        except ModelCallError as exc:  # permanent (bad request, window overflow): a wrong answer
            fields = {
                "response": "",
                "extracted": None,
                "correct": False,
                "source": "error",
                "error": str(exc),
                "test_prompt_tokens": 0,
                "test_completion_tokens": 0,
                "latency_ms": 0.0,
            }
        self._result(
            item, qi, arm, kind="sleep" if k else "test", k=k, verbosity=v, gold=gold, **fields
        )

    def _sample(self, item: Item, qi: int, question: str, gold: str, v: int, arm: str) -> None:
        messages = prompts.query_messages(question, context=item.context, learned=None, verbosity=v)
        gateway = self.st.gateway
        samples = []
        for i in range(self.cfg.samples):
            try:
                res = gateway.call(
                    messages,
                    phase="test",
                    step="parallel",
                    max_tokens=VERBOSITY_MAX_TOKENS[v],
                    temperature=self.cfg.temperature,
                    seed=_sample_seed(gateway, i),
                )
            except ModelCallError as exc:  # permanent (e.g. window overflow): a wrong sample
                res = CallResult(
                    text="", usage=Usage(), latency_ms=0.0, finish_reason=f"error: {exc}"
                )
            samples.append(
                {
                    "text": res.text,
                    "extracted": _extracted(res.text),
                    "correct": is_correct(res.text, gold),
                    "prompt_tokens": res.usage.prompt_tokens,
                    "completion_tokens": res.usage.completion_tokens,
                }
            )
        votes = Counter(s["extracted"] for s in samples if s["extracted"] is not None)
        majority = votes.most_common(1)[0][0] if votes else None
        majority_correct = (
            any(s["correct"] for s in samples if s["extracted"] == majority) if majority else False
        )
        self._result(
            item,
            qi,
            arm,
            kind="parallel",
            k=0,
            verbosity=v,
            gold=gold,
            response=samples[0]["text"],
            extracted=majority,
            correct=majority_correct,
            pass_at_k=any(s["correct"] for s in samples),
            samples=samples,
            distinct=len({s["text"] for s in samples}),
            source="parallel",
            test_prompt_tokens=sum(s["prompt_tokens"] for s in samples),
            test_completion_tokens=sum(s["completion_tokens"] for s in samples),
            latency_ms=None,
        )


def _extracted(text: str) -> str | None:
    value = extract_number(text)
    if value is not None:
        return f"{value:g}" if abs(value) < 1e15 else str(value)
    span = " ".join(final_span(text).split())[:60]
    return span.lower().strip(" .") or None


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
