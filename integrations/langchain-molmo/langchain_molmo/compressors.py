"""Grounded re-ranking for LangChain: Molmo2 looks at the retrieved pictures and points at
what the query names (``molmo_rag.ground``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field, PrivateAttr

from .retrievers import hit_document

__all__ = ["MolmoGroundedCompressor"]


class MolmoGroundedCompressor(BaseDocumentCompressor):
    """Re-rank retrieved molmo-rag documents by what Molmo2 finds in them.

    For the first ``top_n`` documents (photos, rendered slides, video segments) the backend
    is asked to count and point at what the query names; documents where it is found (in
    the number asked for, when ``count_labels`` lets it read "at least 3 people") move above
    the others and carry ``grounded`` (1.0 or 0.0), ``evidence`` (target, count, points with
    x, y in 0..1 and t in seconds) and ``vector_score`` in their metadata. Answers are cached
    like every molmo-rag result. Use it in ``ContextualCompressionRetriever``:

    .. code-block:: python

        from langchain_classic.retrievers import ContextualCompressionRetriever  # or langchain's
        from langchain_molmo import MolmoGroundedCompressor, MolmoRetriever

        retriever = ContextualCompressionRetriever(
            base_compressor=MolmoGroundedCompressor(backend="local", top_n=10),
            base_retriever=MolmoRetriever(db="./my-index", k=10),
        )

    Args:
        backend: a molmo-rag backend name (``local``, ``openai``, ...) or instance.
        model: the model for a backend given by name.
        top_n: how many of the retrieved documents to check (the rest follow unchanged).
        drop_misses: leave out checked documents without evidence.
        count_labels: labels counted in the collection (``molmo-rag labels``): count phrases
            of the query over them must hold for a document to be grounded.
        weight: how much evidence counts against the vector score (2 puts every grounded
            document above every miss).
        cache: molmo-rag's result cache (None: the default folder; False: none).
    """

    backend: Any = None
    model: str | None = None
    top_n: int = Field(default=10, ge=1)
    drop_misses: bool = False
    count_labels: list[str] | None = None
    weight: float = 2.0
    cache: Any = None
    reader_options: Any = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _grounder: Any = PrivateAttr(default=None)

    def _core(self) -> Any:
        """The core's Grounder with these settings (made once: a backend named here loads once)."""
        from molmo_rag import Grounder

        if self._grounder is None:
            self._grounder = Grounder(
                self.backend, model=self.model, top=self.top_n, weight=self.weight, count_labels=self.count_labels,
                cache=self.cache, reader_options=self.reader_options,
            )
        return self._grounder

    def _hits(self, documents: Sequence[Document]) -> list[Any]:
        from molmo_rag import Hit

        return [
            Hit.from_payload(d.metadata, score=float(d.metadata.get("score") or 0.0), id=d.id or "", text=d.page_content)
            for d in documents
        ]

    def _documents(self, grounded: Sequence[Any]) -> list[Document]:
        return [hit_document(h) for h in grounded if not (self.drop_misses and h.grounded == 0.0)]

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return self._documents(self._core().ground(self._hits(documents), query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return self._documents(await self._core().aground(self._hits(documents), query))

    def close(self) -> None:
        """Release a backend made from a name (model memory, HTTP clients)."""
        if self._grounder is not None:
            self._grounder.close()
