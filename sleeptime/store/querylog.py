"""The query log, written off the answer's critical path.

Every ``ask`` appends a row (question, source, tokens, latency). Writing it inline
cost more than the rest of a zero-token answer, so rows go to an in-memory buffer
that a background thread writes in batches (one multi-row INSERT per batch).
:meth:`QueryLog.flush` is a barrier (the ledger calls it before counting queries) and
:meth:`QueryLog.close` drains the buffer, so nothing is lost on a clean shutdown. While
the database is down, rows stay buffered (up to ``max_pending``) and are retried.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sleeptime.errors import StoreUnavailable

log = logging.getLogger("sleeptime.store")

#: Logs with a writer thread, drained at interpreter exit for callers that never
#: call ``close()`` (a CLI command, a script).
_LIVE: weakref.WeakSet[QueryLog] = weakref.WeakSet()


@atexit.register
def _drain_all() -> None:
    deadline = time.monotonic() + 10.0  # never hold up interpreter exit for long
    for qlog in list(_LIVE):
        qlog.close(timeout=max(0.1, deadline - time.monotonic()))


#: Writes a batch of rows; raises when the database is unavailable.
Writer = Callable[[list[dict[str, Any]]], None]


class QueryLog:
    def __init__(
        self,
        write: Writer,
        *,
        batch: int = 512,
        linger_s: float = 0.05,
        retry_s: float = 1.0,
        max_pending: int = 100_000,
        inline: bool = False,
    ) -> None:
        self._write = write
        #: Write each row in the caller's thread (an in-memory SQLite database exists
        #: only on its own connection, so a writer thread would not see its tables).
        self._inline = inline
        self._batch = batch
        self._linger_s = linger_s
        self._flushing = 0
        self._retry_s = retry_s
        self._max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False
        self._dropped = 0
        self._thread: threading.Thread | None = None

    def append(self, row: dict[str, Any]) -> None:
        if self._inline:
            self._write([row])
            return
        with self._cond:
            if self._closed:  # after close: write inline rather than lose the row
                self._write([row])
                return
            if len(self._pending) >= self._max_pending:
                self._pending.pop(0)
                self._dropped += 1
                if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                    log.warning("query log buffer full: %d oldest rows dropped", self._dropped)
            self._pending.append(row)
            if len(self._pending) > 1 and len(self._pending) < self._batch:
                return  # the writer is already awake and lingering for more rows
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sleeptime-querylog", daemon=True
                )
                self._thread.start()
                _LIVE.add(self)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                # linger briefly so one INSERT carries many rows and the answering
                # threads are not woken for every row
                self._cond.wait_for(
                    lambda: self._closed or self._flushing or len(self._pending) >= self._batch,
                    timeout=self._linger_s,
                )
                rows = self._pending[: self._batch]
                del self._pending[: self._batch]
                self._inflight += 1
            ok = self._try_write(rows)
            with self._cond:
                self._inflight -= 1
                if not ok:
                    self._pending[:0] = rows  # keep order; retried after a pause
                self._cond.notify_all()
                if not ok and not self._closed:
                    self._cond.wait(self._retry_s)
                elif not ok:
                    return  # closing with the database down: close() reports the loss

    def _try_write(self, rows: list[dict[str, Any]]) -> bool:
        """Write a batch; False when it should be retried (the database is down)."""
        try:
            self._write(rows)
            return True
        except StoreUnavailable as exc:  # the database is down: keep the rows, retry later
            log.warning("query log write failed (%d rows kept for retry): %s", len(rows), exc)
            return False
        except Exception as exc:  # a retry cannot fix it (schema gone, bad row)
            log.error("query log: dropped %d rows that cannot be written: %s", len(rows), exc)
            return True

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row appended so far is written; False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: (not self._pending and not self._inflight) or self._thread is None,
                    timeout=timeout,
                )
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and stop the writer thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            if self._pending:
                log.error("query log: %d rows could not be written", len(self._pending))
