"""A deterministic scripted chat model, for tests and overhead benchmarks.

It does not understand anything. With ``responses`` it replays a script; without,
it answers our own prompt types with fixed rules (notes = the context's sentences
that carry numbers; questions = templated from them; answers = "The answer is N"
with N the last number of the prompt). Usage is reported in whitespace tokens.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _tokens(text: str) -> int:
    return len(text.split())


class FakeChatModel(BaseChatModel):
    """Deterministic stand-in for a chat model (documented as such; never for accuracy)."""

    responses: list[str] | None = None
    errors: list[BaseException] = Field(default_factory=list)
    #: Raised by a streamed reply after its first piece (a connection lost midway).
    stream_error: BaseException | None = None
    latency_s: float = 0.0
    display_name: str = "fake"
    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    #: With ``json_schema=`` a rule-based question list is returned as JSON.
    supports_json_schema: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "sleeptime-fake"

    @property
    def calls(self) -> int:
        return self._calls

    def get_num_tokens(self, text: str) -> int:
        return _tokens(text)

    def _next_scripted(self) -> tuple[BaseException | None, str | None]:
        with self._lock:
            self._calls += 1
            if self.errors:
                return self.errors.pop(0), None
            if self.responses is not None:
                if not self.responses:
                    raise RuntimeError("FakeChatModel script exhausted")
                return None, self.responses.pop(0)
        return None, None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        error, text = self._next_scripted()
        if error is not None:
            raise error
        if self.latency_s:
            time.sleep(self.latency_s)
        if text is None:
            text = self._rule_based(messages, structured="json_schema" in kwargs)
        cap = kwargs.get("max_tokens")
        finish = "stop"
        if isinstance(cap, int) and _tokens(text) > cap:
            text = " ".join(text.split()[:cap])
            finish = "length"
        prompt = sum(_tokens(str(m.content)) for m in messages)
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt,
                "output_tokens": _tokens(text),
                "total_tokens": prompt + _tokens(text),
            },
            response_metadata={"finish_reason": finish},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """The same reply as :meth:`_generate`, a word at a time; usage on the last piece."""
        msg = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        words = str(msg.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word if i == 0 else f" {word}",
                    usage_metadata=msg.usage_metadata if last else None,  # type: ignore[attr-defined]
                    response_metadata=msg.response_metadata if last else {},
                )
            )
            if i == 0 and self.stream_error is not None:
                error, self.stream_error = self.stream_error, None
                raise error

    def _rule_based(self, messages: Sequence[BaseMessage], structured: bool = False) -> str:
        last = str(messages[-1].content)
        context = _section(last, "context")
        if "Write the study notes" in last or "Write the merged notes" in last:
            facts = [s for s in _sentences(context) if _NUMBER.search(s)]
            return (
                "Summary: "
                + " ".join(_sentences(context)[:1])
                + "\nQuantities:\n"
                + "\n".join(f"- {s}" for s in facts)
            )
        if "Write the revised notes" in last:
            facts = [s for s in _sentences(context) if _NUMBER.search(s)]
            return _section(last, "notes") + "".join(f"\n- {s}" for s in facts)
        if "Which prepared answers are outdated" in last:
            return json.dumps({"outdated": []})
        m = re.search(r"List (\d+) questions", last)
        if m:
            n = int(m.group(1))
            questions = list(_questions(context, n))
            if structured:
                return json.dumps({"questions": questions})
            return "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
        if "Answer yes or no" in last:
            return "no"
        numbers = _NUMBER.findall(last)
        value = numbers[-1].replace(",", "") if numbers else "unknown"
        return f"The answer is {value}."


def _section(text: str, tag: str) -> str:
    """The text fenced in ``<tag>`` (the whole prompt when there is none)."""
    m = re.search(rf"<{tag}[^>]*>\n(.*?)\n</{tag}>", text, re.DOTALL)
    return m.group(1).strip() if m else text


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _questions(context: str, n: int) -> Iterator[str]:
    produced = 0
    for sentence in _sentences(context):
        words = re.findall(r"[A-Za-z]+", sentence)
        if not words:
            continue
        yield f"What does the context say about {' '.join(words[:4]).lower()}?"
        produced += 1
        if produced >= n:
            return
