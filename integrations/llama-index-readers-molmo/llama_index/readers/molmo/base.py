"""MolmoReader: photos, slide decks and videos as LlamaIndex ``ImageDocument`` objects, one
per photo, slide and video segment, captioned, described and counted by Molmo2.

The reader is a thin map over the core's document seam (:func:`molmo_rag.aiter_documents`):
reading, the backend, the cache and the sliding window of requests are the core's; this
module turns each :class:`molmo_rag.MediaDocument` into an ``ImageDocument`` and reports
each :class:`molmo_rag.Failure`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import mimetypes
import os
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document, ImageDocument, MediaResource

from molmo_rag import (
    COUNT_PREFIX,
    MEDIA_EXTENSIONS,
    PAYLOAD_KEYS,
    Failure,
    MediaDocument,
    aiter_documents,
    as_source_list,
    iter_documents,
)

from .settings import MolmoSettings

__all__ = ["EMBED_EXCLUDED_KEYS", "LLM_EXCLUDED_KEYS", "MolmoReader", "to_image_document"]

EMBED_EXCLUDED_KEYS = tuple(PAYLOAD_KEYS)
"""Kept out of the embedding text (with the flat ``count_<label>`` keys): the record text
already says everything worth embedding (caption, scene, slide title/text/notes, counts,
answers), so a document's vector is the vector ``molmo-rag index`` writes for the same item."""

LLM_VISIBLE_KEYS = ("kind", "source", "slide", "start", "end")
"""What an LLM sees besides the text: where the item is (file, slide number, time range)."""

LLM_EXCLUDED_KEYS = tuple(k for k in PAYLOAD_KEYS if k not in LLM_VISIBLE_KEYS)
"""Thumbnails, points, ids, model names and what the text already holds."""

_PARALLEL_RUNS = 4
"""Engine runs one reader keeps going at once on one event loop: SimpleDirectoryReader's
async path starts one ``aload_data`` per file, all at once."""


def to_image_document(
    document: MediaDocument,
    extra_info: Mapping[str, Any] | None = None,
    *,
    keep_image: bool = False,
    frames_dir: str | os.PathLike | None = None,
) -> ImageDocument:
    """The ``ImageDocument`` of one core document: ``id_`` is the Qdrant point id of
    ``molmo-rag index``, ``text`` the record text, ``metadata`` the payload keys (plus
    ``extra_info``), ``image_path`` the photo or the rendered slide / segment frame.

    ``keep_image``: also carry the picture itself (``image``, base64 JPEG) and the small
    ``thumbnail`` data URI in metadata; off by default, so payloads stay small.
    Blocking (it may render a frame): call it in a worker thread from async code.
    """
    metadata = dict(extra_info or {})
    metadata.update(document.metadata)
    if not keep_image:
        metadata.pop("thumbnail", None)
    image_path = document.image_path(frames_dir)
    mimetype = (mimetypes.guess_type(str(image_path))[0] if image_path else None) or "image/jpeg"
    data = None
    if keep_image:
        buffer = io.BytesIO()
        document.image().convert("RGB").save(buffer, format="JPEG", quality=90)
        data, mimetype = base64.b64encode(buffer.getvalue()), "image/jpeg"
    extra: dict[str, Any] = {}
    if document.kind == "video_segment":
        extra["video_resource"] = _media_resource(document.source)
    return ImageDocument(
        id_=document.id,
        text=document.text,
        metadata=metadata,
        image_resource=MediaResource(path=image_path, data=data, mimetype=mimetype),
        excluded_embed_metadata_keys=[k for k in metadata if k in EMBED_EXCLUDED_KEYS or k.startswith(COUNT_PREFIX)],
        excluded_llm_metadata_keys=[k for k in metadata if k in LLM_EXCLUDED_KEYS or k.startswith(COUNT_PREFIX)],
        **extra,
    )


def _media_resource(source: str) -> MediaResource | None:
    if source.startswith(("http://", "https://")):
        return MediaResource(url=source)
    if "://" not in source and not source.startswith(("<", "data:")):
        return MediaResource(path=Path(source))
    return None


class _FsFile:
    """A file of an fsspec filesystem as a source the core reads (anything with ``read``
    and a ``name``), opened only when the core gets to it."""

    def __init__(self, fs: Any, path: str):
        self.fs, self.path = fs, path
        self.name = fs.unstrip_protocol(path)

    def read(self, size: int = -1) -> bytes:
        with self.fs.open(self.path, "rb") as f:
            return f.read(size)


