"""Text embedders for the index: an offline default and a well-known alternative.

* ``wordllama`` (default): static 256-d embeddings whose weights ship inside the wheel;
  loaded with downloads disabled, so it works with no network at all.
* ``fastembed[:MODEL]``: Qdrant's ONNX embedder (default model BAAI/bge-small-en-v1.5);
  it downloads its model on first use.

Every embedder has a ``name`` and a ``dim``; the index records both and refuses to mix.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from ..errors import ConfigurationError, MissingDependencyError

__all__ = ["Embedder", "WordLlamaEmbedder", "FastEmbedEmbedder", "get_embedder", "DEFAULT_EMBEDDER"]

DEFAULT_EMBEDDER = "wordllama"


@runtime_checkable
class Embedder(Protocol):
    name: str
    """Identity recorded in the collection, e.g. ``wordllama/l2_supercat-256``."""
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, for documents."""

    def embed_query(self, text: str) -> list[float]:
        """The vector of a search query."""


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """wordllama calls ``logging.basicConfig(level=INFO)`` on import, which would make every
    library (httpx...) log to stderr in the host application: undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class WordLlamaEmbedder:
    """WordLlama's bundled ``l2_supercat`` model, loaded fully offline."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256):
        try:
            with _root_logging_kept():
                import wordllama
                from wordllama import WordLlama
        except ImportError as exc:
            raise MissingDependencyError("wordllama", "index", "offline text embeddings") from exc
        package_dir = os.path.dirname(wordllama.__file__)
        try:
            self._model = WordLlama.load(config=config, dim=dim, cache_dir=package_dir, disable_download=True)
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise ConfigurationError(f"wordllama model {config!r} ({dim}-d) is not bundled: {exc}") from exc
        self.name = f"wordllama/{config}-{dim}"
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        with np.errstate(invalid="ignore", divide="ignore"):  # a text without words has no direction
            vectors = self._model.embed(list(texts), norm=True)
        return np.nan_to_num(vectors, nan=0.0, posinf=0.0, neginf=0.0).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


class FastEmbedEmbedder:
    """fastembed's ONNX text models (imported lazily; the model downloads on first use)."""

    def __init__(self, model: str = "BAAI/bge-small-en-v1.5"):
        try:
            from fastembed import TextEmbedding
        except ImportError as exc:
            raise MissingDependencyError("fastembed", "fastembed", "the fastembed embedder") from exc
        self._model = TextEmbedding(model_name=model)
        self.name = f"fastembed/{model}"
        self.dim = len(next(iter(self._model.embed(["dimension probe"]))))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [vector.tolist() for vector in self._model.embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return next(iter(self._model.query_embed(text))).tolist()


_LOADED: dict[str, Embedder] = {}
_LOADING = threading.Lock()


def get_embedder(spec: str | Embedder | None = None) -> Embedder:
    """An embedder from a spec: ``wordllama`` (default), ``fastembed`` or ``fastembed:MODEL``,
    or a recorded name such as ``wordllama/l2_supercat-256``; an Embedder passes through.
    A model is loaded once per process and shared (embedders keep no per-call state)."""
    if spec is not None and not isinstance(spec, str):
        return spec
    spec = (spec or os.environ.get("MOLMO_RAG_EMBEDDER") or DEFAULT_EMBEDDER).strip()
    with _LOADING:
        if spec not in _LOADED:
            _LOADED[spec] = _load_embedder(spec)
        return _LOADED[spec]


def _load_embedder(spec: str) -> Embedder:
    family, _, rest = spec.replace("/", ":", 1).partition(":")
    if family == "wordllama":
        if not rest:
            return WordLlamaEmbedder()
        config, _, dim = rest.rpartition("-")
        if not config or not dim.isdigit():
            raise ConfigurationError(f"bad wordllama embedder {spec!r}: expected wordllama/CONFIG-DIM")
        return WordLlamaEmbedder(config, int(dim))
    if family == "fastembed":
        return FastEmbedEmbedder(rest) if rest else FastEmbedEmbedder()
    raise ConfigurationError(f"unknown embedder {spec!r}; choose wordllama or fastembed[:MODEL]")
