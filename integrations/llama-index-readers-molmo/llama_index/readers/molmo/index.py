"""One Qdrant collection, both doors: :func:`open_index` opens (or creates) a molmo-rag
collection as a LlamaIndex ``VectorStoreIndex``.

* A collection written by ``molmo-rag index`` answers LlamaIndex retrievers and query
  engines, with ``MetadataFilters`` on the same keys (``kind``, ``source``, ``slide``,
  ``start``, ``end``, ``counts.<label>``), queried with the same embedder.
* Every storage molmo-rag opens: a Qdrant Edge folder (the default of ``molmo-rag index``),
  a qdrant-client local-mode folder, ``:memory:``, a Qdrant server (:class:`MolmoVectorStore`
  works through ``molmo_rag.QdrantIndex``; LlamaIndex's stock ``QdrantVectorStore`` opens a
  server or a local-mode folder only).
* Documents of :class:`~llama_index.readers.molmo.MolmoReader` inserted through it are
  found by ``molmo-rag search`` (``--where``, ``--kind``, ``--source``, ``--after``): the
  collection has the named dense vector ``text-dense`` and the recorded embedder, and each
  point gets the core's payload layout on top of LlamaIndex's own.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from llama_index.vector_stores.qdrant import QdrantVectorStore

from molmo_rag import (
    DEFAULT_COLLECTION,
    PAYLOAD_KEYS,
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


class _StockFilters:
    """LlamaIndex's own translation of ``MetadataFilters`` (and ``doc_ids``/``node_ids``)
    into a Qdrant filter, borrowed from its ``QdrantVectorStore`` so both stores read the
    filters alike; the index translates that filter for whatever storage holds it."""

    _build_subfilter = QdrantVectorStore._build_subfilter
    _build_query_filter = QdrantVectorStore._build_query_filter


class MolmoVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on a molmo-rag collection, on every storage molmo-rag opens:
    a Qdrant Edge folder (the default), a qdrant-client local-mode folder, ``:memory:`` or a
    Qdrant server (through ``molmo_rag.QdrantIndex``; dense vector ``text-dense``).

    Writing: nodes are stored as LlamaIndex's ``QdrantVectorStore`` stores them (so that
    class reads them on a server or local-mode folder), with node ids as point ids; a node
    with molmo metadata (``kind``, ``source``, ``media_id``) also gets the core's payload
    layout (``text``, LangChain's ``page_content``/``metadata``, ``source_prefixes``, and
    ``record_hash`` when its vector is the core's), so ``molmo-rag search`` and LangChain
    read it and ``molmo-rag index`` knows it is current. Reading: ``MetadataFilters`` (EQ,
    NE, GT, GTE, LT, LTE, IN, NIN, IS_EMPTY, TEXT_MATCH, AND/OR, nested) on the payload keys
    (``kind``, ``source``, ``slide``, ``start``, ``end``, ``counts.<label>``), which the
    collection's payload indexes serve; points written by ``molmo-rag index`` become nodes
    with the payload keys as metadata (layout keys dropped, thumbnails and points kept out
    of embedding and prompt); a hit showing a picture comes back as an ``ImageNode``.
    Async methods run the blocking store in a worker thread.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection_name: str = Field(description="The collection of the index.")
    embedder_name: str | None = Field(
        default=None, description="The embedder recorded in the collection (what record_hash is computed for)."
    )
    _store: QdrantIndex = PrivateAttr()
    _owned: bool = PrivateAttr(default=False)

    def __init__(self, store: QdrantIndex, *, embedder_name: str | None = None, owned: bool = False, **kwargs: Any):
        super().__init__(collection_name=store.collection, embedder_name=embedder_name, **kwargs)
        self._store = store
        self._owned = owned

    @classmethod
    def class_name(cls) -> str:
        return "MolmoVectorStore"

    @property
    def client(self) -> QdrantIndex:
        """The ``molmo_rag.QdrantIndex`` this store writes to and reads from."""
        return self._store

    # -- writing -------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        points = []
        for node in nodes:
            payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata)
            payload.update(self._core_payload(node))
            points.append((node.node_id, node.get_embedding(), payload))
        self._store.upsert_points(points)
        return [node.node_id for node in nodes]

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

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._store.delete_where(_StockFilters()._build_query_filter(VectorStoreQuery(doc_ids=[ref_doc_id])))

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        if node_ids is not None and not filters:
            self._store.delete(list(node_ids))
            return
        self._store.delete_where(_StockFilters()._build_query_filter(VectorStoreQuery(node_ids=node_ids, filters=filters)))

    def clear(self) -> None:
        self._store.delete_where(None)

    # -- reading -------------------------------------------------------------------------------
    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.query_embedding is None:
            raise ValueError("MolmoVectorStore searches by vector: the query needs an embedding")
        flt = _StockFilters()._build_query_filter(query)
        points = self._store.query_points(query.query_embedding, flt, query.similarity_top_k)
        return VectorStoreQueryResult(
            nodes=[self._node(p) for p in points], similarities=[float(p.score) for p in points], ids=[str(p.id) for p in points]
        )

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any) -> list[BaseNode]:
        if node_ids is not None and not filters:
            return [self._node(p) for p in self._store.retrieve(list(node_ids))]
        flt = _StockFilters()._build_query_filter(VectorStoreQuery(node_ids=node_ids, filters=filters))
        nodes, offset = [], None
        while True:
            page, offset = self._store.scroll(flt, offset=offset)
            nodes.extend(self._node(p) for p in page)
            if offset is None:
                return nodes

    def _node(self, point: Any) -> BaseNode:
        """The node of a point: as it was inserted through LlamaIndex, or, for a point
        ``molmo-rag index`` wrote, a node whose metadata are the payload keys; a node
        showing a picture (a photo, or a rendered slide or segment frame inserted from
        MolmoReader) comes back as an ``ImageNode`` with its path."""
        payload = dict(point.payload or {})
        if "_node_content" in payload:  # written through LlamaIndex: as it was inserted
            node = metadata_dict_to_node(payload)
            image = _inserted_image(payload)
        else:  # written by molmo-rag index: the payload keys are the metadata
            metadata = {k: v for k, v in payload.items() if k not in _CORE_LAYOUT_KEYS and k != "text"}
            node = TextNode(id_=str(point.id), text=payload.get("text") or "", metadata=metadata)
            node.excluded_embed_metadata_keys = [k for k in metadata if k in EMBED_EXCLUDED_KEYS]
            node.excluded_llm_metadata_keys = [k for k in metadata if k in LLM_EXCLUDED_KEYS]
            image = _photo(metadata)
        if image and not isinstance(node, ImageNode):
            node = ImageNode(**node.model_dump(exclude={"class_name"}), **image)
        return node

    # -- async: the store blocks, so a worker thread keeps the event loop free ------------------
    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        return await asyncio.to_thread(self.delete, ref_doc_id, **kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> None:
        return await asyncio.to_thread(self.delete_nodes, node_ids, filters, **kwargs)

    async def aget_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters, **kwargs)

    async def aclear(self) -> None:
        return await asyncio.to_thread(self.clear)

    def close(self) -> None:
        """Close the index :func:`open_index` opened (an embedded folder is then free for
        another process); an index passed in as ``db`` is left to its owner."""
        if self._owned:
            self._store.close()
            self._owned = False


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
        vector_store = MolmoVectorStore(store, embedder_name=embed_model.model_name, owned=owned)
    except BaseException:
        if owned:
            store.close()
        raise
    index_kwargs.setdefault("embed_model", embed_model)
    return VectorStoreIndex.from_vector_store(vector_store, **index_kwargs)
