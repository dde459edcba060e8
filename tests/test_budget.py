"""Budget forcing (s1) and the mapping of one Budget onto chat APIs."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from sleeptime import Budget, FakeChatModel, Settings, SleepTime
from sleeptime.llm.budget import (
    Completion,
    ThinkMarkers,
    apply_budget,
    call_max_tokens,
    chat_budget,
    force_budget,
    with_budget,
)
from sleeptime.llm.gateway import ModelGateway
from sleeptime.llm.retry import RetryPolicy


class Script:
    """A raw-completion backend that replays (text, tokens, finish) and records prompts."""

    def __init__(self, *outs: tuple[str, int, str]) -> None:
        self.outs = list(outs)
        self.calls: list[tuple[str, int, list[str]]] = []

    def __call__(self, prompt: str, max_tokens: int, stop: list[str]) -> Completion:
        self.calls.append((prompt, max_tokens, stop))
        text, tokens, finish = self.outs.pop(0)
        assert tokens <= max_tokens, "the backend must never exceed the cap it was given"
        return Completion(text, tokens, finish)


def test_thinking_is_cut_at_the_budget_and_the_answer_forced() -> None:
    backend = Script(("a b c d e f g h", 8, "length"), ("42", 1, "stop"))
    out = force_budget(backend, "Q? ", think_tokens=8, extend=3, answer_tokens=5)
    assert (out.think_tokens, out.answer_tokens, out.waits, out.capped) == (8, 1, 0, True)
    assert out.answer == "42" and out.calls == 2
    (p1, cap1, stop1), (p2, cap2, stop2) = backend.calls
    assert p1 == "Q? <think>\n" and cap1 == 8 and stop1 == ["</think>"]
    assert (
        p2 == "Q? <think>\na b c d e f g h\n</think>\n\nFinal answer:" and cap2 == 5 and stop2 == []
    )


def test_early_stop_is_extended_with_wait_up_to_w_times() -> None:
    backend = Script(
        ("first idea.", 3, "stop"),
        (" second idea.", 3, "stop"),
        (" third", 2, "stop"),
        ("7", 1, "stop"),
    )
    out = force_budget(backend, "Q? ", think_tokens=100, extend=2, answer_tokens=4)
    assert out.waits == 2 and out.think_tokens == 8 and not out.capped
    assert out.thinking == "first idea. Wait second idea. Wait third"
    # the remaining budget shrinks with every continuation
    assert [c[1] for c in backend.calls] == [100, 97, 94, 4]
    assert backend.calls[1][0].endswith("first idea. Wait")
    assert backend.calls[-1][0].endswith("third\n</think>\n\nFinal answer:")


def test_extension_stops_at_the_budget_and_zero_budget_answers_at_once() -> None:
    backend = Script(("x", 4, "stop"), ("y", 2, "stop"), ("ans", 1, "stop"))
    out = force_budget(backend, "", think_tokens=6, extend=5, answer_tokens=2)
    assert out.waits == 1 and out.think_tokens == 6 and out.capped
    zero = Script(("now", 1, "stop"))
    z = force_budget(zero, "P", think_tokens=0, extend=3, answer_tokens=2)
    assert z.thinking == "" and z.calls == 1 and z.capped
    assert zero.calls[0][0] == "P<think>\n\n</think>\n\nFinal answer:"
    # s1's own markers; a marker that strips to nothing is never used as a stop string
    s1 = ThinkMarkers(start="<|im_start|>think\n", end="\n<|im_start|>answer\n")
    custom = Script(("r", 1, "stop"), ("a", 1, "stop"))
    force_budget(custom, "", think_tokens=5, markers=s1)
    assert custom.calls[0][2] == ["<|im_start|>answer"]
    assert custom.calls[1][0] == "<|im_start|>think\nr\n<|im_start|>answer\nFinal answer:"
    bare = Script(("r", 1, "stop"), ("a", 1, "stop"))
    force_budget(bare, "", think_tokens=5, markers=ThinkMarkers(end="\n"))
    assert bare.calls[0][2] == []
    with pytest.raises(ValueError):
        force_budget(custom, "", think_tokens=-1)


# -- chat APIs -------------------------------------------------------------------------------


class ReasoningFake(FakeChatModel):
    """Stands in for an OpenAI reasoning model: it takes ``reasoning_effort`` and records
    what each call was given."""

    model_name: str = "o4-mini"
    reasoning_effort: str | None = None
    seen: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append({"effort": self.reasoning_effort, "max_tokens": kwargs.get("max_tokens")})
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_chat_models_get_max_tokens_and_effort() -> None:
    plain = FakeChatModel()
    b = Budget(verbosity=2, think_tokens=4000)
    assert chat_budget(plain, b).max_tokens == b.token_cap  # cannot think apart: cap only
    assert chat_budget(plain, b).reasoning_effort is None and apply_budget(plain, b) is plain

    r = ReasoningFake(seen=[])
    assert chat_budget(r, Budget(think_tokens=500)).reasoning_effort == "low"
    assert chat_budget(r, Budget(think_tokens=4000)).reasoning_effort == "medium"
    assert chat_budget(r, Budget(think_tokens=20000)).reasoning_effort == "high"
    assert call_max_tokens(r, b) == b.token_cap + 4000
    assert call_max_tokens(r, Budget(verbosity=1)) == Budget(verbosity=1).token_cap
    copy = apply_budget(r, b)
    assert isinstance(copy, ReasoningFake) and copy.reasoning_effort == "medium"
    assert r.reasoning_effort is None  # the shared model is never mutated

    gw = ModelGateway(model=r, retry=RetryPolicy())
    assert with_budget(gw, Budget()) is gw
    assert with_budget(gw, b).model is not r


def test_the_query_path_spends_the_budget_on_a_reasoning_model(sqlite_url: str) -> None:
    model = ReasoningFake(seen=[])
    st = SleepTime(model=model, database_url=sqlite_url, settings=Settings(model="fake"))
    st.ingest("a", "d", "Ann has 3 apples. Bob has 4 apples.")
    st.ask("a", "d", "How many apples in all?", budget=Budget(verbosity=0, think_tokens=2000))
    st.ask("a", "d", "How many apples in all?", verbosity=0)
    assert model.seen == [
        {"effort": "medium", "max_tokens": Budget(verbosity=0).token_cap + 2000},
        {"effort": None, "max_tokens": Budget(verbosity=0).token_cap},
    ]
    st.close()


def test_a_thinking_only_budget_keeps_the_default_answer_size(sqlite_url: str) -> None:
    """Budget(think_tokens=...) chooses thinking, not the answer's size: a cold answer
    still gets the full cold verbosity and one from learned notes the configured
    default, as without a budget; a verbosity or cap given with it wins."""
    model = ReasoningFake(seen=[])
    settings = Settings(model="fake", default_verbosity=2, cold_verbosity=4, n_questions=1)
    st = SleepTime(model=model, database_url=sqlite_url, settings=settings)
    st.ingest("a", "d", "Ann has 3 apples. Bob has 4 apples.")
    think = Budget.thinking(think_tokens=2000)
    assert think is not None and not think.sets_size
    st.ask("a", "d", "How many apples in all?", budget=think)  # cold
    st.ask("a", "d", "How many apples in all?", budget=Budget(verbosity=0, think_tokens=2000))
    cold = [seen["max_tokens"] for seen in model.seen]
    st.sleep("a", "d")
    model.seen.clear()
    st.ask("a", "d", "Who has more apples?", budget=think)  # from learned notes
    st.ask("a", "d", "Who has more apples?", budget=Budget.thinking(max_tokens=7, extend=1))
    learned = [seen["max_tokens"] for seen in model.seen]
    st.close()
    assert cold == [Budget(verbosity=4).token_cap + 2000, Budget(verbosity=0).token_cap + 2000]
    assert learned == [Budget(verbosity=2).token_cap + 2000, 7]


def test_thinking_budget_from_cli_and_http_options() -> None:
    assert Budget.thinking(verbosity=3, max_tokens=9) is None  # ask() takes these itself
    b = Budget.thinking(think_tokens=10)
    assert b is not None and b.model_fields_set == {"think_tokens", "extend"}
    b = Budget.thinking(verbosity=0, extend=2)
    assert b is not None and b.verbosity == 0 and b.sets_size


# -- the real local model ------------------------------------------------------------------


@pytest.mark.slow
def test_local_model_caps_thinking_at_the_budget() -> None:
    pytest.importorskip("llama_cpp")
    from sleeptime.llm.local import LocalChatModel, bundled_model_path
    from sleeptime.prompts import query_messages

    model = LocalChatModel(model_path=str(bundled_model_path()), n_ctx=1024)
    messages = query_messages(
        "How much do 3 dozen muffins cost?",
        context="A dozen muffins costs $18.",
        learned=None,
        verbosity=0,
    )
    # SmolLM2 writes ~7 thinking tokens and stops: a budget of 4 cuts it, forcing the answer
    msg = apply_budget(model, Budget(max_tokens=6, think_tokens=4)).invoke(messages, max_tokens=6)
    meta = msg.response_metadata
    assert meta["think_tokens"] == 4 and meta["capped"] and meta["waits"] == 0
    assert msg.usage_metadata is not None
    assert 4 < msg.usage_metadata["output_tokens"] <= 4 + 6
    assert meta["thinking"].strip() and isinstance(msg.content, str)
    # with room to spare it stops early, and "Wait" makes it go on, at most `extend` times
    ext = apply_budget(model, Budget(max_tokens=6, think_tokens=40, extend=2))
    meta = ext.invoke(messages, max_tokens=6).response_metadata
    assert meta["think_tokens"] <= 40 and (meta["waits"] == 2 or meta["capped"])
    assert meta["thinking"].count("Wait") == meta["waits"]
    # no budget: an ordinary chat completion, no thinking
    plain = model.invoke(messages, max_tokens=6)
    assert "thinking" not in plain.response_metadata
