"""A run directory: its append-only JSONL files, ``run.json`` (what a re-run must not
change), the dataset it was made with, and the run's counts and verdict."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sleeptime.bench.datasets import Item, parse_jsonl
from sleeptime.bench.run_config import RunConfig
from sleeptime.errors import InvalidInput, SleepTimeError
from sleeptime.llm.resolve import ModelSpec

RESULTS, SLEEP, CALLS, ERRORS, PRED = (
    "results.jsonl",
    "sleep.jsonl",
    "calls.jsonl",
    "errors.jsonl",
    "predictability.jsonl",
)
RUN, DATASET, DB = "run.json", "dataset.jsonl", "bench.db"


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
