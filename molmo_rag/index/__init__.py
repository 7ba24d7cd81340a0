"""The index: records, text embeddings, the Qdrant collection and search filters.

Importing this package loads neither qdrant-client nor wordllama; they load on first use.
"""

from .embeddings import Embedder, FastEmbedEmbedder, WordLlamaEmbedder, get_embedder
from .filters import Condition, SearchFilter, build_filter, label_key, parse_where
from .records import MediaRecord, build_record, point_id
from .store import DEFAULT_COLLECTION, VECTOR_NAME, Hit, QdrantIndex, default_db_path

__all__ = [
    "DEFAULT_COLLECTION",
    "VECTOR_NAME",
    "Condition",
    "Embedder",
    "FastEmbedEmbedder",
    "Hit",
    "MediaRecord",
    "QdrantIndex",
    "SearchFilter",
    "WordLlamaEmbedder",
    "build_filter",
    "build_record",
    "default_db_path",
    "get_embedder",
    "label_key",
    "parse_where",
    "point_id",
]
