"""Grounded re-ranking for LlamaIndex: Molmo2 looks at the retrieved pictures and points at
what the query names (``molmo_rag.ground``), as a node postprocessor."""

from __future__ import annotations

from typing import List, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from molmo_rag import NO_PICTURE, Grounder, Hit, RunOptions
from .extractor import image_source
from .settings import RunFields, options_fields

__all__ = ["MolmoGroundedReranker"]

_EVIDENCE_KEYS = ("grounded", "evidence", "vector_score")


class MolmoGroundedReranker(RunFields, BaseNodePostprocessor):
    """Re-rank retrieved molmo-rag nodes by what Molmo2 finds in them.

    For the first ``top_n`` nodes (photos, rendered slides, video segments) the backend is
    asked to count and point at what the query names; nodes where it is found (in the number
    asked for, when ``count_labels`` lets it read "at least 3 people") move above the others.
    Each checked node's metadata gets ``grounded`` (1.0 or 0.0), ``evidence`` (target,
    count, points with x, y in 0..1 and t in seconds, the answer) and ``vector_score``; its
    score becomes ``weight`` x grounded + the vector score. Evidence stays out of the
    embedding and the LLM prompt. Answers are cached like every molmo-rag result.

    What is checked is the node's own picture (``image_path``, ``image``, ``image_url``),
    then the picture molmo-rag saved for it, then its ``source``. A node whose check failed
    keeps its score and gets ``grounded`` None with the cause in ``evidence["error"]`` (also
    logged); a node without any picture (a text node) is passed through as it came.

    The backend, model, cache, reader options and window are :class:`molmo_rag.RunOptions`
    fields (with no backend named, the one that made the collection checks it); the first
    argument may be ``RunOptions`` or a ready :class:`molmo_rag.Run` shared with a reader
    (used, left open). A run made here is made at the first query and reused until
    :meth:`close` (a local model loads once).

    It pickles and serialises (``to_json`` / ``from_json``) with the backend as its name
    and options, secrets left out of JSON.

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        from llama_index.readers.molmo import MolmoGroundedReranker, open_index

        reranker = MolmoGroundedReranker(backend="local", top_n=10)
        engine = open_index(db="./my-index").as_query_engine(
            similarity_top_k=10, node_postprocessors=[reranker], llm=...
        )
        nodes = reranker.postprocess_nodes(retrieved, query_str="two people")
        nodes = await reranker.apostprocess_nodes(retrieved, query_str="two people")
        ```
    """

    top_n: int = Field(default=10, ge=1, description="How many of the retrieved nodes to check.")
    drop_misses: bool = Field(default=False, description="Leave out checked nodes without evidence.")
    count_labels: Optional[List[str]] = Field(
        default=None, description="Labels counted in the collection (molmo-rag labels): count phrases must hold."
    )
    weight: float = Field(default=2.0, description="How much evidence counts against the vector score.")

    _grounder: Grounder | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "MolmoGroundedReranker"

    def _core(self) -> Grounder:
        """The core's Grounder of these options (made once; its run is made at the first query)."""
        if self._grounder is None:
            run = self._run if self._run is not None else RunOptions(**options_fields(self))
            self._grounder = Grounder(run, top=self.top_n, weight=self.weight, count_labels=self.count_labels)
        return self._grounder

    def _hits(self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle]) -> tuple[list, str]:
        if query_bundle is None:
            raise ValueError("MolmoGroundedReranker needs the query (query_bundle or query_str)")
        hits = [
            Hit.from_payload(
                n.node.metadata, score=float(n.score or 0.0), id=str(i), text=n.node.get_content(), picture=image_source(n.node)
            )
            for i, n in enumerate(nodes)
        ]
        return hits, query_bundle.query_str

    def _nodes(self, nodes: List[NodeWithScore], grounded: list) -> List[NodeWithScore]:
        out: List[NodeWithScore] = []
        for hit in grounded:
            original = nodes[int(hit.id)]
            if hit.evidence is None or hit.evidence.get("skipped") == NO_PICTURE:
                out.append(original)  # not looked at: as it came
                continue
            if self.drop_misses and hit.grounded == 0.0:
                continue
            node = original.node.model_copy()
            node.metadata = {**node.metadata, "grounded": hit.grounded, "evidence": hit.evidence, "vector_score": hit.vector_score}
            node.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, *_EVIDENCE_KEYS]
            node.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, "evidence", "vector_score"]
            out.append(NodeWithScore(node=node, score=hit.score if hit.grounded is not None else original.score))
        return out

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        hits, query = self._hits(nodes, query_bundle)
        return self._nodes(nodes, self._core().ground(hits, query))

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        hits, query = self._hits(nodes, query_bundle)
        return self._nodes(nodes, await self._core().aground(hits, query))

    def close(self) -> None:
        """Release the run made here (model memory, HTTP clients); a Run given is left open."""
        grounder, self._grounder = self._grounder, None
        if grounder is not None:
            grounder.close()
