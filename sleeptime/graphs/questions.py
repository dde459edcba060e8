"""The steps after c': predict questions (recheck an extended text's old ones), answer
them, and whether a precomputed answer is whole enough to serve."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime

from sleeptime import prompts, quality
from sleeptime.extract import lenient_key
from sleeptime.graphs.state import SleepDeps, SleepState
from sleeptime.llm.parsing import parse_questions
from sleeptime.models import Usage
from sleeptime.store.kinds import Kind

#: Calls (first try plus repairs) spent on predicting questions before giving up.
PREDICT_ATTEMPTS = 3
#: Verbosity used to precompute answers to predicted questions (sleep time is cheap).
ANSWER_VERBOSITY = 3


def predict(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    """Predict questions, as constrained JSON where the model supports it, else as text
    with repair. A model that still yields nothing parseable does not fail the run:
    the learned context is already stored and is worth serving, so the version
    completes with zero predictions and a warning in its manifest."""
    deps = runtime.context
    n = deps.n_questions
    stored = deps.get(state, Kind.QUESTIONS, "0")
    if stored is not None:
        return {
            "questions": stored["questions"],
            "carried": stored.get("carried", []),
            "warnings": stored.get("warnings", []),
        }
    if n == 0:
        return {"questions": []}
    learned = state.get("learned")
    carried: list[dict[str, Any]] = []
    usage = Usage()
    source = state["text"]
    if "base_version" in state:  # incremental: keep what still holds, ask about the new part
        carried, usage = recheck(state, deps)
        n -= len(carried)
        source = state["new_part"]  # questions about what was added; the notes hold the rest
        learned = None
        if n <= 0:
            deps.put(state, Kind.QUESTIONS, "0", {"questions": [], "carried": carried}, usage)
            return {"questions": [], "carried": carried, "usage": usage}
    deps.say(f"predicting {n} questions")
    messages = deps.fitted(lambda c: prompts.predict_messages(c, learned, n), source)
    schema = prompts.questions_schema(n)
    last = ""
    for _attempt in range(PREDICT_ATTEMPTS):
        res = deps.call(state, messages, "predict", json_schema=schema)
        usage = usage + res.usage
        questions = parse_questions(res.text, n)
        if questions:
            stored = deps.put(
                state,
                Kind.QUESTIONS,
                "0",
                {
                    "questions": questions,
                    "carried": carried,
                    "raw": res.text,
                    "provenance": prompts.PROVENANCE,
                },
                usage,
            )
            return {
                "questions": stored["questions"],
                "carried": stored.get("carried", []),
                "usage": usage,
            }
        last = res.text
        messages = [*messages, AIMessage(res.text), prompts.repair_questions_message(n)]
    warning = (
        f"no predicted questions: {deps.gateway.name} produced no parseable question list "
        f"in {PREDICT_ATTEMPTS} attempts (last output began {last[:80]!r}); the learned "
        "context is served"
    )
    deps.say(warning)
    stored = deps.put(
        state,
        Kind.QUESTIONS,
        "0",
        {"questions": [], "carried": carried, "raw": last, "warnings": [warning]},
        usage,
    )
    return {
        "questions": [],
        "carried": stored.get("carried", []),
        "usage": usage,
        "warnings": stored.get("warnings", [warning]),
    }


def recheck(state: SleepState, deps: SleepDeps) -> tuple[list[dict[str, Any]], Usage]:
    """The earlier version's whole answers that the added text does not make
    outdated (one call). When the reply cannot be read, none is kept: a recomputed
    answer costs tokens, a stale one served at zero tokens costs trust."""
    base = deps.store.load_artifacts(state["namespace"], state["context_id"], state["base_version"])
    old = [qa for qa in base.qas if qa.servable]
    if not old:
        return [], Usage()
    deps.say(f"rechecking {len(old)} prepared answers against the new text")
    messages = prompts.recheck_messages(state["new_part"], [(qa.question, qa.answer) for qa in old])
    res = deps.call(state, messages, "recheck", json_schema=prompts.RECHECK_SCHEMA)
    outdated = parse_outdated(res.text)
    if outdated is None:
        return [], res.usage
    kept = [
        {**qa.model_dump(), "carried_from": state["base_version"]}
        for i, qa in enumerate(old)
        if i + 1 not in outdated
    ]
    return kept, res.usage


def parse_outdated(text: str) -> set[int] | None:
    """The 1-based numbers in ``{"outdated": [...]}``; None when unreadable."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    items = data.get("outdated") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, int) for i in items):
        return None
    return set(items)


