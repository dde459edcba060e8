"""Pydantic data models shared by the API, the graphs, the store and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

Source = Literal["predicted", "learned", "cold"]
Phase = Literal["sleep", "test"]


class Usage(BaseModel):
    """Token counts of one or more model calls."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
        )


class ContextVersion(BaseModel):
    """One immutable version of a context; a new text gets a new version."""

    namespace: str
    context_id: str
    version: int
    content_hash: str
    text: str
    created_at: datetime | None = None
    created: bool = Field(False, description="True when this ingest made a new version")


class PredictedQA(BaseModel):
    """A question predicted at sleep time and the answer precomputed for it.

    Only a whole answer (it finished within its token cap and states a final answer)
    is ``servable`` at zero tokens; the others are kept for the record with the
    ``reason`` they are not served.
    """

    question: str
    answer: str
    servable: bool = True
    reason: str | None = None
    agreement: float | None = Field(
        None,
        description="with answer_samples > 1: the share of samples whose final answer this "
        "is (the most common one)",
    )


class PassageIndex(BaseModel):
    """What the sleep-time ``index`` step measured and indexed for one version.

    The token counts are the answering model's own, made once per version so that no
    ask ever tokenizes the raw text again."""

    model_config = ConfigDict(frozen=True)

    passages: int = Field(0, description="passages indexed (0: the text is short, kept whole)")
    ids: tuple[int, int] | None = Field(None, description="the passages' row-id range")
    text_tokens: int = Field(0, description="tokens of the raw text")
    cold_prompt_tokens: int = Field(
        0, description="prompt tokens of a cold answer about this version (a typical question)"
    )


class PassageRef(BaseModel):
    """A passage of the raw text that an answer's prompt carried verbatim."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="the passage's number within its version (0-based)")
    start: int = Field(description="offset of its first character in the version's text")
    end: int = Field(description="offset just past its last character")


class Artifacts(BaseModel):
    """What sleep-time compute left for one context version (all servable together)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    context_id: str
    version: int
    learned: str | None = None
    qas: tuple[PredictedQA, ...] = ()
    complete: bool = False
    index: PassageIndex | None = None

    @property
    def empty(self) -> bool:
        return self.learned is None and not self.qas


class Answer(BaseModel):
    """The answer to one query, with what it cost at test time."""

    text: str
    source: Source
    usage: Usage
    latency_ms: float
    version: int
    matched_question: str | None = Field(
        None, description="the predicted question whose precomputed answer was served"
    )
    match_score: float | None = None
    serve_reason: str | None = Field(
        None, description="why a precomputed answer was served (exact match, verified by ...)"
    )
    stale: bool = Field(
        False,
        description="answered from the learned context of an older version (the current "
        "one is not learned yet), together with the current text",
    )
    learned_version: int | None = Field(
        None, description="the version whose learned context was used (learned answers)"
    )
    related_questions: list[str] = Field(
        default_factory=list,
        description="prepared questions shown to the model as notes (learned answers)",
    )
    passages: list[PassageRef] = Field(
        default_factory=list,
        description="passages of the raw text the prompt carried instead of the whole text "
        "(learned answers about a long context)",
    )
    cold_prompt_tokens: int | None = Field(
        None,
        description="prompt tokens a cold answer (whole text, no notes) would have sent, "
        "counted once per version at sleep time; None before the version was indexed",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def saved_prompt_tokens(self) -> int:
        """Prompt tokens this answer did not send, against a cold answer (0 when unknown
        or when it sent more)."""
        if self.cold_prompt_tokens is None:
            return 0
        return max(0, self.cold_prompt_tokens - self.usage.prompt_tokens)


class Notes(BaseModel):
    """What sleep-time compute prepared, for an agent whose own model answers."""

    text: str = Field(description="the learned context c'")
    version: int = Field(description="the current version of the context")
    learned_version: int = Field(description="the version c' was learned on")
    stale: bool = Field(description="c' was learned on an older version")
    prepared: list[PredictedQA] = Field(
        default_factory=list, description="the current version's servable predicted Q&As"
    )


class Money(BaseModel):
    """A ledger in dollars, by the price sheet (``SLEEPTIME_PRICES``); models the sheet
    does not price count as free."""

    model_config = ConfigDict(frozen=True)

    sleep_usd: float
    test_usd: float
    saved_usd: float = Field(description="prompt tokens not sent, at the test model's input price")
    break_even_queries: float | None = Field(
        None, description="queries whose savings repay the sleep-time spend, at the mean so far"
    )


class Ledger(BaseModel):
    """Sleep-time vs test-time tokens spent on one context, and queries answered."""

    namespace: str
    context_id: str
    sleep: Usage = Usage()
    test: Usage = Usage()
    queries: int = 0
    by_source: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, dict[str, Usage]] = Field(
        default_factory=dict,
        description="usage per model and phase (a sleep-time model may differ)",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what sleep-time compute could not do for the current version",
    )
    saved_prompt_tokens: int = Field(
        0,
        description="test-time prompt tokens not sent, summed over answers, against a cold "
        "answer about the same version",
    )
    money: Money | None = Field(None, description="the same in dollars, with a price sheet")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def break_even_queries(self) -> float | None:
        """Queries needed for the test-time tokens saved to repay the sleep-time tokens
        spent, at the mean saving per query so far (None: no query or no saving yet)."""
        if not self.queries or self.saved_prompt_tokens <= 0:
            return None
        per_query = self.saved_prompt_tokens / self.queries
        return round(self.sleep.total_tokens / per_query, 1)

    def cost(self, test_weight: float = 10.0) -> float:
        """Paper's weighting: a test-time token costs ``test_weight`` sleep-time tokens."""
        return self.sleep.completion_tokens + test_weight * self.test.completion_tokens


