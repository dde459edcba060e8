"""``sleeptime bench prefill``: time-to-answer with and without the KV-prefill artifact.

On the bundled SmolLM2-135M (llama.cpp, CPU) it builds a query prompt exactly as the
query path does (system prompt + notes + a >= 1,000-token context, question last),
saves the KV state of its stable prefix the way the sleep-time ``prefill`` step does,
then alternates cold answers (empty KV cache: the whole prompt is evaluated) and warm
answers (the saved state is loaded from disk, only the question is evaluated). Every
answer is exactly ``answer_tokens`` greedy tokens (EOS suppressed), so the two paths do
the same decoding work and must produce identical text. Prints one JSON object.

    python -m sleeptime.bench.prefill --runs 5
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from rich.console import Console
from rich.progress import Progress

from sleeptime import prompts
from sleeptime.llm import llama_internals as lli
from sleeptime.llm.kv import KVStore, prefill_query_prefix
from sleeptime.llm.local import LocalChatModel, bundled_model_path
from sleeptime.llm.tokens import tokens_hash
from sleeptime.store.sql import SQLStore

QUESTION = "How much does the library pay for the whole order, including delivery?"
NAMESPACE = "bench"

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ITEMS = ("muffins", "cookies", "carrot cakes", "scones", "bagels", "croissants")


def build_context(model: LocalChatModel, min_tokens: int) -> str:
    """The bundled sample context, followed by a deterministic order log until the
    text has at least ``min_tokens`` tokens."""
    base = resources.files("sleeptime").joinpath("data/sample_context.txt").read_text("utf-8")
    lines = [base.strip(), "", "Order log for the past weeks:"]
    i = 0
    while model.get_num_tokens("\n".join(lines)) < min_tokens:
        day, item = _DAYS[i % 7], _ITEMS[i % len(_ITEMS)]
        qty, price = 3 + (7 * i) % 11, 9 + (5 * i) % 17
        lines.append(
            f"- Week {i // 7 + 1}, {day}: {qty} dozen {item} at ${price} a dozen for customer "
            f"#{1000 + 37 * i % 900}, delivered by van {1 + i % 3}."
        )
        i += 1
    return "\n".join(lines) + "\n"


def rss_mib() -> dict[str, float]:
    """Current and peak resident memory of this process."""
    current = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"rss_mib": round(current, 1), "peak_rss_mib": round(peak, 1)}


def _clear(model: LocalChatModel) -> None:
    """Empty the llama.cpp KV cache so nothing is reused from the previous run."""
    llama, lock = model.llama()
    with lock:
        lli.clear_cache(llama)


LEARNED = (
    "The library's order: 12 dozen muffins, 8 dozen cookies, 6 carrot cakes; 15% "
    "non-profit discount on the goods; delivery $25, not discounted."
)
#: llama.cpp's own timers of one answer: (prompt eval ms, prompt tokens, decode ms,
#: decoded tokens).
Perf = tuple[float, int, float, int]


def _builder(layout: str, context: str, learned: str) -> Callable[[str], list[BaseMessage]]:
    """The query prompt of a question, in the layout measured."""
    if layout == "query":  # what the query path sends

        def build(q: str) -> list[BaseMessage]:
            return prompts.query_messages(q, context=context, learned=learned, verbosity=0)

    elif layout == "instruction-first":  # a possible layout: only the question is new

        def build(q: str) -> list[BaseMessage]:
            body = prompts.query_prefix(context, learned)
            return [
                SystemMessage(prompts.QUERY_SYSTEM),
                HumanMessage(f"{body}\n\n{prompts.VERBOSITY[0]}\nQuestion: {q}"),
            ]

    else:
        raise typer.BadParameter(f"layout must be 'query' or 'instruction-first', not {layout!r}")
    return build


def _restore_ms(
    model: LocalChatModel, kv: KVStore, blob: Any, tokens: list[int], runs: int
) -> list[float]:
    """Restore alone, ``runs`` times: read + verify the file, load it into llama.cpp."""
    llama, lock = model.llama()
    restore_ms = []
    for _ in range(runs):
        _clear(model)
        t = time.perf_counter()
        data = kv.load(blob, tokens)
        assert data is not None
        with lock:
            ok = lli.set_seq_state(llama, data, tokens[: blob.n_tokens])
        restore_ms.append((time.perf_counter() - t) * 1000)
        assert ok, "llama.cpp rejected the saved state"
    return restore_ms


@dataclass
class _Answers:
    """Cold and warm answers: seconds, texts, llama.cpp's timers, tokens."""

    cold_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    cold_text: list[str] = field(default_factory=list)
    warm_text: list[str] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)
    cold_perf: list[Perf] = field(default_factory=list)
    warm_perf: list[Perf] = field(default_factory=list)
    out_tokens: list[int] = field(default_factory=list)


