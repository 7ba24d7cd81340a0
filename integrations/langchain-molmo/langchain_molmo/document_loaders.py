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
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Unpack

from langchain_core.document_loaders import BaseBlobParser, BaseLoader
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document

from ._run import HoldsRun, MolmoRun, OnFailure, Sources, relabelled

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Run, RunChoices, RunOptions

__all__ = ["MolmoBlobParser", "MolmoLoader"]


class MolmoLoader(HoldsRun, BaseLoader):
    """Load photos, slide decks and videos as Documents enriched by Molmo2.

    One ``Document`` per photo, slide (PPTX, PDF, ODP, ...) and video segment:
    ``page_content`` is the text molmo-rag embeds (caption, scene, slide title/text/notes,
    counts, answers), ``metadata`` holds the same keys as a ``molmo-rag index`` point
    (``kind``, ``source``, ``media_id``, ``caption``, ``scene``, ``counts`` and the flat
    ``count_<label>`` keys, ``points``, ``answers``, ``slide``, ``title``, ``start``, ``end``,
    ``thumbnail``, ``backend``, ``model``, ...), ``metadata["image_path"]`` a full-resolution
    picture a multimodal model can open (the photo itself, the rendered slide, the
    segment's representative frame; saved under the cache folder by content hash) and
    ``id`` that point's id.

    Setup:
        Install ``langchain-molmo`` and molmo-rag with the backend you use: ``local`` runs
        ``allenai/Molmo2-4B`` with transformers; the hosted ones read their key from the
        environment.

        .. code-block:: bash

            pip install -U langchain-molmo "molmo-rag[all]"
            export WAVESPEED_API_KEY="your-api-key"  # only for backend="wavespeed"

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoLoader

            loader = MolmoLoader(
                ["photos/", "deck.pptx", "talk.mp4"],
                backend="local",
                # backend_options={"device": "cuda"},
                count=["person"],
                # segment_frames=4,  # also save 4 frames of each segment (metadata["frame_paths"])
            )

    Load:
        .. code-block:: python

            docs = loader.load()
            print(docs[0].page_content[:100])
            print(docs[0].metadata)

        .. code-block:: python

            An astronaut in a white suit stands in front of a flag.
            Indoors, a studio portrait ...
            {'kind': 'image', 'source': '/data/photos/astronaut.png', 'caption': 'An astronaut ...',
             'counts': {'person': 1}, 'count_person': 1, 'image_path': '/data/photos/astronaut.png', ...}

    Lazy load:
        .. code-block:: python

            for doc in loader.lazy_load():
                print(doc.metadata["kind"], doc.metadata["source"], doc.page_content[:60])

    Async load:
        .. code-block:: python

            docs = await loader.aload()
            async for doc in loader.alazy_load():  # native: documents as each finishes
                print(doc.metadata["kind"], doc.metadata["source"])

    Args:
        sources: a file, folder (recursive), glob or http(s) URL, or a list of them (bytes,
            PIL images and ``molmo_rag.MediaItem`` objects work too). A folder's files that
            are not media (``notes.txt``, ``report.docx``) are reported as failures, as
            :class:`MolmoBlobParser` reports them: nothing in a folder is passed over
            silently but hidden files (``reader_options={"include_hidden": True}``). This is
            ``ReaderOptions.every_file``, on unless set (a given ``Run`` keeps its own).
        run: a ``molmo_rag.RunOptions`` (the backend, the plan, the cache, ...), or a
            ``molmo_rag.Run`` to share one live backend with other objects (used and left
            open: whoever made it closes it).
        on_failure: ``"log"`` (default: a warning with the cause on the ``langchain_molmo``
            logger), ``"raise"`` (the core's typed error, e.g. ``CorruptMediaError``), or a
            callable given each ``molmo_rag.Failure``. Every failure since the loader was
            made is also in :attr:`failures` (cumulative; ``failures.clear()``).
        **choices: the fields of ``molmo_rag.RunOptions`` as keywords, on top of ``run``:
            ``backend`` (``"local"``, ``"wavespeed"``, ``"openoctopus"``, ``"openai"`` or a
            Backend object), ``model``, ``backend_options`` (the backend's own options:
            ``{"device": "cuda"}``, ``{"base_url": ..., "api_key": ...}``), ``concurrency``,
            ``tasks`` (``Caption(detail="high")``, ``Count(target="car")``,
            ``VideoTask(task="summary")``, ...), ``count``, ``ask``, ``detail``, ``cache`` (a
            folder, a ``ResultCache`` or False), ``no_cache``, ``reader_options`` (a
            ``molmo_rag.ReaderOptions`` or a dict of its fields), ``ordered``, ``window``,
            ``thumbnail_size`` (0: no ``metadata["thumbnail"]``), ``pictures`` (False: no
            ``image_path``), ``segment_frames``, ``share_backend`` (default True here), ...
            (their defaults and descriptions: ``RunOptions``). An unknown one is a
            ``molmo_rag.UsageError`` naming it.

    One run is made on first load from these options and reused by every load; its backend
    is the process's one of that configuration (``share_backend``), so loaders made per file
    (``DirectoryLoader(..., loader_cls=MolmoLoader)``) share one model. :meth:`close` (or
    ``with``) releases the run. A loader pickles as its sources, options and failure policy.
    """

    def __init__(
        self,
        sources: Sources,
        run: RunOptions | Run | None = None,
        *,
        on_failure: OnFailure = "log",
        **choices: Unpack[RunChoices],
    ) -> None:
        self.sources = sources
        self._run = MolmoRun(run, choices, on_failure=on_failure)
        from molmo_rag import ReaderOptions

        reader = self._run.options.reader_options or ReaderOptions()
        if self._run.given is None and "every_file" not in reader.model_fields_set:
            # a folder's every file, as LangChain's loaders walk it (and GenericLoader hands
            # MolmoBlobParser): what is not media is reported, never passed over
            self._run.options = self._run.options.model_copy(
                update={"reader_options": reader.model_copy(update={"every_file": True})}
            )

    def lazy_load(self) -> Iterator[Document]:
        """Documents one by one (works inside a running event loop, e.g. Jupyter)."""
        yield from self._run.documents(self._run.iter_outcomes(self.sources))

    async def alazy_load(self) -> AsyncIterator[Document]:
        """Documents as each finishes, on the caller's event loop (the engine's requests run
        concurrently; media is read in a worker thread)."""
        async for document in self._run.adocuments(self._run.aiter_outcomes(self.sources)):
            yield document


