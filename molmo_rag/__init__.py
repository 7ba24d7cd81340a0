"""molmo-rag: make images, slide decks and videos searchable in RAG pipelines with Molmo2.

The names below are the public API; the ones that pull in more machinery (readers,
backends) load on first use, so ``import molmo_rag`` stays light. The document seam every
integration stands on is :func:`iter_documents` / :func:`aiter_documents` (sources in,
:class:`MediaDocument` or :class:`Failure` out). Whole jobs live in the submodules
``molmo_rag.analyze`` (tasks over sources) and ``molmo_rag.pipeline`` (index and search);
``docs/architecture.md`` maps the layers.
"""

from importlib import import_module
from typing import Any

from .errors import (
    BackendError,
    ConfigurationError,
    InputError,
    MissingDependencyError,
    MolmoRagError,
    UnsupportedTaskError,
)

__version__ = "0.1.0"

_LAZY = {
    "Point": "molmo_rag.points",
    "parse_count": "molmo_rag.points",
    "parse_points": "molmo_rag.points",
    "Ask": "molmo_rag.tasks",
    "Caption": "molmo_rag.tasks",
    "Count": "molmo_rag.tasks",
    "Scene": "molmo_rag.tasks",
    "VideoTask": "molmo_rag.tasks",
    "get_backend": "molmo_rag.backends.base",
    "create_backend": "molmo_rag.backends.base",
    "Request": "molmo_rag.backends.base",
    "Result": "molmo_rag.results",
    "Failure": "molmo_rag.results",
    "MediaDocument": "molmo_rag.documents",
    "iter_documents": "molmo_rag.documents",
    "aiter_documents": "molmo_rag.documents",
    "EnrichOptions": "molmo_rag.enrich",
    "ground": "molmo_rag.grounding",
    "draw": "molmo_rag.grounding",
    "read": "molmo_rag.media",
    "MediaItem": "molmo_rag.media",
    "ReaderOptions": "molmo_rag.media",
}

__all__ = [
    "Ask",
    "BackendError",
    "Caption",
    "ConfigurationError",
    "Count",
    "EnrichOptions",
    "Failure",
    "InputError",
    "MediaDocument",
    "MediaItem",
    "MissingDependencyError",
    "MolmoRagError",
    "Point",
    "ReaderOptions",
    "Request",
    "Result",
    "Scene",
    "UnsupportedTaskError",
    "VideoTask",
    "aiter_documents",
    "create_backend",
    "draw",
    "get_backend",
    "ground",
    "iter_documents",
    "parse_count",
    "parse_points",
    "read",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'molmo_rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
