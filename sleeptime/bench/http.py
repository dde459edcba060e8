"""Requests/s and latency percentiles of ``ask`` over HTTP (``sleeptime serve``).

    python -m sleeptime.bench.http [--seconds 10] [--threads 8] [--model fake]
                                   [--client auto|wrk|httpx] [--rate-limit 1000000/second]

Starts the server of ``sleeptime serve`` (the same app, one uvicorn process) as a
subprocess on a free loopback port over a fresh SQLite file, stores a context, runs
sleep-time compute on it, then keeps ``--threads`` clients (each one keep-alive
connection) asking for ``--seconds`` per question kind: a predicted question (served
at zero tokens) and an unpredicted one (one model call). The same uvicorn also serves
a bare FastAPI endpoint (``POST /bench/bare``: parse the body, check the key in a
dict, return a constant), measured in the same run: ``zero_token_vs_bare`` is the
zero-token ask's requests/s over the bare endpoint's, the share of the HTTP stack's
own ceiling the ask reaches. ``--rounds N`` alternates the two N times (the ratio is
of the sums), which evens out a machine whose load changes. A rate limit is
configured by default (``--rate-limit``, high enough never to refuse; ``none`` for
none), so its cost is in the figures. Prints one JSON object. The numbers include the
HTTP stack, authentication, the rate limit, the ask itself and the query log.

The load comes from ``wrk`` when it is installed (``apt-get install wrk``): a client in
Python needs about as much CPU per request as the server, so on a small machine it
measures itself. Without wrk, threads of keep-alive ``httpx`` clients are used and the
figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

TEXT = (
    "A bakery bakes 120 muffins a day. It sells 80 in the morning and 25 in the "
    "afternoon. The rest are donated to a shelter. Each muffin costs 3 dollars."
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


#: The ask route of the bench's context.
ASK = "/v1/bench/contexts/doc/ask"


def _load(
    base: str, key: str, question: str, seconds: float, threads: int, path: str = ASK
) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    stop = time.perf_counter() + seconds
    sources: set[str] = set()

    def client(i: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post(path, json={"question": question})
                latencies[i].append((time.perf_counter() - t0) * 1000.0)
                if r.status_code != 200:
                    errors[i] += 1
                else:
                    sources.add(r.json().get("source", "bare"))

    start = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    flat = [x for lat in latencies for x in lat]
    return {
        "question": question,
        "sources": sorted(sources),
        "requests": len(flat),
        "errors": sum(errors),
        "requests_per_s": round(len(flat) / elapsed, 1),
        "p50_ms": round(_percentile(flat, 0.50), 2),
        "p99_ms": round(_percentile(flat, 0.99), 2),
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(out: str, label: str) -> float:
    found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if found is None:
        raise RuntimeError(f"no {label} latency in wrk's output:\n{out}")
    return float(found.group(1)) * _WRK_UNITS[found.group(2)]


def _load_wrk(
    wrk: str, base: str, key: str, question: str, seconds: float, threads: int, path: str = ASK
) -> dict[str, Any]:
    """The same load from wrk (C, one event loop, ``threads`` connections)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        body = json.dumps(json.dumps({"question": question}))  # a Lua string literal
        f.write(_WRK_SCRIPT.format(body=body, key=key))
    try:
        out = subprocess.run(
            [wrk, "-t1", f"-c{threads}", f"-d{max(1, round(seconds))}s", "--latency",
             "-s", f.name, f"{base}{path}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    total = re.search(r"(\d+) requests in ", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if total is None or rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    sources = {httpx.post(
        f"{base}{path}", json={"question": question},
        headers={"Authorization": f"Bearer {key}"},
    ).json().get("source", "bare")}  # fmt: skip
    return {
        "question": question,
        "sources": sorted(sources),
        "requests": int(total.group(1)),
        "errors": (int(failed.group(1)) if failed else 0)
        + (sum(int(n) for n in errors.groups()) if errors else 0),
        "requests_per_s": round(float(rate.group(1)), 1),
        "p50_ms": round(_wrk_ms(out, "50%"), 2),
        "p99_ms": round(_wrk_ms(out, "99%"), 2),
    }


#: The bare endpoint's path on the bench server.
BARE = "/bench/bare"


class BareIn(BaseModel):
    """The bare endpoint's body: as strict as the ask's."""

    model_config = ConfigDict(extra="forbid", strict=True)
    question: str


def bench_app(key: str) -> Any:
    """The app of ``sleeptime serve`` (a client from the environment's settings) with
    the bare endpoint added: parse the body, check the key in a dict, return a
    constant. Nothing else: no database, no metrics of its own."""
    from fastapi import Header, HTTPException

    from sleeptime.server import create_app

    keys = {key: "bench"}
    app = create_app()

    @app.post(BARE, include_in_schema=False)
    async def bare(body: BareIn, authorization: str = Header("")) -> dict[str, str]:
        if authorization[7:] not in keys:
            raise HTTPException(401, "unknown key")
        return {"text": "ok"}

    return app


