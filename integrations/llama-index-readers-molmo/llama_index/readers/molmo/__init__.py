"""LlamaIndex integration of molmo-rag: photos, slide decks and videos, captioned, described
and counted by AI2's Molmo2, as LlamaIndex documents, metadata and Qdrant indexes.

* :class:`MolmoReader` - one ``ImageDocument`` per photo, slide and video segment;
* :class:`MolmoExtractor` - Molmo2 metadata for image nodes from any reader;
* :class:`MolmoNodeParser` - one ``ImageNode`` per item, id kept, so every store keeps the picture;
* :class:`MolmoEmbedding` - the core's embedder (vectors identical to ``molmo-rag index``);
* :class:`MolmoVectorStore` / :func:`open_index` - a molmo-rag Qdrant collection as a
  ``VectorStoreIndex``, both ways;
* :class:`MolmoGroundedReranker` - Molmo2 checks the top hits and points at the evidence.
"""

from llama_index.readers.molmo.base import MolmoReader, to_image_document
from llama_index.readers.molmo.embedding import MolmoEmbedding
from llama_index.readers.molmo.extractor import MolmoExtractor
from llama_index.readers.molmo.index import MolmoVectorStore, open_index
from llama_index.readers.molmo.node_parser import MolmoNodeParser, to_image_node
from llama_index.readers.molmo.postprocessor import MolmoGroundedReranker
from llama_index.readers.molmo.settings import MolmoLoadError

__all__ = [
    "MolmoEmbedding",
    "MolmoExtractor",
    "MolmoGroundedReranker",
    "MolmoLoadError",
    "MolmoNodeParser",
    "MolmoReader",
    "MolmoVectorStore",
    "open_index",
    "to_image_document",
    "to_image_node",
]
