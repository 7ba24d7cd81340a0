"""Grounded re-ranking for LangChain: Molmo2 looks at the retrieved pictures and points at
what the query names (``molmo_rag.ground``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Unpack

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._run import SHARED, MadeAgainWhenCopied, options_of, run_spec

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Run, RunChoices, RunOptions

    class _CompressorChoices(RunChoices, total=False):
        top_n: int
        drop_misses: bool
        count_labels: list[str] | None
        weight: float

__all__ = ["SCORE_KEYS", "MolmoGroundedCompressor"]

SCORE_KEYS = ("score", "_score", "relevance_score", "similarity_score")
"""Metadata keys a retriever's similarity score is read from (the first present), the
vector score a document keeps beside its evidence. Without one the retriever's order is
kept among documents with the same evidence, and ``vector_score`` is None."""

_PICTURE_KEYS = ("image_base64", "image")
"""Inline pictures (base64 text or bytes) a document may carry; ``image_path`` and
``image_url`` are read by the core."""


def _score_of(metadata: dict) -> float | None:
    for key in SCORE_KEYS:
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _inline_picture(metadata: dict) -> Any:
    import base64
    import binascii

    for key in _PICTURE_KEYS:
        value = metadata.get(key)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str) and value:
            if value.startswith("data:"):
                return value
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return value  # a path or URL under that key
    return None


class MolmoGroundedCompressor(MadeAgainWhenCopied, BaseDocumentCompressor):
    """Re-rank retrieved molmo-rag documents by what Molmo2 finds in them.

    For the first ``top_n`` documents (photos, rendered slides, video segments) the backend
    is asked to count and point at what the query names; documents where it is found (in
    the number asked for, when ``count_labels`` lets it read "at least 3 people") move above
    the others and carry ``grounded`` (1.0 or 0.0), ``evidence`` (target, count, points with
    x, y in 0..1 and t in seconds) and ``vector_score`` in their metadata. Answers are cached
    like every molmo-rag result.

    What comes back are copies of the documents given, in the new order: the same ids
    (``metadata["_id"]`` when the retriever left ``id`` empty, as langchain-qdrant's does),
    every metadata key, and the retriever's score (``SCORE_KEYS``) as ``vector_score``. What
    is checked is the document's own picture (``image_path``, ``image_url``, ``image`` /
    ``image_base64``), then its ``source``; a document whose check failed gets ``grounded``
    None and the cause in ``evidence["error"]`` (also logged), and a document with no
    picture (text) is returned unchecked and unchanged.

    Setup:
        Install ``langchain-molmo`` and molmo-rag with the backend you use;
        ``ContextualCompressionRetriever`` comes with ``langchain`` (or ``langchain-classic``).

        .. code-block:: bash

            pip install -U langchain-molmo "molmo-rag[all]" langchain-classic

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoGroundedCompressor

            compressor = MolmoGroundedCompressor(
                backend="local",
                # backend_options={"device": "cuda"},
                top_n=10,
                count_labels=["person"],
            )

    Usage:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever  # or langchain's
            from langchain_molmo import MolmoRetriever

            retriever = ContextualCompressionRetriever(
                base_compressor=compressor,
                base_retriever=MolmoRetriever(db="./my-index", k=10),  # or any store's retriever
            )
            for doc in retriever.invoke("at least 3 people on a stage"):
                print(doc.metadata["grounded"], doc.metadata["evidence"]["count"], doc.metadata["vector_score"])

    Async:
        .. code-block:: python

            docs = await retriever.ainvoke("two dogs")  # acompress_documents is native async

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
            backend that made the collection), ``model``, ``backend_options`` (the
            backend's own options, e.g. ``{"base_url": ..., "api_key": ...}``), ``cache`` (a
            folder, a ``ResultCache``, or False for none), ``reader_options``, ``window``,
            ``share_backend`` (default True: the process's one backend of that
            configuration), ... An unknown one is a ``molmo_rag.UsageError`` naming it.

    The compressor pickles as its fields (a ``Run`` as its options); the checks' backend is
    made again where the copy lands (the process's shared one).
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
        return {**own, "run": run_spec(own.get("run"), choices, SHARED)}

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
            Hit.from_payload(
                d.metadata, score=_score_of(d.metadata) or 0.0, id=str(i), text=d.page_content,
                picture=_inline_picture(d.metadata),
            )
            for i, d in enumerate(documents)
        ]

    def _documents(self, documents: Sequence[Document], grounded: Sequence[Any]) -> list[Document]:
        from molmo_rag import NO_PICTURE

        out: list[Document] = []
        for hit in grounded:
            original = documents[int(hit.id)]
            if self.drop_misses and hit.grounded == 0.0:
                continue
            update: dict[str, Any] = {}
            if not original.id and original.metadata.get("_id") is not None:
                update["id"] = str(original.metadata["_id"])
            if hit.evidence is not None and hit.evidence.get("skipped") != NO_PICTURE:
                update["metadata"] = {
                    **original.metadata,
                    "grounded": hit.grounded,
                    "evidence": hit.evidence,
                    "vector_score": _score_of(original.metadata),
                }
            out.append(original.model_copy(update=update))
        return out

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return self._documents(documents, self._core().ground(self._hits(documents), query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return self._documents(documents, await self._core().aground(self._hits(documents), query))

    def close(self) -> None:
        """Release what the checks made from the options (model memory, HTTP clients); a
        given ``Run`` is left open."""
        grounder, self._grounder = self._grounder, None
        if grounder is not None:
            grounder.close()