def answer(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    """Precompute an answer per predicted question. Only a whole answer (finished
    within the cap, with a final-answer line) is stored as servable at zero tokens; a
    cut-off or empty one is kept for the record, marked with why it is not served."""
    deps = runtime.context
    questions = state.get("questions", [])
    learned = state.get("learned")
    qas: list[dict[str, Any]] = []
    usage = Usage()
    carried = state.get("carried", [])
    for i, qa in enumerate(carried):  # still-valid answers of the version this extends
        qas.append(_qa(deps.put(state, Kind.QA, str(i), qa, Usage())))
    # incremental: the revised notes already hold the old text; read only the new part
    source = state.get("new_part", state["text"])
    for j, question in enumerate(questions):
        i = len(carried) + j
        stored = deps.get(state, Kind.QA, str(i))
        if stored is not None:
            qas.append(_qa(stored))
            continue
        deps.say(f"answering predicted question {j + 1}/{len(questions)}")
        messages = deps.fitted(
            lambda c, q=question: prompts.query_messages(  # type: ignore[misc]
                q, context=c, learned=learned, verbosity=ANSWER_VERBOSITY
            ),
            source,
        )
        qa, used = _answer_one(state, deps, messages, question, i)
        usage = usage + used
        stored = deps.put(state, Kind.QA, str(i), qa, used)
        qas.append(_qa(stored))
    return {"qas": qas, "usage": usage}


def _answer_one(
    state: SleepState, deps: SleepDeps, messages: list[BaseMessage], question: str, i: int
) -> tuple[dict[str, Any], Usage]:
    """One predicted question's precomputed answer. With ``answer_samples`` N > 1, N
    samples at the sleep temperature vote: their final answers are read with the same
    extraction the benchmark scores with, the most common one is kept (the first sample
    that gave it), with its agreement (the share of samples that gave it). Only a whole
    answer with agreement at or above ``min_agreement`` is servable at zero tokens."""
    n = deps.answer_samples
    temperature = deps.settings.sleep_temperature if n > 1 else None
    samples: list[tuple[str, str | None, str | None]] = []  # (text, vote key, reason)
    usage = Usage()
    for _ in range(n):
        res = deps.call(state, messages, "answer", temperature=temperature)
        usage = usage + res.usage
        text = res.text.strip()
        over = res.usage.completion_tokens > 2 * deps.settings.sleep_max_tokens
        reason = unservable_reason(text, res.hit_cap, over_budget=over)
        samples.append((text, lenient_key(text) if reason is None else None, reason))
    whole = [s for s in samples if s[2] is None]
    agreement: float | None = None
    if n > 1 and whole:
        votes = Counter(key for _, key, _ in whole)
        best, count = votes.most_common(1)[0]
        text, _, reason = next(s for s in whole if s[1] == best)
        agreement = round(count / n, 4)
        if agreement < deps.settings.min_agreement:
            reason = f"low agreement ({count} of {n} samples)"
    else:
        text, _, reason = whole[0] if whole else samples[0]
    if reason in ("repetition (a loop)", "far longer than its budget"):
        deps.warn(f"answer {i + 1}: {reason}; not served")
    qa = {
        "question": question,
        "answer": text,
        "servable": reason is None,
        "reason": reason,
        "provenance": prompts.PROVENANCE,
    }
    if agreement is not None:
        qa["agreement"] = agreement
    return qa, usage


def _qa(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": payload["question"],
        "answer": payload["answer"],
        "servable": payload.get("servable", True),
        "reason": payload.get("reason"),
        "agreement": payload.get("agreement"),
    }


_FINAL = re.compile(r"answer is\s*[:\-]?\s*\S|####\s*\S|\\boxed\{[^}]+\}", re.IGNORECASE)


def unservable_reason(text: str, hit_cap: bool, *, over_budget: bool = False) -> str | None:
    """Why a precomputed answer must not be served at zero tokens, or None. A provider
    that ignores the cap can stop "normally" after thousands of tokens: an answer far
    over its budget, or looping, is never served whatever its finish reason."""
    if not text:
        return "empty answer"
    if quality.is_loop(text):
        return "repetition (a loop)"
    if over_budget:
        return "far longer than its budget"
    if hit_cap:
        return "hit its token cap (may be cut off)"
    if not _FINAL.search(text):
        return "no final answer line"
    return None
