"""MolmoEmbedding: the core's text embedder as a LlamaIndex embedding model, so vectors made
through LlamaIndex are the vectors ``molmo-rag index`` writes and ``molmo-rag search``
queries with (offline wordllama by default, fastembed when chosen)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from molmo_rag import ConfigurationError, Embedder, get_embedder

__all__ = ["MolmoEmbedding"]


class MolmoEmbedding(BaseEmbedding):
    """molmo-rag's text embedder as a LlamaIndex embedding model.

    The vectors are the ones ``molmo-rag index`` writes and ``molmo-rag search`` queries
    with: ``wordllama`` (offline, the default), ``fastembed[:MODEL]`` (Qdrant's ONNX models;
    ``pip install fastembed``), a recorded name such as ``wordllama/l2_supercat-256``, or a
    molmo_rag ``Embedder``. ``model_name`` always reports the model that really embeds;
    given as an argument it is another way to choose it (``MolmoEmbedding(model_name=
    "fastembed")``), and a model that cannot be loaded is an error, never a silent stand-in.

    Args:
        embedder (str | Embedder | None): the embedder spec (None: ``MOLMO_RAG_EMBEDDER``,
            else wordllama).
        model_name (str | None): the same choice under LlamaIndex's usual name; must agree
            with ``embedder`` when both are given.
        embed_batch_size (int): texts embedded per call.

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        from llama_index.core import VectorStoreIndex
        from llama_index.readers.molmo import MolmoEmbedding

        embed_model = MolmoEmbedding()  # wordllama/l2_supercat-256, offline
        vector = embed_model.get_query_embedding("two people at a whiteboard")
        vector = await embed_model.aget_query_embedding("two people at a whiteboard")
        index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
        ```
    """

    embedder: str | None = Field(
        default=None,
        description="Embedder spec: wordllama, fastembed[:MODEL] or a recorded name (None: MOLMO_RAG_EMBEDDER, else wordllama).",
    )
    embed_batch_size: int = Field(default=64, gt=0, description="Texts embedded per call.")

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: str | Embedder | None = None, **kwargs: Any):
        asked = kwargs.pop("model_name", None)
        if embedder is None and asked is not None:
            embedder = asked  # LlamaIndex's usual keyword chooses the model too
        model = get_embedder(embedder)
        if asked is not None and asked != model.name and get_embedder(asked).name != model.name:
            raise ConfigurationError(
                f"MolmoEmbedding: model_name={asked!r} and embedder={embedder!r} name two embedders "
                f"({get_embedder(asked).name} and {model.name}): give one of them",
                option="embedder",
            )
        spec = embedder if isinstance(embedder, str) or embedder is None else model.name
        super().__init__(embedder=spec, model_name=model.name, **kwargs)
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
