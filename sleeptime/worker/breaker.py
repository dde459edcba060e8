"""What a worker makes of a failure: errors that no retry can fix (the dead letter at
once), failures of the infrastructure rather than of the job (back to the queue without
using a delivery), and the circuit breaker those open, which stops claiming while the
database or the model provider is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sleeptime.errors import (
    ContextNotFound,
    InvalidInput,
    ModelUnavailable,
    StoreUnavailable,
)

#: Errors that no retry can fix: the job goes to the dead letter at once.
PERMANENT = (ContextNotFound, InvalidInput)
#: Failures of the infrastructure, not of the job: it goes back to the queue without
#: using up one of its deliveries, so an outage delays work but never kills it, and
#: they count towards the worker's circuit breaker.
INFRASTRUCTURE = (StoreUnavailable, ModelUnavailable)


class CircuitBreaker:
    """Stops a worker from claiming jobs while the database or the model provider is
    down, so an outage is waited out instead of burning through the queue.

    Closed: jobs are claimed as usual. ``threshold`` infrastructure failures in a row
    open it: nothing is claimed for ``open_s`` seconds. Then it is half-open: one
    probe job is let through; its success closes the breaker, its infrastructure
    failure opens it again for another ``open_s``. ``clock`` is injectable."""

    def __init__(
        self, threshold: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.opened = 0  # times it opened (metrics, tests)
        self._open_until: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "half-open" if self.clock() >= self._open_until else "open"

    def allowance(self, free: int) -> int:
        """How many jobs may be claimed now (``free`` slots)."""
        with self._lock:
            if self._open_until is None:
                return free
            if self.clock() < self._open_until or self._probing:
                return 0
            self._probing = True
            return min(1, free)

    def wait_s(self) -> float:
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(0.0, self._open_until - self.clock())

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self._open_until = None
            self._probing = False

    def failure(self) -> bool:
        """Count an infrastructure failure; True if the breaker (re)opened."""
        with self._lock:
            self.failures += 1
            if self._probing or self.failures >= self.threshold:
                self._probing = False
                self._open_until = self.clock() + self.open_s
                self.opened += 1
                return True
            return False

    def release(self) -> None:
        """A probe that ended without saying anything about the infrastructure."""
        with self._lock:
            self._probing = False
