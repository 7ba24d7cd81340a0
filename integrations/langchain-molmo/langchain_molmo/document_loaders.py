"""``MolmoLoader`` (sources to Documents) and ``MolmoBlobParser`` (blobs to Documents).

Both stand on molmo-rag's document seam (``molmo_rag.aiter_documents`` /
``iter_documents``): the core reads the media, runs Molmo2 through the chosen backend
(cache first, a sliding window of requests) and hands back one document per photo, slide
and video segment. Here each becomes a LangChain ``Document``: ``page_content`` is the
record text the index embeds, ``metadata`` the index payload keys, ``id`` the Qdrant point
id ``molmo-rag index`` writes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from langchain_core.document_loaders import BaseBlobParser, BaseLoader
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document

from ._run import MolmoRun, OnFailure, Sources, relabelled

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Backend, EnrichOptions, Failure, ReaderOptions, ResultCache, Task

__all__ = ["MolmoBlobParser", "MolmoLoader"]


def _reader_options(options: ReaderOptions | dict[str, Any] | None) -> ReaderOptions | None:
    if isinstance(options, dict):
        from molmo_rag import ReaderOptions

        return ReaderOptions(**options)
    return options


class MolmoLoader(BaseLoader):
    """Load photos, slide decks and videos as Documents enriched by Molmo2.

    One ``Document`` per photo, slide (PPTX, PDF, ODP, ...) and video segment:
    ``page_content`` is the text molmo-rag embeds (caption, scene, slide title/text/notes,
    counts, answers), ``metadata`` holds the same keys as a ``molmo-rag index`` point
    (``kind``, ``source``, ``media_id``, ``caption``, ``scene``, ``counts``, ``points``,
    ``answers``, ``slide``, ``title``, ``start``, ``end``, ``thumbnail``, ``backend``,
    ``model``, ...) and ``id`` is that point's id.

    Example:
        .. code-block:: python

            from langchain_molmo import MolmoLoader

            loader = MolmoLoader(["photos/", "deck.pptx", "talk.mp4"], backend="wavespeed", count=["person"])
            for doc in loader.lazy_load():
                print(doc.metadata["kind"], doc.metadata["source"], doc.page_content[:60])

    Args:
        sources: a file, folder (recursive), glob or http(s) URL, or a list of them (bytes,
            PIL images and ``molmo_rag.MediaItem`` objects work too).
        backend: ``"local"``, ``"wavespeed"``, ``"openoctopus"``, ``"openai"`` or a
            ``molmo_rag`` Backend object (default: ``MOLMO_RAG_BACKEND``, else ``local``).
        model: model id or local checkpoint (``local`` and ``openai`` backends).
        concurrency: requests in flight (REST backends) or batch size (``local``).
        tasks: ``None`` for the default plan (caption + scene, plus ``count``/``ask``), a
            list of ``molmo_rag`` tasks (``Caption(detail="high")``, ``Count(target="car")``,
            ``VideoTask(task="summary")``, ...), or a ``molmo_rag.EnrichOptions``.
        count: things to count on every item (their counts land in ``metadata["counts"]``).
        ask: questions to answer about every item (``metadata["answers"]``).
        detail: caption detail of the default plan.
        cache: result cache: ``None`` (default folder), a folder, a ``ResultCache`` or False.
        no_cache: skip cache lookups (fresh results are still stored).
        reader_options: ``molmo_rag.ReaderOptions`` (or a dict of its fields): video
            segmenting, image size caps, URL timeouts, ...
        ordered: documents in source order instead of as they finish.
        window: requests in flight (default: the backend's own).
        thumbnail_size: longest side of ``metadata["thumbnail"]`` (a JPEG data URI); 0: none.
        on_failure: ``"log"`` (default: a warning with the cause on the ``langchain_molmo``
            logger), ``"raise"`` (the core's typed error, e.g. ``CorruptMediaError``), or a
            callable given each ``molmo_rag.Failure``. Failures of the last load are also in
            :attr:`failures`.
    """

    def __init__(
        self,
        sources: Sources,
        *,
        backend: Backend | str | None = None,
        model: str | None = None,
        concurrency: int | None = None,
        tasks: EnrichOptions | Sequence[Task] | None = None,
        count: Sequence[str] = (),
        ask: Sequence[str] = (),
        detail: Literal["low", "medium", "high"] = "medium",
        default_tasks: bool | None = None,
        cache: ResultCache | str | os.PathLike[str] | bool | None = None,
        no_cache: bool = False,
        reader_options: ReaderOptions | dict[str, Any] | None = None,
        ordered: bool = False,
        window: int | None = None,
        thumbnail_size: int = 128,
        on_failure: OnFailure = "log",
    ) -> None:
        self.sources = sources
        self.ordered = ordered
        self._run = MolmoRun(
            backend=backend,
            model=model,
            concurrency=concurrency,
            tasks=tasks,
            count=count,
            ask=ask,
            detail=detail,
            default_tasks=default_tasks,
            cache=cache,
            no_cache=no_cache,
            reader_options=_reader_options(reader_options),
            window=window,
            thumbnail_size=thumbnail_size,
            on_failure=on_failure,
        )

    @property
    def failures(self) -> list[Failure]:
        """Sources that could not be read and tasks that failed, in the latest load."""
        return self._run.failures

    def lazy_load(self) -> Iterator[Document]:
        """Documents one by one (works inside a running event loop, e.g. Jupyter)."""
        yield from self._run.documents(self._run.iter_outcomes(self.sources, ordered=self.ordered))

    async def alazy_load(self) -> AsyncIterator[Document]:
        """Documents as each finishes, on the caller's event loop (the engine's requests run
        concurrently; media is read in a worker thread)."""
        async for document in self._run.adocuments(self._run.aiter_outcomes(self.sources, ordered=self.ordered)):
            yield document


class MolmoBlobParser(BaseBlobParser):
    """Parse image, slide deck (PPTX, PDF, ...) and video blobs into Documents enriched by
    Molmo2: one per photo, slide and video segment, in order, the same Documents
    :class:`MolmoLoader` makes.

    Blobs read from disk (``Blob.from_path``) are read by path, so their ids are the ids
    ``molmo-rag index`` gives those files; blobs of bytes (``Blob.from_data``) work too and
    are named after ``blob.source`` (``"<bytes>"`` when there is none). The kind of media is
    told by its bytes, not by its name or mime type. Numpy image blobs
    (``application/x-npy``, what langchain-community's PDF parsers hand their
    ``images_parser``) are read as pictures.

    Example:
        .. code-block:: python

            from langchain_community.document_loaders.generic import GenericLoader
            from langchain_molmo import MolmoBlobParser

            loader = GenericLoader.from_filesystem("media/", glob="**/*", parser=MolmoBlobParser(backend="wavespeed"))
            docs = loader.load()

    A backend given by name is created on first use and kept for every blob (a local
    model loads once); :meth:`close` releases it. Takes the options of
    :class:`MolmoLoader` (but ``sources`` and ``ordered``); ``metadata`` of a blob is kept
    under the molmo-rag keys.
    """

    def __init__(
        self,
        *,
        backend: Backend | str | None = None,
        model: str | None = None,
        concurrency: int | None = None,
        tasks: EnrichOptions | Sequence[Task] | None = None,
        count: Sequence[str] = (),
        ask: Sequence[str] = (),
        detail: Literal["low", "medium", "high"] = "medium",
        default_tasks: bool | None = None,
        cache: ResultCache | str | os.PathLike[str] | bool | None = None,
        no_cache: bool = False,
        reader_options: ReaderOptions | dict[str, Any] | None = None,
        window: int | None = None,
        thumbnail_size: int = 128,
        on_failure: OnFailure = "log",
    ) -> None:
        self._run = MolmoRun(
            backend=backend,
            model=model,
            concurrency=concurrency,
            tasks=tasks,
            count=count,
            ask=ask,
            detail=detail,
            default_tasks=default_tasks,
            cache=cache,
            no_cache=no_cache,
            reader_options=_reader_options(reader_options),
            window=window,
            thumbnail_size=thumbnail_size,
            on_failure=on_failure,
        )

    @property
    def failures(self) -> list[Failure]:
        """Failures of the latest blob."""
        return self._run.failures

    def lazy_parse(self, blob: Blob) -> Iterator[Document]:
        source = blob_source(blob, self._run.reader_options)
        extra = dict(blob.metadata or {})
        for document in self._run.documents(self._run.iter_outcomes(source, shared=True, ordered=True)):
            if extra:
                document.metadata = {**extra, **document.metadata}
            yield document

    def close(self) -> None:
        """Release the backend this parser created (model memory, HTTP clients)."""
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def blob_source(blob: Blob, reader_options: Any = None) -> Any:
    """What the core reads for a blob: its path when the bytes are on disk, else the core
    reader's items of its bytes named after the blob."""
    from molmo_rag import read

    if blob.data is None and blob.path is not None:
        return os.fspath(blob.path)
    label = blob.source if isinstance(blob.source, str) and blob.source else "<bytes>"
    if blob.mimetype == "application/x-npy":
        return [_npy_item(blob, label)]
    return relabelled(read(blob.as_bytes(), reader_options), label)


def _npy_item(blob: Blob, label: str) -> Any:
    """A picture handed over as a numpy array (``numpy.save`` bytes)."""
    import numpy as np
    from molmo_rag import CorruptMediaError, MediaItem
    from PIL import Image

    try:
        with blob.as_bytes_io() as buffer:
            array = np.load(buffer, allow_pickle=False)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        image = Image.fromarray(array)
    except (ValueError, TypeError, OSError) as exc:  # the engine reports it as this source's failure
        error = CorruptMediaError(f"{label}: not a numpy image array ({exc})", source=label)
        error.__cause__ = exc
        return error
    return MediaItem.from_pil(image, source=label)
