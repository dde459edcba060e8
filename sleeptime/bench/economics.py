"""``sleeptime bench economics``: what each sleep policy costs on synthetic workloads.

Workloads replay through the real store, the embedded queue and the worker (one job at
a time in this thread, :meth:`~sleeptime.worker.runtime.Worker.process_due`) with model
``fake`` (real token counts, no accuracy claims) on a simulated clock:

- contexts long enough for the passage path (the generator's ``longdoc`` reports),
  arriving as a Poisson process over ``arrival_days``;
- a share never queried (the workload's name: ``unasked0``, ``unasked50``,
  ``unasked90``); the others get ``1 + Poisson(lambda)`` queries with Zipf popularity
  (mean ``queries_per_asked``), at Poisson times over ``lifetime_s`` after arrival;
- ``edited_share`` of the contexts edited once between their queries;
- ``predicted_share`` of the queries are questions sleep time predicted (the oracle
  questions: the version's predicted-question artifact holds the item's first
  questions), the rest the generator's other questions.

Policies: ``eager``, ``on_demand``, ``budgeted`` (:mod:`sleeptime.policy`, fed the
simulated query log) and ``never`` (no sleep-time compute: the baseline). Per workload
and policy: sleep-time and test-time tokens, the price-weighted total (the price sheet's
prices for the model, else input 1 / output 4) and the p50 of time-to-answer.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

from sleeptime.models import SleepReport, SleepStep
from sleeptime.policy import MemoryHistory, SleepPolicy, price_weights, text_tokens
from sleeptime.queue.base import JobQueue, QueueConfig
from sleeptime.queue.sqlite import SQLiteQueue
from sleeptime.store.kinds import Kind
from sleeptime.worker.port import WorkerPort

NS = "econ"
DAY = 86400.0
WORKLOADS: dict[str, float] = {"unasked0": 0.0, "unasked50": 0.5, "unasked90": 0.9}
POLICY_NAMES: tuple[str, ...] = ("eager", "on_demand", "budgeted", "never")


@dataclass(frozen=True)
class EconomicsConfig:
    contexts: int = 1000
    #: words per report (model fake counts words as tokens); over the passage threshold
    words: int = 2500
    queries_per_asked: float = 10.0
    predicted_share: float = 0.3
    edited_share: float = 0.2
    zipf_s: float = 1.0
    arrival_days: float = 10.0
    lifetime_s: float = 12 * 3600.0
    n_questions: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # ingest, edit, query
    ctx: int
    question: str = ""
    predicted: bool = False


@dataclass
class Tally:
    sleep_prompt: int = 0
    sleep_completion: int = 0
    test_prompt: int = 0
    test_completion: int = 0
    slept_versions: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)


# -- the workload ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _corpus(cfg: EconomicsConfig) -> tuple[tuple[str, list[str], list[str]], ...]:
    """:func:`contexts`, made once per process (every replay of a run uses the same)."""
    return tuple(contexts(cfg))


def contexts(cfg: EconomicsConfig) -> list[tuple[str, list[str], list[str]]]:
    """(text, predicted questions, other questions) per context."""
    from sleeptime.bench.generator import Spec, generate

    items = generate(
        Spec(
            n=cfg.contexts,
            seed=cfg.seed,
            families=("longdoc",),
            tokens=max(1000, cfg.words),
            min_queries=cfg.n_questions + 3,
            max_queries=10,
        )
    )
    out = []
    for item in items:
        questions = [q.question for q in item.queries]
        out.append((item.context, questions[: cfg.n_questions], questions[cfg.n_questions :]))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:  # normal approximation, fine for counts this large
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def workload(
    name: str, cfg: EconomicsConfig, corpus: Sequence[tuple[str, list[str], list[str]]]
) -> list[Event]:
    """The events of one workload, in time order (the same for every policy)."""
    unasked = WORKLOADS[name]
    rng = random.Random(f"economics:{cfg.seed}:{name}")
    n = len(corpus)
    events: list[Event] = []
    at = 0.0
    arrivals = []
    for i in range(n):
        at += rng.expovariate(n / (cfg.arrival_days * DAY))
        arrivals.append(at)
        events.append(Event(at, "ingest", i))
    order = list(range(n))
    rng.shuffle(order)
    asked = order[: round(n * (1 - unasked))]
    weights = [1.0 / (rank + 1) ** cfg.zipf_s for rank in range(len(asked))]
    extra = max(0.0, cfg.queries_per_asked - 1.0) * len(asked)
    total_w = sum(weights) or 1.0
    for i, w in zip(asked, weights, strict=True):
        count = 1 + _poisson(rng, extra * w / total_w)
        times = sorted(arrivals[i] + rng.uniform(0, cfg.lifetime_s) for _ in range(count))
        _, predicted, others = corpus[i]
        for t in times:
            is_pred = bool(predicted) and rng.random() < cfg.predicted_share
            q = rng.choice(predicted if is_pred else others or predicted)
            events.append(Event(t, "query", i, q, is_pred))
    for i in rng.sample(range(n), round(n * cfg.edited_share)):
        events.append(Event(arrivals[i] + rng.uniform(0, cfg.lifetime_s), "edit", i))
    events.sort(key=lambda e: (e.at, e.kind != "ingest"))
    return events


# -- one replay ----------------------------------------------------------------------------


class SimClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.start = self.now

    def __call__(self) -> float:
        return self.now


class _MeteredPort:
    """The facade's worker port, with each sleep's tokens counted and fed to the
    policy's query log (what a sleep of this namespace costs per token of text)."""

    def __init__(
        self,
        inner: WorkerPort,
        history: MemoryHistory,
        tally: Tally,
        weights: tuple[float, float],
        slept: set[tuple[str, int]],
    ) -> None:
        self.inner = inner
        self.settings = inner.settings
        self.history = history
        self.tally = tally
        self.weights = weights
        self.slept = slept

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def database_url(self) -> str:
        return self.inner.database_url

    @property
    def model_label(self) -> str:
        return self.inner.model_label

    def sleep_version(
        self,
        namespace: str,
        context_id: str,
        version: int,
        *,
        on_step: Callable[[SleepStep], None] | None = None,
        k: int | None = None,
        n_questions: int | None = None,
        answer_samples: int | None = None,
    ) -> SleepReport:
        report = self.inner.sleep_version(
            namespace,
            context_id,
            version,
            on_step=on_step,
            k=k,
            n_questions=n_questions,
            answer_samples=answer_samples,
        )
        u = report.usage
        self.tally.sleep_prompt += u.prompt_tokens
        self.tally.sleep_completion += u.completion_tokens
        if not report.skipped:
            self.tally.slept_versions += 1
            cost = u.prompt_tokens * self.weights[0] + u.completion_tokens * self.weights[1]
            chars = self.inner.text_chars(namespace, context_id, version)
            self.history.slept(namespace, cost, text_tokens(chars))
        self.slept.add((context_id, version))
        return report


