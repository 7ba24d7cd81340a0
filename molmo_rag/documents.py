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
from typing import TYPE_CHECKING, Any

from .engine import EnrichedItem, Progress
from .index.records import MediaRecord, build_record, make_thumbnail
from .media.door import is_local_path
from .media.names import local_path
from .results import Failure, Result
from .syncio import iterate_sync

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .backends.base import Backend
    from .cache import ResultCache
    from .enrich import EnrichOptions
    from .media.items import MediaItem
    from .tasks import Detail, Task

__all__ = ["MediaDocument", "aiter_documents", "iter_documents", "open_run"]

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
    """Where :meth:`image_path` saves rendered slides and segment frames: the ``frames``
    folder of the run's result cache (None: the default cache directory's)."""

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
        """A file showing this item: the photo itself when it is a local file, else the
        rendered slide or segment frame saved once as ``<folder>/<id>.jpg`` (default: a
        ``frames`` folder in the result cache directory). None when it cannot be made."""
        if self.kind == "image" and is_local_path(self.source) and os.path.isfile(local_path(self.source)):
            return Path(local_path(self.source))
        from .cache import default_cache_dir

        if folder is not None:
            target = Path(folder)
        else:
            target = self.frames_folder or default_cache_dir() / "frames"
        path = target / f"{self.id}.jpg"
        if not path.exists():
            try:
                image = self.image().convert("RGB")
            except Exception:  # a picture is a nicety: never fail a document over it
                return None
            target.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            image.save(partial, format="JPEG", quality=85)
            os.replace(partial, path)
        return path

    @property
    def record(self) -> MediaRecord:
        """The index record (payload + text) of this document."""
        return MediaRecord(payload=self.metadata, text=self.text, item=self.item)

    def point_payload(self, embedder: str) -> dict:
        """The Qdrant payload ``molmo-rag index`` writes for this document with vectors of
        ``embedder`` (metadata at the root, ``text``, LangChain's ``page_content`` +
        ``metadata``, ``source_prefixes``, ``record_hash``): for integrations that write
        points themselves."""
        return self.record.point_payload(embedder)

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, **self.metadata}


def document_of(entry: EnrichedItem, thumbnail_size: int = 128) -> MediaDocument | list[Failure]:
    """The document of one enriched item, or its failures when there is nothing to index:
    every task failed, or none ran (the backend runs no task on this input: the run warned
    once about that) and the item has no text of its own."""
    record = build_record(entry.item, entry.results)
    if record is None or not (entry.results or not entry.failures):
        return list(entry.failures)
    thumbnail = make_thumbnail(entry.item, thumbnail_size) if thumbnail_size > 0 else None
    if thumbnail:
        record.payload["thumbnail"] = thumbnail
    return MediaDocument(
        id=record.id, text=record.text, metadata=record.payload, item=entry.item,
        results=list(entry.results), failures=list(entry.failures),
    )


@dataclass
class _Run:
    """The backend, cache and plan of one run, and whether this run owns (closes) them."""

    backend: "Backend"
    enricher: Any
    cache: "ResultCache | None"
    owned: list[Any]

    def close(self) -> None:
        for thing in reversed(self.owned):
            thing.close()


def open_run(
    backend: "Backend | str | None" = None,
    *,
    model: str | None = None,
    concurrency: int | None = None,
    tasks: "EnrichOptions | Sequence[Task] | None" = None,
    count: Sequence[str] = (),
    ask: Sequence[str] = (),
    detail: "Detail" = "medium",
    default_tasks: bool | None = None,
    cache: "ResultCache | str | os.PathLike | bool | None" = None,
    no_cache: bool = False,
    reader_options: Any = None,
    on_warning: Callable[[str], None] | None = None,
    retry_failed: bool = False,
) -> _Run:
    """Backend, cache and plan from user-facing choices (names, paths, lists), checked
    before anything is read: an unknown backend or a task it cannot run fails here."""
    from .backends.base import Backend, create_backend
    from .cache import ResultCache
    from .enrich import EnrichOptions, Enricher

    owned: list[Any] = []
    if isinstance(tasks, EnrichOptions):
        options = tasks
    else:
        explicit = list(tasks or [])
        options = EnrichOptions(
            detail=detail, count=list(count), ask=list(ask), tasks=explicit,
            default_tasks=(not explicit) if default_tasks is None else default_tasks,
        )
    if isinstance(backend, Backend):
        engine = backend
    else:
        engine = create_backend(backend, model, concurrency)
        owned.append(engine)
    try:
        if cache is False:
            result_cache = None
        elif isinstance(cache, ResultCache):
            result_cache = cache
            if no_cache:
                cache.read = False
            if retry_failed:
                cache.retry_failed = True
        else:
            result_cache = ResultCache(
                None if cache in (None, True) else cache, read=not no_cache, retry_failed=retry_failed  # type: ignore[arg-type]
            )
            owned.append(result_cache)
        enricher = Enricher(
            engine, options=options, cache=result_cache, input_policy=input_policy(reader_options), on_warning=on_warning
        )
    except BaseException:
        for thing in reversed(owned):
            thing.close()
        raise
    return _Run(engine, enricher, result_cache, owned)


