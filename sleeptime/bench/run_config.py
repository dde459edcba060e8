"""A benchmark run's configuration (:class:`RunConfig`): dataset, model, arms, protocol,
per-phase temperatures and efforts, and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sleeptime.bench.extract import SCORERS
from sleeptime.bench.paper_prompts import (
    MEMORY_CHARS,
)
from sleeptime.bench.protocol import (
    EFFORTS,
)
from sleeptime.errors import InvalidInput
from sleeptime.llm.resolve import ModelSpec

PROTOCOLS = ("product", "paper")
#: Completion tokens one product-protocol rethink loop may spend (per rethink).
DEFAULT_SLEEP_BUDGET = 2048
#: The paper protocol's sleep temperature when k > 1 (the paper's k runs used 1.0):
#: at 0 a deterministic model writes the same memory k times, and is paid k times.
PAPER_K_TEMPERATURE = 1.0


@dataclass
class RunConfig:
    """One benchmark run. Lists are the sweep; every combination is an arm."""

    dataset: str
    model: ModelSpec
    out: Path
    limit: int | None = None
    verbosity: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    sleep_k: list[int] = field(default_factory=lambda: [0, 1])
    samples: int = 0
    #: Temperature of the parallel-sampling baseline (recorded only when it runs).
    temperature: float = 0.7
    concurrency: int = 1
    #: Predicted questions per context (product protocol; None: 3, or 0 for paper).
    n_questions: int | None = None
    predictability: bool | None = None  # None: when sleeptime.predictability exists
    protocol: str = "product"
    #: Scorer (None: the protocol's own, ``paper`` for paper and ``lenient`` for product).
    scorer: str | None = None
    #: The paper's prompt files (a local checkout of its repository); paper protocol only.
    prompts_dir: Path | None = None
    #: Completion tokens per rethink loop (product protocol); the paper sets none.
    sleep_budget: int = DEFAULT_SLEEP_BUDGET
    #: Safety stop of the rethink loop (model calls per loop).
    rethink_rounds: int = 10
    #: Memory block size in characters.
    memory_chars: int = MEMORY_CHARS
    #: ``auto`` (tool calls when the model has them), ``tools`` or ``text``.
    rethink_mode: str = "auto"
    #: Sleep-time temperature (None: paper 0 for k = 1 and 1.0 for k > 1; product: the
    #: library's, the model's default for k = 1 and SLEEPTIME_SLEEP_TEMPERATURE for k > 1).
    sleep_temperature: float | None = None
    #: Test-time temperature (None: paper 0; product: the library's, the model's default).
    test_temperature: float | None = None
    #: Reasoning effort per phase (None: the model's default); the model must take one.
    sleep_effort: str | None = None
    test_effort: str | None = None
    #: Product protocol: answer the dataset's own questions at sleep time instead of the
    #: model's predictions (an upper bound on prediction; exercises the serve policy).
    oracle_questions: bool = False
    #: Finish without raising when model calls or items failed (they stay recorded).
    allow_errors: bool = False
    #: Stateful GSM-Symbolic / AIME: records that share a context stay one item each
    #: (the paper's runs) instead of one item with several queries.
    keep_apart: bool = False

    @property
    def questions(self) -> int:
        if self.n_questions is not None:
            return self.n_questions
        return 0 if self.protocol == "paper" else 3

    @property
    def scorer_name(self) -> str:
        return self.scorer or ("paper" if self.protocol == "paper" else "lenient")

    def test_temp(self) -> float | None:
        """Test-time temperature: explicit, else paper 0, product None (model default)."""
        if self.test_temperature is not None:
            return self.test_temperature
        return 0.0 if self.protocol == "paper" else None

    def sleep_temp(self, k: int, library_default: float) -> float | None:
        """Sleep-time temperature of the k rethinks: explicit, else paper 0 (k = 1) or
        :data:`PAPER_K_TEMPERATURE` (k > 1), product the library's (None: the model's
        default for k = 1, ``library_default`` = SLEEPTIME_SLEEP_TEMPERATURE for k > 1)."""
        if self.sleep_temperature is not None:
            return self.sleep_temperature
        if k <= 1:
            return 0.0 if self.protocol == "paper" else None
        return PAPER_K_TEMPERATURE if self.protocol == "paper" else library_default

    def warnings(self, library_default: float) -> list[str]:
        """What runs but is probably not what was meant."""
        out = []
        for k in sorted({k for k in self.sleep_k if k > 1}):
            if self.sleep_temp(k, library_default) == 0:
                out.append(
                    f"k={k} runs its {k} sleep-time loops at temperature 0: a deterministic "
                    f"model writes the same memory {k} times, and is paid {k} times "
                    "(set --sleep-temperature above 0)"
                )
        return out

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"--protocol takes paper or product (got {self.protocol!r})")
        if self.scorer is not None and self.scorer not in SCORERS:
            raise InvalidInput(f"--scorer takes paper or lenient (got {self.scorer!r})")
        if not self.verbosity or any(v not in range(5) for v in self.verbosity):
            raise InvalidInput(f"--verbosity takes levels 0-4 (got {self.verbosity})")
        if not self.sleep_k or any(k < 0 or k > 16 for k in self.sleep_k):
            raise InvalidInput(
                f"--sleep-k takes values 0-16, 0 = test-time only (got {self.sleep_k})"
            )
        if self.samples < 0 or self.samples == 1:
            raise InvalidInput(f"--samples is 0 (off) or K >= 2 (got {self.samples})")
        if self.concurrency < 1:
            raise InvalidInput(f"--concurrency must be >= 1 (got {self.concurrency})")
        if self.questions < 0:
            raise InvalidInput(f"--n-questions must be >= 0 (got {self.questions})")
        if self.temperature <= 0 and self.samples:
            raise InvalidInput("parallel sampling needs --temperature > 0")
        if self.sleep_budget < 16:
            raise InvalidInput(f"--sleep-budget must be >= 16 tokens (got {self.sleep_budget})")
        if not 1 <= self.rethink_rounds <= 100:
            raise InvalidInput(f"--rethink-rounds takes 1-100 (got {self.rethink_rounds})")
        if self.memory_chars < 100:
            raise InvalidInput(f"--memory-chars must be >= 100 (got {self.memory_chars})")
        if self.rethink_mode not in ("auto", "tools", "text"):
            raise InvalidInput(
                f"--rethink-mode takes auto, tools or text (got {self.rethink_mode!r})"
            )
        for name, temp in (
            ("--sleep-temperature", self.sleep_temperature),
            ("--test-temperature", self.test_temperature),
        ):
            if temp is not None and not 0 <= temp <= 2:
                raise InvalidInput(f"{name} takes 0-2 (got {temp})")
        for name, effort in (
            ("--sleep-effort", self.sleep_effort),
            ("--test-effort", self.test_effort),
        ):
            if effort is not None and effort not in EFFORTS:
                raise InvalidInput(f"{name} takes {', '.join(EFFORTS)} (got {effort!r})")
        if self.protocol == "paper":
            if self.questions:
                raise InvalidInput(
                    "--protocol paper has no predicted questions: drop --n-questions "
                    "(or use --protocol product)"
                )
            if self.oracle_questions:
                raise InvalidInput("--oracle-questions is a product-protocol option")
        elif self.prompts_dir is not None:
            raise InvalidInput("--prompts loads the paper's prompt files: add --protocol paper")
        if self.oracle_questions and not self.questions:
            raise InvalidInput("--oracle-questions needs --n-questions >= 1")

    def arms(self) -> list[str]:
        arms = [
            f"k{k}-v{v}" for k in sorted(set(self.sleep_k)) for v in sorted(set(self.verbosity))
        ]
        if self.samples:
            arms += [f"par{self.samples}-v{v}" for v in sorted(set(self.verbosity))]
        return arms


def parse_levels(text: str, name: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] with a clear error."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInput(
            f"{name} takes comma-separated integers, e.g. 0,1,2 (got {text!r})"
        ) from exc
    if not values:
        raise InvalidInput(f"{name} is empty")
    return values
