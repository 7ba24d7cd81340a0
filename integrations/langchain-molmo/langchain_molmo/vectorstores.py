"""``MolmoVectorStore``: a LangChain ``VectorStore`` over a molmo-rag collection, on every
storage molmo-rag opens: the embedded Qdrant Edge default, a qdrant-client local-mode
folder, or a Qdrant server by URL (``molmo_rag.QdrantIndex``).

Points are laid out as ``molmo-rag index`` lays them out (metadata keys at the payload
root, where the payload indexes are, plus ``page_content`` and the whole ``metadata`` as
LangChain's stock ``QdrantVectorStore`` reads them), so one collection answers this store,
``MolmoRetriever``, ``molmo-rag search`` and the stock class alike.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from molmo_rag import LAYOUT_KEYS

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import QdrantIndex

__all__ = ["MolmoVectorStore"]

_NAMESPACE = uuid.UUID("0b5c2bd2-4d5e-4b83-9d1e-9a3c1f6c7a21")
_RESERVED = (*LAYOUT_KEYS, "lc_id")
"""Payload keys of the layout itself: a metadata key of the same name is kept only under ``metadata``."""


def point_id(document_id: str) -> str:
    """The Qdrant point id of a LangChain document id: the id itself when it is a UUID (as
    molmo-rag's are), else a UUID made from it (Qdrant takes only UUIDs and integers)."""
    try:
        return str(uuid.UUID(str(document_id)))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, str(document_id)))


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class MolmoVectorStore(VectorStore):
    """A molmo-rag collection as a LangChain vector store.

    Setup:
        .. code-block:: bash

            pip install -e integrations/langchain-molmo   # molmo-rag with the index extra

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoEmbeddings, MolmoVectorStore

            store = MolmoVectorStore(db="./my-index")                 # embedded (Qdrant Edge)
            store = MolmoVectorStore(url="http://qdrant:6333")         # a server or cluster

    Add and search:
        .. code-block:: python

            store.add_documents(MolmoLoader("media/", count=["person"]).load())
            docs = store.similarity_search("people at a whiteboard", k=4, filter={"count_person": {"$gte": 2}})
            docs = store.similarity_search("a chart", filter="kind==slide, count.chart>=1")   # molmo-rag's --where

    Async:
        .. code-block:: python

            docs = await store.asimilarity_search("a dog on a beach")

    Args:
        embedding: the embeddings (default: ``MolmoEmbeddings()``, the vectors ``molmo-rag
            index`` writes; another model needs a collection of its own).
        db: an embedded index folder (default ``MOLMO_RAG_DB`` or ``./.molmo-rag/qdrant``),
            or an open ``molmo_rag.QdrantIndex``.
        url, api_key: a Qdrant server or cluster instead (key default ``QDRANT_API_KEY``).
        collection: the collection (default ``molmo_rag``).
        storage: the storage of a new embedded folder (``"edge"``, the default, or
            ``"local"``); an existing folder opens as it was written.
        embedder_name: the name recorded in the collection for ``embedding`` (default: the
            molmo-rag embedder's name, or the embeddings' class name).

    Ids: a Document's ``id`` (molmo-rag's are the point ids) or the ids given; an id that
    is not a UUID is stored under a UUID made from it and comes back as given. Filters
    (``filter=``): a dict of metadata conditions (``{"kind": "slide", "count_person":
    {"$gte": 2}}``, operators ``$eq $ne $gt $gte $lt $lte $in $nin``, ``$and``, ``$or``),
    molmo-rag's ``--where`` conditions (a string or a list), or a ``molmo_rag.SearchFilter``.
    The embedded folder is held open from the first call until :meth:`close` (one process
    at a time can hold it).
    """

    def __init__(
        self,
        embedding: Embeddings | None = None,
        *,
        db: str | os.PathLike[str] | QdrantIndex | None = None,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "molmo_rag",
        storage: str | None = None,
        embedder_name: str | None = None,
    ) -> None:
        if db is not None and url:
            raise ValueError("give either db (a folder) or url (a Qdrant server), not both")
        if embedding is None:
            from .embeddings import MolmoEmbeddings

            embedding = MolmoEmbeddings()
        self._embedding = embedding
        self.db, self.url, self._api_key, self.collection, self.storage = db, url, api_key, collection, storage
        self.embedder_name = embedder_name
        self._index: QdrantIndex | None = db if _is_index(db) else None
        self._owned = self._index is None
        self._lock = threading.RLock()

    # -- what it holds -------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def index(self) -> QdrantIndex:
        """The ``molmo_rag.QdrantIndex`` (opened on first use)."""
        with self._lock:
            if self._index is None:
                from molmo_rag import open_index

                if self.url:
                    self._index = open_index(qdrant_url=self.url, api_key=self._api_key, collection=self.collection)
                else:
                    self._index = open_index(self.db, collection=self.collection, storage=self.storage)
            return self._index

    def _name(self) -> str:
        if self.embedder_name:
            return self.embedder_name
        name = getattr(self._embedding, "name", None)  # MolmoEmbeddings: the core embedder's own name
        return name if isinstance(name, str) else f"langchain:{type(self._embedding).__name__}"

    def _core_vectors(self) -> bool:
        """Whether the vectors are the ones ``molmo-rag index`` would make (its record hash holds)."""
        from .embeddings import MolmoEmbeddings

        return isinstance(self._embedding, MolmoEmbeddings)

    # -- writing -------------------------------------------------------------------------
    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None, **kwargs: Any
    ) -> list[str]:
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        if ids is None:
            ids = [str(uuid.uuid4()) for _ in texts]
        ids = [str(i) if i is not None else str(uuid.uuid4()) for i in ids]
        if not (len(texts) == len(metadatas) == len(ids)):
            raise ValueError(f"{len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids: give one of each per text")
        if not texts:
            return []
        vectors = self._embedding.embed_documents(texts)
        with self._lock:
            store = self.index
            store.ensure((self._name(), len(vectors[0])))
            points = [
                (point_id(doc_id), vector, self._payload(text, dict(metadata or {}), doc_id))
                for doc_id, text, metadata, vector in zip(ids, texts, metadatas, vectors)
            ]
            store.upsert_points(points)
        return ids

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        if "ids" not in kwargs and any(d.id for d in documents):
            kwargs["ids"] = [d.id or str(uuid.uuid4()) for d in documents]
        return self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], **kwargs)

    def _payload(self, text: str, metadata: dict, doc_id: str) -> dict:
        from molmo_rag import MediaRecord, public_keys

        root = {k: v for k, v in metadata.items() if k not in _RESERVED and _plain(v)}  # what filters read
        if all(isinstance(metadata.get(k), str) for k in ("kind", "source", "media_id")):  # a molmo-rag document
            record = MediaRecord(payload={k: metadata[k] for k in public_keys(metadata)}, text=text)
            core = record.point_payload(self._name())
            if not self._core_vectors():
                core.pop("record_hash", None)  # its vector is not the one the core would make
            root.update({k: v for k, v in core.items() if k != "metadata"})
        return {**root, "text": text, "page_content": text, "metadata": metadata, "lc_id": doc_id}

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the documents with these ids; every document when ``ids`` is None (as
        LangChain's interface says; the collection stays, with its embedder and indexes)."""
        if kwargs:
            raise TypeError(f"MolmoVectorStore.delete got unexpected argument(s): {', '.join(sorted(kwargs))}")
        with self._lock:
            if not self.index.exists():
                return True
            if ids is None:
                self.index.delete_where(None)
            else:
                self.index.delete([point_id(i) for i in ids])
        return True

    # -- reading -------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        with self._lock:
            if not self.index.exists():
                return []
            points = self.index.retrieve([point_id(i) for i in ids])
        return [self._document(p) for p in points]

    def similarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:  # noqa: A002
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any  # noqa: A002
    ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, filter=filter, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:  # noqa: A002
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter=filter, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Any = None, **kwargs: Any  # noqa: A002
    ) -> list[tuple[Document, float]]:
        if kwargs:
            raise TypeError(f"MolmoVectorStore search got unexpected argument(s): {', '.join(sorted(kwargs))}")
        with self._lock:
            store = self.index
            if not store.exists():
                return []
            points = store.query_points(embedding, self._filter(store, filter), k)
        return [(self._document(p), float(p.score)) for p in points]

    def _select_relevance_score_fn(self) -> Any:
        return lambda score: (score + 1.0) / 2.0  # cosine in [-1, 1] -> [0, 1]

    @staticmethod
    def _filter(store: QdrantIndex, spec: Any) -> Any:
        from molmo_rag import SearchFilter, metadata_filter

        if spec is None:
            return None
        if isinstance(spec, dict):
            return metadata_filter(spec)
        if isinstance(spec, str):
            spec = [spec]
        if isinstance(spec, (list, tuple)):
            spec = SearchFilter(where=list(spec))
        if isinstance(spec, SearchFilter):
            return store.filter_for(spec)
        return spec  # a filter tree or a qdrant_client Filter built by the caller

    @staticmethod
    def _document(point: Any) -> Document:
        payload = point.payload or {}
        metadata = payload.get("metadata")
        if not isinstance(metadata, dict):  # a point in another layout: its keys are the metadata
            metadata = {k: v for k, v in payload.items() if k not in _RESERVED}
        text = payload.get("page_content") if isinstance(payload.get("page_content"), str) else payload.get("text") or ""
        return Document(page_content=text, metadata=dict(metadata), id=str(payload.get("lc_id") or point.id))

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> MolmoVectorStore:
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Close the index this store opened (a ``QdrantIndex`` handed in is left open)."""
        with self._lock:
            index, self._index = (self._index, None) if self._owned else (None, self._index)
        if index is not None:
            index.close()

    def __enter__(self) -> MolmoVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        """A copy carries where the collection is and the embeddings; it opens its own index."""
        if not self._owned:
            raise TypeError("a MolmoVectorStore over a QdrantIndex handed in does not pickle: give db= or url= instead")
        return {k: v for k, v in self.__dict__.items() if k not in ("_index", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index, self._lock = None, threading.RLock()


def _is_index(value: Any) -> bool:
    from molmo_rag import QdrantIndex

    return isinstance(value, QdrantIndex)
