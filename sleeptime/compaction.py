"""Compacting a conversation: the turns that learned notes cover are replaced by the
notes plus the passages of those turns that the current question needs.

An agent thread is stored as a context after every turn, so sleep-time notes exist
for an older version of it: they cover its first turns, not the newest. Sending the
notes *on top of* the whole history would make every turn cost more; instead the
covered turns go, and what comes back for them is the notes and, verbatim, the
exchanges the full-text index ranks best for the question. Kept verbatim always: the
app's system prompt, every turn after the learned version, and the last few exchanges.
The cut is made only where an exchange starts (a user message), so a tool call is never
separated from its result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field

from sleeptime import prompts
from sleeptime.conversation import as_messages, render_messages
from sleeptime.models import PassageRef
from sleeptime.online import OnlineDeps, pick_passages
from sleeptime.passages import replaces_text


class Compaction(BaseModel):
    """A thread as the model should see it, and what was replaced."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[BaseMessage] = Field(description="the messages to send, system first")
    replaced: int = Field(0, description="messages of the thread replaced by notes + passages")
    learned_version: int | None = Field(None, description="the version whose notes were used")
    passages: list[PassageRef] = Field(
        default_factory=list, description="passages of the replaced turns brought back"
    )


def thread_system(base: str, notes: str, passages: Sequence[tuple[int, str]]) -> SystemMessage:
    """The app's system prompt, then the notes and passages that stand in for the
    earlier turns, fenced as data."""
    head = f"{base}\n\n" if base else ""
    return SystemMessage(
        f"{head}Notes prepared in advance about the earlier part of this conversation "
        f"(its turns are not repeated below):\n{prompts.fence('notes', notes)}\n\n"
        f"{prompts.passages_block(passages)}{prompts.DATA_RULE}"
    )


def compaction_budget(deps: OnlineDeps, replaced_tokens: int, notes: str) -> int:
    """Passage tokens a compacted thread carries: what is left of ``compact_share`` of
    the replaced turns once the notes are counted (room for one passage at least, and
    never more than ``passage_budget_tokens``). A thread's turns are the model's only
    memory of it, so the share is larger than a document's ``passage_share``; the notes
    are counted against it, so long notes leave less room for passages and a weak
    model's one-line notes leave more (measured on 60-exchange threads learned after
    50: ``docs/benchmarks.md``)."""
    settings = deps.settings
    room = int(replaced_tokens * settings.compact_share) - deps.gateway().count_tokens(notes)
    return min(settings.passage_budget_tokens, max(settings.passage_tokens, room))


def cut_point(thread: Sequence[BaseMessage], covered_chars: int, keep_exchanges: int) -> int:
    """Index of the first message kept verbatim: the start of an exchange (a user
    message) such that every message before it is inside the first ``covered_chars``
    characters of the thread's rendering, and at least ``keep_exchanges`` exchanges
    come after it. 0: nothing can be replaced."""
    starts = [i for i, m in enumerate(thread) if isinstance(m, HumanMessage)]
    allowed = set(starts[: max(0, len(starts) - keep_exchanges + 1)] if keep_exchanges else starts)
    best, before = 0, 0  # before: characters of the rendering ahead of message i
    for i, message in enumerate(thread):
        if before > covered_chars:
            break
        if i in allowed:
            best = i
        before += len(render_messages([message]))
    return best


def compact(
    deps: OnlineDeps,
    namespace: str,
    context_id: str,
    messages: Sequence[BaseMessage | Mapping[str, Any]],
    notes: tuple[str, int] | None,
    *,
    question: str | None = None,
    system: str | None = None,
    keep_exchanges: int | None = None,
) -> Compaction:
    """``messages`` with the turns covered by the notes ``(text, learned version)``
    replaced, when those turns pass the passage threshold and were indexed; else the
    messages as they are (with the app's system prompt first). ``system``: the app's
    system prompt when it is not the first message."""
    thread = as_messages(messages)
    if thread and isinstance(thread[0], SystemMessage):
        first = thread.pop(0)
        system = "\n\n".join(p for p in (system, str(first.text)) if p)
    unchanged = ([SystemMessage(system)] if system else []) + thread
    if notes is None:
        return Compaction(messages=unchanged)
    text, learned_version = notes
    arts = deps.store.load_artifacts(namespace, context_id, learned_version)
    covered = deps.store.get_context(namespace, context_id, learned_version)
    if covered is None or not replaces_text(arts.index, deps.settings.passage_threshold_tokens):
        return Compaction(messages=unchanged)
    if not render_messages(thread).startswith(covered.text):
        return Compaction(messages=unchanged)  # another thread's notes: never mix them
    keep = deps.settings.compact_keep_exchanges if keep_exchanges is None else keep_exchanges
    cut = cut_point(thread, len(covered.text), keep)
    if cut == 0:
        return Compaction(messages=unchanged)
    if question is None:
        asked = [m for m in thread if isinstance(m, HumanMessage)]
        question = str(asked[-1].text) if asked else ""
    assert arts.index is not None
    budget = compaction_budget(deps, arts.index.text_tokens, text)
    picked = pick_passages(
        deps, namespace, context_id, learned_version, question, arts.index, budget=budget
    )
    head = thread_system(system or "", text, [(p.idx, p.text) for p in picked])
    return Compaction(
        messages=[head, *thread[cut:]],
        replaced=cut,
        learned_version=learned_version,
        passages=[PassageRef(id=p.idx, start=p.start, end=p.end) for p in picked],
    )
