"""LangChain integration of molmo-rag: photos, slide decks and videos as Documents
enriched by AI2's Molmo2, a retriever over molmo-rag's Qdrant collections, and the
offline embedder they share.

* :class:`MolmoLoader`: sources (files, folders, globs, URLs) to Documents, one per photo,
  slide and video segment (``lazy_load`` and a native ``alazy_load``);
* :class:`MolmoBlobParser`: blobs to the same Documents (``GenericLoader``);
* :class:`MolmoDocumentTransformer`: enrich Documents that point at a picture;
* :class:`MolmoEmbeddings`: molmo-rag's embedder (offline ``wordllama`` by default);
* :class:`MolmoRetriever`: search a molmo-rag collection with its filters;
* :func:`molmo_filter`: the same filters for LangChain's ``QdrantVectorStore``;
* :class:`MolmoGroundedCompressor`: Molmo2 checks the top hits and points at the evidence.

Every class that runs Molmo2 takes molmo-rag's run options: a ``molmo_rag.RunOptions``, a
``molmo_rag.Run`` shared between objects, or the options' fields as keywords
(``backend="local", count=["person"]``).
"""

from importlib import metadata

from .compressors import MolmoGroundedCompressor
from .document_loaders import MolmoBlobParser, MolmoLoader
from .document_transformers import MolmoDocumentTransformer
from .embeddings import MolmoEmbeddings
from .retrievers import MolmoRetriever, molmo_filter

try:
    __version__ = metadata.version("langchain-molmo")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = ""
del metadata

__all__ = [
    "MolmoBlobParser",
    "MolmoDocumentTransformer",
    "MolmoEmbeddings",
    "MolmoGroundedCompressor",
    "MolmoLoader",
    "MolmoRetriever",
    "__version__",
    "molmo_filter",
]
