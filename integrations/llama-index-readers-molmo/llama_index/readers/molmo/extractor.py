"""MolmoExtractor: Molmo2's caption, scene, counts (with points) and answers as metadata of
nodes that already hold an image, inside an ``IngestionPipeline``.

Each node's picture (``image_path``, ``image`` as base64, or ``image_url``, on an
``ImageNode`` or on a Document's ``image_resource``) is read by the core into a
:class:`molmo_rag.MediaItem`; all of them go through one pass of the core's engine
(:func:`molmo_rag.aiter_documents`) on the extractor's one :class:`molmo_rag.Run`, so
requests keep the backend's window full, answers come from the cache when present, the
backend is made once for every batch, and a failure stays with its node.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.extractors.interface import BaseExtractor
from llama_index.core.schema import BaseNode, MediaResource

from molmo_rag import Failure, MediaDocument, MediaItem, MolmoRagError, UnsupportedMediaError, aiter_documents, read

from .settings import MolmoSettings

__all__ = ["EXTRACTED_KEYS", "MolmoExtractor"]

EXTRACTED_KEYS = ("caption", "detail", "scene", "counts", "points", "answers", "media_id", "backend", "model")
"""Metadata the extractor adds to a node (``kind`` and ``source`` too when the node has none)."""

_ALWAYS_EXCLUDED = ("detail", "points", "media_id", "backend", "model")
_IN_TEXT = ("caption", "scene", "counts", "answers")


def image_source(node: BaseNode) -> str | bytes | None:
    """Where a node's picture is: a path, the decoded bytes of its base64 image, or a URL."""
    resource = getattr(node, "image_resource", None)
    if isinstance(resource, MediaResource):
        path, data, url = resource.path, resource.data, resource.url
    else:
        path, data, url = getattr(node, "image_path", None), getattr(node, "image", None), getattr(node, "image_url", None)
    if path:
        return str(path)
    if data:
        return base64.b64decode(data)
    if url:
        return str(url)
    return None


