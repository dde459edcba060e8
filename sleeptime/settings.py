"""Settings from the environment (``SLEEPTIME_*``) with sane offline defaults.

This class is the one source of defaults: the queue, the hot cache, the retry policy
and the local model take theirs from here (:func:`default`). README.md documents every
field in one table; ``tests/test_settings_doc.py`` keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_serializer, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sleeptime.errors import InvalidSettings
from sleeptime.redact import HIDDEN, redact_url, url_scheme
from sleeptime.validation import MAX_QUESTIONS, MAX_SLEEP_K, MAX_TOKENS_CEILING, one_line

#: A rate limit in the ``limits`` library's notation: ``100/second``, ``10 per 5 minutes``.
RATE_LIMIT = re.compile(
    r"[1-9][0-9]*\s*(?:/|per)\s*(?:[1-9][0-9]*\s*)?(?:second|minute|hour|day)s?", re.I
)
#: The URL schemes redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Fields that may hold a password: shown redacted in a repr and in JSON, never whole.
URL_FIELDS = ("database_url", "redis_url")
SECRET_FIELDS = ("session_secret",)


#: When a precomputed answer may be served at zero tokens (``sleeptime.retrieval``).
ServeMode = Literal["exact", "verified", "off"]
SERVE_MODES: tuple[ServeMode, ...] = get_args(ServeMode)


class Settings(BaseSettings):
    """All knobs in one place. Every field can be set as ``SLEEPTIME_<NAME>``.

    A bad value raises :class:`~sleeptime.errors.InvalidSettings` (a ``SleepTimeError``
    and a ``ValueError``) with one line naming the variable; values are never echoed,
    since URLs may hold passwords. For the same reason ``repr()``, ``str()`` and
    ``model_dump_json()`` show the URLs with their passwords hidden and the session
    secret not at all; the attributes themselves are the plain strings, for the code
    that connects with them.
    """

    model_config = SettingsConfigDict(env_prefix="SLEEPTIME_", extra="ignore")

    if not TYPE_CHECKING:  # type checkers keep pydantic's typed signature

        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                raise InvalidSettings(f"invalid settings: {one_line(exc, _env_name)}") from None

    model: str = Field(
        "local", description="'local', 'fake', 'server:URL[#model]', 'provider:model', ..."
    )
    sleep_model: str | None = Field(
        None, description="model of sleep-time calls (default: the same as model)"
    )
    server_kind: Literal[
        "auto", "openai", "vllm", "sglang", "llama-server", "llama-cpp-python", "ollama", "generic"
    ] = Field("auto", description="what the OpenAI-compatible server is (auto: probe it)")
    database_url: str = "sqlite:///sleeptime.db"
    redis_url: str | None = None

    # model calls (the gateway's retry policy, sleeptime.RetryPolicy)
    retry_attempts: int = Field(4, ge=1, description="tries of one model call (1 = no retry)")
    retry_wait_s: float = Field(0.5, ge=0.0, description="first wait before a retry, doubling")
    retry_max_wait_s: float = Field(20.0, ge=0.0, description="longest wait between tries")
    retry_jitter_s: float = Field(0.5, ge=0.0, description="random extra wait, up to this")

    # sleep-time
    sleep_k: int = Field(1, ge=1, le=MAX_SLEEP_K, description="independent rethinks of c', merged")
    sleep_strategy: Literal["notes", "rethink_tools"] = Field(
        "notes",
        description="how c' is learned: notes (one learn call per rethink) or rethink_tools "
        "(the paper's loop of memory rewrites by tool calls)",
    )
    n_questions: int = Field(
        5, ge=0, le=MAX_QUESTIONS, description="predicted questions per context"
    )
    sleep_max_tokens: int = Field(384, ge=16, description="token cap of one sleep-time call")
    sleep_temperature: float = Field(
        0.7, ge=0.0, description="used when sleep_k > 1 and for answer samples"
    )
    answer_samples: int = Field(
        1, ge=1, le=16, description="samples per precomputed answer, majority-voted"
    )
    min_agreement: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of samples a voted answer needs to be servable at zero tokens",
    )
    sleep_policy: Literal["eager", "on_demand", "budgeted"] = Field(
        "eager",
        description="what workers sleep on their own: every new version (eager), a version "
        "after its first query (on_demand), or what the query log says will pay, within the "
        "namespace's sleep-time quota (budgeted); explicit sleeps always run",
    )
    policy_prior_queries: float = Field(
        1.0,
        ge=0.0,
        description="budgeted: expected queries on a new context when its namespace has no "
        "query history yet",
    )
    policy_half_life_s: float = Field(
        86400.0, gt=0.0, description="budgeted: recency half-life of a context's past queries"
    )
    policy_window_s: float = Field(
        7 * 86400.0, gt=0.0, description="budgeted: how far back the query log is read"
    )

    # test-time
    default_verbosity: int = Field(1, ge=0, le=4)
    cold_verbosity: int = Field(3, ge=0, le=4, description="budget of a cold answer")
    serve: ServeMode = Field(
        "exact",
        description="when a precomputed answer is served at zero tokens: the same question "
        "after normalisation (exact), also near candidates a verifier confirms (verified), "
        "never (off)",
    )
    match_threshold: float = Field(
        0.75, gt=0.0, le=1.0, description="similarity a near candidate needs to be verified"
    )
    related_notes: int = Field(
        3, ge=0, le=20, description="prepared Q&As shown to the model as notes when not served"
    )
    include_raw_context: bool = Field(
        True, description="give the raw context next to c' when answering from c'"
    )
    passage_threshold_tokens: int = Field(
        2000,
        ge=0,
        description="a raw text longer than this (answering model's tokens) is not sent "
        "whole with learned notes: the passages the question needs are",
    )
    passage_tokens: int = Field(
        128, ge=16, description="target size of one indexed passage (whole sentences/exchanges)"
    )
    passage_budget_tokens: int = Field(
        1000, ge=0, description="passage tokens one learned answer (or compacted thread) carries"
    )
    passage_share: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="passages carried are at most this share of the text they stand in for "
        "(room for three passages at least)",
    )
    agent_namespace: str | None = Field(
        None,
        description="namespace of agent runs that name none (unset: such a run is an error)",
    )
    compact_share: float = Field(
        0.19,
        gt=0.0,
        le=1.0,
        description="a compacted thread's notes and passages together are at most this "
        "share of the turns they replace (room for one passage at least)",
    )
    compact_keep_exchanges: int = Field(
        3, ge=0, description="latest exchanges a compacted agent thread keeps verbatim"
    )
    prices: str | None = Field(
        None,
        description="price sheet, $ per million tokens: a JSON file or inline JSON "
        '{"model": {"input": ..., "cached_input": ..., "output": ...}}',
    )
    max_context_chars: int = Field(2_000_000, ge=1)
    max_question_chars: int = Field(4000, ge=1, description="longer questions are rejected")
    max_tokens_ceiling: int = Field(
        MAX_TOKENS_CEILING,
        ge=1,
        description="the most answer (or thinking) tokens one ask may request, whatever the "
        "model's window",
    )

    # the HTTP server
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="larger HTTP request bodies get a 413 before they are read or "
        "authenticated (the default holds the largest context once JSON-escaped)",
    )
    rate_limit: str | None = Field(
        None,
        description="requests one API key may make, e.g. 100/second or 1000/minute (a "
        "fixed window per key; counted in Redis when SLEEPTIME_REDIS_URL is set, else in "
        "the server process); over it: 429 with Retry-After (unset: no limit)",
    )
    quota_test_tokens: int | None = Field(
        None,
        ge=0,
        description="answer (test-time) tokens one namespace may use per UTC day; over "
        "it, asks get 429 until 00:00 UTC (unset: no quota)",
    )
    quota_sleep_tokens: int | None = Field(
        None,
        ge=0,
        description="sleep-time tokens one namespace may use per UTC day, counted from "
        "the ledger; over it, explicit sleeps get 429 (unset: no quota)",
    )
    session_secret: str | None = Field(
        None,
        min_length=16,
        description="signs the dashboard's sign-in cookies (unset: a random one per server "
        "process; `sleeptime serve --workers N` shares one)",
    )

    context_window: int | None = Field(
        None, ge=256, description="model window in tokens (default: known for local models)"
    )

    keep_versions: int = Field(
        0, ge=0, description="versions of a context kept with text and artifacts (0 = all)"
    )

    # local model
    local_model_path: Path | None = None
    local_n_ctx: int = Field(8192, ge=512)
    local_threads: int | None = None
    local_probe: bool = Field(
        True,
        description="try the llama.cpp build in a child process before the first load "
        "(once per build and model file): a build that crashes on this CPU is one error line",
    )

    # background work: the job queue, the worker, the hot cache
    idle_after: float = Field(30.0, ge=0.0)
    max_delay: float = Field(600.0, ge=0.0)
    queue_scan: int = Field(
        128, ge=1, description="oldest waiting jobs one claim ranks by priority (bounds its cost)"
    )
    redis_prefix: str = Field("sleeptime", min_length=1, description="prefix of every Redis key")
    queue_path: str | None = Field(
        None, description="SQLite file of the embedded queue (default: the SQLite database)"
    )
    lease_s: float = Field(60.0, gt=0.0, description="a silent worker's jobs are reclaimed then")
    max_deliveries: int = Field(5, ge=1, description="deliveries before a job is dead-lettered")
    retry_initial_s: float = Field(2.0, ge=0.0, description="first job redelivery backoff")
    retry_max_s: float = Field(300.0, ge=0.0, description="longest job redelivery backoff")
    worker_concurrency: int = Field(1, ge=1, le=256)
    worker_tokens_per_minute: int = Field(0, ge=0, description="sleep-time token cap (0 = none)")
    heartbeat_s: float = Field(5.0, gt=0.0)
    shutdown_grace_s: float = Field(30.0, ge=0.0)
    poll_s: float = Field(0.5, gt=0.0, description="how often an idle worker looks for work")
    sweep_s: float = Field(300.0, ge=0.0, description="re-enqueue missed versions (0: at start)")
    breaker_failures: int = Field(
        3, ge=1, description="infrastructure failures in a row that open a worker's breaker"
    )
    breaker_open_s: float = Field(
        5.0, gt=0.0, description="an open breaker waits this long before one probe job"
    )
    relay_s: float = Field(
        1.0, gt=0.0, description="how often the outbox relay looks for versions to enqueue"
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="/metrics port (0 = off)")
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, description="address of the worker's /metrics server"
    )
    activity_flush_s: float = Field(0.25, gt=0.0)
    cache_ttl_s: float = Field(3600.0, gt=0.0)
    cache_timeout_s: float = Field(0.1, gt=0.0, description="Redis timeout on the online path")
    cache_cooldown_s: float = Field(
        2.0, gt=0.0, description="after a Redis error, serve from SQL this long before retrying"
    )

    # KV-prefill blobs
    kv_dir: Path = Path(".sleeptime/kv")
    kv_max_bytes: int = Field(1 << 30, ge=0)
    kv_prefill: bool = Field(
        True, description="save the query-prompt prefix's KV state at sleep time (local models)"
    )
    prewarm: bool = Field(
        True, description="send a 1-token request at sleep time to warm a server's prefix cache"
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in URL_FIELDS and value is not None:
                yield name, redact_url(value)
            elif name in SECRET_FIELDS and value is not None:
                yield name, HIDDEN
            else:
                yield name, value

    @field_serializer(*URL_FIELDS, when_used="json")
    def _hide_password(self, value: str | None) -> str | None:
        return None if value is None else redact_url(value)

    @field_serializer(*SECRET_FIELDS, when_used="json")
    def _hide_secret(self, value: str | None) -> str | None:
        return None if value is None else HIDDEN

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value: object) -> object:
        """``N/second`` (minute, hour, day; ``N per minute``, ``N/5 minutes``) or unset."""
        if value is None or value == "":
            return None
        if isinstance(value, str) and not RATE_LIMIT.fullmatch(value.strip()):
            raise ValueError(
                "must be like 100/second, 1000/minute or 10 per 5 minutes (seconds, "
                "minutes, hours or days)"
            )
        return value.strip() if isinstance(value, str) else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        """Refuse a URL redis-py cannot use (``redsi://``) now, not at the first ingest."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return value  # the str type check reports it
        scheme = url_scheme(value)
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"{redact_url(value)} is not a Redis URL: it must start with redis://, "
                "rediss:// or unix://"
            )
        try:
            _ = urlsplit(value).port  # raises on a non-numeric port
        except ValueError:
            raise ValueError(
                f"the {scheme}:// URL does not parse (a non-numeric port?); it is not shown "
                "since it may hold a password"
            ) from None
        return value


def _env_name(loc: tuple[Any, ...]) -> str:
    return "SLEEPTIME_" + str(loc[0]).upper() if loc else "settings"


def default(name: str) -> Any:
    """The default of setting ``name``, for classes that take it as a parameter (so a
    default is written once, here)."""
    return Settings.model_fields[name].default
