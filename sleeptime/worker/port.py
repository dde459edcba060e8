"""The worker port: everything a worker needs from the library, and nothing more.

:class:`~sleeptime.worker.runtime.Worker` depends on this protocol, not on the
:class:`~sleeptime.SleepTime` facade: the facade hands out an adapter
(``SleepTime.worker_port()``), and a test or a benchmark may pass its own. What a
worker does with a job: read the current version (a superseded job is acked), ask the
sleep policy (its inputs are the query log and the namespace's sleep-time budget),
sleep the version, warm the hot cache; beside the jobs it relays the outbox, sweeps
for versions without artifacts and revives deferred jobs whose version was queried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sleeptime.models import SleepReport, SleepStep
from sleeptime.policy import SleepPolicy
from sleeptime.queue.base import JobQueue
from sleeptime.settings import Settings


@runtime_checkable
class WorkerPort(Protocol):
    """What :class:`~sleeptime.worker.runtime.Worker` calls (see the module docstring)."""

    settings: Settings

    @property
    def database_url(self) -> str:
        """The store's URL (a worker refuses an in-memory SQLite database)."""
        ...

    @property
    def model_label(self) -> str:
        """The model, for the worker's start line."""
        ...

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
        """Run sleep-time compute on one version (idempotent, resumable)."""
        ...

    def current_version(self, namespace: str, context_id: str) -> int | None: ...

    def text_chars(self, namespace: str, context_id: str, version: int) -> int:
        """The version's length in characters (the policy's cost estimate); 0: gone."""
        ...

    def warm_cache(self, namespace: str, context_id: str, version: int) -> None:
        """Put a finished version's artifacts in the hot cache if it is still current."""
        ...

    def missing_versions(self) -> list[tuple[str, str, int]]:
        """Current versions without complete artifacts (the sweep)."""
        ...

    def relay(self, queue: JobQueue) -> int:
        """Move committed versions' outbox rows to ``queue``."""
        ...

    def queried_versions(self, after: int) -> tuple[list[tuple[str, str, int]], int]:
        """Versions queried since query-log row ``after`` (demand that revives deferred
        jobs) and the new high-water mark."""
        ...

    def sleep_policy(self) -> SleepPolicy:
        """The policy for jobs the worker runs on its own (``SLEEPTIME_SLEEP_POLICY``),
        with its inputs: the query log and the namespace's sleep-time budget."""
        ...

    def tokens_by_phase(self) -> dict[str, int]:
        """Tokens in the ledger by phase (metrics)."""
        ...


class PortProvider(Protocol):
    """Something that hands out a :class:`WorkerPort` (the facade does)."""

    def worker_port(self) -> WorkerPort: ...
