"""A small multi-query benchmark, end to end from Python.

Generates 4 Multi-Query contexts (3-5 related questions each), then compares
test-time-only answers (k=0) with sleep-time compute (k=1) at two verbosity levels,
plus a 3-sample parallel baseline, and writes report.md, summary.json and the plots.

    python examples/multi_query_benchmark.py                 # deterministic fake model, seconds
    python examples/multi_query_benchmark.py --model local   # bundled SmolLM2-135M, minutes
    python examples/multi_query_benchmark.py --protocol paper  # the paper's protocol
    OPENAI_BASE_URL=http://localhost:8000/v1 python examples/multi_query_benchmark.py \\
        --model openai:Qwen/Qwen2.5-7B-Instruct              # any OpenAI-compatible server

Run it again with the same --out and it resumes: finished answers are not recomputed.
The fake model does not understand anything (its accuracy means nothing); the 135M
local model cannot do arithmetic either. Use a real model for real numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeptime.bench.datasets import load_dataset
from sleeptime.bench.report import write_report
from sleeptime.bench.runner import RunConfig, run


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="fake", help="'fake', 'local' or 'provider:model'")
    ap.add_argument("--out", type=Path, default=Path("bench-runs/example"))
    ap.add_argument(
        "--protocol",
        choices=["product", "paper"],
        default="product",
        help="product: sleeptime's own protocol; paper: the Sleep-time Compute paper's",
    )
    args = ap.parse_args()

    dataset = "multi-query:n=4,seed=0,difficulty=1,queries=3-5"
    first = load_dataset(dataset)[0]
    print(f"first context: {first.context}")
    for q in first.queries:
        print(f"  Q: {q.question}  (gold: {q.answer})")

    cfg = RunConfig(
        dataset=dataset,
        model=args.model,
        out=args.out,
        verbosity=[0, 2],  # the paper's test-time budgets: 0 = answer only ... 4 = thorough
        sleep_k=[0, 1],  # 0 = test-time only (never slept), 1 = one sleep-time rethink
        samples=3,  # parallel-sampling baseline: majority vote and pass@3
        protocol=args.protocol,
        # product: questions predicted (and answered) per context at sleep time; the
        # paper's protocol has none
        n_questions=2 if args.protocol == "product" else 0,
        # log P(question | context) under the bundled model, for the predictability plot;
        # skipped with the fake model to keep the example instant
        predictability=None if args.model != "fake" else False,
    )
    stats = run(cfg)
    print(
        f"{stats.new_results} new answers ({stats.skipped_results} resumed), "
        f"{stats.new_calls} model calls"
    )
    summary = write_report(cfg.out, t=10.0)  # prints the table; writes report.md + PNGs
    best = max(summary["arms"], key=lambda a: (a["accuracy"], -a["amortized_cost_per_query"]))
    print(
        f"best arm: {best['arm']} ({best['accuracy']:.0%}, {best['ci_method']}); "
        f"report: {cfg.out / 'report.md'}"
    )


if __name__ == "__main__":
    main()
