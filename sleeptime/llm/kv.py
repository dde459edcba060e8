"""KV-prefill artifacts: the llama.cpp KV state of a query prompt's stable prefix.

Reading the context (prefill) is most of the cost of answering a question about a long
context on a local model. At sleep time we evaluate the exact token prefix that the
query path will send (system prompt + notes + context, everything before the question),
copy the *per-sequence* KV state out of llama.cpp (``llama_state_seq_get_data``: only
the KV cells, not ``Llama.save_state``'s copy of the whole logits buffer) and keep it
as a blob. At query time the model restores the blob whose tokens are the longest
prefix of the prompt and evaluates only the question.

Blobs are files under ``settings.kv_dir`` indexed by the ``st_kv_blobs`` table, keyed by
(namespace, model key, hash of the exact prefix token ids). The model key is the hash
of the model file plus the llama.cpp binding version, so a blob is never restored into
a different model. Every load re-checks the file (magic, header, token ids, CRC); a
blob that is missing, truncated, corrupt or rejected by llama.cpp is dropped and the
prompt is evaluated cold, so a bad blob costs time, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from sleeptime.store.schema import KVBlobRow
from sleeptime.store.sql import SQLStore

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from sleeptime.llm.gateway import ModelGateway
    from sleeptime.settings import Settings

log = logging.getLogger(__name__)

MAGIC = b"SLEEPTIME-KV1\n"
_HEADER_LEN = struct.Struct("<I")
#: Only bump a blob's LRU clock when it was last bumped longer ago than this.
TOUCH_EVERY = timedelta(seconds=30)

#: The namespace a model call is made for; blobs are only shared inside one namespace.
_NAMESPACE: ContextVar[str] = ContextVar("sleeptime_kv_namespace", default="")


@contextlib.contextmanager
def kv_scope(namespace: str) -> Iterator[None]:
    """Make model calls in this block look up (and save) blobs of ``namespace`` only,
    so one tenant's prefix state is never restored for another (not even its timing)."""
    token = _NAMESPACE.set(namespace)
    try:
        yield
    finally:
        _NAMESPACE.reset(token)


def current_namespace() -> str:
    return _NAMESPACE.get()


def tokens_hash(tokens: Sequence[int]) -> str:
    return hashlib.sha256(token_bytes(tokens)).hexdigest()


def token_bytes(tokens: Sequence[int]) -> bytes:
    """Token ids as little-endian int32, the form they are hashed and stored in."""
    return struct.pack(f"<{len(tokens)}i", *map(int, tokens))


def common_prefix(a: Any, b: Any) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    xs = a[:n].tolist() if hasattr(a, "tolist") else a[:n]  # numpy arrays: compare ints
    ys = b[:n].tolist() if hasattr(b, "tolist") else b[:n]
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x != y:
            return i
    return n


_FILE_HASHES: dict[tuple[str, int, int], str] = {}
_FILE_HASHES_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a (model) file, computed once per process per (path, size, mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _FILE_HASHES_LOCK:
        if key not in _FILE_HASHES:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _FILE_HASHES[key] = h.hexdigest()
        return _FILE_HASHES[key]


def model_key(path: str | Path) -> str:
    """Identity of what produced a KV state: the weights and the llama.cpp build."""
    try:
        import llama_cpp

        binding = str(llama_cpp.__version__)
    except ImportError:  # pragma: no cover - only used with llama.cpp models
        binding = "none"
    return f"{file_sha256(path)[:40]}:llama-cpp-python-{binding}"


# -- llama.cpp sequence state ------------------------------------------------------------


def get_seq_state(llama: Any, seq_id: int = 0) -> bytes:
    """Copy the KV cells of one sequence out of a llama.cpp context."""
    import llama_cpp

    ctx = llama.ctx
    size = int(llama_cpp.llama_state_seq_get_size(ctx, seq_id))
    buf = (ctypes.c_uint8 * size)()
    n = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq_id))
    if n <= 0 or n > size:
        raise RuntimeError(f"llama_state_seq_get_data copied {n} of {size} bytes")
    return ctypes.string_at(buf, n)


