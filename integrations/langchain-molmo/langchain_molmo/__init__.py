"""LangChain integration of molmo-rag: photos, slide decks and videos as Documents
enriched by AI2's Molmo2, a retriever over molmo-rag's Qdrant collections, and the
offline embedder they share.

* :class:`MolmoLoader`: sources (files, folders, globs, URLs) to Documents, one per photo,
  slide and video segment (``lazy_load`` and a native ``alazy_load``);
* :class:`MolmoBlobParser`: blobs to the same Documents (``GenericLoader``);
* :class:`MolmoDocumentTransformer`: enrich Documents that point at a picture;
* :class:`MolmoEmbeddings`: molmo-rag's embedder (offline ``wordllama`` by default);
* :class:`MolmoRetriever`: search a molmo-rag collection with its filters;
* :class:`MolmoVectorStore`: a molmo-rag collection as a ``VectorStore`` (the embedded
  Qdrant Edge default, a local-mode folder or a server), in the layout every door reads;
* :func:`molmo_filter`: the same filters for LangChain's ``QdrantVectorStore``;
* :class:`MolmoGroundedCompressor`: Molmo2 checks the top hits and points at the evidence;
* :func:`image_message`, :func:`image_blocks`, :func:`document_image_block`: retrieved
  Documents as standard image content blocks for a multimodal chat model (the picture
  each Document carries in ``metadata["image_path"]``).

Every class that runs Molmo2 takes molmo-rag's run options: a ``molmo_rag.RunOptions``, a
``molmo_rag.Run`` shared between objects, or the options' fields as keywords
(``backend="local", backend_options={"device": "cuda"}, count=["person"]``). Objects made
from options share the process's one backend of that configuration, and pickle as their
options (a copy in another process makes the backend there, once).
"""

from importlib import metadata

from .compressors import MolmoGroundedCompressor
from .document_loaders import MolmoBlobParser, MolmoLoader
from .document_transformers import MolmoDocumentTransformer
from .embeddings import MolmoEmbeddings
from .images import document_image_block, image_blocks, image_message
from .retrievers import MolmoRetriever, molmo_filter
from .vectorstores import MolmoVectorStore

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
    "MolmoVectorStore",
    "__version__",
    "document_image_block",
    "image_blocks",
    "image_message",
    "molmo_filter",
]
