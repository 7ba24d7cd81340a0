"""``MolmoEmbeddings``: molmo-rag's text embedder as LangChain ``Embeddings``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Embedder

__all__ = ["MolmoEmbeddings"]


def _default_model() -> str:
    from molmo_rag import DEFAULT_EMBEDDER

    return os.environ.get("MOLMO_RAG_EMBEDDER") or DEFAULT_EMBEDDER


def shared_embedder(spec: str | None = None) -> Embedder:
    """The core's embedder for ``spec`` (None: ``MOLMO_RAG_EMBEDDER``, else the default),
    loaded once per process by the core."""
    from molmo_rag import get_embedder

    return get_embedder((spec or _default_model()).strip())


class MolmoEmbeddings(BaseModel, Embeddings):
    """The embedder ``molmo-rag index`` and ``molmo-rag search`` use, so documents written
    through LangChain and collections written by the CLI share one vector space.

    ``model``: ``"wordllama"`` (the default: 256-d static embeddings bundled with the
    package, fully offline), ``"fastembed"`` or ``"fastembed:MODEL"`` (Qdrant's ONNX models,
    downloaded on first use; needs ``molmo-rag[fastembed]``), or a name recorded in a
    collection such as ``"wordllama/l2_supercat-256"``. Default: ``MOLMO_RAG_EMBEDDER``,
    else ``wordllama``.

    Setup:
        Install ``langchain-molmo`` (``wordllama`` comes with molmo-rag; ``fastembed``
        needs ``molmo-rag[fastembed]``).

        .. code-block:: bash

            pip install -U langchain-molmo

    Key init args:
        model: str
            ``"wordllama"``, ``"fastembed"``, ``"fastembed:MODEL"`` or a recorded name.

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoEmbeddings

            embeddings = MolmoEmbeddings()  # or MolmoEmbeddings(model="fastembed")

    Embed single text:
        .. code-block:: python

            vector = embeddings.embed_query("two people at a whiteboard")
            print(len(vector), embeddings.name)  # 256 wordllama/l2_supercat-256

    Embed multiple texts:
        .. code-block:: python

            vectors = embeddings.embed_documents(["a red car", "a slide about revenue"])

    Async:
        .. code-block:: python

            vector = await embeddings.aembed_query("two people at a whiteboard")
            vectors = await embeddings.aembed_documents(["a red car", "a slide about revenue"])

    It pickles as its ``model`` (the loaded embedder is not pickled: it loads again, once
    per process, where the copy lands).
    """

    model: str = Field(default_factory=_default_model, description="Embedder spec: wordllama, fastembed[:MODEL].")

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _embedder: Embedder | None = PrivateAttr(default=None)

    @property
    def embedder(self) -> Embedder:
        """The core embedder (loaded on first use)."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.model)
        return self._embedder

    @property
    def name(self) -> str:
        """The embedder's identity as molmo-rag records it in a collection."""
        return self.embedder.name

    @property
    def dimensions(self) -> int:
        return self.embedder.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in vector] for vector in self.embedder.embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed_query(text)]

    def __getstate__(self) -> dict[Any, Any]:  # the loaded model is not pickled: it reloads
        state = super().__getstate__()
        state["__pydantic_private__"] = {"_embedder": None}
        return state
