"""The steps that learn c': index the text's passages, plan, rethink k times (notes, or
the paper's rethink loop), revise an extended text's notes, merge."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Send

from sleeptime import prompts
from sleeptime.chunking import split_text
from sleeptime.errors import ModelOutputError
from sleeptime.graphs.state import DegenerateOutput, SleepDeps, SleepState, version_kwargs
from sleeptime.llm.kv import prefill_missing
from sleeptime.models import PassageIndex, Usage
from sleeptime.paper import EMPTY_MEMORY, rethink_key, rethink_loop
from sleeptime.passages import TYPICAL_QUESTION, split_passages
from sleeptime.store.kinds import Kind


def index(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    """Measure the version with the answering model's counter (the raw text, and the
    prompt a cold answer would send: counted once here, never per ask) and, when the
    text is over the passage threshold, split it into passages and index them in the
    store's full-text engine. No model call; idempotent like every step."""
    deps = runtime.context
    if deps.get(state, Kind.INDEX, "0") is not None:
        return {}
    gateway, settings, text = deps.query_gateway, deps.settings, state["text"]
    text_tokens = gateway.count_tokens(text)
    cold = prompts.query_messages(
        TYPICAL_QUESTION, context=text, learned=None, verbosity=settings.cold_verbosity
    )
    ids: tuple[int, int] | None = None
    spans = []
    if text_tokens > settings.passage_threshold_tokens:
        deps.say(f"indexing passages ({text_tokens:,} tokens)")
        spans = split_passages(text, settings.passage_tokens, gateway.count_tokens)
        vectors = None
        if deps.embeddings is not None and spans:
            vectors = deps.embeddings.embed_documents([text[s.start : s.end] for s in spans])
        ids = deps.store.passages.put(
            **version_kwargs(state), text=text, spans=spans, vectors=vectors
        )
    made = PassageIndex(
        passages=len(spans),
        ids=ids,
        text_tokens=text_tokens,
        cold_prompt_tokens=gateway.prompt_tokens(cold),
    )
    deps.put(state, Kind.INDEX, "0", made.model_dump(mode="json"), Usage())
    return {}