def _answers(
    model: LocalChatModel,
    kv: KVStore,
    messages: list[BaseMessage],
    *,
    runs: int,
    answer_tokens: int,
    progress: bool,
) -> _Answers:
    """``runs`` cold and ``runs`` warm answers, alternating so machine noise hits both
    alike."""
    llama, _lock = model.llama()
    got = _Answers()
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("cold and warm answers", total=2 * runs)
        for _ in range(runs):
            for is_warm in (False, True):
                _clear(model)
                model.attach_kv(kv if is_warm else None)
                lli.perf_reset(llama)
                t = time.perf_counter()
                msg = model.invoke(
                    messages, max_tokens=answer_tokens, ignore_eos=True, namespace=NAMESPACE
                )
                elapsed = time.perf_counter() - t
                (got.warm_perf if is_warm else got.cold_perf).append(lli.perf(llama))
                (got.warm_s if is_warm else got.cold_s).append(elapsed)
                (got.warm_text if is_warm else got.cold_text).append(str(msg.content))
                if is_warm:
                    got.restored.append(int(msg.response_metadata.get("kv_restored_tokens", 0)))
                usage = msg.usage_metadata
                got.out_tokens.append(int(usage["output_tokens"]) if usage else 0)
                bar.advance(task)
    model.attach_kv(None)
    return got


def _med(rows: list[Perf], i: int) -> float:
    return round(statistics.median(r[i] for r in rows), 1)


def _timings(got: _Answers, restore_ms: list[float]) -> dict[str, Any]:
    """The result's timing fields."""
    cold, warm = statistics.median(got.cold_s), statistics.median(got.warm_s)
    return {
        "cold_s_median": round(cold, 4),
        "warm_s_median": round(warm, 4),
        "speedup": round(cold / warm, 2),
        "cold_s": [round(x, 4) for x in got.cold_s],
        "warm_s": [round(x, 4) for x in got.warm_s],
        "warm_restored_tokens": sorted(set(got.restored)),
        "restore_ms_median": round(statistics.median(restore_ms), 2),
        "cold_prompt_eval": {"tokens": _med(got.cold_perf, 1), "ms_median": _med(got.cold_perf, 0)},
        "warm_prompt_eval": {"tokens": _med(got.warm_perf, 1), "ms_median": _med(got.warm_perf, 0)},
        "decode": {
            "tokens": _med(got.cold_perf, 3),
            "cold_ms_median": _med(got.cold_perf, 2),
            "warm_ms_median": _med(got.warm_perf, 2),
        },
    }


