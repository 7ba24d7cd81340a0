"""One Qdrant collection, both doors: :func:`open_index` opens (or creates) a molmo-rag
collection as a LlamaIndex ``VectorStoreIndex``.

* A collection written by ``molmo-rag index`` answers LlamaIndex retrievers and query
  engines, with ``MetadataFilters`` on the same keys (``kind``, ``source``, ``slide``,
  ``start``, ``end``, ``counts.<label>``), queried with the same embedder.
* Documents of :class:`~llama_index.readers.molmo.MolmoReader` inserted through it are
  found by ``molmo-rag search`` (``--where``, ``--kind``, ``--source``, ``--after``): the
  collection has the named dense vector ``text-dense`` and the recorded embedder, and each
  point gets the core's payload layout on top of LlamaIndex's own.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode
from llama_index.core.vector_stores.types import (
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.vector_stores.qdrant import QdrantVectorStore

from molmo_rag import (
    DEFAULT_COLLECTION,
    PAYLOAD_KEYS,
    VECTOR_NAME,
    ConfigurationError,
    MediaRecord,
    QdrantIndex,
    is_local_path,
)
from molmo_rag import open_index as open_store

from .base import EMBED_EXCLUDED_KEYS, LLM_EXCLUDED_KEYS
from .embedding import MolmoEmbedding

__all__ = ["MolmoVectorStore", "open_index"]

_CORE_LAYOUT_KEYS = ("page_content", "metadata", "source_prefixes", "record_hash")
"""Payload keys the core writes for other doors (LangChain, its own search), not metadata."""


class MolmoVectorStore(QdrantVectorStore):
    """``QdrantVectorStore`` on a molmo-rag collection (dense vector ``text-dense``).

    Writing: a node with molmo metadata (``kind``, ``source``, ``media_id``) also gets the
    core's payload layout (``text``, LangChain's ``page_content``/``metadata``,
    ``source_prefixes``, and ``record_hash`` when its vector is the core's), so
    ``molmo-rag search`` and LangChain read it and ``molmo-rag index`` knows it is current.
    Reading: points written by ``molmo-rag index`` become nodes with the payload keys as
    metadata (layout keys dropped, thumbnails and points kept out of embedding and prompt).
    With an embedded (path or ``:memory:``) client, the async methods run the sync ones in a
    worker thread, so async retrievers and query engines work without an ``aclient``.
    """

    embedder_name: str | None = Field(
        default=None, description="The embedder recorded in the collection (what record_hash is computed for)."
    )
    _store: QdrantIndex | None = PrivateAttr(default=None)

    def __init__(self, collection_name: str, *, embedder_name: str | None = None, **kwargs: Any):
        kwargs.setdefault("dense_vector_name", VECTOR_NAME)
        super().__init__(collection_name, **kwargs)  # QdrantVectorStore drops fields it does not know
        self.embedder_name = embedder_name

    @classmethod
    def class_name(cls) -> str:
        return "MolmoVectorStore"

    # -- writing -------------------------------------------------------------------------------
    def _build_points(self, nodes: list[BaseNode], sparse_vector_name: str) -> tuple[list[Any], list[str]]:
        points, ids = super()._build_points(nodes, sparse_vector_name)
        for node, point in zip(nodes, points):
            extra = self._core_payload(node)
            if extra:
                point.payload = {**(point.payload or {}), **extra}
        return points, ids

    def _core_payload(self, node: BaseNode) -> dict[str, Any]:
        metadata = node.metadata
        if not all(isinstance(metadata.get(key), str) for key in ("kind", "source", "media_id")):
            return {}
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        record = MediaRecord(payload={k: metadata[k] for k in PAYLOAD_KEYS if k in metadata}, text=text)
        payload = record.point_payload(self.embedder_name or "")
        if not self.embedder_name or node.get_content(metadata_mode=MetadataMode.EMBED) != text:
            payload.pop("record_hash", None)  # its vector is not the one the core would make
        return payload

    # -- reading -------------------------------------------------------------------------------
    def parse_to_query_result(self, response: list[Any]) -> VectorStoreQueryResult:
        """Nodes of the hits; a hit showing a picture (a photo, or a rendered slide or segment
        frame inserted from MolmoReader) comes back as an ``ImageNode`` with its path."""
        result = super().parse_to_query_result(response)
        nodes = []
        for point, node in zip(response, result.nodes):
            payload = point.payload or {}
            if "_node_content" in payload:  # written through LlamaIndex: as it was inserted
                image = _inserted_image(payload)
            else:  # written by molmo-rag index: the payload keys are the metadata
                for key in _CORE_LAYOUT_KEYS:
                    node.metadata.pop(key, None)
                node.excluded_embed_metadata_keys = [k for k in node.metadata if k in EMBED_EXCLUDED_KEYS]
                node.excluded_llm_metadata_keys = [k for k in node.metadata if k in LLM_EXCLUDED_KEYS]
                image = _photo(node.metadata)
            if image and not isinstance(node, ImageNode):
                fields = node.model_dump(exclude={"class_name"})
                node = ImageNode(**fields, **image)
            nodes.append(node)
        result.nodes = nodes
        return result

    # -- async over an embedded client -----------------------------------------------------------
    def _sync(self) -> bool:
        return getattr(self, "_aclient", None) is None

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if self._sync():
            return await asyncio.to_thread(self.query, query, **kwargs)
        return await super().aquery(query, **kwargs)

    async def async_add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        if self._sync():
            return await asyncio.to_thread(self.add, nodes, **kwargs)
        return await super().async_add(nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        if self._sync():
            return await asyncio.to_thread(self.delete, ref_doc_id, **kwargs)
        return await super().adelete(ref_doc_id, **kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> None:
        if self._sync():
            return await asyncio.to_thread(self.delete_nodes, node_ids, filters, **kwargs)
        return await super().adelete_nodes(node_ids, filters, **kwargs)

    async def aget_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> list[BaseNode]:
        if self._sync():
            return await asyncio.to_thread(self.get_nodes, node_ids, filters, **kwargs)
        return await super().aget_nodes(node_ids, filters, **kwargs)

    async def aclear(self) -> None:
        if self._sync():
            return await asyncio.to_thread(self.clear)
        return await super().aclear()

    def close(self) -> None:
        """Close the Qdrant client :func:`open_index` opened (an embedded path is then free
        for another client); an index passed in as ``db`` is left to its owner."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _inserted_image(payload: dict) -> dict[str, str]:
    """The picture of a node inserted as an ImageDocument (its ``image_resource``)."""
    if payload.get("_node_type") not in ("ImageDocument", "Document"):
        return {}
    try:
        resource = json.loads(payload["_node_content"]).get("image_resource") or {}
    except (TypeError, ValueError):
        return {}
    found = {"image_path": resource.get("path"), "image_url": resource.get("url"), "image_mimetype": resource.get("mimetype")}
    if not (found["image_path"] or found["image_url"]):
        return {}
    return {k: str(v) for k, v in found.items() if v}


