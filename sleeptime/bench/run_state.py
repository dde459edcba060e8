"""What every step of a benchmark run shares: its configuration, the library client
(with the benchmark's gateway), the run files, and the accounting of each model call."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from sleeptime.api import SleepTime
from sleeptime.bench.datasets import Item
from sleeptime.bench.extract import Scorer, get_scorer
from sleeptime.bench.paper_prompts import (
    PaperPrompts,
)
from sleeptime.bench.protocol import (
    CALL_META,
    PHASE_OPTIONS,
    BenchGateway,
    PhaseOptions,
)
from sleeptime.bench.run_config import RunConfig
from sleeptime.bench.run_files import (
    JsonlLog,
    RunStats,
    is_aime,
)
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.resolve import ModelSpec
from sleeptime.models import Phase, Usage
from sleeptime.settings import Settings

#: (item id, arm) of the work in progress, so the gateway recorder can file each call.
_TAG: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "bench_tag", default=("?", "?")
)


class _BenchSleepTime(SleepTime):
    """The library, with a :class:`~sleeptime.bench.protocol.BenchGateway` for its model
    calls: per-phase options applied and recorded, failed calls reported."""

    def _new_gateway(self, spec: ModelSpec, *, kv: bool) -> ModelGateway:
        gw = super()._new_gateway(spec, kv=kv)
        return BenchGateway(model=gw.model, retry=gw.retry, recorder=gw.recorder, window=gw.window)


class RunState:
    """The state of a run (set by :class:`~sleeptime.bench.runner.Runner`) and the
    accounting every step uses."""

    cfg: RunConfig
    console: Console
    paper: PaperPrompts
    prompt_version: str
    items: list[Item]
    settings: Settings
    library_temperature: float
    st: _BenchSleepTime
    results: JsonlLog
    sleeps: JsonlLog
    calls: JsonlLog
    errors: JsonlLog
    preds: JsonlLog
    done: set[tuple[str, int, str]]
    sleep_records: dict[tuple[str, int], dict[str, Any]]
    slept: set[tuple[str, int]]
    scored: set[tuple[str, int]]
    stats: RunStats
    _stats_lock: threading.Lock
    _pred_fn: Callable[[str, str], Any] | None

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
