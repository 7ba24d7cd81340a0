"""The document seam: sources in, finished documents out, for the index and for every
framework integration.

:func:`aiter_documents` (a native async generator) and :func:`iter_documents` (its sync
twin, which also works inside a running event loop such as Jupyter's) read the sources,
run the plan through the streaming engine (:mod:`molmo_rag.engine`: cache first, a sliding
window of requests, each fresh result cached as it arrives) and yield, per photo, slide and
video segment, a :class:`MediaDocument`, or a :class:`~molmo_rag.results.Failure` for a
source that cannot be read or an item whose every task failed.

A document is what an index or a framework needs, in one place: ``id`` (the Qdrant point
id, the same at every door), ``text`` to embed, ``metadata`` (the payload keys: ``kind``,
``source``, ``media_id``, ``caption``, ``scene``, ``counts``, ``points``, ``answers``,
``slide``, ``title``, ``start``, ``end``, ``thumbnail``, ...) and the media it came from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from .engine import EnrichedItem, Progress
from .index.records import MediaRecord, build_record, make_thumbnail
from .pictures import picture_folder, save_frames, save_picture
from .results import Failure, Result
from .syncio import iterate_twin

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .media.items import MediaItem
    from .run import Run, RunChoices, RunOptions

__all__ = ["MediaDocument", "aiter_documents", "iter_documents"]

FILTER_KEYS = ("kind", "source", "media_id", "slide", "title", "start", "end", "backend", "model")
"""Metadata keys holding one scalar each (what frameworks can filter on directly); counts
are under ``counts`` (``counts.<label>``)."""


@dataclass
class MediaDocument:
    """One photo, slide or video segment, enriched and ready to index."""

    id: str
    """The Qdrant point id: uuid5 of the absolute source and the media id."""
    text: str
    """What gets embedded: caption, scene, slide title/text/notes, counts, answers."""
    metadata: dict
    """The payload keys; ``thumbnail`` (a small JPEG data URI) when thumbnails are on."""
    item: "MediaItem" = field(repr=False)
    results: list[Result] = field(default_factory=list, repr=False)
    failures: list[Failure] = field(default_factory=list, repr=False)
    """Tasks of this item that failed (the others' results are in the document); each
    Failure of an item carries that ``item``."""
    frames_folder: Path | None = field(default=None, repr=False)
    """Where :meth:`image_path` saves pictures: the run's ``pictures`` folder (None: the
    default cache directory's)."""
    plan_key: str | None = field(default=None, repr=False)
    """The digest of the plan this document answers in full (None when a task failed):
    what the index stores so a later run knows the item is done."""

    # -- the media reference -------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.metadata["source"]

    @property
    def kind(self) -> str:
        return self.metadata["kind"]

    @property
    def media_id(self) -> str:
        return self.metadata["media_id"]

    @property
    def cached(self) -> int:
        """Results of this document served from the cache."""
        return sum(1 for r in self.results if r.cached)

    def image(self) -> "Image.Image":
        """The picture the model saw: the photo, the rendered slide, or the segment's
        representative frame."""
        return self.item.thumbnail()

    def image_path(self, folder: str | os.PathLike | None = None) -> Path | None:
        """A file showing this item at the resolution it was read: the photo itself when it
        is a local file, else the picture saved once, by content hash, under ``folder``
        (default: this run's ``pictures`` folder, see :mod:`molmo_rag.pictures`). None when
        it cannot be made."""
        known = self.metadata.get("image_path")
        if folder is None and known and os.path.isfile(known):
            return Path(known)
        return save_picture(self.item, Path(folder) if folder is not None else self._pictures())

    def frame_paths(self, count: int = 8, folder: str | os.PathLike | None = None) -> list[Path]:
        """Up to ``count`` frames of a video segment saved as files (``[]`` for a photo or slide)."""
        return save_frames(self.item, Path(folder) if folder is not None else self._pictures(), count)

    def _pictures(self) -> Path:
        return self.frames_folder or picture_folder()

    @property
    def record(self) -> MediaRecord:
        """The index record (payload + text) of this document."""
        return MediaRecord(payload=self.metadata, text=self.text, item=self.item, plan_key=self.plan_key)

    def point_payload(self, embedder: str) -> dict:
        """The Qdrant payload ``molmo-rag index`` writes for this document with vectors of
        ``embedder`` (metadata at the root, ``text``, LangChain's ``page_content`` +
        ``metadata``, ``source_prefixes``, ``record_hash``): for integrations that write
        points themselves."""
        return self.record.point_payload(embedder)

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, **self.metadata}