def _photo(metadata: dict) -> dict[str, str]:
    """The photo of a point written by ``molmo-rag index``: its source file or URL."""
    source = metadata.get("source")
    if metadata.get("kind") != "image" or not isinstance(source, str):
        return {}
    if source.startswith(("http://", "https://")):
        return {"image_url": source}
    if is_local_path(source) and os.path.isfile(source):
        return {"image_path": source}
    return {}


def open_index(
    db: str | os.PathLike | QdrantIndex | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    embedder: str | None = None,
    create: bool = True,
    **index_kwargs: Any,
) -> VectorStoreIndex:
    """A ``VectorStoreIndex`` over a molmo-rag collection, ready for
    ``as_retriever(filters=MetadataFilters(...))``, ``as_query_engine(llm=...)`` and
    ``insert_nodes(MolmoReader(...).load_data(...))``.

    ``db``: an embedded Qdrant folder (default ``MOLMO_RAG_DB`` or ``./.molmo-rag/qdrant``),
    ``":memory:"``, or an open ``molmo_rag.open_index(...)`` (left open, so
    ``molmo_rag.search(..., db=it)`` shares the client); ``url``: a Qdrant server
    (key from ``api_key`` or ``QDRANT_API_KEY``). ``embedder``: None for the one the
    collection was made with (else the default); a new collection is created in the
    core's layout, so ``molmo-rag search`` reads it. Close with ``index.vector_store.close()``.
    """
    if isinstance(db, QdrantIndex):
        if url:
            raise ConfigurationError("give either an open index as db or a url, not both")
        store, owned = db, False
    else:
        store, owned = open_store(db, qdrant_url=url, api_key=api_key, collection=collection, create=create), True
    try:
        info = store.embedder_info()
        if info is None and not create:
            raise ConfigurationError(f"no collection {store.collection!r} at {store.location}: index something first")
        embed_model = MolmoEmbedding(embedder if embedder is not None else (info or {}).get("embedder"))
        store.ensure(embed_model.core)  # a new collection in the core's layout; a mismatch is refused
        vector_store = MolmoVectorStore(
            collection_name=store.collection,
            client=store.client,
            dense_vector_name=VECTOR_NAME,
            embedder_name=embed_model.model_name,
        )
    except BaseException:
        if owned:
            store.close()
        raise
    vector_store._store = store if owned else None
    index_kwargs.setdefault("embed_model", embed_model)
    return VectorStoreIndex.from_vector_store(vector_store, **index_kwargs)