class MolmoBlobParser(HoldsRun, BaseBlobParser):
    """Parse image, slide deck (PPTX, PDF, ...) and video blobs into Documents enriched by
    Molmo2: one per photo, slide and video segment, in order, the same Documents
    :class:`MolmoLoader` makes (``image_path`` included).

    Blobs read from disk (``Blob.from_path``) are read by path, so their ids are the ids
    ``molmo-rag index`` gives those files; blobs of bytes (``Blob.from_data``) work too and
    are named after ``blob.source`` (``"<bytes>"`` when there is none). The kind of media is
    told by its bytes, not by its name or mime type. Numpy image blobs
    (``application/x-npy``, what langchain-community's PDF parsers hand their
    ``images_parser``) are read as pictures.

    Setup:
        Install ``langchain-molmo`` and molmo-rag with the backend you use;
        ``GenericLoader`` comes with ``langchain-community``.

        .. code-block:: bash

            pip install -U langchain-molmo "molmo-rag[all]" langchain-community

    Instantiate:
        .. code-block:: python

            from langchain_molmo import MolmoBlobParser

            parser = MolmoBlobParser(
                backend="local",
                # backend_options={"device": "cuda"},
                count=["person"],
            )

    Load:
        .. code-block:: python

            from langchain_community.document_loaders.generic import GenericLoader

            loader = GenericLoader.from_filesystem("media/", glob="**/[!.]*", parser=parser)
            docs = loader.load()
            print(docs[0].metadata["kind"], docs[0].metadata["image_path"])
            print(parser.failures)  # every blob that could not be read, since the parser was made

    Lazy load:
        .. code-block:: python

            from langchain_core.document_loaders import Blob

            for doc in parser.lazy_parse(Blob.from_path("deck.pptx")):  # slides in order
                print(doc.metadata["slide"], doc.page_content[:60])

    Async load:
        LangChain's blob parsers have no async method; ``GenericLoader.alazy_load`` runs
        :meth:`lazy_parse` in a worker thread. For native async, use
        :meth:`MolmoLoader.alazy_load` on the same files.

    Takes ``run``, ``on_failure`` and the run options of :class:`MolmoLoader`
    (``backend``, ``model``, ``backend_options``, ``count``, ``cache``, ...); one run is
    made on first use and kept for every blob, on the process's shared backend of that
    configuration; :meth:`close` releases it. :attr:`failures` holds every failure since
    the parser was made, the same ones :class:`MolmoLoader` reports for the same files.
    The Documents of a blob come in source order (slides, segments): this parser's
    ``ordered`` is on unless you turn it off, so they stream in order; with
    ``ordered=False``, or a given ``Run`` that is not ordered, each blob's Documents are
    put in order once the blob is done. ``metadata`` of a blob is kept under the
    molmo-rag keys. A parser pickles as its options and failure policy.
    """

    def __init__(
        self,
        run: RunOptions | Run | None = None,
        *,
        on_failure: OnFailure = "log",
        **choices: Unpack[RunChoices],
    ) -> None:
        self._run = MolmoRun(run, choices, on_failure=on_failure, defaults={"ordered": True})

    def lazy_parse(self, blob: Blob) -> Iterator[Document]:
        source = blob_source(blob, self._run.options.reader_options)
        extra = dict(blob.metadata or {})
        documents = self._run.documents(self._run.iter_outcomes(source))
        if not self._run.options.ordered:
            documents = iter(sorted(documents, key=_source_order))
        for document in documents:
            if extra:
                document.metadata = {**extra, **document.metadata}
            yield document


def _source_order(document: Document) -> tuple[int, float]:
    """Where a Document of one source stands in it: its slide, or its segment's start."""
    return document.metadata.get("slide") or 0, document.metadata.get("start") or 0.0


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
