"""The tests' throwaway PostgreSQL cluster: its own data folder and a free loopback
port, never the shared server; stopped and started under a running client to test
outages. Tests import it from here, not from the benchmark (which has its own for its
chaos runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from redis_server import free_port


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (never the shared one)."""

    def __init__(self, workdir: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        found = shutil.which("pg_ctl")
        pg_ctl = Path(found) if found else (bins[-1] if bins else None)
        if pg_ctl is None:
            raise RuntimeError("pg_ctl not found")
        self.bin = pg_ctl.parent
        self.dir = workdir / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self) -> PostgresCluster:
        self.dir.mkdir(parents=True)
        if self.as_user:
            shutil.chown(self.dir.parent, "postgres")
            shutil.chown(self.dir, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        return self.start()

    def start(self) -> PostgresCluster:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "stop")
