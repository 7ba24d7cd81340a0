"""Grounded re-ranking for LangChain: Molmo2 looks at the retrieved pictures and points at
what the query names (``molmo_rag.ground``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Unpack

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._run import options_of, run_spec
from .retrievers import hit_document

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Run, RunChoices, RunOptions

    class _CompressorChoices(RunChoices, total=False):
        top_n: int
        drop_misses: bool
        count_labels: list[str] | None
        weight: float

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
        run: a ``molmo_rag.RunOptions`` (the backend, its model, the cache, how media is
            read), or a ``molmo_rag.Run`` shared with other objects (used and left open).
        top_n: how many of the retrieved documents to check (the rest follow unchanged).
        drop_misses: leave out checked documents without evidence.
        count_labels: labels counted in the collection (``molmo-rag labels``): count phrases
            of the query over them must hold for a document to be grounded.
        weight: how much evidence counts against the vector score (2 puts every grounded
            document above every miss).
        **choices: the fields of ``molmo_rag.RunOptions`` as keywords, on top of ``run``:
            ``backend`` (a name such as ``local`` or ``openai``, or a Backend; default: the
            backend that made the collection), ``model``, ``cache`` (a folder, a
            ``ResultCache``, or False for none), ``reader_options``, ``window``, ... An
            unknown one is a ``molmo_rag.UsageError`` naming it.
    """

    run: Any = None
    """The ``molmo_rag.RunOptions`` or ``molmo_rag.Run`` the checks run with (None: the defaults)."""
    top_n: int = Field(default=10, ge=1)
    drop_misses: bool = False
    count_labels: list[str] | None = None
    weight: float = 2.0

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _grounder: Any = PrivateAttr(default=None)

    def __init__(self, run: RunOptions | Run | None = None, /, **data: Unpack[_CompressorChoices]) -> None:
        super().__init__(**({"run": run} if run is not None else {}), **data)

    @model_validator(mode="before")
    @classmethod
    def _run_choices(cls, data: Any) -> Any:
        """Keywords that are not this compressor's own go to the run options, checked now."""
        if not isinstance(data, dict):
            return data
        own = {k: v for k, v in data.items() if k in cls.model_fields}
        choices = {k: v for k, v in data.items() if k not in cls.model_fields}
        return {**own, "run": run_spec(own.get("run"), choices)}

    @property
    def options(self) -> RunOptions:
        """The run options of the checks."""
        return options_of(self.run)

    def _core(self) -> Any:
        """The core's Grounder with these settings (made once: a backend named here loads once)."""
        from molmo_rag import Grounder

        if self._grounder is None:
            self._grounder = Grounder(self.run, top=self.top_n, weight=self.weight, count_labels=self.count_labels)
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
        """Release what the checks made from the options (model memory, HTTP clients); a
        given ``Run`` is left open."""
        grounder, self._grounder = self._grounder, None
        if grounder is not None:
            grounder.close()
