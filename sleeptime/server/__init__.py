"""The HTTP API (``sleeptime serve``): FastAPI over one :class:`~sleeptime.SleepTime`
client, with tenant keys (``auth.py``), routes (``routes.py``) and the error mapping
(``app.py``). Needs the ``server`` extra (``pip install "sleeptime[server]"``)."""

from __future__ import annotations

from sleeptime.server.app import create_app

__all__ = ["create_app"]
