"""The sleep-time worker: ``sleeptime worker`` or ``python -m sleeptime.worker``.

Workers take sleep-time jobs from the durable queue (Redis Streams when
``SLEEPTIME_REDIS_URL`` is set, else the embedded SQLite queue), run them when the
namespace is idle, and survive crashes of each other and restarts of Redis. How to
deploy them (container image, compose, systemd, Kubernetes) is in the repository's
top-level ``workers/`` folder.
"""

from __future__ import annotations

from sleeptime.worker.metrics import WorkerMetrics
from sleeptime.worker.runtime import Worker, worker_name
from sleeptime.worker.service import serve

__all__ = ["Worker", "WorkerMetrics", "serve", "worker_name"]
