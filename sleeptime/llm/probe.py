"""A llama.cpp build is tried in a child process before this process loads it.

``pip install "sleeptime[local]"`` builds llama-cpp-python for the build machine's own
CPU; on some CPUs (seen: Xeons with AVX-512 and AMX) that build segfaults on the first
multi-token batch, which kills the whole process with exit code 139 and no message. So
before the first model load in a process, a child process loads the same model file
with the same library and evaluates a multi-token batch. A child that dies by a signal
is reported in one line with the fix; one that works is remembered on disk, per
llama.cpp build and model file, so the probe runs once, not on every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sleeptime.errors import UnknownModel

#: What the child runs: load the model, evaluate a multi-token batch, generate a token.
PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, n_threads_batch=2, verbose=False)
toks = llm.tokenize(b"The quick brown fox jumps over the lazy dog, twice over.")
llm.eval(toks)
llm.create_completion("One, two,", max_tokens=2)
print("ok")
"""

FIX = (
    "reinstall it built for a portable CPU target: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
    "pip install --force-reinstall --no-cache-dir llama-cpp-python (or run "
    "scripts/install-llama.sh from the sleeptime repository)"
)

_checked: set[str] = set()
_lock = threading.Lock()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sleeptime" / "probes"


def build_key(model_path: str) -> str:
    """Which llama.cpp build (its shared library: path, size, mtime) and which model file
    (path, size, mtime) the probe vouches for."""
    parts: list[str] = []
    try:
        import llama_cpp

        lib = Path(llama_cpp.__file__).parent / "lib"
        libs = sorted(lib.glob("*.so*")) + sorted(lib.glob("*.dylib")) + sorted(lib.glob("*.dll"))
        parts.append(getattr(llama_cpp, "__version__", "?"))
        parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in libs]
    except Exception:  # no llama_cpp: the load itself reports it
        parts.append("no-llama-cpp")
    model = Path(model_path)
    stat = model.stat() if model.exists() else None
    parts.append(
        f"{model.resolve()}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def ensure_safe(model_path: str, *, script: str = PROBE, timeout_s: float = 300.0) -> None:
    """Raise :class:`UnknownModel` (one line, with the fix; the same class as a missing
    llama-cpp-python, since both are fixed by an install, not by waiting) when this llama.cpp build
    crashes on ``model_path`` in a child process; do nothing when it runs, or when it was
    seen to run before (cached per build and model file)."""
    key = build_key(model_path)
    with _lock:
        if key in _checked:
            return
        mark = cache_dir() / f"{key}.json"
        if mark.exists():
            _checked.add(key)
            return
        try:
            done = subprocess.run(
                [sys.executable, "-c", script, model_path],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return  # slow is not a crash: the real load will tell
        code = done.returncode
        if code < 0 or code in (128 + signal.SIGSEGV, 128 + signal.SIGILL, 128 + signal.SIGBUS):
            sig = -code if code < 0 else code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            raise UnknownModel(
                f"llama-cpp-python crashed ({name}) evaluating a batch on this CPU, in a test "
                f"process (this one was spared); its build does not run here: {FIX}"
            )
        if code != 0:
            return  # an ordinary error (a bad file, ...): the real load reports it in full
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(json.dumps({"model": model_path, "ok": True}))
        _checked.add(key)