class MolmoReader(MolmoSettings, BasePydanticReader):
    """Photos, slide decks (PPTX, PDF, ODP) and videos as ``ImageDocument`` objects, one per
    photo, slide and video segment, enriched by Molmo2 through molmo-rag.

    ``text`` is what to embed (caption, scene, slide title/text/notes, counts, answers);
    ``metadata`` holds the keys ``molmo-rag index`` writes to Qdrant (``kind``, ``source``,
    ``media_id``, ``caption``, ``scene``, ``counts``, ``points``, ``answers``, ``slide``,
    ``title``, ``start``, ``end``, ...), so one filter works on both; ``id_`` is the same
    point id, so re-indexing upserts. Results are cached: a re-run makes no backend call.

    >>> docs = MolmoReader(backend="wavespeed", count=["person"]).load_data("media/")

    Options are the core's :class:`molmo_rag.RunOptions` (see :class:`MolmoSettings`); one
    :class:`molmo_rag.Run` made from them serves every call until :meth:`close`.

    With SimpleDirectoryReader: ``SimpleDirectoryReader("media/",
    file_extractor=MolmoReader(...).file_extractor())`` (``num_workers=N`` too: the reader
    pickles with its backend's name and options, rebuilt once per worker process).

    Examples:
        `pip install llama-index-readers-molmo`

        ```python
        from llama_index.core import SimpleDirectoryReader
        from llama_index.readers.molmo import MolmoReader

        reader = MolmoReader(backend="wavespeed", count=["person"])
        documents = reader.load_data("media/")  # a file, folder, glob or URL, or a list
        documents = await reader.aload_data("media/")
        async for document in reader.alazy_load_data("media/"):
            ...
        documents = SimpleDirectoryReader(
            "media/", file_extractor=reader.file_extractor()
        ).load_data(num_workers=2)
        ```
    """

    keep_image: bool = Field(
        default=False,
        description="Also carry each picture inline (the document's base64 `image` and a `thumbnail` data URI "
        "of `thumbnail_size` in metadata). Off: `image_path` points at the photo, or at the rendered slide / "
        "segment frame kept in the cache folder, and payloads stay small.",
    )

    _slots: weakref.WeakKeyDictionary = PrivateAttr(default_factory=weakref.WeakKeyDictionary)

    @classmethod
    def class_name(cls) -> str:
        return "MolmoReader"

    def file_extractor(self) -> dict[str, MolmoReader]:
        """``{".jpg": self, ".pptx": self, ".mp4": self, ...}`` for SimpleDirectoryReader:
        every ending that looks like media, so unreadable media (Keynote, audio, camera
        raw) gets a clear failure here instead of being read as text."""
        return {ext: self for ext in sorted(MEDIA_EXTENSIONS)}

    # -- loading --------------------------------------------------------------------------------
    def lazy_load_data(
        self,
        file_path: Any = None,
        extra_info: Mapping[str, Any] | None = None,
        fs: Any = None,
        **kwargs: Any,
    ) -> Iterator[Document]:
        """Documents of ``file_path`` (a file, folder, glob or URL, or a list of them; also
        bytes, PIL images and molmo_rag MediaItems), as each finishes. Works inside a
        running event loop (Jupyter)."""
        sources = self._sources(file_path, fs, kwargs)
        outcomes = iter_documents(sources, self.get_run())
        try:
            for outcome in outcomes:
                yield from self._documents(outcome, extra_info)
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()

    async def alazy_load_data(  # type: ignore[override]
        self,
        file_path: Any = None,
        extra_info: Mapping[str, Any] | None = None,
        fs: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[Document]:
        """The native async generator: the core's engine keeps its window of requests in
        flight and each document is yielded the moment its item is done."""
        sources = self._sources(file_path, fs, kwargs)
        run = await asyncio.to_thread(self.get_run)  # a local model loads off the event loop
        async with self._slot():
            outcomes = aiter_documents(sources, run)
            try:
                async for outcome in outcomes:
                    for document in await asyncio.to_thread(self._documents_list, outcome, extra_info):
                        yield document
            finally:
                await outcomes.aclose()

    async def aload_data(self, *args: Any, **kwargs: Any) -> list[Document]:  # type: ignore[override]
        return [document async for document in self.alazy_load_data(*args, **kwargs)]

    # -- helpers --------------------------------------------------------------------------------
    def _run_overrides(self) -> dict[str, Any]:
        return {} if self.keep_image else {"thumbnail_size": 0}  # no thumbnail made to be dropped

    def _documents(self, outcome: MediaDocument | Failure, extra_info: Mapping[str, Any] | None) -> Iterator[Document]:
        if isinstance(outcome, Failure):
            self.report(outcome)
            return
        for failure in outcome.failures:  # some tasks failed: the others' results are in the document
            self.report(failure)
        yield to_image_document(outcome, extra_info, keep_image=self.keep_image)

    def _documents_list(self, outcome: MediaDocument | Failure, extra_info: Mapping[str, Any] | None) -> list[Document]:
        return list(self._documents(outcome, extra_info))

    def _sources(self, file_path: Any, fs: Any, kwargs: dict) -> list[Any]:
        if kwargs:
            raise TypeError(f"MolmoReader.load_data() got unexpected arguments: {', '.join(sorted(kwargs))}")
        if file_path is None:
            raise ValueError("MolmoReader needs file_path: a file, folder, glob or URL, or a list of them")
        sources = as_source_list(file_path)
        if fs is None or _is_local(fs):
            return [str(s) if isinstance(s, PurePath) else s for s in sources]
        return [self._fs_source(fs, s) for s in sources]

    @staticmethod
    def _fs_source(fs: Any, source: Any) -> Any:
        if not isinstance(source, (str, PurePath)):
            return source
        path = str(source)
        if fs.isdir(path):
            raise ValueError(
                f"{fs.unstrip_protocol(path)} is a folder on a {type(fs).__name__}: MolmoReader reads files of other "
                "filesystems one by one; list them with SimpleDirectoryReader(input_dir=..., fs=fs, "
                "file_extractor=reader.file_extractor())"
            )
        return _FsFile(fs, path)

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._slots:
                self._slots[loop] = asyncio.Semaphore(_PARALLEL_RUNS)
            return self._slots[loop]


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)
