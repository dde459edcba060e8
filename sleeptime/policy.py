"""Sleep policies: whether a worker sleeps a new version on its own, and how much.

Sleep-time compute pays only when queries come (issue 18): a version nobody asks about
costs its whole sleep and saves nothing. ``SLEEPTIME_SLEEP_POLICY`` chooses:

- ``eager`` (the default): every new version is slept when its namespace is idle,
  as before; whoever ingests a document expects notes for it.
- ``on_demand``: a version is slept after its first query (that query is answered
  cold, or from the previous version's notes, as the online path already does).
- ``budgeted``: per version, the expected number of queries (the query log: this
  context's own queries with recency decay; for a context without history, its
  namespace's share of contexts asked and queries per asked context, else a prior)
  times the expected saving per query (what non-cold answers saved, from the stored
  cold prompt tokens; else an estimate from the text's length) against the estimated
  sleep cost (the namespace's sleeps per token of text; else an estimate), all in
  price-weighted tokens (the price sheet, else input 1 / output 4). It decides whether
  to sleep and how much (k, predicted questions, samples per answer), inside the
  namespace's daily sleep-time token budget.

A policy only governs what workers do on their own: an explicit sleep (``st.sleep``,
``POST .../sleep``, ``sleeptime sleep``) always runs. A version the policy skips is
deferred, not lost (:meth:`sleeptime.queue.base.JobQueue.defer`); a query on it revives
the job and the policy decides again, now with that demand in view. A job deferred for
its namespace's spent daily sleep budget (:data:`BUDGET_DEFERRAL`) also comes back once
its UTC day is over, when the budget resets (the worker's sweep).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sleeptime.errors import InvalidInput
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore

log = logging.getLogger("sleeptime.policy")

PolicyName = Literal["eager", "on_demand", "budgeted"]
#: The policies a setting can name; ``never`` exists for benchmarks (the baseline).
POLICIES: tuple[str, ...] = ("eager", "on_demand", "budgeted")

#: Recent slept versions the sleep cost per token of text is measured on.
SLEEP_SAMPLE = 100

#: Input and output weights when no price sheet prices the model.
DEFAULT_WEIGHTS = (1.0, 4.0)


@dataclass(frozen=True)
class Demand:
    """What the query log says about one version (the budgeted policy's inputs)."""

    #: Queries answered on this version so far.
    version_queries: int = 0
    #: This context's queries (all versions), each weighted by its recency.
    context_rate: float = 0.0
    #: Namespace: share of its contexts (old enough to have been asked) asked at all;
    #: None without history.
    asked_share: float | None = None
    #: Namespace: mean queries per asked context (None without history).
    queries_if_asked: float | None = None
    #: Namespace: mean price-weighted tokens a non-cold answer saved (None: unknown).
    saving_per_query: float | None = None
    #: Namespace: mean price-weighted sleep tokens per token of text (None: unknown).
    sleep_cost_per_token: float | None = None


class QueryHistory(Protocol):
    """The policy's view of the query log (injected: SQL in production, memory in
    tests and the economics benchmark, each with its own clock)."""

    def demand(self, namespace: str, context_id: str, version: int, now: float) -> Demand: ...


#: How the reason of a job deferred for its namespace's spent daily sleep-time budget
#: begins: the worker's sweep revives such a job once the UTC day it was deferred on
#: is over (the budget resets at 00:00 UTC), without waiting for a query.
BUDGET_DEFERRAL = "skipped: sleep-time budget of "


def budget_deferred(reason: str | None) -> bool:
    """Whether a deferred job's reason says the daily sleep-time budget ran out."""
    return reason is not None and reason.startswith(BUDGET_DEFERRAL)


@dataclass(frozen=True)
class Decision:
    """What a worker does with a job on its own, and why (logged, and a deferred job's
    reason in ``sleeptime jobs`` and the dashboard)."""

    sleep: bool
    reason: str
    k: int | None = None
    n_questions: int | None = None
    answer_samples: int | None = None
    expected_queries: float | None = None
    estimated_tokens: int | None = None

    def log_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy_reason": self.reason}
        if self.expected_queries is not None:
            out["expected_queries"] = round(self.expected_queries, 2)
        if self.estimated_tokens is not None:
            out["estimated_tokens"] = self.estimated_tokens
        for name in ("k", "n_questions", "answer_samples"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def text_tokens(chars: int) -> int:
    """A model-agnostic token estimate of a text (about 4 characters a token)."""
    return max(1, chars // 4)


def decay(age_s: float, half_life_s: float) -> float:
    return 0.5 ** (max(0.0, age_s) / half_life_s) if half_life_s > 0 else 1.0


class SleepPolicy:
    """Decides, per job, whether a worker sleeps its version now and how much.

    ``history`` is the query log's view (:class:`SQLHistory` by default in a worker);
    ``sleep_tokens_left(namespace)`` the namespace's sleep-time tokens left today
    (None: unlimited); ``clock`` the time in seconds."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        history: QueryHistory | None = None,
        sleep_tokens_left: Callable[[str], int | None] | None = None,
        clock: Callable[[], float] = time.time,
        weights: tuple[float, float] = DEFAULT_WEIGHTS,
    ) -> None:
        if name not in (*POLICIES, "never"):
            raise InvalidInput(f"sleep policy must be one of {', '.join(POLICIES)} (got {name!r})")
        if name in ("on_demand", "budgeted") and history is None:
            raise InvalidInput(f"the {name} sleep policy needs the query log (history)")
        self.name = name
        self.settings = settings
        self.history = history
        self.sleep_tokens_left = sleep_tokens_left or (lambda _ns: None)
        self.clock = clock
        self.weights = weights

    def decide(self, namespace: str, context_id: str, version: int, *, chars: int) -> Decision:
        if self.name == "eager":
            return Decision(True, "eager")
        if self.name == "never":
            return Decision(False, "skipped: policy never")
        assert self.history is not None
        demand = self.history.demand(namespace, context_id, version, self.clock())
        if self.name == "on_demand":
            if demand.version_queries > 0:
                return Decision(
                    True,
                    f"on_demand: {demand.version_queries} query(ies) on v{version}",
                    expected_queries=float(demand.version_queries),
                )
            return Decision(False, f"skipped: on_demand, no query on v{version} yet")
        return self._budgeted(namespace, version, demand, chars)

    # -- budgeted ---------------------------------------------------------------------

    def expected_queries(self, d: Demand) -> float:
        """Queries still to come on this version."""
        prior = self.settings.policy_prior_queries
        if d.version_queries > 0:
            # demand arrived: this context behaves like its namespace's asked ones, and
            # one asked often lately is likely to be asked as often again
            after = d.queries_if_asked - 1.0 if d.queries_if_asked is not None else prior
            return max(d.context_rate, after, 0.0)
        if d.context_rate > 0:
            return d.context_rate
        if d.asked_share is not None and d.queries_if_asked is not None:
            return d.asked_share * d.queries_if_asked
        return prior

    def saving(self, d: Demand, chars: int) -> float:
        """Price-weighted tokens one non-cold answer saves against a cold one."""
        if d.saving_per_query is not None:
            return d.saving_per_query
        w_in, _ = self.weights
        # a cold answer carries the text (or its passages); a learned one the notes
        return 0.6 * w_in * min(text_tokens(chars), 4 * self.settings.passage_threshold_tokens)

    def sleep_cost(self, d: Demand, chars: int, k: int, n_questions: int) -> float:
        """Price-weighted tokens of one sleep of this text."""
        tokens = text_tokens(chars)
        if d.sleep_cost_per_token is not None:
            return d.sleep_cost_per_token * tokens
        w_in, w_out = self.weights
        # k rethinks and the question/answer steps read the text; each writes its output
        return w_in * tokens * (
            k + 1 + n_questions / 2
        ) + w_out * self.settings.sleep_max_tokens * (k + 1)

    def _budgeted(self, namespace: str, version: int, d: Demand, chars: int) -> Decision:
        s = self.settings
        expected = self.expected_queries(d)
        value = expected * self.saving(d, chars)
        cost = self.sleep_cost(d, chars, s.sleep_k, s.n_questions)
        w_in = self.weights[0] or 1.0
        est_tokens = int(cost / w_in)
        facts = (
            f"expected {expected:.1f} queries x {self.saving(d, chars):.0f} saved "
            f"vs ~{cost:.0f} to sleep (price-weighted tokens)"
        )
        if value < cost:
            return Decision(
                False,
                f"skipped: {facts}",
                expected_queries=expected,
                estimated_tokens=est_tokens,
            )
        left = self.sleep_tokens_left(namespace)
        if left is not None and left < est_tokens:
            return Decision(
                False,
                f"{BUDGET_DEFERRAL}{namespace} ({left} tokens left today, "
                f"this sleep ~{est_tokens}); {facts}",
                expected_queries=expected,
                estimated_tokens=est_tokens,
            )
        ratio = value / cost if cost else math.inf
        k, n, samples = s.sleep_k, s.n_questions, s.answer_samples
        if ratio < 2.0:
            size = "lean"
            k, samples = 1, 1
        elif ratio >= 20.0 and (left is None or left >= 3 * est_tokens):
            size = "rich"
            samples = max(samples, 3)
        else:
            size = "standard"
        return Decision(
            True,
            f"budgeted ({size}): {facts}",
            k=k,
            n_questions=n,
            answer_samples=samples,
            expected_queries=expected,
            estimated_tokens=est_tokens,
        )


# -- the query log in memory (tests, the economics benchmark) ---------------------------


@dataclass
class MemoryHistory:
    """:class:`QueryHistory` fed by hand, on any clock: ingests, queries (with what
    each saved) and sleeps (with what each cost)."""

    half_life_s: float = 86400.0
    window_s: float = 7 * 86400.0
    #: A context counts towards its namespace's asked share once this old.
    mature_s: float = 86400.0
    _born: dict[tuple[str, str], float] = field(default_factory=dict)
    _queries: dict[tuple[str, str], list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _savings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _sleeps: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, namespace: str, context_id: str, at: float) -> None:
        with self._lock:
            self._born.setdefault((namespace, context_id), at)

    def query(
        self, namespace: str, context_id: str, version: int, at: float, saved: float | None = None
    ) -> None:
        with self._lock:
            self._queries[(namespace, context_id)].append((version, at))
            if saved is not None:
                self._savings[namespace].append(saved)

    def slept(self, namespace: str, cost: float, text_tokens: int) -> None:
        with self._lock:
            self._sleeps[namespace].append((cost, text_tokens))

    def demand(self, namespace: str, context_id: str, version: int, now: float) -> Demand:
        with self._lock:
            mine = self._queries.get((namespace, context_id), [])
            # contexts old enough to have been asked; while there are none, all of them
            olds = [
                cid
                for (ns, cid), born in self._born.items()
                if ns == namespace and now - self.window_s <= born <= now - self.mature_s
            ] or [
                cid
                for (ns, cid), born in self._born.items()
                if ns == namespace and now - self.window_s <= born
            ]
            mature = len(olds)
            counts = [len(self._queries.get((namespace, cid), [])) for cid in olds]
            asked = sum(1 for n in counts if n)
            total = sum(counts)
            savings = self._savings.get(namespace, [])[-500:]
            sleeps = self._sleeps.get(namespace, [])[-200:]
        return Demand(
            version_queries=sum(1 for v, _ in mine if v == version),
            context_rate=sum(
                decay(now - at, self.half_life_s) for _, at in mine if now - at <= self.window_s
            ),
            asked_share=asked / mature if mature else None,
            queries_if_asked=total / asked if asked else None,
            saving_per_query=sum(savings) / len(savings) if savings else None,
            sleep_cost_per_token=(
                sum(c for c, _ in sleeps) / max(1, sum(t for _, t in sleeps)) if sleeps else None
            ),
        )


# -- the query log in SQL (workers) -----------------------------------------------------


class SQLHistory:
    """:class:`QueryHistory` read from the store (its query log, ledger and contexts,
    through :class:`~sleeptime.store.demand.DemandRepo`). Namespace figures are cached
    for ``cache_s`` (a worker decides many jobs)."""

    def __init__(
        self,
        store: SQLStore,
        *,
        half_life_s: float = 86400.0,
        window_s: float = 7 * 86400.0,
        mature_s: float = 86400.0,
        cache_s: float = 30.0,
        weights: tuple[float, float] = DEFAULT_WEIGHTS,
    ) -> None:
        self.store = store
        self.half_life_s = half_life_s
        self.window_s = window_s
        self.mature_s = mature_s
        self.cache_s = cache_s
        self.weights = weights
        self._cache: dict[str, tuple[float, Demand]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, store: SQLStore, settings: Settings, weights: tuple[float, float] = DEFAULT_WEIGHTS
    ) -> SQLHistory:
        return cls(
            store,
            half_life_s=settings.policy_half_life_s,
            window_s=settings.policy_window_s,
            mature_s=min(settings.policy_half_life_s, settings.policy_window_s / 2),
            weights=weights,
        )

    def demand(self, namespace: str, context_id: str, version: int, now: float) -> Demand:
        times = self.store.demand.query_times(namespace, context_id, now - self.window_s)
        ns = self._namespace(namespace, now)
        return Demand(
            version_queries=sum(1 for v, _ in times if v == version),
            context_rate=sum(decay(now - at, self.half_life_s) for _, at in times),
            asked_share=ns.asked_share,
            queries_if_asked=ns.queries_if_asked,
            saving_per_query=ns.saving_per_query,
            sleep_cost_per_token=ns.sleep_cost_per_token,
        )

    def _namespace(self, namespace: str, now: float) -> Demand:
        with self._lock:
            hit = self._cache.get(namespace)
            if hit is not None and now - hit[0] < self.cache_s:
                return hit[1]
        reads = self.store.demand
        since = now - self.window_s
        born = reads.first_seen(namespace, since)
        # contexts old enough to have been asked; while there are none, all of them
        olds = {cid for cid, first in born.items() if first <= now - self.mature_s} or set(born)
        counts = reads.queries_per_context(namespace, since)
        asked = {cid: n for cid, n in counts.items() if cid in olds}
        sleeps = reads.recent_sleeps(namespace, since, self.weights, SLEEP_SAMPLE)
        tokens = sum(text_tokens(chars) for _, chars in sleeps)
        out = Demand(
            asked_share=len(asked) / len(olds) if olds else None,
            queries_if_asked=sum(asked.values()) / len(asked) if asked else None,
            saving_per_query=reads.mean_saving(namespace, since, self.weights),
            sleep_cost_per_token=sum(c for c, _ in sleeps) / tokens if tokens else None,
        )
        with self._lock:
            self._cache[namespace] = (now, out)
        return out


def queried_versions(store: SQLStore, after: int) -> tuple[list[tuple[str, str, int]], int]:
    """Versions with query-log rows after row id ``after`` and the last row id read
    (:meth:`~sleeptime.store.demand.DemandRepo.queried_versions`): the demand signal
    that revives deferred jobs."""
    return store.demand.queried_versions(after)


def price_weights(prices: Any, model: str) -> tuple[float, float]:
    """(input, output) weights of ``model`` from a price sheet, else 1 / 4."""
    price = prices.price(model) if prices is not None else None
    if price is None or (price.input == 0 and price.output == 0):
        return DEFAULT_WEIGHTS
    return (price.input, price.output)