def _edited(text: str, ctx: int) -> str:
    return text + f"\n\nAddendum {ctx}: the figures above were checked again and confirmed."


def replay(
    events: Sequence[Event],
    corpus: Sequence[tuple[str, list[str], list[str]]],
    policy_name: str,
    cfg: EconomicsConfig,
    workdir: Path,
) -> Tally:
    """One workload under one policy, in a fresh store and queue."""
    from sleeptime import Settings, SleepTime
    from sleeptime.worker.runtime import Worker

    clock = SimClock()
    settings = Settings(
        model="fake",
        n_questions=cfg.n_questions,
        idle_after=0.0,
        queue_path=str(workdir / "queue.db"),
    )
    st = SleepTime(database_url=f"sqlite:///{workdir / 'st.db'}", settings=settings)
    queue: JobQueue = SQLiteQueue(
        str(workdir / "queue.db"), QueueConfig(idle_after=0.0, lease_s=3600.0), clock=clock
    )
    weights = price_weights(st.prices, st.model_name)
    history = MemoryHistory(half_life_s=DAY, window_s=7 * DAY, mature_s=DAY)
    tally = Tally()
    slept: set[tuple[str, int]] = set()
    port = _MeteredPort(st.worker_port(), history, tally, weights, slept)
    policy = SleepPolicy(
        "eager" if policy_name == "never" else policy_name,
        settings,
        history=history,
        clock=clock,
        weights=weights,
    )
    worker = Worker(port, queue, policy=policy, concurrency=1, worker_id="economics")
    sleeps = policy_name != "never"
    texts = {i: corpus[i][0] for i in range(len(corpus))}
    try:
        for ev in events:
            clock.now = clock.start + ev.at
            cid = f"doc-{ev.ctx:05d}"
            if ev.kind in ("ingest", "edit"):
                if ev.kind == "edit":
                    texts[ev.ctx] = _edited(texts[ev.ctx], ev.ctx)
                version = st.ingest(NS, cid, texts[ev.ctx]).version
                st.store.put_artifact(
                    NS,
                    cid,
                    version,
                    Kind.QUESTIONS,
                    "0",
                    {"questions": corpus[ev.ctx][1], "raw": "oracle: the generator's questions"},
                    model="oracle",
                )
                history.ingest(NS, cid, clock.now)
                if sleeps:
                    worker.process_due()
                continue
            t0 = time.perf_counter()
            answer = st.ask(NS, cid, ev.question)
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            u = answer.usage
            tally.test_prompt += u.prompt_tokens
            tally.test_completion += u.completion_tokens
            tally.sources[answer.source] = tally.sources.get(answer.source, 0) + 1
            saved = None
            if answer.source != "cold" and answer.cold_prompt_tokens:
                saved = (answer.cold_prompt_tokens - u.prompt_tokens) * weights[
                    0
                ] - u.completion_tokens * weights[1]
            history.query(NS, cid, answer.version, clock.now, saved)
            if sleeps and policy_name != "eager" and (cid, answer.version) not in slept:
                worker.process_due()
    finally:
        queue.close()
        st.close()
    return tally


