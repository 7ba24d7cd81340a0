"""``MolmoRetriever`` over a molmo-rag collection, and ``molmo_filter`` for LangChain's own
``QdrantVectorStore`` opened on one."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from ._run import MadeAgainWhenCopied

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Hit, QdrantIndex, SearchFilter

__all__ = ["MolmoRetriever", "molmo_filter"]

Kinds = str | Sequence[str] | None
Where = str | Sequence[str]

_OVERRIDES = ("k", "kind", "where", "source", "after", "before", "count_words")

# Embedded Qdrant lets one client at a time open a folder: searches of this process take turns.
_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _path_lock(path: str) -> threading.Lock:
    key = os.path.realpath(path)
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(key, threading.Lock())


def _search_filter(
    kind: Kinds = None,
    where: Where = (),
    source: str | os.PathLike[str] | None = None,
    after: float | None = None,
    before: float | None = None,
) -> SearchFilter:
    from molmo_rag import SearchFilter

    return SearchFilter(
        kind=[kind] if isinstance(kind, str) else (list(kind) if kind else None),
        where=[where] if isinstance(where, str) else list(where),
        source=os.fspath(source) if source is not None else None,
        after=after,
        before=before,
    )


def hit_document(hit: Hit) -> Document:
    """A molmo-rag search hit as a Document (grounding evidence included when present)."""
    metadata = {**hit.payload, "score": hit.score}
    if hit.grounded is not None:
        metadata.update(grounded=hit.grounded, evidence=hit.evidence, vector_score=hit.vector_score)
    return Document(page_content=hit.text or "", metadata=metadata, id=hit.id)


def molmo_filter(
    *,
    kind: Kinds = None,
    where: Where = (),
    source: str | os.PathLike[str] | None = None,
    after: float | None = None,
    before: float | None = None,
    key_prefix: str = "metadata.",
) -> Any:
    """The Qdrant filter of molmo-rag's search options, for LangChain's ``QdrantVectorStore``
    (``filter=`` of ``similarity_search`` / ``search_kwargs``), keys under ``metadata.``.

    Same language as ``molmo-rag search`` and :class:`MolmoRetriever`: ``kind`` (``image``,
    ``slide``, ``video``, or several), ``where`` (``"count.person>=2"``, ``"slide<=3"``,
    ``"title==Results"``; a list or ``,``-separated: all must hold), ``source`` (a file or
    URL, or a folder / URL prefix), ``after``/``before`` (video segments overlapping that
    time range, seconds). Returns a ``qdrant_client.models.Filter``, or None when no
    option is given. ``key_prefix=""`` gives the filter on the payload root
    (``molmo_rag``'s own layout). A bad condition raises ``molmo_rag.UsageError``.

    A folder ``source`` matches through the ``source_prefixes`` key that ``molmo-rag index``
    writes; documents written by LangChain carry none, so on them ``source`` matches files
    and URLs exactly.
    """
    from molmo_rag import build_filter

    return build_filter(_search_filter(kind, where, source, after, before), key_prefix=key_prefix)


class MolmoRetriever(MadeAgainWhenCopied, BaseRetriever):
    """Search a molmo-rag collection (written by ``molmo-rag index``, ``molmo_rag.pipeline``
    or :class:`~langchain_molmo.MolmoLoader` documents) in words, with molmo-rag's filters.

    Each hit is a ``Document``: ``page_content`` the embedded text, ``metadata`` the payload
    keys (``image_path``, the flat ``count_<label>`` keys included) plus ``score``, ``id``
    the point id (the id :class:`~langchain_molmo.MolmoLoader` gives that item).

    Setup:
        Install ``langchain-molmo`` and index media with ``molmo-rag index`` (or write
        :class:`~langchain_molmo.MolmoLoader` documents into a Qdrant collection).

        .. code-block:: bash

            pip install -U langchain-molmo "molmo-rag[all]"
            molmo-rag index media/ --count person --db ./my-index

    Key init args:
        db: str | QdrantIndex
            folder of an embedded Qdrant (default ``MOLMO_RAG_DB`` or ``./.molmo-rag/qdrant``
            when no ``url`` is given either), or an open ``molmo_rag.QdrantIndex``. An
            embedded folder is opened for each search and closed after it (Qdrant lets one
            client at a time hold it).
        url: str
            a Qdrant server or cluster (key: ``api_key`` or ``QDRANT_API_KEY``).
        collection: str
            the collection name (default ``molmo_rag``).
        k: int
            how many documents to return.
        kind, where, source, after, before:
            filters, as in ``molmo-rag search``.
        embedder: str
            the query embedder (default: the one the collection was made with).
        count_words: bool
            read "at least 3 people"-style phrases as count filters (see ``molmo-rag
            labels`` for the labels a collection counted).

        It runs no Molmo2 backend (so it takes no ``backend`` / ``backend_options``): the
        search is the collection's embedder and Qdrant. Put a
        :class:`~langchain_molmo.MolmoGroundedCompressor` after it to have Molmo2 check hits.

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoRetriever

            retriever = MolmoRetriever(db="./my-index", k=5, kind="video", where="count.person>=2")

    Usage:
        .. code-block:: python

            docs = retriever.invoke("people talking at a whiteboard")
            docs = retriever.invoke("a red car", kind="image", k=2)  # per-call overrides
            print(docs[0].metadata["source"], docs[0].metadata["score"], docs[0].metadata["image_path"])

    Use within a chain:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.runnables import RunnableLambda, RunnablePassthrough
            from langchain_molmo import image_message

            def ask(inputs):  # the question and the retrieved pictures, as image content blocks
                return [image_message(inputs["question"], inputs["docs"])]

            chain = (
                {"docs": retriever, "question": RunnablePassthrough()}
                | RunnableLambda(ask)
                | llm  # any multimodal chat model
                | StrOutputParser()
            )
            chain.invoke("What is written on the whiteboard?")

    Async:
        .. code-block:: python

            docs = await retriever.ainvoke("people talking at a whiteboard")

    A retriever pickles as its fields (an open server connection is made again where the
    copy lands).
    """

    db: Any = None
    url: str | None = None
    api_key: SecretStr | None = None
    collection: str = "molmo_rag"
    k: int = Field(default=4, ge=1)
    kind: Kinds = None
    where: Where = ()
    source: str | None = None
    after: float | None = None
    before: float | None = None
    embedder: str | None = None
    count_words: bool = False
    """Read count phrases of the query ("at least 3 people", "no cars") as count filters on
    the labels counted in the collection, and search the remaining words."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _server: QdrantIndex | None = PrivateAttr(default=None)
    _server_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _check(self) -> MolmoRetriever:
        from molmo_rag import build_filter

        if isinstance(self.db, os.PathLike):
            self.db = os.fspath(self.db)
        if self.db is not None and self.url:
            raise ValueError("give either db (a folder) or url (a Qdrant server), not both")
        build_filter(self._filter())  # a bad condition fails here, not at the first query
        return self

    def _filter(self, **overrides: Any) -> SearchFilter:
        values = {
            name: overrides.get(name, getattr(self, name)) for name in ("kind", "where", "source", "after", "before")
        }
        return _search_filter(**values)

    # -- LangChain's hooks -------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._search(query, kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # Qdrant's embedded mode and the embedder are blocking: a worker thread keeps the loop free.
        return await asyncio.to_thread(self._search, query, kwargs)

    # -- search --------------------------------------------------------------------------
    def _search(self, query: str, overrides: dict[str, Any]) -> list[Document]:
        import molmo_rag

        unknown = sorted(set(overrides) - set(_OVERRIDES))
        if unknown:
            raise TypeError(
                f"MolmoRetriever got unexpected argument(s) {unknown}; per-call options: {list(_OVERRIDES)}"
            )
        k = int(overrides.get("k", self.k))
        flt = self._filter(**overrides)
        options = {
            "kind": flt.kind,
            "where": flt.where,
            "source": flt.source,
            "after": flt.after,
            "before": flt.before,
            "top": k,
            "count_words": bool(overrides.get("count_words", self.count_words)),
        }

        def search(store: QdrantIndex) -> list[Document]:
            hits = molmo_rag.search(
                query, db=store, collection=store.collection, embedder=self._query_embedder(store), **options
            )
            return self._documents(store, hits)

        if isinstance(self.db, molmo_rag.QdrantIndex):
            return search(self.db)
        if self.url or (self.db is None and os.environ.get("MOLMO_RAG_QDRANT_URL")):
            return search(self._server_index())
        path = os.fspath(self.db) if self.db is not None else os.fspath(molmo_rag.default_db_path())
        with _path_lock(path):
            store = molmo_rag.open_index(path, collection=self.collection, create=False)
            try:
                return search(store)
            finally:
                store.close()

    def _query_embedder(self, store: QdrantIndex) -> Any:
        """The embedder asked for, else the one the collection records, else the default
        (what ``molmo-rag search`` picks), loaded once per process instead of per query."""
        from molmo_rag import embedder_for

        return embedder_for(store, self.embedder)

    def _server_index(self) -> QdrantIndex:
        from molmo_rag import open_index

        with self._server_lock:
            if self._server is None:
                key = self.api_key.get_secret_value() if self.api_key is not None else None
                self._server = open_index(qdrant_url=self.url, api_key=key, collection=self.collection)
            return self._server

    def _documents(self, store: QdrantIndex, hits: list[Hit]) -> list[Document]:
        """Hits as Documents: the embedded text, the payload keys plus ``score``."""
        return [hit_document(hit) for hit in hits]

    def close(self) -> None:
        """Close the connection to a Qdrant server (embedded folders are closed after each search)."""
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()
