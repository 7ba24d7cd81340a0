"""Retrieved Documents as what a multimodal chat model reads: LangChain's standard content
blocks (``{"type": "image", "base64": ..., "mime_type": ...}``), one text block and one
picture per Document, so a chain over any retriever (molmo-rag's, or a stock
``QdrantVectorStore``'s) hands the model the pictures it retrieved.

The picture is the one molmo-rag saved with the Document (``metadata["image_path"]``:
the photo, the rendered slide, the segment's representative frame), its
``metadata["image_url"]``, or, failing both, the small ``thumbnail`` data URI."""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Iterable
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.messages.content import create_image_block, create_text_block

__all__ = ["document_image_block", "image_blocks", "image_message"]


def _where(metadata: dict) -> str:
    where = str(metadata.get("source", ""))
    if metadata.get("slide") is not None:
        where += f", slide {metadata['slide']}"
    if metadata.get("start") is not None and metadata.get("end") is not None:
        where += f", {float(metadata['start']):.1f}-{float(metadata['end']):.1f} s"
    return where


def _file_block(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    mime = mimetypes.guess_type(path)[0] or "image/jpeg"
    return create_image_block(base64=base64.b64encode(data).decode(), mime_type=mime)


def document_image_block(document: Document, *, frames: bool = False) -> list[dict]:
    """The picture blocks of one Document: its ``image_path`` file (read and sent as
    base64, so the model needs no access to this disk), else its ``image_url``, else its
    ``thumbnail``; with ``frames``, the segment's ``frame_paths`` too. ``[]`` when the
    Document names no picture that can be read."""
    metadata = document.metadata or {}
    blocks: list[dict] = []
    path = metadata.get("image_path")
    block = _file_block(path) if isinstance(path, str) and os.path.isfile(path) else None
    if block is None and isinstance(metadata.get("image_url"), str):
        block = create_image_block(url=metadata["image_url"])
    thumbnail = metadata.get("thumbnail")
    if block is None and isinstance(thumbnail, str) and thumbnail.startswith("data:") and ";base64," in thumbnail:
        head, data = thumbnail.split(";base64,", 1)
        block = create_image_block(base64=data, mime_type=head[5:] or "image/jpeg")
    if block is not None:
        blocks.append(block)
    if frames:
        for frame in metadata.get("frame_paths") or []:
            if isinstance(frame, str) and (frame_block := _file_block(frame)) is not None:
                blocks.append(frame_block)
    return blocks


def image_blocks(documents: Iterable[Document], *, text: bool = True, frames: bool = False) -> list[dict]:
    """Content blocks for a chat model: per Document, a text block (where it is and its
    ``page_content``; ``text=False`` leaves it out) followed by its picture blocks
    (:func:`document_image_block`)."""
    blocks: list[dict] = []
    for number, document in enumerate(documents, 1):
        if text:
            blocks.append(create_text_block(f"[{number}] {_where(document.metadata or {})}\n{document.page_content}".strip()))
        blocks.extend(document_image_block(document, frames=frames))
    return blocks


def image_message(question: str, documents: Iterable[Document], **options: Any) -> HumanMessage:
    """One ``HumanMessage``: the question, then :func:`image_blocks` of ``documents``
    (``options``: its ``text`` and ``frames``)."""
    return HumanMessage(content_blocks=[create_text_block(question), *image_blocks(documents, **options)])