def plan(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    deps = runtime.context
    manifest = deps.get(state, Kind.MANIFEST, "0")
    if manifest is not None:
        arts = deps.store.load_artifacts(state["namespace"], state["context_id"], state["version"])
        try:
            rebuild = prefill_missing(
                deps.store, deps.query_gateway, deps.settings, **version_kwargs(state)
            )
        except Exception:  # an optimisation: never fail a finished version for it
            rebuild = False
        return {
            "skipped": True,
            "rebuild_kv": rebuild,
            "learned": arts.learned,
            "qas": [qa.model_dump() for qa in arts.qas],
            "warnings": manifest.get("warnings", []),
        }
    learned = deps.get(state, Kind.LEARNED, "0")
    return {
        "skipped": False,
        "learned": learned["text"] if learned else None,
        **extends(state, deps),
    }


def extends(state: SleepState, deps: SleepDeps) -> dict[str, Any]:
    """When this version's text extends the text of the newest finished earlier
    version (a conversation or log that grew), the run is incremental: the earlier
    notes are revised with the added text, not rebuilt from the whole text."""
    ns, cid, version = state["namespace"], state["context_id"], state["version"]
    base = deps.store.latest_complete_version(ns, cid, version)
    if base is None:
        return {}
    old = deps.store.get_context(ns, cid, base)
    if old is None or not state["text"].startswith(old.text) or len(old.text) == 0:
        return {}
    if deps.store.get_artifact(ns, cid, base, Kind.LEARNED, "0") is None:
        return {}
    return {"base_version": base, "new_part": state["text"][len(old.text) :]}


def route_plan(state: SleepState, runtime: Runtime[SleepDeps]) -> Any:
    if state.get("skipped"):
        return "prefill" if state.get("rebuild_kv") else END
    if state.get("learned"):
        return "predict"
    if "base_version" in state:
        return "revise"
    base = {k: state[k] for k in ("namespace", "context_id", "version", "text")}
    return [Send("rethink", {**base, "rethink": i}) for i in range(runtime.context.k)]


def rethink(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    deps = runtime.context
    i = state["rethink"]
    if deps.strategy == "rethink_tools":
        return rethink_tools(state, deps, i)
    draft = deps.get(state, Kind.DRAFT, str(i))
    if draft is not None:
        return {"drafts": [draft["text"]]}
    deps.say(f"learning the context (rethink {i + 1}/{deps.k})")
    temperature = deps.settings.sleep_temperature if deps.k > 1 else None
    messages = prompts.learn_messages(state["text"])
    if deps.gateway.fits(messages, deps.settings.sleep_max_tokens):
        text, usage = deps.nonempty(state, messages, "learn", temperature=temperature)
    else:
        text, usage = learn_long(state, deps, temperature)
    if deps.k > 1:
        deps.put(state, Kind.DRAFT, str(i), {"text": text}, usage)
    return {"drafts": [text], "usage": usage}


def rethink_tools(state: SleepState, deps: SleepDeps, i: int) -> dict[str, Any]:
    """The paper's sleep step: a loop of whole-block rewrites by memory-editing tool
    calls (or the text protocol), every call through the gateway and in the ledger. The
    block is stored as a draft with the loop's record (stop, calls, rewrites), always,
    so a run resumes per loop and the benchmark reads each block."""
    draft = deps.get(state, Kind.DRAFT, rethink_key(i))
    if draft is not None:
        return {"drafts": [draft["text"]]}
    opts = deps.rethink
    deps.say(f"rethinking the context (loop {i + 1}/{deps.k})")
    temperature = opts.temperature
    if temperature is None and deps.k > 1:
        temperature = deps.settings.sleep_temperature
    res = rethink_loop(
        deps.gateway,
        opts.prompts,
        state["text"],
        temperature=temperature,
        token_budget=opts.token_budget,
        max_rounds=opts.max_rounds,
        limit_chars=opts.memory_chars,
        mode=opts.mode,
        aime=opts.aime,
        task=opts.task,
        recorder=deps.store.recorder(**version_kwargs(state), model=deps.gateway.name),
        step=f"rethink-{i}",
        namespace=state["namespace"],
    )
    record = res.to_json()
    text = record.pop("memory")
    if res.stop == "rounds":
        deps.warn(f"rethink-{i}: stopped after {opts.max_rounds} rounds")
    stored = deps.put(
        state, Kind.DRAFT, rethink_key(i), {"text": text, "rethink": record}, res.usage
    )
    return {"drafts": [stored["text"]], "usage": res.usage}


def learn_long(state: SleepState, deps: SleepDeps, temperature: float | None) -> tuple[str, Usage]:
    """Map-reduce for a context longer than the window: notes per chunk, then merge
    the notes in groups that fit until one set remains."""
    gateway, cap = deps.gateway, deps.settings.sleep_max_tokens
    window = gateway.context_window or 0
    room = window - cap - gateway.prompt_tokens(prompts.learn_messages("")) - 16
    if room < 64:
        raise ModelOutputError(
            f"the window of {gateway.name} ({window} tokens) leaves no room to read the "
            f"context with sleep_max_tokens={cap}"
        )
    chunks = split_text(state["text"], room, gateway.count_tokens)
    usage = Usage()
    notes: list[str] = []
    for j, chunk in enumerate(chunks):
        deps.say(f"learning part {j + 1}/{len(chunks)} of a long context")
        text, used = deps.nonempty(
            state, prompts.learn_messages(chunk), "learn_chunk", temperature=temperature
        )
        notes.append(text)
        usage = usage + used
    while len(notes) > 1:
        groups: list[list[str]] = [[]]
        for note in notes:
            trial = [*groups[-1], note]
            if groups[-1] and not gateway.fits(prompts.merge_messages(None, trial), cap):
                groups.append([note])
            else:
                groups[-1] = trial
        if len(groups) == len(notes):  # no two notes fit together: keep them all
            break
        merged: list[str] = []
        for j, group in enumerate(groups):
            if len(group) == 1:
                merged.append(group[0])
                continue
            deps.say(f"merging notes {j + 1}/{len(groups)}")
            text, used = deps.nonempty(state, prompts.merge_messages(None, group), "merge_chunks")
            merged.append(text)
            usage = usage + used
        notes = merged
    return "\n\n".join(notes), usage


def revise(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    """Incremental learning (the paper's rethink on a grown context): the earlier
    version's notes plus the added text in, revised notes out."""
    deps = runtime.context
    base = state["base_version"]
    old = deps.store.get_artifact(state["namespace"], state["context_id"], base, Kind.LEARNED, "0")
    assert old is not None  # checked by extends()
    deps.say(f"revising the notes of v{base} with {len(state['new_part']):,} new characters")
    payload: dict[str, Any] = {"k": 1, "revised_from": base, "provenance": prompts.PROVENANCE}
    try:
        # a loop is not cut here: a partial revision could drop facts the old notes hold
        learned, usage = deps.nonempty(
            state,
            prompts.revise_messages(old["text"], state["new_part"]),
            "revise",
            keep_before_loop=False,
        )
    except DegenerateOutput as exc:
        # the good notes of the earlier version stay in use, never a loop in their place
        usage = Usage()  # the rejected calls are in the ledger
        learned = old["text"]
        payload["degraded"] = exc.cause
        deps.warn(f"revise: {exc.cause} output rejected; kept the notes of v{base}")
    payload["text"] = learned
    if deps.warnings:
        payload["warnings"] = list(deps.warnings)
    stored = deps.put(state, Kind.LEARNED, "0", payload, usage)
    return {"learned": stored["text"], "usage": usage}


def merge(state: SleepState, runtime: Runtime[SleepDeps]) -> dict[str, Any]:
    deps = runtime.context
    if deps.strategy == "rethink_tools":
        return merge_blocks(state, deps)
    drafts = state.get("drafts", [])
    usage = Usage()
    if len(drafts) == 1:
        learned = drafts[0]
    else:
        deps.say(f"merging {len(drafts)} rethinks")
        learned, usage = deps.nonempty(
            state, deps.fitted(lambda c: prompts.merge_messages(c, drafts), state["text"]), "merge"
        )
    payload: dict[str, Any] = {"text": learned, "k": deps.k, "provenance": prompts.PROVENANCE}
    if deps.warnings:
        payload["warnings"] = list(deps.warnings)
    stored = deps.put(state, Kind.LEARNED, "0", payload, usage)
    return {"learned": stored["text"], "usage": usage}


def merge_blocks(state: SleepState, deps: SleepDeps) -> dict[str, Any]:
    """c' of the ``rethink_tools`` strategy: the k blocks (in loop order, from the
    store) merged by one call, or kept apart (``merge=False``: c' is the first non-empty
    block); when every loop wrote nothing, the notes strategy's learn call
    (``fallback``) or the empty block."""
    opts = deps.rethink
    blocks = []
    for i in range(deps.k):
        draft = deps.get(state, Kind.DRAFT, rethink_key(i))
        blocks.append(draft["text"] if draft else "")
    usage = Usage()
    payload: dict[str, Any] = {
        "k": deps.k,
        "strategy": "rethink_tools",
        "provenance": prompts.PROVENANCE,
    }
    if not any(b.strip() for b in blocks):
        if opts.fallback:
            deps.warn("rethink: the loops wrote nothing; learned c' with one notes call")
            learned, usage = deps.nonempty(state, prompts.learn_messages(state["text"]), "learn")
        else:
            deps.warn("rethink: the loops wrote nothing; c' is the empty block")
            learned = EMPTY_MEMORY
    elif deps.k == 1 or not opts.merge:
        learned = next(b for b in blocks if b.strip())
        payload["merged"] = False
    else:
        deps.say(f"merging {deps.k} memory blocks")
        shown = [b if b.strip() else EMPTY_MEMORY for b in blocks]
        learned, usage = deps.nonempty(
            state, deps.fitted(lambda c: prompts.merge_messages(c, shown), state["text"]), "merge"
        )
    payload["text"] = learned
    if deps.warnings:
        payload["warnings"] = list(deps.warnings)
    stored = deps.put(state, Kind.LEARNED, "0", payload, usage)
    return {"learned": stored["text"], "usage": usage}
