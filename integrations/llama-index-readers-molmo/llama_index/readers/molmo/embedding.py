"""MolmoEmbedding: the core's text embedder as a LlamaIndex embedding model, so vectors made
through LlamaIndex are the vectors ``molmo-rag index`` writes and ``molmo-rag search``
queries with (offline wordllama by default, fastembed when chosen)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from molmo_rag import Embedder, get_embedder

__all__ = ["MolmoEmbedding"]


class MolmoEmbedding(BaseEmbedding):
    """molmo-rag's embedder: ``wordllama`` (offline, the default), ``fastembed[:MODEL]``,
    a recorded name such as ``wordllama/l2_supercat-256``, or a molmo_rag Embedder.

    >>> MolmoEmbedding().model_name
    'wordllama/l2_supercat-256'
    """

    embedder: str | None = Field(
        default=None,
        description="Embedder spec: wordllama, fastembed[:MODEL] or a recorded name (None: MOLMO_RAG_EMBEDDER, else wordllama).",
    )
    embed_batch_size: int = Field(default=64, gt=0, description="Texts embedded per call.")

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: str | Embedder | None = None, **kwargs: Any):
        model = get_embedder(embedder)
        kwargs.setdefault("model_name", model.name)
        super().__init__(embedder=embedder if isinstance(embedder, str) or embedder is None else model.name, **kwargs)
        self._embedder = model

    @classmethod
    def class_name(cls) -> str:
        return "MolmoEmbedding"

    @property
    def core(self) -> Embedder:
        """The core's embedder (``name``, ``dim``, ``embed``, ``embed_query``)."""
        return self._embedder

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embedder.embed_query(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._embedder.embed_query, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder.embed(list(texts))  # the core gives an empty text a zero vector

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
