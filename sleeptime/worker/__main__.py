"""``python -m sleeptime.worker [--concurrency N] ...``: the same as ``sleeptime worker``."""

from __future__ import annotations

import sys

from sleeptime.cli import main


def run() -> None:
    sys.argv = [sys.argv[0], "worker", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    run()