def run(
    *,
    runs: int = 5,
    context_tokens: int = 1200,
    answer_tokens: int = 16,
    n_ctx: int = 4096,
    threads: int | None = None,
    workdir: Path | None = None,
    progress: bool = True,
    layout: str = "query",
) -> dict[str, Any]:
    if runs < 1 or context_tokens < 1 or answer_tokens < 1:
        raise typer.BadParameter("runs, context-tokens and answer-tokens must be >= 1")
    tmp = Path(tempfile.mkdtemp(prefix="sleeptime-bench-prefill-")) if workdir is None else workdir
    tmp.mkdir(parents=True, exist_ok=True)
    store = SQLStore(f"sqlite:///{tmp / 'bench.db'}")
    kv = KVStore(store, tmp / "kv", 1 << 30)
    try:
        t0 = time.perf_counter()
        model = LocalChatModel(model_path=str(bundled_model_path()), n_ctx=n_ctx, n_threads=threads)
        model.llama()
        load_s = time.perf_counter() - t0
        context = build_context(model, context_tokens)
        build = _builder(layout, context, LEARNED)
        messages = build(QUESTION)
        parts = model.format_prompt(messages)
        assert parts is not None, "the bundled model has a chat template"

        _clear(model)
        model.attach_kv(None)
        pre = prefill_query_prefix(
            model, kv, namespace=NAMESPACE, context=context, learned=LEARNED, build=build
        )
        if pre is None or pre.blob is None:
            raise RuntimeError("prefill produced no blob")
        blob = pre.blob
        # the saved prefix must be a true token prefix of the real query prompt
        if tokens_hash(parts.tokens[: blob.n_tokens]) != blob.prefix_hash:
            raise RuntimeError("the saved prefix is not a token prefix of the query prompt")
        restore_ms = _restore_ms(model, kv, blob, parts.tokens, runs)
        got = _answers(
            model, kv, messages, runs=runs, answer_tokens=answer_tokens, progress=progress
        )
        return {
            "benchmark": "prefill",
            "model": model.display_name,
            "llama_cpp_python": lli.binding_version(),
            "threads": model.threads,
            "n_ctx": n_ctx,
            "runs": runs,
            "layout": layout,
            "context_tokens": model.get_num_tokens(context),
            "prompt_tokens": len(parts.tokens),
            "prefix_tokens": blob.n_tokens,
            "question_tokens": len(parts.tokens) - blob.n_tokens,
            "answer_tokens": answer_tokens,
            "answer_tokens_generated": sorted(set(got.out_tokens)),
            **_timings(got, restore_ms),
            "prefill_s": round(pre.seconds, 3),
            "blob_bytes": blob.size_bytes,
            "blob_mib": round(blob.size_bytes / 2**20, 2),
            "model_load_s": round(load_s, 3),
            **rss_mib(),
            "identical_answers": len(set(got.cold_text + got.warm_text)) == 1,
            "answer": got.cold_text[0],
            "note": "SmolLM2-135M cannot reason; the answer text only has to match.",
        }
    finally:
        store.dispose()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def prefill(
    runs: Annotated[int, typer.Option(help="cold and warm answers each (median reported)")] = 5,
    context_tokens: Annotated[int, typer.Option(help="minimum context length in tokens")] = 1200,
    answer_tokens: Annotated[int, typer.Option(help="tokens per answer (EOS suppressed)")] = 16,
    n_ctx: Annotated[int, typer.Option(help="llama.cpp context window")] = 4096,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    layout: Annotated[
        str,
        typer.Option(
            help="'query': the prompt the query path sends (verbosity instruction after the "
            "question); 'instruction-first': a possible layout where only the question follows "
            "the saved prefix"
        ),
    ] = "query",
) -> None:
    """Cold vs warm (KV-prefill artifact) time-to-answer on the bundled local model."""
    result = run(
        runs=runs,
        context_tokens=context_tokens,
        answer_tokens=answer_tokens,
        n_ctx=n_ctx,
        threads=threads,
        progress=not quiet and sys.stderr.isatty(),
        layout=layout,
    )
    print(json.dumps(result, indent=2))
    if not result["identical_answers"]:
        Console(stderr=True).print("[red]warm and cold answers differ[/red]")
        raise typer.Exit(1)


def main() -> None:
    typer.run(prefill)


if __name__ == "__main__":
    main()
