"""molmo-rag: make images, slide decks and videos searchable in RAG pipelines with Molmo2.

The names below are the whole user surface (the integrations import nothing else); the
ones that pull in more machinery (readers, backends, the index) load on first use, so
``import molmo_rag`` stays light. The document seam every integration stands on is
:func:`iter_documents` / :func:`aiter_documents` (sources in, :class:`MediaDocument` or
:class:`Failure` out). Two jobs keep their submodule's name, because a function of that
name here would be shadowed by the submodule once it is imported: ``molmo_rag.pipeline.index``
and ``molmo_rag.analyze.analyze`` (their async twins, :func:`aindex` and :func:`aanalyze`,
are here). ``docs/architecture.md`` maps the layers.
"""

from importlib import import_module
from typing import Any

from .errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    CacheWriteError,
    ConfigurationError,
    CorruptMediaError,
    EmptyMediaError,
    IndexUnavailableError,
    InputError,
    InsufficientBalanceError,
    JobFailedError,
    JobNotFoundError,
    MalformedAnswerError,
    MediaTooLargeError,
    MissingDependencyError,
    MolmoRagError,
    RateLimitError,
    ResponseFormatError,
    SourceNotFoundError,
    UnreachableSourceError,
    UnsupportedMediaError,
    UnsupportedTaskError,
    UsageError,
)

__version__ = "0.1.0"

# errors: one tree under MolmoRagError (light, so imported at once)
_ERRORS = [
    name for name, value in list(globals().items())
    if isinstance(value, type) and issubclass(value, MolmoRagError)
]

# module -> the public names it holds, loaded on first use (one group per layer)
_LAZY_GROUPS: dict[str, tuple[str, ...]] = {
    # tasks: what to ask, and Molmo2's answers read back
    "molmo_rag.tasks": ("Ask", "Caption", "Count", "Scene", "VideoTask", "Task", "task_from_dict"),
    "molmo_rag.points": ("Point", "parse_count", "parse_points"),
    # backends: open one by name (or make one from its class) and send it requests
    "molmo_rag.backends.base": ("Backend", "Request", "get_backend", "create_backend"),
    # media: sources to items, one source door, what the bytes are
    "molmo_rag.media": (
        "read", "MediaItem", "ReaderOptions", "Blob", "sniff", "as_source_list", "is_local_path", "absolute_source",
    ),
    "molmo_rag.media.options": ("IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS"),
    # running: results, failures, the planner's options, the result cache
    "molmo_rag.results": ("Result", "Failure"),
    "molmo_rag.enrich": ("EnrichOptions",),
    "molmo_rag.cache": ("ResultCache",),
    # one run: its options as data, and the backend, cache and planner made from them
    "molmo_rag.run": ("Run", "RunOptions", "RunChoices"),
    # jobs: the document seam, tasks over sources, index and search
    "molmo_rag.documents": ("MediaDocument", "iter_documents", "aiter_documents"),
    "molmo_rag.analyze": ("aanalyze",),
    "molmo_rag.pipeline": (
        "aindex", "search", "remove", "labels", "count_labels", "open_index", "embedder_for", "RunSummary", "Hits",
    ),
    # the index: the Qdrant collection, its payload layout, filters, count words, embedders
    "molmo_rag.index.store": ("QdrantIndex", "Hit", "DEFAULT_COLLECTION", "VECTOR_NAME", "STORAGES", "default_db_path"),
    "molmo_rag.index.migrate": ("migrate", "MigrateSummary"),
    "molmo_rag.index.records": ("MediaRecord", "PAYLOAD_KEYS", "LAYOUT_KEYS", "COUNT_PREFIX", "count_key", "flat_counts", "public_keys", "point_id"),
    "molmo_rag.pictures": ("picture_folder",),
    "molmo_rag.backends.shared": ("close_shared_backends",),
    "molmo_rag.index.filters": ("SearchFilter", "build_filter", "parse_where", "metadata_filter"),
    "molmo_rag.index.count_words": ("CountQuery", "split_counts"),
    "molmo_rag.index.embeddings": ("Embedder", "DEFAULT_EMBEDDER", "get_embedder"),
    # grounding: re-rank hits by counting what the query names, visual citations
    "molmo_rag.grounding": ("Grounder", "GroundedHits", "ground", "aground", "draw", "NO_PICTURE"),
}

_LAZY = {name: module for module, names in _LAZY_GROUPS.items() for name in names}

__all__ = sorted([*_ERRORS, *_LAZY])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'molmo_rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
