"""What every part of the :class:`~sleeptime.SleepTime` facade shares: the attributes
its constructor sets (``sleeptime/api.py``), declared once so each part
(:mod:`sleeptime.facade`) is checked against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sleeptime.llm.resolve import ModelSpec
from sleeptime.models import ContextVersion
from sleeptime.online import ArtifactSource, OnlineDeps
from sleeptime.pricing import PriceSheet
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore

if TYPE_CHECKING:
    from sleeptime.cache import HotCache


class FacadeBase:
    """The state of one client, set by ``SleepTime.__init__`` (see there)."""

    settings: Settings
    #: The price sheet (``SLEEPTIME_PRICES``), None when nothing is priced.
    prices: PriceSheet | None
    store: SQLStore
    #: Where the online path reads artifacts; the Redis hot cache replaces it.
    artifact_source: ArtifactSource
    #: Called with each new context version (the worker queue subscribes here).
    on_new_version: list[Callable[[ContextVersion], None]]
    #: Called with (namespace, context id) on every ingest and ask.
    on_activity: list[Callable[[str, str], None]]
    cache: HotCache | None
    _online: OnlineDeps
    _model_spec: ModelSpec
