"""``sleeptime bench ...``: the benchmark's commands (``sleeptime/bench/cli.py``), the
command line's one door into the benchmark. The benchmark is an extra: without its
dependencies a bench command is one line naming the install command, exit code 2."""

from __future__ import annotations

from importlib.util import find_spec

from sleeptime.bench.cli import app as bench_app
from sleeptime.cli.common import app
from sleeptime.errors import InvalidInput

#: The import names of the ``bench`` extra's dependencies (pyproject.toml).
BENCH_MODULES = ("matplotlib", "httpx", "langchain")


def missing_bench_modules() -> list[str]:
    return [name for name in BENCH_MODULES if find_spec(name) is None]


@bench_app.callback()
def _require_bench_extra() -> None:
    missing = missing_bench_modules()
    if missing:
        raise InvalidInput(
            f"sleeptime bench needs the bench extra ({', '.join(missing)} missing): "
            "pip install 'sleeptime[bench]'"
        )


app.add_typer(bench_app, name="bench")
