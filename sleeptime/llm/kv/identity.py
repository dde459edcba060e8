"""What produced a KV state: the hash of the model file plus the llama.cpp binding
version, so a blob is never restored into a different model or build."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from sleeptime.llm.llama_internals import binding_version

_FILE_HASHES: dict[tuple[str, int, int], str] = {}
_FILE_HASHES_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a (model) file, computed once per process per (path, size, mtime)."""
    file_stat = os.stat(path)
    key = (str(Path(path).resolve()), file_stat.st_size, file_stat.st_mtime_ns)
    with _FILE_HASHES_LOCK:
        if key not in _FILE_HASHES:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _FILE_HASHES[key] = h.hexdigest()
        return _FILE_HASHES[key]


def model_key(path: str | Path) -> str:
    """Identity of what produces a KV state: the weights and the llama.cpp build."""
    return f"{file_sha256(path)[:40]}:llama-cpp-python-{binding_version()}"
