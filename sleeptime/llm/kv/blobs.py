"""KV blobs on disk: one file per saved prefix state, indexed in SQL
(:class:`sleeptime.store.kv_index.KVIndex`), capped at ``max_bytes`` with LRU eviction.

Blobs are keyed by (namespace, model key, hash of the exact prefix token ids), and the
namespace is an argument of every lookup and write: a tenant's prefix state is never
found for another tenant.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sleeptime.llm.kv import fileformat
from sleeptime.llm.tokens import prefix_hashes, tokens_hash
from sleeptime.store.db import is_in_memory
from sleeptime.store.kv_index import KVBlob, KVIndex
from sleeptime.store.sql import SQLStore

if TYPE_CHECKING:
    from sleeptime.settings import Settings

log = logging.getLogger("sleeptime.llm.kv")

_MEMORY_DIRS: dict[int, Path] = {}


def kv_directory(store: SQLStore, settings: Settings) -> Path:
    """Where blob files go. A relative ``kv_dir`` is taken relative to the folder of a
    SQLite database file, so blobs sit beside the index that names them; an in-memory
    database gets a temporary folder removed at exit (its rows vanish with the process,
    files must not outlive them)."""
    directory = Path(settings.kv_dir)
    if directory.is_absolute() or store.engine.dialect.name != "sqlite":
        return directory
    database = store.engine.url.database
    if database and not is_in_memory(store.engine.url.render_as_string(hide_password=False)):
        return Path(database).resolve().parent / directory
    key = id(store)
    if key not in _MEMORY_DIRS:
        import atexit
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="sleeptime-kv-"))
        atexit.register(shutil.rmtree, tmp, True)
        _MEMORY_DIRS[key] = tmp
    return _MEMORY_DIRS[key]


class KVStore:
    """KV blobs on disk, indexed in SQL, capped at ``max_bytes`` with LRU eviction."""

    def __init__(self, store: SQLStore, directory: str | Path, max_bytes: int) -> None:
        self.store = store
        self.index = KVIndex(store)
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, store: SQLStore, settings: Settings) -> KVStore:
        return cls(store, kv_directory(store, settings), settings.kv_max_bytes)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, file: str) -> Path:
        return self.directory / file

    # -- writing --------------------------------------------------------------------

    def put(
        self,
        *,
        namespace: str,
        model_key: str,
        tokens: Sequence[int],
        data: bytes,
        context_id: str = "",
        version: int = 0,
    ) -> KVBlob | None:
        """Store the state of ``tokens`` for ``namespace``; None when it alone exceeds
        the size cap."""
        prefix_hash = tokens_hash(tokens)
        head, body = fileformat.encode(
            namespace=namespace,
            model_key=model_key,
            prefix_hash=prefix_hash,
            tokens=tokens,
            data=data,
        )
        size = len(head) + len(body)
        if not self.enabled or size > self.max_bytes:
            log.info(
                "KV blob of %d bytes exceeds the cap of %d bytes: not stored", size, self.max_bytes
            )
            return None
        ident = hashlib.sha256(f"{namespace}\0{model_key}\0{prefix_hash}".encode()).hexdigest()
        file = f"{ident[:48]}.kv"
        blob = KVBlob(
            namespace, model_key, prefix_hash, len(tokens), file, size, context_id, version
        )
        with self._lock:
            self._make_room(size)
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self._path(f"{file}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as f:
                f.write(head)
                f.write(body)
            os.replace(tmp, self._path(file))
            try:
                self.index.put(blob)
            except Exception:
                self._path(file).unlink(missing_ok=True)
                raise
        if context_id and version:
            self.drop_older_versions(namespace, context_id, version)
        return blob

    def _make_room(self, incoming: int) -> int:
        """Evict least recently used blobs until ``incoming`` more bytes fit the cap."""
        evicted = self.index.evict(incoming, self.max_bytes)
        for blob in evicted:
            self._path(blob.file).unlink(missing_ok=True)
        if evicted:
            log.info("evicted %d KV blobs to stay under %d bytes", len(evicted), self.max_bytes)
        return len(evicted)

    def evict(self) -> int:
        """Enforce the size cap now (e.g. after lowering it); returns blobs evicted."""
        with self._lock:
            return self._make_room(0)

    def sweep(self, older_than: float = 3600.0) -> int:
        """Delete files in the directory that no row names (left by a crash between the
        file write and the row insert, or by a database that was thrown away), if they
        are older than ``older_than`` seconds. Returns files deleted. Only call it when
        this store's database is the only one using the directory."""
        if not self.directory.is_dir():
            return 0
        known = self.index.files()
        cutoff = time.time() - older_than
        removed = 0
        for path in self.directory.iterdir():
            if not path.name.endswith((".kv", ".tmp")) or path.name in known:
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def drop(self, blob: KVBlob) -> None:
        self.index.delete(blob)
        self._path(blob.file).unlink(missing_ok=True)

    def drop_older_versions(self, namespace: str, context_id: str, version: int) -> int:
        """A new context version makes the old versions' prefixes unservable: free them."""
        dropped = self.index.delete_older_versions(namespace, context_id, version)
        for blob in dropped:
            self._path(blob.file).unlink(missing_ok=True)
        return len(dropped)

    def drop_context(self, namespace: str, context_id: str | None = None) -> int:
        """Delete the blobs of one context, or of a namespace (``context_id`` None)."""
        dropped = self.index.delete_context(namespace, context_id)
        for blob in dropped:
            self._path(blob.file).unlink(missing_ok=True)
        return len(dropped)

    # -- reading --------------------------------------------------------------------

    def blobs(self, namespace: str | None = None) -> list[KVBlob]:
        return self.index.blobs(namespace)

    def has(self, namespace: str, context_id: str, version: int, model_key: str) -> bool:
        """Whether a prefix state of this context version is stored for this model."""
        return self.index.has(namespace, context_id, version, model_key)

    def total_bytes(self) -> int:
        return self.index.total_bytes()

    def find(
        self, *, namespace: str, model_key: str, tokens: Sequence[int], below: int | None = None
    ) -> KVBlob | None:
        """The blob of ``namespace`` whose tokens are the longest prefix of ``tokens``
        (shorter than ``below``, default ``len(tokens)``: at least one token must be left
        to decode, because logits are not part of the state)."""
        limit = len(tokens) if below is None else min(below, len(tokens))
        lengths = self.index.lengths(namespace, model_key, limit)
        if not lengths:
            return None
        return self.index.longest(namespace, model_key, prefix_hashes(tokens, lengths))

    def load(self, blob: KVBlob, tokens: Sequence[int]) -> bytearray | None:
        """The blob's state bytes if the file is intact and is the state of exactly
        ``tokens[:blob.n_tokens]``; otherwise drop the blob and return None."""
        reason = None
        try:
            raw = bytearray(self._path(blob.file).read_bytes())
        except OSError as exc:
            raw, reason = bytearray(), f"unreadable ({exc.strerror})"
        if reason is None:
            reason = fileformat.check(raw, blob, tokens)
        if reason is not None:
            log.warning("ignoring KV blob %s: %s", blob.file, reason)
            self.drop(blob)
            return None
        return fileformat.strip_to_state(raw, blob.n_tokens)