class MolmoExtractor(MolmoSettings, BaseExtractor):
    """Caption, scene, counts + points and answers from Molmo2 for image nodes.

    Adds ``caption``, ``scene``, ``counts`` (``{label: n}``), ``points``, ``answers``,
    ``media_id``, ``backend`` and ``model`` to each node holding an image (nodes without
    one pass unchanged), plus ``kind`` and ``source`` when the node has none. A node with
    no text gets the record text (``fill_text``), so it embeds and retrieves in words.
    A node whose image cannot be read or whose every task failed is logged (and kept in
    ``failures``); the pipeline goes on, unless ``raise_on_error``.

    >>> pipeline = IngestionPipeline(transformations=[MolmoExtractor(count=["person"]), MolmoEmbedding()])

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        from llama_index.core.ingestion import IngestionPipeline
        from llama_index.core.schema import ImageNode
        from llama_index.readers.molmo import MolmoEmbedding, MolmoExtractor

        extractor = MolmoExtractor(backend="wavespeed", count=["person"])
        metadata = extractor.extract([ImageNode(image_path="crowd.jpg")])
        metadata = await extractor.aextract([ImageNode(image_path="crowd.jpg")])
        pipeline = IngestionPipeline(transformations=[extractor, MolmoEmbedding()])
        nodes = pipeline.run(nodes=[ImageNode(image_path="crowd.jpg")])
        ```
    """

    is_text_node_only: bool = False
    disable_template_rewrite: bool = Field(
        default=True, description="Keep each node's text template (image nodes are not text excerpts)."
    )
    raise_on_error: bool = Field(
        default=False,
        description="Raise MolmoLoadError on the first node that fails; by default each failure is logged with "
        "its cause, kept in `failures`, and the node passes on without Molmo metadata.",
    )
    in_place: bool = Field(
        default=False,
        description="Enrich the nodes given (True) or copies of them (False, the default): an IngestionPipeline "
        "with a docstore then records the hash of the input, so a re-run of unchanged input is skipped.",
    )
    fill_text: bool = Field(
        default=True, description="Give nodes with no text the record text (caption, scene, counts, answers)."
    )

    @classmethod
    def class_name(cls) -> str:
        return "MolmoExtractor"

    def _run_overrides(self) -> dict[str, Any]:
        return {"thumbnail_size": 0}  # metadata only: no thumbnail to make

    async def aextract(self, nodes: Sequence[BaseNode]) -> list[dict]:
        items = await asyncio.gather(*(asyncio.to_thread(self._item_of, node) for node in nodes))
        outcomes: dict[int, MediaDocument | list[Failure]] = {}
        ready = [item for item in items if isinstance(item, MediaItem)]
        if ready:
            run = aiter_documents(ready, await asyncio.to_thread(self.get_run))
            try:
                async for outcome in run:
                    key = id(outcome.item)
                    if isinstance(outcome, MediaDocument):
                        outcomes[key] = outcome
                    else:
                        failures = outcomes.setdefault(key, [])
                        if isinstance(failures, list):
                            failures.append(outcome)
            finally:
                await run.aclose()
        return [self._metadata(node, item, outcomes.get(id(item))) for node, item in zip(nodes, items)]

    async def _aextract_with_retry(self, nodes: Sequence[BaseNode]) -> list[dict]:
        # Failures of single nodes are reported in aextract and never raised (unless
        # raise_on_error); what raises here is a setup error (an unknown backend, a missing
        # extra, a task the backend can run on nothing), which retries would not fix and
        # empty metadata would hide.
        return await self.aextract(nodes)

    # -- one node -----------------------------------------------------------------------------
    def _item_of(self, node: BaseNode) -> MediaItem | Failure | None:
        source = image_source(node)
        if source is None:
            return None  # no image: not ours
        inline = not isinstance(source, str) or source.startswith("data:")
        label = f"<image of node {node.node_id}>" if inline else source
        try:
            entries = read(source, self.reader_options)
            try:
                first = next(iter(entries), None)
            finally:
                getattr(entries, "close", lambda: None)()
        except MolmoRagError as exc:
            return Failure(source=label, error=exc)
        if isinstance(first, MolmoRagError):
            return Failure(source=getattr(first, "source", None) or label, error=first)
        if not isinstance(first, MediaItem) or first.kind != "image":
            kind = getattr(first, "kind", "nothing")
            error = UnsupportedMediaError(
                f"{label} holds a {kind}, not one image: read decks and videos with MolmoReader", source=label
            )
            return Failure(source=label, error=error)
        if inline:
            first.source = label
        return first

    def _metadata(self, node: BaseNode, item: Any, outcome: MediaDocument | list[Failure] | None) -> dict:
        if item is None:
            return {}
        if isinstance(item, Failure):
            self.report(item)
            return {}
        if not isinstance(outcome, MediaDocument):
            for failure in outcome or [Failure(source=item.source, error=MolmoRagError("no result"), item=item)]:
                self.report(failure)
            return {}
        for failure in outcome.failures:
            self.report(failure)
        found = outcome.metadata
        # A node that already is a molmo-rag item (from MolmoReader: a slide, a segment frame)
        # keeps its identity: its media_id is what its point id is made of.
        keep = {"media_id"} if isinstance(node.metadata.get("media_id"), str) else set()
        metadata = {key: found[key] for key in EXTRACTED_KEYS if key in found and key not in keep}
        if "kind" not in node.metadata:
            metadata["kind"] = found["kind"]
        if "source" not in node.metadata and not found["source"].startswith(("<", "data:")):
            metadata["source"] = found["source"]
        excluded = list(_ALWAYS_EXCLUDED) + ["kind", "source"]
        if self.fill_text and not node.get_content().strip() and outcome.text:
            node.set_content(outcome.text)
            excluded += _IN_TEXT  # already in the text: not twice in the embedding or the prompt
        _exclude(node.excluded_embed_metadata_keys, [k for k in excluded if k in metadata])
        _exclude(node.excluded_llm_metadata_keys, [k for k in excluded if k in metadata and k not in ("kind", "source")])
        return metadata


def _exclude(keys: list[str], more: list[str]) -> None:
    keys.extend(k for k in more if k not in keys)