def set_seq_state(llama: Any, data: bytearray, tokens: Sequence[int], seq_id: int = 0) -> bool:
    """Replace the llama context's KV cache with a saved sequence state for ``tokens``
    and tell the Python wrapper those tokens are evaluated. False (and an empty cache)
    if llama.cpp rejects the state."""
    import llama_cpp

    llama._ctx.kv_cache_clear()
    llama.reset()
    if len(tokens) >= llama.n_ctx():
        return False
    buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
    if int(llama_cpp.llama_state_seq_set_data(llama.ctx, buf, len(data), seq_id)) == 0:
        llama._ctx.kv_cache_clear()
        llama.reset()
        return False
    n = len(tokens)
    llama.input_ids[:n] = list(tokens)
    llama.n_tokens = n
    llama._requires_eval = True  # logits are not part of the state: decode at least 1 token
    return True


# -- the blob store ----------------------------------------------------------------------

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
    if database and database != ":memory:" and not database.startswith("file::memory:"):
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


@dataclass(frozen=True)
class KVBlob:
    """One stored prefix state (an index row)."""

    namespace: str
    model_key: str
    prefix_hash: str
    n_tokens: int
    file: str
    size_bytes: int
    context_id: str = ""
    version: int = 0


def _blob(row: KVBlobRow) -> KVBlob:
    return KVBlob(
        namespace=row.namespace,
        model_key=row.model_key,
        prefix_hash=row.prefix_hash,
        n_tokens=row.n_tokens,
        file=row.file,
        size_bytes=row.size_bytes,
        context_id=row.context_id,
        version=row.version,
    )