def _serve(port: int) -> None:
    """Run :func:`bench_app` as ``sleeptime serve`` runs its app (one process)."""
    import uvicorn

    uvicorn.run(
        bench_app(os.environ["BENCH_HTTP_KEY"]), host="127.0.0.1", port=port, log_level="warning"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="per question kind")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients")
    parser.add_argument("--model", default="fake", help="model spec of the server")
    parser.add_argument(
        "--database-url",
        default=None,
        help="the server's database (default: a fresh SQLite file); namespace 'bench' is "
        "deleted first",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="load generator (auto: wrk when installed, else httpx threads)",
    )
    parser.add_argument(
        "--rate-limit",
        default="1000000/second",
        help="SLEEPTIME_RATE_LIMIT of the server (default: configured, never reached); "
        "'none' for no limit",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="bare endpoint / zero-token ask alternations"
    )
    return parser


def _server_env(args: argparse.Namespace, tmp: str) -> dict[str, str]:
    """The server's environment: the benchmark's database, model and rate limit only."""
    env = {
        **os.environ,
        "SLEEPTIME_DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}",
        "SLEEPTIME_MODEL": args.model,
        "SLEEPTIME_N_QUESTIONS": "3",
    }
    env.pop("SLEEPTIME_REDIS_URL", None)
    env.pop("SLEEPTIME_RATE_LIMIT", None)
    if args.rate_limit.lower() != "none":
        env["SLEEPTIME_RATE_LIMIT"] = args.rate_limit
    return env


def _start_server(env: dict[str, str], fresh: bool) -> tuple[subprocess.Popen[bytes], str, str]:
    """A key and a server (the app plus the bare endpoint) on a free port, answering
    /health: (process, base URL, key)."""

    def cli(*a: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "sleeptime", *a],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    if not fresh:
        cli("delete", "bench", "--yes")  # a database that held an earlier run
    key = cli("keys", "create", "bench").strip().splitlines()[-1]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c",
         f"from sleeptime.bench.http import _serve; _serve({port})"],
        env={**env, "BENCH_HTTP_KEY": key},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)  # waiting for a subprocess to listen, not timing anything
    return server, base, key


def _prepared_question(base: str, key: str) -> str:
    """Store and sleep the benchmark's context; one of its predicted questions."""
    h = {"Authorization": f"Bearer {key}"}
    httpx.put(f"{base}/v1/bench/contexts/doc", json={"text": TEXT}, headers=h)
    httpx.post(f"{base}/v1/bench/contexts/doc/sleep", json={"wait": True}, headers=h, timeout=600)
    shown = httpx.get(f"{base}/v1/bench/contexts/doc", headers=h).json()
    return str(shown["artifacts"]["qas"][0]["question"])


def _measure_all(
    args: argparse.Namespace, wrk: str | None, base: str, key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(bare rounds, zero-token rounds, [last zero-token round, a model answer])."""
    predicted = _prepared_question(base, key)
    # a short warm-up: the first requests start the server's thread pool and its
    # per-thread database connections
    _load(base, key, predicted, min(1.0, args.seconds), args.threads)
    _load(base, key, predicted, min(1.0, args.seconds), args.threads, path=BARE)

    def measure(question: str, path: str) -> dict[str, Any]:
        if wrk:
            return _load_wrk(wrk, base, key, question, args.seconds, args.threads, path)
        return _load(base, key, question, args.seconds, args.threads, path=path)

    bare_rounds, zero_rounds = [], []
    for _ in range(max(1, args.rounds)):
        bare_rounds.append(measure(predicted, BARE))
        zero_rounds.append(measure(predicted, ASK))
    return bare_rounds, zero_rounds, [zero_rounds[-1], measure("Why is the sky blue today?", ASK)]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and wrk is None:
        parser.error("--client wrk: wrk is not installed (apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="sleeptime-http-bench-") as tmp:
        server, base, key = _start_server(_server_env(args, tmp), fresh=not args.database_url)
        try:
            bare_rounds, zero_rounds, results = _measure_all(args, wrk, base, key)
        finally:
            server.terminate()
            server.wait(timeout=30)
    out = {
        "model": args.model,
        "threads": args.threads,
        "client": "wrk" if wrk else "httpx threads",
        "seconds": args.seconds,
        "server": "sleeptime serve (uvicorn, 1 process), loopback",
        "database": "postgresql" if (args.database_url or "").startswith("postgres") else "sqlite",
        "cpus": os.cpu_count(),
        "rate_limit": None if args.rate_limit.lower() == "none" else args.rate_limit,
        "bare": bare_rounds[-1],
        "bare_requests_per_s": [r["requests_per_s"] for r in bare_rounds],
        "zero_token_requests_per_s": [r["requests_per_s"] for r in zero_rounds],
        "zero_token_vs_bare": round(
            sum(r["requests_per_s"] for r in zero_rounds)
            / max(1e-9, sum(r["requests_per_s"] for r in bare_rounds)),
            3,
        ),
        "results": results,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
