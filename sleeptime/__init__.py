"""sleeptime: sleep-time compute for LLM agents.

Think about a context before the user asks, so questions are answered faster,
cheaper and better when they come (Lin et al. 2025, arXiv 2504.13171).
"""

from sleeptime.api import SleepTime
from sleeptime.compaction import Compaction
from sleeptime.errors import (
    ContextNotFound,
    ContextTooLong,
    InvalidInput,
    InvalidSettings,
    JobNotFound,
    ModelCallError,
    ModelOutputError,
    ModelUnavailable,
    QueueUnavailable,
    QuotaExceeded,
    RateLimited,
    SleepTimeError,
    StoreUnavailable,
    UnknownModel,
)
from sleeptime.llm import FakeChatModel, RetryPolicy, resolve_model
from sleeptime.models import (
    Answer,
    Artifacts,
    Budget,
    ContextVersion,
    DeleteCounts,
    Ledger,
    Notes,
    PassageIndex,
    PassageRef,
    PredictedQA,
    SleepReport,
    SleepStep,
    Usage,
)
from sleeptime.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Artifacts",
    "Budget",
    "Compaction",
    "ContextNotFound",
    "ContextTooLong",
    "ContextVersion",
    "DeleteCounts",
    "FakeChatModel",
    "InvalidInput",
    "InvalidSettings",
    "JobNotFound",
    "Ledger",
    "ModelCallError",
    "ModelOutputError",
    "ModelUnavailable",
    "Notes",
    "PassageIndex",
    "PassageRef",
    "PredictedQA",
    "QueueUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "Settings",
    "SleepReport",
    "SleepStep",
    "SleepTime",
    "SleepTimeError",
    "StoreUnavailable",
    "UnknownModel",
    "Usage",
    "__version__",
    "resolve_model",
]
