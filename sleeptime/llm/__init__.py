"""Model layer: spec resolution, the local and fake models, retries and accounting."""

from sleeptime.llm.fake import FakeChatModel
from sleeptime.llm.gateway import CallResult, ModelGateway, model_name
from sleeptime.llm.resolve import ModelSpec, resolve_model
from sleeptime.llm.retry import RetryPolicy, is_transient

__all__ = [
    "CallResult",
    "FakeChatModel",
    "ModelGateway",
    "ModelSpec",
    "RetryPolicy",
    "is_transient",
    "model_name",
    "resolve_model",
]
