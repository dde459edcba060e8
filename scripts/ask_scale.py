"""Does ask's latency depend on how many contexts the store holds?

    python scripts/ask_scale.py --contexts 1000 100000 [--database-url URL] [--passages 5]

For each N, a fresh store (a SQLite file; with a ``postgresql+psycopg://`` URL, a fresh
schema, dropped after) holds N contexts (model ``fake``):

* N - 2 bulk-inserted with SQL, each a slept-looking version: its text, a learned note,
  ``--passages`` passages in ``st_passages`` (the FTS5 triggers index them on SQLite,
  the generated ``tsvector`` column and its GIN index on PostgreSQL) and the ``index``
  and ``manifest`` artifacts. Their paragraphs share most of their words with the long
  text's, so the asked terms' posting lists grow with N;
* ``c0``, a short text, and ``long``, a long one (``bench overhead``'s, ~9,000 tokens,
  over ``passage_threshold_tokens``), ingested and slept for real after the bulk load.

The stores are built first, then measured in interleaved rounds (so a burst of load on
the machine hits every N alike): p50/p99 of a zero-token ask and of an answer from c'
about ``c0`` (no passages), of an answer from c' plus passages about ``long`` (model
time excluded from answers) and of the passage lookup alone (``PassageRepo.search``),
as JSON lines, then the p50 ratios of the largest N to the smallest. A benchmark
script, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.bench.overhead import LONG_TEXT, PASSAGE_QUESTIONS, _database, _report
from sleeptime.models import PassageIndex
from sleeptime.prompts import PROMPT_VERSION
from sleeptime.store.schema import ArtifactRow, ContextRow, NamespaceRow, PassageRow

NS = "scale"
BATCH = 5000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


def bulk_texts(first: int, count: int, per: int) -> Iterator[tuple[str, str, list[str]]]:
    """(context id, text, passages) of ``count`` bulk contexts: ``per`` paragraphs each,
    one passage per paragraph (a passage never crosses a paragraph break)."""
    for i in range(first, first + count):
        paragraphs = [_report(i * per + k) for k in range(per)]
        yield f"b{i}", "\n\n".join(paragraphs), paragraphs


def bulk_load(st: SleepTime, contexts: int, per: int) -> float:
    """Insert ``contexts`` slept-looking versions with SQL (no sleep-time run each);
    returns seconds taken."""
    engine = st.store.engine
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(NamespaceRow), [{"name": NS}])
    next_id = 1
    for first in range(0, contexts, BATCH):
        count = min(BATCH, contexts - first)
        ctx_rows: list[dict[str, Any]] = []
        passage_rows: list[dict[str, Any]] = []
        artifact_rows: list[dict[str, Any]] = []
        for cid, body, paragraphs in bulk_texts(first, count, per):
            where = {"namespace": NS, "context_id": cid, "version": 1}
            ctx_rows.append(where | {"content_hash": f"bulk-{cid}", "text": body})
            start, lo = 0, next_id
            for k, para in enumerate(paragraphs):
                passage_rows.append(
                    where
                    | {
                        "id": next_id,
                        "idx": k,
                        "start_char": start,
                        "end_char": start + len(para),
                        "n_tokens": len(para.split()),
                        "text": para,
                    }
                )
                next_id += 1
                start += len(para) + 2
            tokens = len(body.split())
            index = PassageIndex(
                passages=len(paragraphs),
                ids=(lo, next_id - 1),
                text_tokens=tokens,
                cold_prompt_tokens=tokens + 80,  # not read by the measured asks
            )
            first_sentence = paragraphs[0].split(". ")[0] + "."
            for kind, payload in (
                ("index", index.model_dump(mode="json")),
                ("learned", {"text": f"- {first_sentence}"}),
                (
                    "manifest",
                    {
                        "k": 1,
                        "questions": 0,
                        "servable": 0,
                        "warnings": [],
                        "prompts": PROMPT_VERSION,
                    },
                ),
            ):
                artifact_rows.append(where | {"kind": kind, "key": "0", "payload": payload})
        with engine.begin() as conn:
            conn.execute(insert(ContextRow), ctx_rows)
            conn.execute(insert(PassageRow), passage_rows)
            conn.execute(insert(ArtifactRow), artifact_rows)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('st_passages', 'id'), :n)"),
                {"n": max(1, next_id - 1)},
            )
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - t0


class Scale:
    """One store of ``contexts`` contexts and the asks measured on it."""

    def __init__(self, url: str, contexts: int, per: int) -> None:
        self.contexts = contexts
        self.st = SleepTime(
            model=FakeChatModel(), database_url=url, settings=Settings(n_questions=3)
        )
        self.fill_s = bulk_load(self.st, max(0, contexts - 2), per)
        st = self.st
        st.ingest(NS, "c0", "Rosa bakes 0 muffins. Tom has 0 trays.")
        st.ingest(NS, "long", LONG_TEXT)
        st.sleep(NS, "c0")
        st.sleep(NS, "long")
        self.passages_total = int(st.store.read(select(func.count()).select_from(PassageRow))[0][0])
        self.predicted = st.artifacts(NS, "c0").qas[0].question
        index = st.artifacts(NS, "long").index
        if index is None or not index.passages or index.ids is None:
            raise RuntimeError("the long text was not indexed into passages")
        self.index = index
        # the limit a learned answer searches with (online.pick_passages)
        cfg = st.settings
        budget = min(
            cfg.passage_budget_tokens,
            max(cfg.passage_tokens, int(index.text_tokens * cfg.passage_share)),
        )
        self.limit = 4 + 2 * budget // max(1, cfg.passage_tokens)
        self.long_version = st.store.current_version(NS, "long") or 1
        self.model_ms: list[float] = []
        st.gateway.recorder = lambda _p, _s, _u, ms: self.model_ms.append(ms)
        self.samples: dict[str, list[float]] = {
            "zero_token_ms": [],
            "learned_excl_model_ms": [],
            "learned_passages_excl_model_ms": [],
            "passage_lookup_ms": [],
        }

    def _ask(self, cid: str, question: str, passages: bool) -> float:
        self.model_ms.clear()
        t = time.perf_counter()
        ans = self.st.ask(NS, cid, question)
        ms = (time.perf_counter() - t) * 1000.0 - sum(self.model_ms)
        if passages and (ans.source != "learned" or not ans.passages):
            raise RuntimeError(f"{cid}: a {ans.source} answer with {len(ans.passages)} passages")
        return ms

    def _lookup(self, question: str) -> float:
        t = time.perf_counter()
        found = self.st.store.passages.search(
            NS, "long", self.long_version, question, limit=self.limit, ids=self.index.ids
        )
        ms = (time.perf_counter() - t) * 1000.0
        if not found:
            raise RuntimeError(f"no passage found for {question!r}")
        return ms

    def measure_round(self, calls: int, keep: bool = True) -> None:
        qs = PASSAGE_QUESTIONS
        measures: dict[str, Callable[[int], float]] = {
            "zero_token_ms": lambda _i: self._ask("c0", self.predicted, False),
            "learned_excl_model_ms": lambda _i: self._ask(
                "c0", "Which tray is the heaviest?", False
            ),
            "learned_passages_excl_model_ms": lambda i: self._ask("long", qs[i % len(qs)], True),
            "passage_lookup_ms": lambda i: self._lookup(qs[i % len(qs)]),
        }
        for name, measure in measures.items():
            values = [measure(i) for i in range(calls)]
            if keep:
                self.samples[name] += values

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "contexts": self.contexts,
            "passages_in_store": self.passages_total,
            "fill_s": round(self.fill_s, 1),
        }
        for name, values in self.samples.items():
            out[name] = {"n": len(values), "p50": pct(values, 0.5), "p99": pct(values, 0.99)}
        return out

    def close(self) -> None:
        self.st.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--calls", type=int, default=3000, help="asks of each kind per store")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    ap.add_argument("--passages", type=int, default=5, help="passages per bulk context")
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file each")
    args = ap.parse_args()
    scales: list[Scale] = []
    drops = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for n in args.contexts:
                url, drop = _database(args.database_url, Path(tmp), f"scale{n}")
                drops.append(drop)
                scales.append(Scale(url, n, args.passages))
                print(f"filled {n} contexts in {scales[-1].fill_s:.1f} s", flush=True)
            per_round = max(1, args.calls // args.rounds)
            for s in scales:
                s.measure_round(min(200, per_round), keep=False)  # warm-up
            for _ in range(args.rounds):
                for s in scales:
                    s.measure_round(per_round)
            out = [s.result() for s in scales]
        finally:
            for s in scales:
                s.close()
            for drop in drops:
                drop()
    for r in out:
        print(json.dumps(r), flush=True)
    base, top = out[0], out[-1]
    ratios = {
        f"{name.removesuffix('_ms')}_p50_ratio": (
            round(top[name]["p50"] / base[name]["p50"], 2) if base[name]["p50"] else None
        )
        for name in scales[0].samples
    }
    print(json.dumps({"store": "postgresql" if args.database_url else "sqlite"} | ratios))


if __name__ == "__main__":
    main()
