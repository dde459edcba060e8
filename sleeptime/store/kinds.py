"""The kinds of artifact rows a sleep-time run writes (one enum, one home).

The values are stored in every database's ``st_artifacts.kind`` column: never change
one. A :class:`Kind` is a ``str``, so rows, JSON and older callers that spell a kind
as a plain string compare equal to it.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    #: The learned context c' (key "0": the merged one; the notes the online path sends).
    LEARNED = "learned"
    #: One of the k parallel rethinks before the merge (key: its index).
    DRAFT = "draft"
    #: The predicted questions (key "0").
    QUESTIONS = "questions"
    #: One predicted question with its answer (key: its index).
    QA = "qa"
    #: Written last: the version's sleep-time run finished, its set is complete.
    MANIFEST = "manifest"
    #: The passage index of a long version: row-id range, text and cold-prompt tokens.
    INDEX = "index"