def summarize(tally: Tally, weights: tuple[float, float]) -> dict[str, Any]:
    w_in, w_out = weights
    sleep_cost = tally.sleep_prompt * w_in + tally.sleep_completion * w_out
    test_cost = tally.test_prompt * w_in + tally.test_completion * w_out
    lat = tally.latencies_ms
    return {
        "cost": round(sleep_cost + test_cost, 1),
        "sleep_cost": round(sleep_cost, 1),
        "test_cost": round(test_cost, 1),
        "sleep_tokens": tally.sleep_prompt + tally.sleep_completion,
        "test_tokens": tally.test_prompt + tally.test_completion,
        "p50_ms": round(statistics.median(lat), 3) if lat else None,
        "queries": len(lat),
        "slept_versions": tally.slept_versions,
        "sources": dict(sorted(tally.sources.items())),
    }


def _one(
    name: str, policy: str, cfg: EconomicsConfig, weights: tuple[float, float]
) -> tuple[str, str, dict[str, Any]]:
    """One workload under one policy (a process of its own with ``--jobs`` > 1)."""
    logging.getLogger("sleeptime.worker").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    corpus = _corpus(cfg)
    events = workload(name, cfg, corpus)
    with tempfile.TemporaryDirectory(prefix="st-economics-", dir=_scratch()) as tmp:
        tally = replay(events, corpus, policy, cfg, Path(tmp))
    row = summarize(tally, weights) | {"events": len(events)}
    return name, policy, row | {"seconds": round(time.perf_counter() - t0, 1)}


