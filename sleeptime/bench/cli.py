"""``sleeptime bench ...`` commands. Each benchmark lives in its own module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sleeptime.bench.runner import RunConfig

app = typer.Typer(
    help="Benchmarks: multi-query accuracy/cost runs, support coverage, overhead, prefill.",
    no_args_is_help=True,
)


# -- accuracy vs tokens: test-time only, sleep-time, parallel sampling ------------------------


#: ``bench run``'s options (declared here, so the command reads as what it does)
_Dataset = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="stateful-gsm8k, multi-query[:n=50,seed=0,difficulty=2,queries=3-10] or a JSONL path",
    ),
]
_Out = Annotated[str, typer.Option("--out", "-o", help="run directory (re-running resumes it)")]
_Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="model spec (default: $SLEEPTIME_MODEL or 'local')"),
]
_Limit = Annotated[int | None, typer.Option("--limit", min=1, help="first N contexts only")]
_Verbosity = Annotated[str, typer.Option("--verbosity", help="test-time budgets (0-4)")]
_SleepK = Annotated[str, typer.Option("--sleep-k", help="rethinks; 0 = test-time only")]
_Samples = Annotated[
    int, typer.Option("--samples", min=0, help="parallel baseline, K samples; 0 off")
]
_Temperature = Annotated[float, typer.Option("--temperature", help="temperature of the baseline")]
_Concurrency = Annotated[
    int, typer.Option("--concurrency", min=1, help="contexts worked on at once")
]
_NQuestions = Annotated[
    int | None,
    typer.Option(
        "--n-questions",
        min=0,
        help="predicted questions per context (default 3; the paper protocol has none)",
    ),
]
_Protocol = Annotated[
    str,
    typer.Option(
        "--protocol",
        help="product (ours, default) or paper (the Sleep-time Compute paper's protocol)",
    ),
]
_Scorer = Annotated[
    str | None,
    typer.Option("--scorer", help="paper or lenient (default: paper for --protocol paper)"),
]
_PromptsDir = Annotated[
    str | None,
    typer.Option(
        "--prompts",
        help="paper protocol: prompt files of a local letta-ai/sleep-time-compute checkout",
    ),
]
_SleepBudget = Annotated[
    int,
    typer.Option("--sleep-budget", help="product: completion tokens per rethink loop (a budget)"),
]
_RethinkRounds = Annotated[
    int, typer.Option("--rethink-rounds", help="most calls per rethink loop")
]
_MemoryChars = Annotated[int, typer.Option("--memory-chars", help="memory block size (characters)")]
_RethinkMode = Annotated[
    str,
    typer.Option("--rethink-mode", help="auto (tool calls when supported), tools or text"),
]
_SleepTemperature = Annotated[
    float | None,
    typer.Option(
        "--sleep-temperature",
        help="sleep-time temperature (default: paper 0, 1.0 for k>1; product the library's)",
    ),
]
_TestTemperature = Annotated[
    float | None,
    typer.Option(
        "--test-temperature",
        help="test-time temperature (default: paper 0; product the model's)",
    ),
]
_SleepEffort = Annotated[
    str | None,
    typer.Option(
        "--sleep-effort",
        help="reasoning effort of sleep-time calls: minimal, low, medium, high",
    ),
]
_TestEffort = Annotated[
    str | None,
    typer.Option(
        "--test-effort",
        help="reasoning effort of test-time calls: minimal, low, medium, high",
    ),
]
_AllowErrors = Annotated[
    bool,
    typer.Option("--allow-errors", help="exit 0 even when model calls failed (they stay recorded)"),
]
_KeepApart = Annotated[
    bool,
    typer.Option(
        "--keep-apart",
        help="records that share a context stay one item each (the paper's runs), not merged",
    ),
]
_OracleQuestions = Annotated[
    bool,
    typer.Option(
        "--oracle-questions",
        help="product: sleep time answers the dataset's own questions (tests the serve policy)",
    ),
]
_T = Annotated[float, typer.Option("--t", help="cost of a test-time token in sleep-time tokens")]
_Report = Annotated[bool, typer.Option("--report/--no-report", help="write the report when done")]
_Predictability = Annotated[
    bool | None,
    typer.Option(
        "--predictability/--no-predictability",
        help="score log P(question | context) per query with the local model (default: only "
        "when --model is local, so no other run loads llama.cpp)",
    ),
]


@app.command("run")
def run_cmd(
    dataset: _Dataset,
    out: _Out,
    model: _Model = None,
    limit: _Limit = None,
    verbosity: _Verbosity = "0,1,2,3,4",
    sleep_k: _SleepK = "0,1",
    samples: _Samples = 0,
    temperature: _Temperature = 0.7,
    concurrency: _Concurrency = 1,
    n_questions: _NQuestions = None,
    protocol: _Protocol = "product",
    scorer: _Scorer = None,
    prompts_dir: _PromptsDir = None,
    sleep_budget: _SleepBudget = 2048,
    rethink_rounds: _RethinkRounds = 10,
    memory_chars: _MemoryChars = 5000,
    rethink_mode: _RethinkMode = "auto",
    sleep_temperature: _SleepTemperature = None,
    test_temperature: _TestTemperature = None,
    sleep_effort: _SleepEffort = None,
    test_effort: _TestEffort = None,
    allow_errors: _AllowErrors = False,
    keep_apart: _KeepApart = False,
    oracle_questions: _OracleQuestions = False,
    t: _T = 10.0,
    report: _Report = True,
    predictability: _Predictability = None,
) -> None:
    """Run (or resume) a benchmark: test-time only vs sleep-time vs parallel sampling.

    --protocol product (default) is sleeptime's own protocol; --protocol paper reproduces
    the Sleep-time Compute paper's (docs/benchmarks.md says exactly where they differ).
    """
    from sleeptime.bench.runner import RunConfig, parse_levels
    from sleeptime.settings import Settings

    cfg = RunConfig(
        dataset=dataset,
        model=model or Settings().model,
        out=Path(out),
        limit=limit,
        verbosity=parse_levels(verbosity, "--verbosity"),
        sleep_k=parse_levels(sleep_k, "--sleep-k"),
        samples=samples,
        temperature=temperature,
        concurrency=concurrency,
        n_questions=n_questions,
        predictability=predictability,
        protocol=protocol,
        scorer=scorer,
        prompts_dir=Path(prompts_dir) if prompts_dir else None,
        sleep_budget=sleep_budget,
        rethink_rounds=rethink_rounds,
        memory_chars=memory_chars,
        rethink_mode=rethink_mode,
        sleep_temperature=sleep_temperature,
        test_temperature=test_temperature,
        sleep_effort=sleep_effort,
        test_effort=test_effort,
        oracle_questions=oracle_questions,
        allow_errors=allow_errors,
        keep_apart=keep_apart,
    )
    _run_and_report(cfg, out, t=t, report=report)


def _run_and_report(cfg: RunConfig, out: str, *, t: float, report: bool) -> None:
    """Run; write the report when anything was answered; exit 1 when the run failed."""
    from rich.console import Console

    from sleeptime.bench.report import write_report
    from sleeptime.bench.runner import BenchRunFailed
    from sleeptime.bench.runner import run as run_bench

    console = Console(stderr=True)
    failure: BenchRunFailed | None = None
    try:
        stats = run_bench(cfg, console=console)
    except BenchRunFailed as exc:  # the report is still written; the exit code says it
        stats, failure = exc.stats, exc
    console.print(
        f"{stats.new_results} new answers, {stats.skipped_results} already done, "
        f"{stats.new_calls} model calls, {stats.failed_calls} failed calls, "
        f"{stats.errors} failed items, "
        f"{stats.seconds:.1f} s -> {out}"
    )
    if report and (stats.new_results or stats.skipped_results):
        write_report(out, t=t)
    if failure is not None:
        console.print(f"[red]error:[/red] {failure}", highlight=False)
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    out: str = typer.Argument(..., help="a run directory written by 'sleeptime bench run'"),
    t: float = typer.Option(10.0, "--t", help="cost of a test-time token in sleep-time tokens"),
    prices: str = typer.Option(
        None,
        "--prices",
        help='a JSON file of prices, {"model": \\[usd_in_1M, usd_out_1M]}, added to the '
        "built-in ones (default: built-in only)",
    ),
    price_model: str = typer.Option(
        None,
        "--price-model",
        help="prices used in the US$ plot (default: the run's model when priced and not "
        "free, else gpt-4o-mini)",
    ),
    scorer: str = typer.Option(
        None, "--scorer", help="re-score the run: paper or lenient (default: the run's)"
    ),
) -> None:
    """Write report.md, summary.json and PNG plots for a run, and print the summary."""
    from sleeptime.bench.report import write_report

    write_report(out, t=t, prices_path=prices, price_model=price_model, scorer=scorer)


# -- support coverage: what reaches a learned or compacted prompt, model fake ----------------

from sleeptime.bench.coverage import coverage as coverage_cmd  # noqa: E402

app.command("coverage")(coverage_cmd)


# -- KV-prefill artifacts: cold vs warm time-to-answer on the local model --------------------

from sleeptime.bench.prefill import prefill as prefill_cmd  # noqa: E402

app.command("prefill")(prefill_cmd)


# -- online-path and worker overhead, model time excluded -------------------------------------

from sleeptime.bench.overhead import overhead as overhead_cmd  # noqa: E402

app.command("overhead")(overhead_cmd)


# -- reliability: throughput under load, and faults injected on purpose ----------------------

from sleeptime.bench.chaos import chaos as chaos_cmd  # noqa: E402
from sleeptime.bench.load import load as load_cmd  # noqa: E402

app.command("load")(load_cmd)
app.command("chaos")(chaos_cmd)


# -- sleep policies: what each costs on synthetic workloads, model fake ---------------------

from sleeptime.bench.economics import economics as economics_cmd  # noqa: E402

app.command("economics")(economics_cmd)