class KVStore:
    """KV blobs on disk, indexed in SQL, capped at ``max_bytes`` with LRU eviction."""

    def __init__(self, store: SQLStore, directory: str | Path, max_bytes: int) -> None:
        self.store = store
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
        """Store the state of ``tokens``; None when it alone exceeds the size cap."""
        prefix_hash = tokens_hash(tokens)
        header = json.dumps(
            {
                "namespace": namespace,
                "model_key": model_key,
                "prefix_hash": prefix_hash,
                "n_tokens": len(tokens),
                "data_len": len(data),
                "crc32": zlib.crc32(data),
            }
        ).encode()
        ids = token_bytes(tokens)
        size = len(MAGIC) + _HEADER_LEN.size + len(header) + len(ids) + len(data)
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
                f.write(MAGIC + _HEADER_LEN.pack(len(header)) + header + ids)
                f.write(data)
            os.replace(tmp, self._path(file))
            now = datetime.now(UTC)
            try:
                with self.store.session() as s:
                    s.execute(
                        delete(KVBlobRow).where(
                            KVBlobRow.namespace == namespace,
                            KVBlobRow.model_key == model_key,
                            KVBlobRow.prefix_hash == prefix_hash,
                        )
                    )
                    s.add(
                        KVBlobRow(
                            namespace=namespace,
                            model_key=model_key,
                            prefix_hash=prefix_hash,
                            n_tokens=len(tokens),
                            context_id=context_id,
                            version=version,
                            file=file,
                            size_bytes=size,
                            created_at=now,
                            last_used_at=now,
                        )
                    )
            except Exception:
                self._path(file).unlink(missing_ok=True)
                raise
        if context_id and version:
            self.drop_older_versions(namespace, context_id, version)
        return blob

    def _make_room(self, incoming: int) -> int:
        """Evict least recently used blobs until ``incoming`` more bytes fit the cap."""
        evicted = 0
        with self.store.session() as s:
            total = int(s.scalar(select(func.coalesce(func.sum(KVBlobRow.size_bytes), 0))) or 0)
            if total + incoming <= self.max_bytes:
                return 0
            rows = s.scalars(
                select(KVBlobRow).order_by(KVBlobRow.last_used_at, KVBlobRow.created_at)
            ).all()
            for row in rows:
                if total + incoming <= self.max_bytes:
                    break
                total -= row.size_bytes
                self._path(row.file).unlink(missing_ok=True)
                s.delete(row)
                evicted += 1
        if evicted:
            log.info("evicted %d KV blobs to stay under %d bytes", evicted, self.max_bytes)
        return evicted

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
        with self.store.session() as s:
            known = set(s.scalars(select(KVBlobRow.file)).all())
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
        with self.store.session() as s:
            s.execute(
                delete(KVBlobRow).where(
                    KVBlobRow.namespace == blob.namespace,
                    KVBlobRow.model_key == blob.model_key,
                    KVBlobRow.prefix_hash == blob.prefix_hash,
                )
            )
        self._path(blob.file).unlink(missing_ok=True)

    def drop_older_versions(self, namespace: str, context_id: str, version: int) -> int:
        """A new context version makes the old versions' prefixes unservable: free them."""
        with self.store.session() as s:
            rows = s.scalars(
                select(KVBlobRow).where(
                    KVBlobRow.namespace == namespace,
                    KVBlobRow.context_id == context_id,
                    KVBlobRow.version < version,
                )
            ).all()
            for row in rows:
                self._path(row.file).unlink(missing_ok=True)
                s.delete(row)
        return len(rows)

    # -- reading --------------------------------------------------------------------

    def blobs(self, namespace: str | None = None) -> list[KVBlob]:
        q = select(KVBlobRow).order_by(KVBlobRow.last_used_at)
        if namespace is not None:
            q = q.where(KVBlobRow.namespace == namespace)
        with self.store.session() as s:
            return [_blob(r) for r in s.scalars(q).all()]

    def has(self, namespace: str, context_id: str, version: int, model_key: str) -> bool:
        """Whether a prefix state of this context version is stored for this model."""
        q = (
            select(KVBlobRow.prefix_hash)
            .where(
                KVBlobRow.namespace == namespace,
                KVBlobRow.context_id == context_id,
                KVBlobRow.version == version,
                KVBlobRow.model_key == model_key,
            )
            .limit(1)
        )
        with self.store.session() as s:
            return s.scalars(q).first() is not None

    def total_bytes(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(KVBlobRow.size_bytes), 0))) or 0)

    def find(
        self, *, namespace: str, model_key: str, tokens: Sequence[int], below: int | None = None
    ) -> KVBlob | None:
        """The stored blob whose tokens are the longest prefix of ``tokens`` (shorter
        than ``below``, default ``len(tokens)``: at least one token must be left to
        decode, because logits are not part of the state)."""
        limit = len(tokens) if below is None else min(below, len(tokens))
        with self.store.session() as s:
            lengths = sorted(
                s.scalars(
                    select(KVBlobRow.n_tokens)
                    .where(
                        KVBlobRow.model_key == model_key,
                        KVBlobRow.namespace == namespace,
                        KVBlobRow.n_tokens < limit,
                        KVBlobRow.n_tokens > 0,
                    )
                    .distinct()
                ).all()
            )
            if not lengths:
                return None
            h = hashlib.sha256()
            done = 0
            hashes: list[str] = []
            for n in lengths:
                h.update(token_bytes(tokens[done:n]))
                done = n
                hashes.append(h.copy().hexdigest())
            row = s.scalars(
                select(KVBlobRow)
                .where(
                    KVBlobRow.model_key == model_key,
                    KVBlobRow.namespace == namespace,
                    KVBlobRow.prefix_hash.in_(hashes),
                )
                .order_by(KVBlobRow.n_tokens.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            if (
                row.last_used_at is None
                or _aware(row.last_used_at) < datetime.now(UTC) - TOUCH_EVERY
            ):
                s.execute(
                    update(KVBlobRow)
                    .where(
                        KVBlobRow.namespace == row.namespace,
                        KVBlobRow.model_key == row.model_key,
                        KVBlobRow.prefix_hash == row.prefix_hash,
                    )
                    .values(last_used_at=datetime.now(UTC))
                )
            return _blob(row)

    def load(self, blob: KVBlob, tokens: Sequence[int]) -> bytearray | None:
        """The blob's state bytes if the file is intact and is the state of exactly
        ``tokens[:blob.n_tokens]``; otherwise drop the blob and return None."""
        reason = None
        try:
            raw = bytearray(self._path(blob.file).read_bytes())
        except OSError as exc:
            raw, reason = bytearray(), f"unreadable ({exc.strerror})"
        if reason is None:
            reason = _check(raw, blob, tokens)
        if reason is not None:
            log.warning("ignoring KV blob %s: %s", blob.file, reason)
            self.drop(blob)
            return None
        start = len(MAGIC) + _HEADER_LEN.size + _HEADER_LEN.unpack_from(raw, len(MAGIC))[0]
        start += 4 * blob.n_tokens
        del raw[:start]  # in place: no second copy of a multi-MiB state
        return raw


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _check(raw: bytearray, blob: KVBlob, tokens: Sequence[int]) -> str | None:
    """Why ``raw`` is not a valid file for ``blob`` and ``tokens``, or None if it is."""
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + _HEADER_LEN.size:
        return "not a sleeptime KV file"
    (hlen,) = _HEADER_LEN.unpack_from(raw, len(MAGIC))
    pos = len(MAGIC) + _HEADER_LEN.size
    try:
        header = json.loads(bytes(raw[pos : pos + hlen]))
    except ValueError:
        return "bad header"
    expected = {
        "namespace": blob.namespace,
        "model_key": blob.model_key,
        "prefix_hash": blob.prefix_hash,
        "n_tokens": blob.n_tokens,
    }
    for key, value in expected.items():
        if header.get(key) != value:
            return f"{key} mismatch"
    pos += hlen
    n = blob.n_tokens
    if len(tokens) < n or bytes(raw[pos : pos + 4 * n]) != token_bytes(tokens[:n]):
        return "token mismatch"
    pos += 4 * n
    data = memoryview(raw)[pos:]
    try:
        if len(data) != header.get("data_len") or zlib.crc32(data) != header.get("crc32"):
            return "truncated or corrupt state"
    finally:
        data.release()
    return None


# -- sleep-time prefill ------------------------------------------------------------------

#: Questions that begin with different kinds of characters: the query prompt's token
#: prefix shared by all of them cannot depend on how a real question begins.
PROBE_QUESTIONS = ("What is the total?", "(a) 12 + 7?", "¿Cuánto?", "1", '"x"')


def stable_prefix(variants: Sequence[Sequence[int]], pieces: Sequence[bytes]) -> int:
    """Length of the token prefix shared by all ``variants`` (the same prompt with
    different questions), cut back to just after a token that ends a line (``pieces``
    are the detokenised tokens of ``variants[0]``): a newline is a safe boundary for
    BPE, so no merge with the question's first characters can change it."""
    n = len(variants[0])
    for v in variants[1:]:
        n = min(n, common_prefix(variants[0], v))
    while n > 0 and not pieces[n - 1].endswith(b"\n"):
        n -= 1
    return n


@dataclass(frozen=True)
class PrefillResult:
    blob: KVBlob | None
    n_tokens: int
    seconds: float


def prefill_query_prefix(
    model: BaseChatModel,
    kv: KVStore,
    *,
    namespace: str,
    context: str | None,
    learned: str | None,
    context_id: str = "",
    version: int = 0,
    build: Callable[[str], list[BaseMessage]] | None = None,
) -> PrefillResult | None:
    """Evaluate and save the KV state of the query prompt's stable prefix, exactly as
    :func:`sleeptime.prompts.query_messages` builds it (or ``build(question)``, for
    another prompt layout). None if ``model`` is not a llama.cpp model (servers are
    pre-warmed instead, see :func:`prewarm_messages`)."""
    from sleeptime import prompts
    from sleeptime.llm.local import LocalChatModel

    if not isinstance(model, LocalChatModel) or not kv.enabled:
        return None
    if build is None:

        def build(q: str) -> list[BaseMessage]:
            return prompts.query_messages(q, context=context, learned=learned, verbosity=1)

    variants = [build(q) for q in PROBE_QUESTIONS]
    return model.save_prefix(
        kv, variants, namespace=namespace, context_id=context_id, version=version
    )


def prewarm_messages(context: str | None, learned: str | None) -> list[Any]:
    """A request whose prompt shares the query prompt's prefix (everything up to the
    question): sent with ``max_tokens=1`` it fills a server's prefix cache."""
    from sleeptime import prompts

    return prompts.query_messages("", context=context, learned=learned, verbosity=1)


def supports_prewarm(model: BaseChatModel) -> bool:
    """OpenAI-compatible servers (vLLM, llama.cpp server, SGLang, Ollama's /v1) cache
    prompt prefixes; a fake or an in-process model has nothing to warm."""
    return (
        getattr(model, "openai_api_base", None) is not None or type(model).__name__ == "ChatOpenAI"
    )


def attach_kv(model: BaseChatModel, store: SQLStore, settings: Settings) -> KVStore | None:
    """Give a llama.cpp model the blob store of ``store`` (idempotent); None for other
    models or when KV prefill is switched off."""
    from sleeptime.llm.local import LocalChatModel

    if not isinstance(model, LocalChatModel):
        return None
    if not settings.kv_prefill or settings.kv_max_bytes <= 0:
        model.attach_kv(None)
        return None
    kv = model.kv
    if (
        kv is None
        or kv.store is not store
        or kv.directory != kv_directory(store, settings)
        or kv.max_bytes != settings.kv_max_bytes
    ):
        kv = KVStore.from_settings(store, settings)
        model.attach_kv(kv)
    return kv


def prefill_missing(
    store: SQLStore,
    gateway: ModelGateway,
    settings: Settings,
    *,
    namespace: str,
    context_id: str,
    version: int,
) -> bool:
    """True when a finished version should get its KV prefix state (again): the model
    is a llama.cpp model with KV prefill on, and no state is stored (e.g. evicted
    under the size cap), so a re-run of sleep-time rebuilds just that."""
    model = gateway.model
    kv = attach_kv(model, store, settings)
    if kv is None or not kv.enabled:
        return False
    return not kv.has(namespace, context_id, version, model.model_key())  # type: ignore[attr-defined]


def sleep_prefill(
    store: SQLStore,
    gateway: ModelGateway,
    settings: Settings,
    *,
    namespace: str,
    context_id: str,
    version: int,
    context: str,
    learned: str | None,
) -> str:
    """The sleep-time ``prefill`` step: leave the query prompt's prefix computed for the
    model behind ``gateway`` -- a saved KV state (llama.cpp) or a warm server prefix
    cache (OpenAI-compatible servers, one 1-token request, booked as sleep-time).
    Mirrors the query path's choice to drop the raw context when it does not fit.
    Returns what was done, for progress output."""
    from sleeptime.models import Budget

    raw: str | None = context if settings.include_raw_context else None
    fits = getattr(gateway, "fits", None)
    if raw is not None and fits is not None:
        probe = prewarm_messages(raw, learned)
        if not fits(probe, Budget(verbosity=settings.default_verbosity).token_cap):
            raw = None
    if raw is None and not learned:
        return "nothing to prefill"
    model = gateway.model
    kv = attach_kv(model, store, settings)
    if kv is not None:
        with kv_scope(namespace):
            res = prefill_query_prefix(
                model,
                kv,
                namespace=namespace,
                context=raw,
                learned=learned,
                context_id=context_id,
                version=version,
            )
        if res is None or res.blob is None:
            return "KV prefill skipped (prompt too long for the window, or over the size cap)"
        return f"saved the KV state of {res.n_tokens} prefix tokens ({res.blob.size_bytes:,} bytes)"
    if not settings.prewarm or not supports_prewarm(model):
        return "no prefix cache to fill"

    record = store.recorder(namespace, context_id, version, gateway.name)
    gateway.call(
        prewarm_messages(raw, learned), phase="sleep", step="prewarm", max_tokens=1, recorder=record
    )
    return "pre-warmed the server's prefix cache"