def _scratch() -> str | None:
    """Where a replay's throwaway store and queue live: memory-backed ``/dev/shm``
    where there is one (the files are deleted after the replay; a disk's fsyncs and
    other processes' I/O only add noise to what is measured), else the temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


#: A replay's relative cost (work per context, from a measured run): the longest
#: replays start first, so the last one to finish is a short one (``--jobs`` > 1).
_WEIGHT = {"eager": 1.0, "on_demand": 0.9, "budgeted": 0.9, "never": 0.45}


def _expected(name: str, policy: str) -> float:
    asked = 1.0 - WORKLOADS[name]
    if policy == "eager":
        return 0.6 + 0.4 * asked
    return _WEIGHT[policy] * (0.15 + 0.85 * asked)


def run_economics(
    cfg: EconomicsConfig,
    workloads: Sequence[str] = tuple(WORKLOADS),
    policies: Sequence[str] = POLICY_NAMES,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Every workload under every policy (``jobs`` replays at a time, each in a
    process of its own); the JSON that ``--json`` prints."""
    from concurrent.futures import ProcessPoolExecutor

    from sleeptime.pricing import PriceSheet
    from sleeptime.settings import Settings

    weights = price_weights(PriceSheet.load(Settings().prices), "fake")
    start = time.perf_counter()
    pairs = [(name, policy) for name in workloads for policy in policies]
    # longest first: with more replays than processes, the tail is a short replay
    order = sorted(pairs, key=lambda p: -_expected(*p)) if jobs > 1 else pairs
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def done(name: str, policy: str, row: dict[str, Any]) -> None:
        found[(name, policy)] = row
        if progress:
            progress(
                f"{name} {policy}: cost {row['cost']:,.0f}, sleep {row['sleep_tokens']:,} "
                f"tokens, test {row['test_tokens']:,}, p50 {row['p50_ms']} ms, "
                f"{row['slept_versions']} slept ({row['seconds']} s)"
            )

    if jobs <= 1:
        for name, policy in pairs:
            done(*_one(name, policy, cfg, weights))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, name, policy, cfg, weights) for name, policy in order]
            for fut in futures:
                done(*fut.result())
    out = [
        {
            "name": name,
            "unasked_share": WORKLOADS[name],
            "policies": {policy: found[(name, policy)] for policy in policies},
        }
        for name in workloads
    ]
    return {
        "workloads": out,
        "config": asdict(cfg),
        "weights": {"input": weights[0], "output": weights[1]},
        "jobs": jobs,
        "seconds": round(time.perf_counter() - start, 1),
    }


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """Issue 18's targets, checked on a result."""
    out: dict[str, bool] = {}
    for row in result["workloads"]:
        p = {name: v["cost"] for name, v in row["policies"].items()}
        name = row["name"]
        if name == "unasked0" and {"eager", "never"} <= p.keys():
            out["unasked0: eager < never"] = p["eager"] < p["never"]
        if {"budgeted", "eager", "never"} <= p.keys():
            floor = min(p["eager"], p["never"])
            out[f"{name}: budgeted <= 1.05 x min(eager, never)"] = p["budgeted"] <= 1.05 * floor
        if name == "unasked90" and {"budgeted", "eager"} <= p.keys():
            out["unasked90: budgeted >= 40% under eager"] = p["budgeted"] <= 0.6 * p["eager"]
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        "| workload | policy | sleep tokens | test tokens | total cost | p50 ms | slept |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["workloads"]:
        for name, p in row["policies"].items():
            lines.append(
                f"| {row['name']} | {name} | {p['sleep_tokens']:,} | {p['test_tokens']:,} | "
                f"{p['cost']:,.0f} | {p['p50_ms']} | {p['slept_versions']} |"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["name"] for row in result["workloads"]]
    policies = list(result["workloads"][0]["policies"]) if names else []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(policies))
    for j, policy in enumerate(policies):
        sleep = [row["policies"][policy]["sleep_cost"] / 1e6 for row in result["workloads"]]
        test = [row["policies"][policy]["test_cost"] / 1e6 for row in result["workloads"]]
        xs = [i + (j - (len(policies) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, test, width, label=f"{policy}")
        ax.bar(xs, sleep, width, bottom=test, color=bars[0].get_facecolor(), alpha=0.45)
    ax.set_xticks(range(len(names)), names)
    w = result["weights"]
    ax.set_ylabel(f"cost, millions (input {w['input']:g} / output {w['output']:g} per token)")
    ax.set_title("Cost per sleep policy (solid: test time, light: sleep time), model fake")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def economics(
    contexts_n: int = typer.Option(1000, "--contexts", min=10, help="contexts per workload"),
    workloads_opt: str = typer.Option(
        ",".join(WORKLOADS), "--workloads", help="unasked0, unasked50, unasked90"
    ),
    policies_opt: str = typer.Option(
        ",".join(POLICY_NAMES), "--policies", help="eager, on_demand, budgeted, never"
    ),
    words: int = typer.Option(2500, "--words", min=1000, help="words per report"),
    queries: float = typer.Option(
        10.0, "--queries", min=1.0, help="mean queries per asked context"
    ),
    seed: int = typer.Option(0, "--seed"),
    jobs: int = typer.Option(2, "--jobs", min=1, help="replays at a time (processes)"),
    out_dir: str = typer.Option("bench-economics", "--out", help="JSON, table and plot here"),
    as_json: bool = typer.Option(False, "--json", help="print only the JSON on stdout"),
) -> None:
    """What each sleep policy costs on synthetic workloads (model fake, simulated clock,
    the real store, queue and worker): sleep-time and test-time tokens, the
    price-weighted total and the p50 time-to-answer per workload and policy."""
    from sleeptime.errors import InvalidInput

    wl = [w.strip() for w in workloads_opt.split(",") if w.strip()]
    pol = [p.strip() for p in policies_opt.split(",") if p.strip()]
    bad = [w for w in wl if w not in WORKLOADS] + [p for p in pol if p not in POLICY_NAMES]
    if bad or not wl or not pol:
        raise InvalidInput(
            f"unknown workload or policy {bad}: workloads {', '.join(WORKLOADS)}; "
            f"policies {', '.join(POLICY_NAMES)}"
        )
    cfg = EconomicsConfig(contexts=contexts_n, words=words, queries_per_asked=queries, seed=seed)
    say = None if as_json else typer.echo
    result = run_economics(cfg, wl, pol, progress=say, jobs=jobs)
    result["targets"] = targets(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "economics.json").write_text(json.dumps(result, indent=2), "utf-8")
    (out / "economics.md").write_text(table(result) + "\n", "utf-8")
    plot(result, out / "economics.png")
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(table(result))
    for name, ok in result["targets"].items():
        typer.echo(f"{'ok  ' if ok else 'MISS'} {name}")
    typer.echo(f"{result['seconds']} s; {out / 'economics.json'}, {out / 'economics.png'}")
