"""The facade's contexts: storing a text (or a chat thread, or an appended piece) as a
new version, marking a context in use, reading a version and its artifacts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from sleeptime.conversation import completed_turn, render_messages
from sleeptime.errors import ContextNotFound, InvalidInput
from sleeptime.facade.base import FacadeBase
from sleeptime.models import Artifacts, ContextVersion
from sleeptime.validation import check_ids, validate_ingest


class ContextsMixin(FacadeBase):
    """:class:`~sleeptime.SleepTime`'s contexts (see :mod:`sleeptime.facade.contexts`)."""

    def ingest(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        """Store ``text`` as the current version (a no-op if it is unchanged).

        ``activity=False`` stores it without postponing sleep-time work: a completed
        chat turn is the moment to prepare for the next one, not a sign of editing."""
        validate_ingest(namespace, context_id, text, max_chars=self.settings.max_context_chars)
        # The version and its outbox row (its sleep-time job) commit together; the relay
        # moves the row to the queue (recording the activity first, so the job waits
        # for quiet), and the online path never waits on Redis: a queue outage loses
        # nothing. Without a queue in this process, a worker's loop relays the row.
        if activity:
            self._touch(namespace, context_id)
        ctx = self.store.put_context(namespace, context_id, text, outbox=True, activity=activity)
        if ctx.created:
            for hook in self.on_new_version:
                hook(ctx)
        return ctx

    def append(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        """Store the current text plus ``text`` as a new version (a growing context:
        a log, a thread). Sleep-time work on it is incremental."""
        check_ids(namespace, context_id)
        if not isinstance(text, str) or not text:
            raise InvalidInput("appended text must be a non-empty string")
        current = self.store.get_context(namespace, context_id)
        return self.ingest(
            namespace, context_id, (current.text if current else "") + text, activity=activity
        )

    def ingest_messages(
        self,
        namespace: str,
        context_id: str,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
    ) -> ContextVersion | None:
        """Store a chat thread as a context (``conversation.render_messages``) once it
        ends with a completed assistant turn; None (nothing stored or scheduled) while
        a turn is still in progress. Storing a completed turn does not postpone
        sleep-time work: between turns is when a chat is idle."""
        check_ids(namespace, context_id)
        if not completed_turn(messages):
            return None
        return self.ingest(namespace, context_id, render_messages(messages), activity=False)

    def touch(self, namespace: str, context_id: str) -> None:
        """Mark a context as in use (a turn in progress): sleep-time work waits for
        ``SLEEPTIME_IDLE_AFTER`` seconds of quiet."""
        check_ids(namespace, context_id)
        self._touch(namespace, context_id)

    def _touch(self, namespace: str, context_id: str) -> None:
        for hook in self.on_activity:
            hook(namespace, context_id)

    def context(self, namespace: str, context_id: str) -> ContextVersion:
        check_ids(namespace, context_id)
        ctx = self.store.get_context(namespace, context_id)
        if ctx is None:
            raise ContextNotFound(namespace, context_id)
        return ctx

    def artifacts(self, namespace: str, context_id: str) -> Artifacts:
        """What sleep-time compute has stored for the current version."""
        check_ids(namespace, context_id)
        current = self.artifact_source(namespace, context_id)
        if current is None:
            raise ContextNotFound(namespace, context_id)
        return current[1]

    def _artifacts_from_sql(self, namespace: str, context_id: str) -> tuple[int, Artifacts] | None:
        version = self.store.current_version(namespace, context_id)
        if version is None:
            return None
        return version, self.store.load_artifacts(namespace, context_id, version)

    # -- async twins ------------------------------------------------------------------

    async def aingest(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        return await asyncio.to_thread(self.ingest, namespace, context_id, text, activity=activity)

    async def aappend(
        self, namespace: str, context_id: str, text: str, *, activity: bool = True
    ) -> ContextVersion:
        return await asyncio.to_thread(self.append, namespace, context_id, text, activity=activity)

    async def aingest_messages(
        self,
        namespace: str,
        context_id: str,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
    ) -> ContextVersion | None:
        return await asyncio.to_thread(self.ingest_messages, namespace, context_id, messages)
