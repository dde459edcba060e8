"""Does ask's latency depend on how many contexts the store holds?

    python scripts/ask_scale.py --contexts 1000 100000 [--database-url URL]

Fills a fresh store with N contexts (model ``fake``), runs sleep-time compute on one,
and prints p50/p99 of a zero-token ask and of an answer from c' (model time excluded)
for each N, as JSON. A benchmark script, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sleeptime import FakeChatModel, Settings, SleepTime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


def measure(url: str, contexts: int, calls: int) -> dict[str, Any]:
    st = SleepTime(model=FakeChatModel(), database_url=url, settings=Settings(n_questions=3))
    t0 = time.perf_counter()
    for i in range(contexts):
        st.ingest("scale", f"c{i}", f"Rosa bakes {i} muffins. Tom has {i % 7} trays.")
    fill_s = time.perf_counter() - t0
    st.sleep("scale", "c0")
    predicted = st.artifacts("scale", "c0").qas[0].question
    model_ms: list[float] = []
    st.gateway.recorder = lambda _p, _s, _u, ms: model_ms.append(ms)

    def run(question: str, n: int) -> list[float]:
        out = []
        for _ in range(n):
            model_ms.clear()
            t = time.perf_counter()
            st.ask("scale", "c0", question)
            out.append((time.perf_counter() - t) * 1000.0 - sum(model_ms))
        return out

    run(predicted, 200)
    zero = run(predicted, calls)
    run("Which tray is the heaviest?", 50)
    learned = run("Which tray is the heaviest?", max(200, calls // 5))
    st.close()
    return {
        "contexts": contexts,
        "fill_s": round(fill_s, 1),
        "zero_token_ms": {"p50": pct(zero, 0.5), "p99": pct(zero, 0.99)},
        "learned_excl_model_ms": {"p50": pct(learned, 0.5), "p99": pct(learned, 0.99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file each")
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.contexts:
            url = args.database_url or f"sqlite:///{Path(tmp) / f'scale{n}.db'}"
            out.append(measure(url, n, args.calls))
            print(json.dumps(out[-1]), flush=True)
    base, top = out[0]["zero_token_ms"]["p50"], out[-1]["zero_token_ms"]["p50"]
    print(json.dumps({"zero_token_p50_ratio": round(top / base, 2) if base else None}))


if __name__ == "__main__":
    main()
