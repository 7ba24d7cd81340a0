"""``MolmoDocumentTransformer``: enrich Documents that point at a picture (pictures other
loaders extracted, image files listed by a loader) with Molmo2's caption, scene, counts
and answers."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Unpack

from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import BaseDocumentTransformer, Document

from ._run import HoldsRun, MolmoRun, OnFailure, relabelled
from .document_loaders import blob_source

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import MediaDocument, Run, RunChoices, RunOptions

__all__ = ["DEFAULT_IMAGE_KEYS", "MolmoDocumentTransformer"]

DEFAULT_IMAGE_KEYS = ("image_path", "image_url", "image_base64", "image", "source")
"""Metadata keys looked at, in order, for the picture of a document: ``image_path`` and
``image_base64`` (what Unstructured's loaders write for extracted pictures), ``image_url``,
``image`` (a path, URL, data URI, base64 text, bytes, PIL image or LangChain ``Blob``), then
``source`` (used only when it is an image file or an image URL: a text file, a PDF or a web
page in ``source`` leaves the document as it is)."""


@dataclass(eq=False)
class _Job:
    """One picture to enrich and the documents that show it."""

    value: Any
    label: str
    explicit: bool
    """Named by an image key (not ``source``): media that is no picture is a failure."""
    documents: list[int] = field(default_factory=list)
    result: MediaDocument | None = None


_BASE64 = re.compile(r"\s*[A-Za-z0-9+/_-]{16,}[\sA-Za-z0-9+/_-]*={0,2}\s*")
"""Base64 text (standard or URL-safe alphabet); a path has a dot or starts elsewhere."""


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _looks_like_image_url(url: str) -> bool:
    from urllib.parse import urlsplit

    from molmo_rag import IMAGE_EXTENSIONS

    return os.path.splitext(urlsplit(url).path)[1].lower() in IMAGE_EXTENSIONS


def _is_image_file(path: str) -> bool:
    """Whether a local file's first bytes are a picture's (the core's sniffing)."""
    from molmo_rag import sniff

    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return False
    return sniff(head, os.path.basename(path)) in ("image", "heic")


class MolmoDocumentTransformer(HoldsRun, BaseDocumentTransformer):
    """Enrich Documents that point at a picture with Molmo2.

    For every document whose metadata names a picture (see ``image_keys``: a path, URL,
    data URI, base64 text, bytes, PIL image or ``Blob``), the picture is run through
    molmo-rag (caption + scene by default, plus ``count`` / ``ask`` / ``tasks``) and the
    document comes back with the molmo-rag metadata keys added (``caption``, ``scene``,
    ``counts``, ``points``, ``answers``, ``media_id``, ``kind``, ``thumbnail``, ...; its own
    ``source`` is kept) and the record text added to its ``page_content`` (``content``:
    ``"append"``, ``"replace"`` or ``"keep"``). Documents without a picture come back
    unchanged; a picture shown by several documents is enriched once. Documents without an
    id get the molmo-rag point id of their picture.

    A picture that cannot be read, or a task that fails, is reported as ``on_failure``
    says (``"log"``, ``"raise"`` or a callable), kept in :attr:`failures` (every one since
    the transformer was made) and its document comes back unchanged: never dropped.

    Setup:
        Install ``langchain-molmo`` and molmo-rag with the backend you use.

        .. code-block:: bash

            pip install -U langchain-molmo "molmo-rag[all]"

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoDocumentTransformer

            transformer = MolmoDocumentTransformer(
                backend="local",
                # backend_options={"device": "cuda"},
                count=["person"],
                content="append",
            )

    Load:
        .. code-block:: python

            from langchain_community.document_loaders import UnstructuredPDFLoader

            elements = UnstructuredPDFLoader("report.pdf", mode="elements", strategy="hi_res",
                                             extract_images_in_pdf=True).load()
            pictures = [d for d in elements if d.metadata.get("category") == "Image"]
            enriched = transformer.transform_documents(pictures)
            print(enriched[0].metadata["caption"], enriched[0].metadata["counts"])

    Async load:
        .. code-block:: python

            enriched = await transformer.atransform_documents(pictures)  # native async

    Takes ``run`` (a ``molmo_rag.RunOptions``, or a ``molmo_rag.Run`` shared with other
    objects), ``on_failure`` and the run options of :class:`~langchain_molmo.MolmoLoader` as
    keywords (``backend``, ``model``, ``backend_options``, ``tasks``, ``count``, ``ask``,
    ``cache``, ``reader_options``, ``thumbnail_size``, ...). One run is made on first use and
    kept for every call, on the process's shared backend of that configuration;
    :meth:`close` (or ``with``) releases it. A transformer pickles as its settings.
    """

    def __init__(
        self,
        run: RunOptions | Run | None = None,
        *,
        image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
        content: Literal["append", "replace", "keep"] = "append",
        on_failure: OnFailure = "log",
        **choices: Unpack[RunChoices],
    ) -> None:
        if content not in ("append", "replace", "keep"):
            raise ValueError(f"content must be 'append', 'replace' or 'keep', not {content!r}")
        self.image_keys = [image_keys] if isinstance(image_keys, str) else list(image_keys)
        self.content = content
        self._run = MolmoRun(run, choices, on_failure=on_failure)

    # -- LangChain's hooks -------------------------------------------------------------------
    def transform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        documents = list(documents)
        jobs, tags, entries = self._plan(documents)
        if not jobs:
            return documents
        outcomes = self._run.iter_outcomes(entries)
        try:
            for outcome in outcomes:
                self._take(outcome, tags)
        finally:
            outcomes.close()  # type: ignore[attr-defined]
        return self._merge(documents, jobs)

    async def atransform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        documents = list(documents)
        jobs, tags, entries = self._plan(documents)
        if not jobs:
            return documents
        outcomes: AsyncIterator[Any] = self._run.aiter_outcomes(entries)
        try:
            async for outcome in outcomes:
                self._take(outcome, tags)
        finally:
            await outcomes.aclose()  # type: ignore[attr-defined]
        return self._merge(documents, jobs)

    # -- the pictures ------------------------------------------------------------------------
    def _picture(self, document: Document) -> tuple[Any, str, bool] | None:
        """(what the core reads, its label, named by an image key) or None."""
        metadata = document.metadata or {}
        source = metadata.get("source")
        fallback = source if isinstance(source, str) and source else "<bytes>"
        for key in self.image_keys:
            value = metadata.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            explicit = key != "source"
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if isinstance(value, str):
                if value.startswith("data:"):
                    return value, fallback, explicit
                if _is_url(value):
                    if explicit or _looks_like_image_url(value):
                        return value, value, explicit
                    continue
                if os.path.isfile(value):
                    if explicit or _is_image_file(value):
                        return value, value, explicit
                    continue
                if explicit and key != "image_path" and _BASE64.fullmatch(value):  # base64 text of a picture
                    return f"data:;base64,{value.strip()}", fallback, explicit
                if explicit:  # a named file that is not there: reported by the reader
                    return value, value, explicit
                continue
            if isinstance(value, (bytes, bytearray, memoryview)):
                return bytes(value), fallback, explicit
            if isinstance(value, Blob):
                label = value.source if isinstance(value.source, str) and value.source else fallback
                return value, label, True
            if hasattr(value, "getpixel") and hasattr(value, "mode"):  # a PIL image
                return value, fallback, True
        return None

    def _plan(self, documents: list[Document]) -> tuple[list[_Job], dict[int, tuple[Any, _Job]], Iterator[Any]]:
        jobs: list[_Job] = []
        by_value: dict[str, _Job] = {}
        for i, document in enumerate(documents):
            found = self._picture(document)
            if found is None:
                continue
            value, label, explicit = found
            key = value if isinstance(value, str) and not value.startswith("data:") else None
            job = by_value.get(key) if key is not None else None
            if job is None:
                job = _Job(value, label, explicit)
                jobs.append(job)
                if key is not None:
                    by_value[key] = job
            job.documents.append(i)
        tags: dict[int, tuple[Any, _Job]] = {}
        return jobs, tags, self._entries(jobs, tags)

    def _entries(self, jobs: list[_Job], tags: dict[int, tuple[Any, _Job]]) -> Iterator[Any]:
        """The core reader's items (and typed errors) of every picture, tagged with their job;
        consumed by the engine in its reader thread."""
        from molmo_rag import MediaItem, UnsupportedMediaError, read

        options = self._run.options.reader_options
        for job in jobs:
            value = job.value
            if isinstance(value, Blob):
                source = blob_source(value, options)
                entries = read(source, options) if isinstance(source, str) else source
            elif isinstance(value, str) and not value.startswith("data:"):
                entries = read(value, options)
            elif isinstance(value, (str, bytes)):
                entries = relabelled(read(value, options), job.label)
            else:
                entries = iter([MediaItem.from_pil(value, source=job.label)])
            refused = False
            for entry in entries:
                if isinstance(entry, MediaItem) and entry.kind != "image":
                    if job.explicit and not refused:  # a deck or a video where a picture was named
                        refused = True
                        entry = UnsupportedMediaError(
                            f"{entry.source} is a {entry.kind.replace('_', ' ')} source, not a picture",
                            source=entry.source,
                        )
                    else:
                        continue
                tags[id(entry)] = (entry, job)  # keeps the object alive: ids stay unique
                yield entry

    def _take(self, outcome: Any, tags: dict[int, tuple[Any, _Job]]) -> None:
        from molmo_rag import Failure

        if isinstance(outcome, Failure):
            self._run.report(outcome)
            return
        for failure in outcome.failures:
            self._run.report(failure)
        tagged = tags.get(id(outcome.item))
        if tagged is not None and tagged[1].result is None:
            tagged[1].result = outcome

    def _merge(self, documents: list[Document], jobs: list[_Job]) -> list[Document]:
        out = list(documents)
        for job in jobs:
            result = job.result
            if result is None:
                continue  # failed: reported, the document stays as it was
            added = {k: v for k, v in result.metadata.items() if k != "source"}
            for i in job.documents:
                original = documents[i]
                text = original.page_content or ""
                if self.content == "replace" or (self.content == "append" and not text.strip()):
                    text = result.text
                elif self.content == "append":
                    text = f"{text}\n\n{result.text}"
                metadata = {**original.metadata, **added}
                metadata.setdefault("source", result.source)
                out[i] = Document(page_content=text, metadata=metadata, id=original.id or result.id)
        return out