def document_of(
    entry: EnrichedItem, thumbnail_size: int, pictures: Path | None = None, segment_frames: int | None = None,
    planner: Any = None,
) -> MediaDocument | list[Failure]:
    """The document of one enriched item, or its failures when there is nothing to index:
    every task failed, or none ran (the backend runs no task on this input: the run warned
    once about that) and the item has no text of its own.

    ``pictures``: the folder the item's picture (and ``segment_frames`` frames of a video
    segment) are saved in, their paths put in ``metadata`` (None: no picture).
    ``planner``: the run's planner (:class:`~molmo_rag.enrich.Enricher`), whose plan key
    a document with no failed task carries."""
    record = build_record(entry.item, entry.results)
    if record is None or not (entry.results or not entry.failures):
        return list(entry.failures)
    thumbnail = make_thumbnail(entry.item, thumbnail_size) if thumbnail_size > 0 else None
    if thumbnail:
        record.payload["thumbnail"] = thumbnail
    if pictures is not None:
        record.payload.update(picture_fields(entry.item, pictures, segment_frames))
    plan_key = getattr(planner, "plan_key", None)
    return MediaDocument(
        id=record.id, text=record.text, metadata=record.payload, item=entry.item,
        results=list(entry.results), failures=list(entry.failures), frames_folder=pictures,
        plan_key=plan_key(entry.item) if plan_key is not None and not entry.failures else None,
    )


def picture_fields(item: "MediaItem", folder: Path, segment_frames: int | None = None) -> dict:
    """``image_path`` (and ``image_url`` for a photo read from the web, ``frame_paths`` for
    a segment's frames when asked) of one item; keys left out when there is no picture."""
    fields: dict = {}
    path = save_picture(item, folder)
    if path is not None:
        fields["image_path"] = str(path)
    if item.kind == "image" and item.source.startswith(("http://", "https://")):
        fields["image_url"] = item.source
    frames = save_frames(item, folder, segment_frames or 0)
    if frames:
        fields["frame_paths"] = [str(p) for p in frames]
    return fields


async def aiter_documents(
    sources: Any,
    run: Run | RunOptions | None = None,
    /,
    *,
    progress: Progress | None = None,
    on_warning: Callable[[str], None] | None = None,
    **choices: Unpack[RunChoices],
) -> AsyncIterator[MediaDocument | Failure]:
    """Documents of every photo, slide and video segment of ``sources``, as each finishes
    (``ordered=True``: in source order).

    ``sources``: paths, folders, globs, URLs, bytes, PIL images or ready MediaItems.
    ``run``: a :class:`~molmo_rag.run.Run` (used and left open: its backend stays loaded
    for the next call) or :class:`~molmo_rag.run.RunOptions`; or their fields as keywords
    (``backend="wavespeed"``, ``count=["person"]``, ``tasks=[...]``, ``cache=False``,
    ``window=8``, ``thumbnail_size=0``, ...: see ``RunOptions``). Tasks the backend cannot
    run on some inputs are adapted or skipped with one warning (``on_warning``); one it can
    run on no input fails here, before anything is read.
    """
    from .run import Run

    live, owned = Run.of(run, choices, on_warning=on_warning)
    options = live.options
    pictures = live.pictures_folder if options.pictures else None
    thumbnail_size = options.thumbnail_size
    try:
        engine = live.engine(progress=progress)
        # The engine's run is closed (requests in flight cancelled, reader thread joined)
        # before the backend and cache it uses are: an early break must not leave it
        # running against a closed cache until the loop finalizes it.
        async with contextlib.aclosing(engine.run(sources)) as outcomes:
            async for outcome in outcomes:
                if isinstance(outcome, Failure):
                    yield outcome
                    continue
                document = document_of(outcome, thumbnail_size, pictures, options.segment_frames, live.planner)
                if isinstance(document, MediaDocument):
                    if pictures is None:
                        document.frames_folder = live.pictures_folder
                    yield document
                else:
                    for failure in document:
                        yield failure
    finally:
        if owned:
            live.close()


iter_documents = iterate_twin(aiter_documents)
