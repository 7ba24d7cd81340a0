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
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from llama_index.vector_stores.qdrant import QdrantVectorStore

from molmo_rag import (
    COUNT_PREFIX,
    DEFAULT_COLLECTION,
    LAYOUT_KEYS,
    VECTOR_NAME,
    ConfigurationError,
    MediaRecord,
    QdrantIndex,
    get_embedder,
    is_local_path,
    public_keys,
)
from molmo_rag import open_index as open_store

from .base import EMBED_EXCLUDED_KEYS, LLM_EXCLUDED_KEYS
from .embedding import MolmoEmbedding

__all__ = ["MolmoVectorStore", "open_index"]

T = TypeVar("T")

_CORE_LAYOUT_KEYS = LAYOUT_KEYS  # the core's bookkeeping and framework copies: never node metadata
"""Payload keys the core writes for other doors (LangChain, its own search), not metadata."""


class _StockFilters:
    """LlamaIndex's own translation of ``MetadataFilters`` (and ``doc_ids``/``node_ids``)
    into a Qdrant filter, borrowed from its ``QdrantVectorStore`` so both stores read the
    filters alike; the index translates that filter for whatever storage holds it."""

    _build_subfilter = QdrantVectorStore._build_subfilter
    _build_query_filter = QdrantVectorStore._build_query_filter


def _stock_filter(node_ids: list[str] | None = None, filters: MetadataFilters | None = None, doc_ids: list[str] | None = None) -> Any:
    return _StockFilters()._build_query_filter(VectorStoreQuery(node_ids=node_ids, filters=filters, doc_ids=doc_ids))


class MolmoVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on a molmo-rag collection, on every storage molmo-rag opens:
    a Qdrant Edge folder (the default), a qdrant-client local-mode folder, ``:memory:`` or a
    Qdrant server, through a ``molmo_rag.QdrantIndex`` (dense vector ``text-dense``)::

        store = MolmoVectorStore(molmo_rag.open_index("./my-index"))
        index = VectorStoreIndex(documents, storage_context=StorageContext.from_defaults(vector_store=store),
                                 embed_model=MolmoEmbedding())

    Writing: nodes are stored as LlamaIndex's ``QdrantVectorStore`` stores them (so that
    class reads them on a server or local-mode folder), with node ids as point ids; a node
    with molmo metadata (``kind``, ``source``, ``media_id``) also gets the core's payload
    layout (``text``, LangChain's ``page_content``/``metadata``, ``source_prefixes``, and
    ``record_hash`` when its vector is the core's), so ``molmo-rag search`` and LangChain
    read it and ``molmo-rag index`` knows it is current. A new collection is made at the
    first write in the core's layout, recording ``embedder_name`` (default: the embedder
    ``MolmoEmbedding()`` loads). Reading: ``MetadataFilters`` (EQ, NE, GT, GTE, LT, LTE, IN,
    NIN, IS_EMPTY, TEXT_MATCH, AND/OR/NOT, nested; LlamaIndex's own translation, the one its
    ``QdrantVectorStore`` uses) on the payload keys (``kind``, ``source``, ``slide``,
    ``start``, ``end``, ``counts.<label>``), which the collection's payload indexes serve;
    ``vector_store_kwargs={"qdrant_filters": Filter(...)}`` replaces them with a
    ``qdrant_client.models.Filter``. Points written by ``molmo-rag index`` become nodes with
    the payload keys as metadata (layout keys dropped, thumbnails and points kept out of
    embedding and prompt); a hit showing a picture comes back as an ``ImageNode``. Async
    methods run the blocking store in a worker thread, one call at a time.

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        import molmo_rag
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.readers.molmo import MolmoEmbedding, MolmoNodeParser, MolmoVectorStore

        store = MolmoVectorStore(molmo_rag.open_index("./my-index"), owned=True)
        index = VectorStoreIndex(
            MolmoNodeParser().get_nodes_from_documents(documents),
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=MolmoEmbedding(),
        )
        nodes = index.as_retriever(similarity_top_k=5).retrieve("two people")
        nodes = await index.as_retriever(similarity_top_k=5).aretrieve("two people")
        store.close()
        ```
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection_name: str = Field(description="The collection of the index.")
    embedder_name: str | None = Field(
        default=None,
        description="The embedder the collection records (what record_hash is computed for); None: the recorded one, "
        "else the default embedder at the first write.",
    )
    _store: QdrantIndex = PrivateAttr()
    _owned: bool = PrivateAttr(default=False)
    _dim: int | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _api_key: str | None = PrivateAttr(default=None)

    def __init__(self, store: QdrantIndex, *, embedder_name: str | None = None, owned: bool = False, **kwargs: Any):
        """``store``: an open ``molmo_rag.open_index(...)``; ``owned``: close it with :meth:`close`."""
        if not isinstance(store, QdrantIndex):
            raise TypeError(f"MolmoVectorStore takes a molmo_rag.QdrantIndex (molmo_rag.open_index(...)), not {type(store).__name__}")
        recorded = (store.embedder_info() or {}).get("embedder")
        super().__init__(collection_name=store.collection, embedder_name=embedder_name or recorded, **kwargs)
        self._store = store
        self._owned = owned

    @classmethod
    def class_name(cls) -> str:
        return "MolmoVectorStore"

    def __reduce__(self) -> tuple:
        """A copy opens the same collection where it lands (a folder by its path, a server
        by its URL, with the key :func:`open_index` was given or ``QDRANT_API_KEY``) and
        closes it with :meth:`close`; an embedded folder is opened by one process at a
        time, so close this one first. A ``:memory:`` collection lives in this process only
        and does not pickle. Never a copy without its store."""
        store = self._store
        if store.location == ":memory:":
            raise TypeError(
                "a MolmoVectorStore on ':memory:' cannot be pickled: the collection lives in this process only "
                "(use a folder or a Qdrant server to share it)"
            )
        return (_reopened, (store.location, store.is_local, store.collection, self.embedder_name, self._api_key))

    @property
    def client(self) -> QdrantIndex:
        """The ``molmo_rag.QdrantIndex`` this store writes to and reads from (its ``.client``
        is the ``QdrantClient`` of a server or local-mode folder, None on Qdrant Edge)."""
        return self._store

    # -- writing -------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        if not nodes:
            return []
        self._ensure_collection(len(nodes[0].get_embedding()))
        points = []
        for node in nodes:
            payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata)
            payload.update(self._core_payload(node))
            points.append((node.node_id, node.get_embedding(), payload))
        self._store.upsert_points(points)
        return [node.node_id for node in nodes]

    def _ensure_collection(self, dim: int) -> None:
        """The collection in the core's layout, made for ``embedder_name`` if new; vectors of
        another size than the collection holds are refused."""
        if self.embedder_name is None:
            default = get_embedder()
            if default.dim != dim:
                raise ConfigurationError(
                    f"these nodes have {dim}-d vectors, not those of molmo-rag's default embedder {default.name} "
                    f"({default.dim}-d): embed with MolmoEmbedding(), or name your embedder with MolmoVectorStore(..., embedder_name=...)",
                    option="embedder",
                )
            self.embedder_name = default.name
        if self._dim == dim:
            return
        self._store.ensure((self.embedder_name, dim))
        stored = (self._store.embedder_info() or {}).get("dim")
        if stored != dim:  # ensure checks a collection once per index: this store's nodes too
            raise ConfigurationError(
                f"collection {self.collection_name!r} holds {stored}-d vectors; these nodes have {dim}-d ones. "
                "Vectors of different embedders cannot be mixed: use the same embedder or another collection.",
                option="embedder",
            )
        self._dim = dim

    def _core_payload(self, node: BaseNode) -> dict[str, Any]:
        metadata = node.metadata
        if not all(isinstance(metadata.get(key), str) for key in ("kind", "source", "media_id")):
            return {}
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        record = MediaRecord(payload={k: metadata[k] for k in public_keys(metadata)}, text=text)
        payload = record.point_payload(self.embedder_name or "")
        if not self.embedder_name or node.get_content(metadata_mode=MetadataMode.EMBED) != text:
            payload.pop("record_hash", None)  # its vector is not the one the core would make
        return payload

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of one source document (their ``ref_doc_id``)."""
        self._store.delete_where(_stock_filter(doc_ids=[ref_doc_id]))

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete the nodes with these ids, or those passing ``filters``, or both (either
        alone selects nothing when None; :meth:`clear` deletes every node)."""
        if node_ids is None and not (filters and filters.filters):
            return
        if not filters or not filters.filters:
            self._store.delete(list(node_ids or []))
            return
        self._store.delete_where(_stock_filter(node_ids=node_ids, filters=filters))

    def clear(self) -> None:
        """Delete every node; the collection stays, with its embedder and payload indexes."""
        self._store.delete_where(None)

    # -- reading -------------------------------------------------------------------------------
    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValueError(f"MolmoVectorStore searches the dense vector {VECTOR_NAME!r} only, not in {query.mode.value!r} mode")
        if query.query_embedding is None:
            raise ValueError("MolmoVectorStore searches by vector: the query needs an embedding")
        flt = kwargs.get("qdrant_filters")
        if flt is None:
            flt = _StockFilters()._build_query_filter(query)
        points = self._store.query_points(query.query_embedding, flt, query.similarity_top_k)
        return VectorStoreQueryResult(
            nodes=[self._node(p) for p in points], similarities=[float(p.score) for p in points], ids=[str(p.id) for p in points]
        )

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, limit: int | None = None, **kwargs: Any
    ) -> list[BaseNode]:
        """The nodes with these ids and/or passing ``filters`` (every node when both are
        None), with their embeddings; at most ``limit``."""
        if node_ids is not None and not (filters and filters.filters):
            points = self._store.retrieve(list(node_ids), with_vectors=True)
        else:
            flt = _stock_filter(node_ids=node_ids, filters=filters)
            points, offset = [], None
            while limit is None or len(points) < limit:
                page, offset = self._store.scroll(flt, offset=offset, with_vectors=True)
                points.extend(page)
                if offset is None:
                    break
        return [self._node(p) for p in points[:limit]]

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
            node.excluded_embed_metadata_keys = [k for k in metadata if k in EMBED_EXCLUDED_KEYS or k.startswith(COUNT_PREFIX)]
            node.excluded_llm_metadata_keys = [k for k in metadata if k in LLM_EXCLUDED_KEYS or k.startswith(COUNT_PREFIX)]
            image = _photo(metadata)
        vector = getattr(point, "vector", None)
        if isinstance(vector, dict) and node.embedding is None:
            node.embedding = vector.get(VECTOR_NAME)
        if image and not isinstance(node, ImageNode):
            node = ImageNode(**node.model_dump(exclude={"class_name"}), **image)
        return node

    # -- async: the store blocks, so a worker thread keeps the event loop free ------------------
    async def _in_thread(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def locked() -> T:
            with self._lock:  # an embedded store is written by one call at a time
                return call(*args, **kwargs)

        return await asyncio.to_thread(locked)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await self._in_thread(self.query, query, **kwargs)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await self._in_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        return await self._in_thread(self.delete, ref_doc_id, **kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any) -> None:
        return await self._in_thread(self.delete_nodes, node_ids, filters, **kwargs)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, limit: int | None = None, **kwargs: Any
    ) -> list[BaseNode]:
        return await self._in_thread(self.get_nodes, node_ids, filters, limit, **kwargs)

    async def aclear(self) -> None:
        return await self._in_thread(self.clear)

    def close(self) -> None:
        """Close the index :func:`open_index` opened (an embedded folder is then free for
        another process); an index passed in is left to its owner."""
        if self._owned:
            self._store.close()
            self._owned = False


def _reopened(location: str, local: bool, collection: str, embedder_name: str | None, api_key: str | None) -> MolmoVectorStore:
    """What an unpickled :class:`MolmoVectorStore` becomes: the same collection, opened here."""
    if local:
        store = QdrantIndex(location, collection=collection, create=False)
    else:
        store = QdrantIndex(url=location, api_key=api_key, collection=collection, create=False)
    vector_store = MolmoVectorStore(store, embedder_name=embedder_name, owned=True)
    vector_store._api_key = api_key
    return vector_store


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
    storage: str | None = None,
    **index_kwargs: Any,
) -> VectorStoreIndex:
    """A ``VectorStoreIndex`` over a molmo-rag collection, ready for
    ``as_retriever(filters=MetadataFilters(...))``, ``as_query_engine(llm=...)`` and
    ``insert_nodes(MolmoReader(...).load_data(...))``.

    ``db``: an embedded Qdrant folder (default ``MOLMO_RAG_DB`` or ``./.molmo-rag/qdrant``),
    ``":memory:"``, or an open ``molmo_rag.open_index(...)`` (left open, so
    ``molmo_rag.search(..., db=it)`` shares the client); ``url``: a Qdrant server
    (key from ``api_key`` or ``QDRANT_API_KEY``). ``storage``: how a new folder is stored,
    ``"edge"`` (Qdrant Edge, the default) or ``"local"`` (qdrant-client's local mode, which
    LlamaIndex's stock ``QdrantVectorStore`` also opens); an existing folder opens as it was
    written. ``embedder``: None for the one the collection was made with (else the default);
    a new collection is created in the core's layout, so ``molmo-rag search`` reads it.
    Close with ``index.vector_store.close()``.
    """
    if isinstance(db, QdrantIndex):
        if url or storage:
            raise ConfigurationError("give either an open index as db, or a url or storage for a new one, not both")
        store, owned = db, False
    else:
        store, owned = open_store(db, qdrant_url=url, api_key=api_key, collection=collection, create=create, storage=storage), True
    try:
        info = store.embedder_info()
        if info is None and not create:
            raise ConfigurationError(f"no collection {store.collection!r} at {store.location}: index something first")
        embed_model = MolmoEmbedding(embedder if embedder is not None else (info or {}).get("embedder"))
        store.ensure(embed_model.core)  # a new collection in the core's layout; a mismatch is refused
        vector_store = MolmoVectorStore(store, embedder_name=embed_model.model_name, owned=owned)
        vector_store._api_key = api_key  # for a copy sent to another process (see __reduce__)
    except BaseException:
        if owned:
            store.close()
        raise
    index_kwargs.setdefault("embed_model", embed_model)
    return VectorStoreIndex.from_vector_store(vector_store, **index_kwargs)
