"""The tests' throwaway ``redis-server``: a free loopback port, AOF on as in compose.yaml
(a restart keeps acknowledged writes, like a production server). Tests import it from
here, not from the benchmark (which has its own for its runs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``RedisServer(folder).start()``; ``url``, ``stop()``, ``restart()`` (same port and
    data folder); ``proc`` is the running process."""

    def __init__(self, workdir: Path, *, appendfsync: str = "everysec") -> None:
        self.binary = shutil.which("redis-server") or ""
        if not self.binary:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        self.workdir, self.appendfsync = workdir, appendfsync
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""]
        self.proc = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(200):  # up to about 10 s
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
