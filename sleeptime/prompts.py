"""Prompt texts, versioned. Changing a prompt changes ``PROMPT_VERSION`` so stored
artifacts and benchmark runs can say which prompts made them.

Query prompts put the stable part (notes, context) first and the question last, so
servers with prefix caching (vLLM, llama.cpp ``cache_prompt``) and our KV-prefill
artifact can reuse the computation of everything before the question.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

PROMPT_VERSION = "2026-11-24.1"

# -- sleep time ----------------------------------------------------------------------

LEARN_SYSTEM = (
    "You prepare for questions about a context before anyone asks them. Read the "
    "context and write study notes a reader would need later: a two-sentence summary, "
    "then every quantity with its value and unit, then the facts and intermediate "
    "results that follow from them (compute them and show the arithmetic). Be exact "
    "and never invent facts that are not in the context."
)

MERGE_SYSTEM = (
    "You merge several independent sets of study notes about the same context into "
    "one set. Keep every correct quantity and inference once; where the notes "
    "disagree, recheck against the context and keep the correct one."
)

PREDICT_SYSTEM = (
    "You anticipate what users will ask about a context. Write distinct, specific "
    "questions that the context can answer, one per line, numbered 1., 2., 3., ... "
    "Write only the questions."
)

QUERY_SYSTEM = (
    "You answer questions about a context accurately. Use the notes prepared in "
    "advance when they help. End with a line of the form 'The answer is X.'"
)

#: The paper's verbosity levels for non-reasoning models.
VERBOSITY: dict[int, str] = {
    0: "Give only the final answer, as 'The answer is X.' Do not explain.",
    1: "Give one short sentence of reasoning, then 'The answer is X.'",
    2: "Reason briefly in a few short steps, then 'The answer is X.'",
    3: "Reason step by step, showing each calculation, then 'The answer is X.'",
    4: (
        "Reason thoroughly step by step, showing every calculation, check the result "
        "against the context, then 'The answer is X.'"
    ),
}


def learn_messages(context: str) -> list[BaseMessage]:
    return [
        SystemMessage(LEARN_SYSTEM),
        HumanMessage(f"Context:\n{context}\n\nWrite the study notes."),
    ]


def merge_messages(context: str | None, drafts: list[str]) -> list[BaseMessage]:
    """Merge notes; ``context`` is None when it is too long to show beside them."""
    body = "\n\n".join(f"Notes {i + 1}:\n{d}" for i, d in enumerate(drafts))
    head = f"Context:\n{context}\n\n" if context else ""
    return [
        SystemMessage(MERGE_SYSTEM),
        HumanMessage(f"{head}{body}\n\nWrite the merged notes."),
    ]


def predict_messages(context: str | None, learned: str | None, n: int) -> list[BaseMessage]:
    parts = []
    if context:
        parts.append(f"Context:\n{context}")
    if learned:
        parts.append(f"Notes:\n{learned}")
    body = "\n\n".join(parts)
    return [
        SystemMessage(PREDICT_SYSTEM),
        HumanMessage(f"{body}\n\nList {n} questions a user is likely to ask."),
    ]


def repair_questions_message(n: int) -> HumanMessage:
    return HumanMessage(
        f"That was not a list of questions. Write exactly {n} questions, one per line, "
        "each starting with its number and ending with '?'."
    )


def query_prefix(context: str | None, learned: str | None) -> str:
    """The stable part of a query prompt (everything before the question)."""
    parts = []
    if learned:
        parts.append(f"Notes prepared in advance:\n{learned}")
    if context:
        parts.append(f"Context:\n{context}")
    return "\n\n".join(parts)


def query_messages(
    question: str, *, context: str | None, learned: str | None, verbosity: int
) -> list[BaseMessage]:
    prefix = query_prefix(context, learned)
    return [
        SystemMessage(QUERY_SYSTEM),
        HumanMessage(f"{prefix}\n\nQuestion: {question}\n{VERBOSITY[verbosity]}"),
    ]