def input_policy(reader_options: Any) -> dict:
    """The reader options that change what the model is sent (size caps, JPEG quality, clip
    encoding: the fields ``ReaderOptions`` declares with ``cache_key_field``), as
    ``reader.<name>``: part of every cache key, so a run with other settings does not reuse
    answers about other pixels."""
    from .options_base import cache_key_values

    return cache_key_values(reader_options, prefix="reader.")


async def aiter_documents(
    sources: Any,
    *,
    backend: "Backend | str | None" = None,
    model: str | None = None,
    concurrency: int | None = None,
    tasks: "EnrichOptions | Sequence[Task] | None" = None,
    count: Sequence[str] = (),
    ask: Sequence[str] = (),
    detail: "Detail" = "medium",
    default_tasks: bool | None = None,
    cache: "ResultCache | str | os.PathLike | bool | None" = None,
    no_cache: bool = False,
    reader_options: Any = None,
    ordered: bool = False,
    window: int | None = None,
    max_pending: int | None = None,
    thumbnail_size: int = 128,
    progress: Progress | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> AsyncIterator[MediaDocument | Failure]:
    """Documents of every photo, slide and video segment of ``sources``, as each finishes
    (``ordered=True``: in source order).

    ``sources``: paths, folders, globs, URLs, bytes, PIL images or ready MediaItems.
    ``backend``: a Backend or its name (env ``MOLMO_RAG_BACKEND``, default ``local``).
    ``tasks``: None for the default plan (caption + scene) plus ``count`` / ``ask``; a list
    of tasks to run instead (``Caption(detail="high")``, ``Count(target="person")``, ...);
    or an :class:`~molmo_rag.enrich.EnrichOptions`. Tasks the backend cannot run on some
    inputs are adapted or skipped with one warning; one it can run on no input fails here.
    ``cache``: None/True for the default cache, a folder, a ResultCache, or False.
    ``window``: requests in flight (default: the backend's concurrency or two batches).
    ``max_pending``: items between read and handed out (bounds memory; default: a
    generous multiple of the window).
    ``thumbnail_size``: longest side of ``metadata["thumbnail"]`` (0: none).
    """
    run = open_run(
        backend, model=model, concurrency=concurrency, tasks=tasks, count=count, ask=ask, detail=detail,
        default_tasks=default_tasks, cache=cache, no_cache=no_cache, reader_options=reader_options, on_warning=on_warning,
    )
    frames = run.cache.directory / "frames" if run.cache is not None else None
    try:
        engine = run.enricher.engine(
            reader_options=reader_options, ordered=ordered, window=window, max_pending=max_pending,
            absolute=True, progress=progress,
        )
        # The engine's run is closed (requests in flight cancelled, reader thread joined)
        # before the backend and cache it uses are: an early break must not leave it
        # running against a closed cache until the loop finalizes it.
        async with contextlib.aclosing(engine.run(sources)) as outcomes:
            async for outcome in outcomes:
                if isinstance(outcome, Failure):
                    yield outcome
                    continue
                document = document_of(outcome, thumbnail_size)
                if isinstance(document, MediaDocument):
                    document.frames_folder = frames
                    yield document
                else:
                    for failure in document:
                        yield failure
    finally:
        run.close()


def iter_documents(sources: Any, **options: Any) -> Iterator[MediaDocument | Failure]:
    """:func:`aiter_documents` for sync code; works inside a running event loop too."""
    return iterate_sync(aiter_documents(sources, **options))
