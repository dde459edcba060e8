"""The LangGraph / LangChain building blocks: middleware, node, tool."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import Field

from sleeptime import FakeChatModel, InvalidInput, Settings, SleepTime
from sleeptime.agents import SleepTimeMiddleware, prepared_notes_tool, sleeptime_node

DOC = "Ann has 3 apples. Bob has 4 apples. Carol has 5 pears."


class Recording(FakeChatModel):
    sent: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.sent.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@pytest.fixture
def st(sqlite_url: str) -> Any:
    client = SleepTime(
        model=FakeChatModel(), database_url=sqlite_url, settings=Settings(n_questions=3)
    )
    client.ingest("u1", "doc", DOC)
    client.sleep("u1", "doc")
    yield client
    client.close()


def run(agent: Any, question: str, thread: str = "doc") -> list[BaseMessage]:
    out = agent.invoke(
        {"messages": [{"role": "user", "content": question}]},
        config={"configurable": {"thread_id": thread}},
        context={"user_id": "u1"},
    )
    return list(out["messages"])


def test_middleware_serves_a_prepared_answer_without_the_model(st: SleepTime) -> None:
    question = st.artifacts("u1", "doc").qas[0].question
    plain_model, mw_model = Recording(), Recording()
    plain = create_agent(plain_model, tools=[])
    with_mw = create_agent(mw_model, tools=[], middleware=[SleepTimeMiddleware(st, ingest=False)])
    run(plain, question)
    reply = run(with_mw, question)[-1]
    assert isinstance(reply, AIMessage)
    assert reply.response_metadata["sleeptime"]["source"] == "predicted"
    assert mw_model.sent == [] and len(plain_model.sent) == 1  # fewer test-time tokens: 0
    assert reply.content == st.artifacts("u1", "doc").qas[0].answer
    assert st.ledger("u1", "doc").by_source.get("predicted") == 1


def test_middleware_puts_the_learned_context_in_the_system_prompt(st: SleepTime) -> None:
    model = Recording()
    agent = create_agent(
        model,
        tools=[],
        system_prompt="Be brief.",
        middleware=[SleepTimeMiddleware(st, ingest=False)],
    )
    run(agent, "Who has the most fruit of all?")
    system = str(model.sent[0][0].content)
    assert system.startswith("Be brief.") and "<notes>" in system
    assert str(st.artifacts("u1", "doc").learned) in system


def test_middleware_ingests_the_completed_conversation(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=Settings())
    agent = create_agent(Recording(), tools=[], middleware=[SleepTimeMiddleware(st)])
    run(agent, "I bought 3 pens today.", thread="chat-7")
    ctx = st.context("u1", "chat-7")  # namespace from the runtime context, id from the thread
    assert ctx.version == 1 and ctx.text.startswith("[user] I bought 3 pens today.")
    assert "[assistant]" in ctx.text
    st.close()


def test_a_missing_thread_id_is_a_clear_error(st: SleepTime) -> None:
    agent = create_agent(Recording(), tools=[], middleware=[SleepTimeMiddleware(st)])
    with pytest.raises(InvalidInput, match="no context id"):
        agent.invoke({"messages": [{"role": "user", "content": "hi"}]}, context={"user_id": "u1"})


class Chat(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


def test_node_and_tool_in_a_hand_built_graph(st: SleepTime) -> None:
    qa = st.artifacts("u1", "doc").qas[0]
    g = StateGraph(Chat)
    g.add_node("answer", sleeptime_node(st, verbosity=0))
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    graph = g.compile()
    conf = {"configurable": {"thread_id": "doc", "user_id": "u1"}}
    out = graph.invoke({"messages": [HumanMessage(qa.question)]}, conf)
    assert out["messages"][-1].content == qa.answer
    out = graph.invoke({"messages": [HumanMessage("Who has pears?")]}, conf)
    assert out["messages"][-1].response_metadata["sleeptime"]["source"] == "learned"

    tool = prepared_notes_tool(st, namespace="u1", context_id="doc")
    assert tool.name == "consult_prepared_notes"
    calls = st.ledger("u1", "doc").test.calls
    assert qa.answer in tool.invoke({"question": qa.question})
    notes = tool.invoke({"question": "Who has pears?"})
    assert "<notes>" in notes and str(st.artifacts("u1", "doc").learned) in notes
    assert st.ledger("u1", "doc").test.calls == calls  # the tool never calls a model


def test_middleware_never_writes_the_chat_into_a_document(st: SleepTime) -> None:
    """docs/agents.md shows SleepTimeMiddleware(st, context_id="doc-1") for a document:
    with the default ingest=True the document's text must survive the chat."""
    agent = create_agent(
        Recording(), tools=[], middleware=[SleepTimeMiddleware(st, context_id="doc")]
    )
    for q in ("Who has apples?", "And pears?"):
        run(agent, q)
    ctx = st.context("u1", "doc")
    assert ctx.version == 1 and ctx.text == DOC


def test_a_chat_thread_with_a_fixed_id_is_still_stored(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=Settings())
    agent = create_agent(
        Recording(), tools=[], middleware=[SleepTimeMiddleware(st, context_id="support")]
    )
    run(agent, "I bought 3 pens today.", thread="t-1")
    run(agent, "And 2 pencils.", thread="t-1")  # this graph keeps no history: a new thread
    ctx = st.context("u1", "support")
    assert ctx.version == 2 and ctx.text.startswith("[user] And 2 pencils.")
    st.close()


def test_an_agent_run_without_a_namespace_is_refused(sqlite_url: str) -> None:
    st = SleepTime(model=FakeChatModel(), database_url=sqlite_url, settings=Settings())
    agent = create_agent(Recording(), tools=[], middleware=[SleepTimeMiddleware(st)])
    conf: dict[str, Any] = {"configurable": {"thread_id": "t-1"}}
    with pytest.raises(InvalidInput, match="no namespace for sleeptime"):
        agent.invoke({"messages": [{"role": "user", "content": "hi"}]}, conf)
    assert st.store.context_ids("default") == []
    single = SleepTime(
        model=FakeChatModel(),
        database_url=sqlite_url,
        settings=Settings(agent_namespace="solo"),
    )
    agent = create_agent(Recording(), tools=[], middleware=[SleepTimeMiddleware(single)])
    agent.invoke({"messages": [{"role": "user", "content": "hi"}]}, conf)
    assert single.store.context_ids("solo") == ["t-1"]
    st.close()
    single.close()


def test_answers_of_the_agents_own_model_are_in_the_ledger(st: SleepTime) -> None:
    before = st.ledger("u1", "doc")
    model = Recording()
    agent = create_agent(model, tools=[], middleware=[SleepTimeMiddleware(st, ingest=False)])
    run(agent, "Who has the most fruit of all?")
    after = st.ledger("u1", "doc")
    sent = model.sent[0]
    prompt = sum(len(str(m.content).split()) for m in sent)  # the fake model's own count
    assert after.queries == before.queries + 1
    assert after.by_source.get("learned", 0) == before.by_source.get("learned", 0) + 1
    assert after.test.calls == before.test.calls + 1
    assert after.test.prompt_tokens - before.test.prompt_tokens == prompt