class SleepReport(BaseModel):
    """Outcome of one sleep-time run."""

    namespace: str
    context_id: str
    version: int
    skipped: bool = Field(False, description="artifacts were already complete")
    learned: str | None = None
    qas: list[PredictedQA] = Field(default_factory=list)
    usage: Usage = Usage()
    seconds: float = 0.0
    warnings: list[str] = Field(
        default_factory=list,
        description="degraded steps (e.g. no parseable predicted questions): the run "
        "still completed and its learned context is served",
    )


class SleepStep(BaseModel):
    """One finished step of a sleep-time run, as given to ``SleepTime.sleep(on_step=)``:
    its name (``index``, ``plan``, ``rethink``, ``revise``, ``merge``, ``predict``, ``answer``,
    ``prefill``, ``finish``), how it ended and how long it took. Carries no text of the
    context, the notes or the questions, so it can be logged as it is."""

    model_config = ConfigDict(frozen=True)

    step: str
    status: Literal["done", "failed"]
    duration_ms: int = Field(ge=0)
    #: Tokens of the step's model calls (0 for a failed step: its calls are in the ledger).
    tokens: int = 0
    calls: int = 0
    #: Which of the ``k`` parallel rethinks (1-based); None for the other steps.
    part: int | None = None
    #: The exception's class name when the step failed (never its message).
    error: str | None = None


#: Default completion-token caps per verbosity level (0 = answer only ... 4 = thorough).
VERBOSITY_MAX_TOKENS: dict[int, int] = {0: 32, 1: 96, 2: 192, 3: 384, 4: 768}


class Budget(BaseModel):
    """How much test-time compute one answer may use.

    ``verbosity`` picks the prompt style (the paper's levels 0-4) and a default token
    cap; ``max_tokens`` overrides the cap. Backends that support thinking control
    read ``think_tokens`` (cap thinking, then force the answer) and ``extend``
    (append "Wait" up to this many times when the model stops early), as in s1.
    """

    model_config = ConfigDict(frozen=True)

    verbosity: int = Field(1, ge=0, le=4)
    max_tokens: int | None = Field(None, ge=1)
    think_tokens: int | None = Field(None, ge=0)
    extend: int = Field(0, ge=0)

    @property
    def sets_size(self) -> bool:
        """Whether the caller chose the answer's size (a verbosity or a cap). A budget
        that sets only thinking control leaves it to ``ask``: the configured verbosity
        from learned notes, the full cold verbosity without them."""
        return bool({"verbosity", "max_tokens"} & self.model_fields_set)

    @classmethod
    def thinking(
        cls,
        *,
        verbosity: int | None = None,
        max_tokens: int | None = None,
        think_tokens: int | None = None,
        extend: int = 0,
    ) -> Budget | None:
        """The budget of a request that may ask for thinking control (the CLI's and
        the HTTP API's options), or None when it does not: then ``verbosity`` and
        ``max_tokens`` go to ``ask`` as they are. Only the fields given are set."""
        if think_tokens is None and not extend:
            return None
        given = {"verbosity": verbosity, "max_tokens": max_tokens, "think_tokens": think_tokens}
        return cls(extend=extend, **{k: v for k, v in given.items() if v is not None})

    @property
    def token_cap(self) -> int:
        return (
            self.max_tokens if self.max_tokens is not None else VERBOSITY_MAX_TOKENS[self.verbosity]
        )


class DeleteCounts(BaseModel):
    """What a delete removed (``SleepTime.delete`` / ``delete_namespace``)."""

    model_config = ConfigDict(frozen=True)

    contexts: int = 0
    versions: int = 0
    artifacts: int = 0
    #: query-log rows whose question and answer text were blanked (counts are kept)
    queries_redacted: int = 0
    kv_blobs: int = 0
    #: Redis hot-cache entries invalidated (0 without Redis)
    cache_keys: int = 0
