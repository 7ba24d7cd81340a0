"""The main job in two calls: :func:`index` media into Qdrant, :func:`search` it.

``index`` streams sources through the engine (:mod:`molmo_rag.engine`) into documents
(:mod:`molmo_rag.documents`) and writes them in small batches as they finish: each batch is
embedded and upserted in a worker thread while the engine keeps its window of requests in
flight. Results are cached the moment they arrive and points written batch by batch, so a
killed run loses nothing that finished, and starting it again finishes with the same
points, re-using the cache. Points whose content did not change are not re-embedded nor
rewritten. Once every source was read, stale points are removed: those of a source that no
longer match its media (an edited image, a deck with fewer slides, bytes that became
unreadable), and those under a folder source whose files are gone from disk. A mistyped
path, a URL that is down or a file we may not read removes nothing.

Failures (unreadable sources, failed requests) are collected in the :class:`RunSummary`,
never raised; errors of setup (an unknown backend, an explicit task the backend cannot
run, a collection made with another embedder, a Qdrant server that cannot be reached) are
raised before any work.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import aclosing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from .errors import (
    ConfigurationError,
    CorruptMediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
    UsageError,
)
from .index.store import DEFAULT_COLLECTION, QdrantIndex
from .results import Failure
from .media.door import absolute_path, as_source_list, is_local_path, is_web_url, reusable_source_list
from .media.names import local_path, text_path
from .syncio import run_twin

if TYPE_CHECKING:  # pragma: no cover - search needs none of these: keep its start-up light
    from .documents import MediaDocument
    from .grounding import GroundedHits
    from .index.count_words import CountQuery
    from .index.embeddings import Embedder
    from .index.records import MediaRecord
    from .media.items import MediaItem
    from .run import Run, RunChoices, RunOptions

__all__ = ["RunSummary", "Hits", "write_batch", "CountLabels", "index", "aindex", "search", "remove", "open_index", "labels", "count_labels", "embedder_for"]


@dataclass
class RunSummary:
    """What an index run did. ``done`` and ``cached`` count task results (an item has one
    per task of its plan); ``indexed`` and ``unchanged`` count points."""

    items: int = 0
    """Media items in the index after this run (images, slides, video segments with a
    point, written now or unchanged): distinct points, however many times a source was
    listed; an item all of whose tasks failed has no point and is not counted."""
    done: int = 0
    """Task results computed by the backend in this run."""
    cached: int = 0
    """Task results served from the cache (no backend call)."""
    failed_sent: int = 0
    """Task requests sent to the backend in this run that failed (submitted, maybe paid)."""
    failed_cached: int = 0
    """Task failures an earlier run remembered (a permanent cause): reported, not sent."""
    indexed: int = 0
    """Points written (new or changed), each counted once."""
    unchanged: int = 0
    """Points already up to date, left as they were (none of those written in this run)."""
    pruned: int = 0
    """Stale points removed (media that changed or disappeared from a source)."""
    failed: list[Failure] = field(default_factory=list)
    """Sources that could not be read and (item, task) requests that failed."""
    skipped: list[str] = field(default_factory=list)
    """One warning per (task, model input) the backend cannot run."""
    cost_usd: float = 0.0
    """Cost of this run's backend calls (cached results cost nothing)."""
    elapsed_s: float = 0.0
    collection: str = DEFAULT_COLLECTION
    location: str = ""

    def tally(self, outcome: Any) -> None:
        """Count the task results and failed requests of one enriched item."""
        self.cached += outcome.cached
        self.done += len(outcome.fresh)
        self.failed_sent += outcome.failed_sent
        self.failed_cached += outcome.failed_cached
        self.cost_usd += sum(r.cost_usd for r in outcome.fresh) + outcome.failed_cost_usd

    @property
    def ok(self) -> bool:
        """True when something was indexed or nothing failed."""
        return not self.failed or (self.indexed + self.unchanged) > 0

    def to_json(self) -> dict:
        return {
            "items": self.items,
            "done": self.done,
            "cached": self.cached,
            "failed_sent": self.failed_sent,
            "failed_cached": self.failed_cached,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "pruned": self.pruned,
            "failed": [f.to_json() for f in self.failed],
            "skipped": list(self.skipped),
            "cost_usd": round(self.cost_usd, 6),
            "elapsed_s": round(self.elapsed_s, 3),
            "collection": self.collection,
            "location": self.location,
        }


def open_index(
    db: str | os.PathLike | None = None,
    *,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    create: bool = True,
    storage: str | None = None,
) -> QdrantIndex:
    """The collection at a local path (default ``./.molmo-rag/qdrant``) or a server URL.
    ``storage``: how a new folder is stored, ``edge`` (default) or ``local``
    (:data:`~molmo_rag.index.store.STORAGES`); an existing one opens as it was written."""
    return QdrantIndex(db, url=qdrant_url, api_key=api_key, collection=collection, create=create, storage=storage)


_MEMORY_HINT = (
    "an in-memory index (':memory:') would be lost as soon as this run ends: give a folder "
    "or a Qdrant server URL; from Python, pass db=open_index(':memory:') "
    "and keep it open for index() and search()"
)


def _store_for(
    db: "str | os.PathLike | QdrantIndex | None",
    qdrant_url: str | None,
    api_key: str | None,
    collection: str,
    create: bool,
    storage: str | None = None,
) -> tuple[QdrantIndex, bool]:
    """The index to use and whether this call owns it (and must close it)."""
    if isinstance(db, QdrantIndex):
        if qdrant_url:
            raise UsageError("give either an open index as db or a Qdrant server URL, not both", option="qdrant_url")
        if collection not in (DEFAULT_COLLECTION, db.collection):
            raise ConfigurationError(f"the open index holds collection {db.collection!r}, not {collection!r}")
        return db, False
    if db is not None and str(db) == ":memory:":
        raise UsageError(_MEMORY_HINT, option="db")
    return open_index(db, qdrant_url=qdrant_url, api_key=api_key, collection=collection, create=create, storage=storage), True


def _folders(sources: Any) -> list[str]:
    """The local folders among the sources, absolute (their vanished files get pruned)."""
    listed = reusable_source_list(sources) or []  # a one-shot iterator: not ours to consume twice
    return [absolute_path(s) for s in listed if is_local_path(s) and os.path.isdir(local_path(os.fsdecode(s)))]


def embedder_for(store: "QdrantIndex", spec: "str | Embedder | None" = None) -> "Embedder":
    """The embedder asked for, else the one the collection was made with, else the default."""
    from .index.embeddings import get_embedder

    if spec is None:
        info = store.embedder_info()
        if info and info.get("embedder"):
            return get_embedder(info["embedder"])
    return get_embedder(spec)


_embedder_for = embedder_for  # the name benchmarks used before it was public


def _progress_bar(enabled: bool | None, desc: str = "indexing"):
    import sys

    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(desc=desc, unit="item", total=None, disable=disable, file=sys.stderr, dynamic_ncols=True)


def write_batch(
    store: QdrantIndex,
    vectors: "Embedder",
    documents: "Sequence[MediaDocument]",
    *,
    given: "Sequence[Sequence[float] | None] | None" = None,
    thumbnail_size: int = 0,
    pictures: Path | None = None,
    segment_frames: int | None = None,
) -> "tuple[list[MediaRecord], set[str]]":
    """Write one batch of documents: one record per point, only those whose fingerprint
    changed (their thumbnail and picture made now, from the item, unless the document
    carries them already), embedded unless ``given`` holds their vectors. Returns the
    batch's records and the ids of those written. Every writer of the index calls this:
    :func:`index`'s worker thread and the Ray writers (:mod:`molmo_rag.ray`)."""
    from .documents import picture_fields
    from .index.records import make_thumbnail

    records: dict = {}
    vector_of: dict = {}
    for position, document in enumerate(documents):
        record = document.record
        records[record.id] = record  # one per point: an item read twice is written once
        if given is not None and given[position] is not None:
            vector_of[record.id] = given[position]
    stored = store.stored_fingerprints(list(records))
    changed = [r for r in records.values() if stored.get(r.id) != r.fingerprint(vectors.name)]
    for record in changed:
        if record.item is None:
            continue
        thumb = make_thumbnail(record.item, thumbnail_size) if "thumbnail" not in record.payload else None
        if thumb:
            record.payload["thumbnail"] = thumb
        if pictures is not None and "image_path" not in record.payload:
            record.payload.update(picture_fields(record.item, pictures, segment_frames))
    if changed:
        missing = [r for r in changed if r.id not in vector_of]
        if missing:
            vector_of.update(zip((r.id for r in missing), vectors.embed([r.text for r in missing])))
        store.upsert(changed, [vector_of[r.id] for r in changed], vectors)
    return list(records.values()), {r.id for r in changed}


class _Writer:
    """Writes documents in small batches, one batch at a time in a worker thread, so the
    engine keeps going while a batch is embedded and upserted."""

    def __init__(self, store, vectors, summary, thumbnail_size, on_record, batch_size: int, max_wait: float,
                 pictures: Path | None = None, segment_frames: int | None = None):
        self.pictures, self.segment_frames = pictures, segment_frames
        self.store, self.vectors, self.summary = store, vectors, summary
        self.thumbnail_size, self.on_record = thumbnail_size, on_record
        self.batch_size, self.max_wait = max(1, batch_size), max_wait
        self.pending: list[tuple[MediaDocument, Any]] = []
        self.writing: asyncio.Future | None = None
        self.last = time.monotonic()
        # point ids, so an item read twice (a file listed twice, two objects for one point)
        # counts once; a point written once and then found up to date counts as written
        self.written: set[str] = set()
        self.up_to_date: set[str] = set()

    async def add(self, document: "MediaDocument", vector: "Sequence[float] | None" = None) -> None:
        """Queue a document (with its vector, when it was embedded already)."""
        self.pending.append((document, vector))
        if len(self.pending) >= self.batch_size or time.monotonic() - self.last >= self.max_wait:
            await self.flush()

    async def flush(self) -> None:
        if self.writing is not None:
            await self.writing
            self.writing = None
        if self.pending:
            batch, self.pending = self.pending, []
            self.writing = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
        self.last = time.monotonic()

    async def close(self) -> None:
        await self.flush()
        if self.writing is not None:
            await self.writing
            self.writing = None

    def _write(self, batch: "list[tuple[MediaDocument, Any]]") -> None:
        records, changed_ids = write_batch(
            self.store, self.vectors, [d for d, _ in batch], given=[v for _, v in batch],
            thumbnail_size=self.thumbnail_size, pictures=self.pictures, segment_frames=self.segment_frames,
        )
        self.count(records, changed_ids)

    def count(self, records: "Sequence[MediaRecord]", changed_ids: set[str]) -> None:
        """Account for a batch written (here, or by a writer elsewhere: Ray workers)."""
        self.written |= changed_ids
        self.up_to_date.update(r.id for r in records if r.id not in changed_ids)
        self.summary.indexed = len(self.written)
        self.summary.unchanged = len(self.up_to_date - self.written)
        if self.on_record:
            for record in records:
                self.on_record(record, "indexed" if record.id in changed_ids else "unchanged")


async def aindex(
    sources: "Iterable[Any] | str | os.PathLike | MediaItem",
    run: Run | RunOptions | None = None,
    /,
    *,
    db: "str | os.PathLike | QdrantIndex | None" = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    storage: str | None = None,
    embedder: "str | Embedder | None" = None,
    write_batch: int = 16,
    prune: bool = True,
    progress: bool | None = False,
    on_record: "Callable[[MediaRecord, str], None] | None" = None,
    on_failure: Callable[[Failure], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    **choices: Unpack[RunChoices],
) -> RunSummary:
    """Enrich every image, slide and video segment of ``sources`` and index it.

    ``sources``: paths, folders, globs, URLs, bytes or PIL images (whatever
    :func:`molmo_rag.media.read` takes) and ready :class:`MediaItem` objects.
    ``run``: a :class:`~molmo_rag.run.Run` (used and left open) or
    :class:`~molmo_rag.run.RunOptions`, or their fields as keywords: ``backend`` (a name,
    env ``MOLMO_RAG_BACKEND``, default ``local``, or a Backend), ``count``, ``ask``,
    ``detail``, ``cache`` (None/True for the default folder, a folder, a ResultCache, or
    False), ``no_cache``, ``retry_failed`` (send again requests whose permanent failure an
    earlier run remembered), ``window``, ``reader_options``, ``thumbnail_size``, ...
    ``db``: a folder (embedded Qdrant), or an open :class:`QdrantIndex` (e.g.
    ``open_index(":memory:")``), which is left open; ``qdrant_url``: a server or cluster;
    ``storage``: how a new folder is stored (``edge``, the default, or ``local``).
    ``progress``: a progress bar on stderr (None: only when stderr is a terminal).
    ``on_record(record, status)``: called per item with status ``indexed`` or ``unchanged``.

    ``index`` is the sync twin (works inside a running event loop too).
    """
    from .documents import MediaDocument, document_of
    from .engine import Progress
    from .index.records import point_id
    from .run import Run

    started = time.perf_counter()
    store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=True, storage=storage)
    live: "Run | None" = None
    owned_run = False
    try:
        vectors = embedder_for(store, embedder)
        live, owned_run = Run.of(run, choices, on_warning=on_warning)
        summary = RunSummary(collection=store.collection, location=store.location)
        store.ensure(vectors)  # after the plan was checked: a refused run leaves no empty collection
        _record_run(store, live)

        def failed(failure: Failure) -> None:
            summary.failed.append(failure)
            if on_failure:
                on_failure(failure)

        bar = _progress_bar(progress)

        def show(p: Progress) -> None:
            if p.total is not None and bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            bar.set_postfix(cached=p.cached, failed=len(summary.failed), refresh=False)
            bar.update(0)

        tracker = Progress(on_change=None if bar.disable else show)
        writer = _Writer(
            store, vectors, summary, live.options.thumbnail_size, on_record, write_batch, max_wait=1.0,
            pictures=live.pictures_folder if live.options.pictures else None, segment_frames=live.options.segment_frames,
        )
        seen: dict[str, set[str]] = {}  # source -> point ids read from it
        with_point: set[str] = set()  # point ids of items that have a document to index
        try:
            engine = live.engine(progress=tracker)
            async with aclosing(engine.run(sources)) as outcomes:  # an error here cancels what is in flight
                async for outcome in outcomes:
                    if isinstance(outcome, Failure):
                        failed(outcome)
                        continue
                    item = outcome.item
                    seen.setdefault(item.source, set()).add(point_id(item.media_id, item.source))
                    summary.tally(outcome)
                    # thumbnails, pictures: changed points only (the writer makes them)
                    document = document_of(outcome, thumbnail_size=0, planner=live.planner)
                    if isinstance(document, MediaDocument):
                        with_point.add(document.id)
                        for failure in document.failures:
                            failed(failure)
                        await writer.add(document)
                    else:
                        for failure in document:
                            failed(failure)
            await writer.close()
        finally:
            bar.close()
        summary.items = len(with_point)
        if prune:
            stale = _stale_points(store, seen, summary.failed, _folders(sources))
            store.delete(stale)
            summary.pruned = len(stale)
        store.settle()
        summary.skipped = live.skipped
        summary.elapsed_s = time.perf_counter() - started
        return summary
    finally:
        if live is not None and owned_run:
            live.close()
        if owned_store:
            store.close()


def _record_run(store: QdrantIndex, run: "Run") -> None:
    """What made the collection (grounding checks with it) and the labels asked for (so
    ``labels`` and counts in words can tell "never counted" from "no count read")."""
    from .index.filters import label_key

    store.record_run(run.backend.name, run.model, [label_key(c) for c in run.options.count])


index = run_twin(aindex)


# Errors that say what a file's bytes are (or are not): its old points show content that is
# gone. Not-found and unreachable errors say nothing about the content: a mistyped path or a
# URL down for a minute must never delete anything.
_CONTENT_ERRORS = (CorruptMediaError, UnsupportedMediaError, MediaTooLargeError)


def _stale_points(
    store: QdrantIndex, seen: dict[str, set[str]], failures: Sequence[Failure], folders: Sequence[str]
) -> list[str]:
    """Point ids to remove after a run: points of a source that no longer match what was
    read from it (an edited image, a deck with fewer slides, a file whose bytes became
    unreadable), and points under a folder source whose files are gone from disk."""
    # Only a source with an identity of its own (a file, a URL) can go stale: every bytes
    # object, stream or picture handed over in memory shares one label (``<bytes>``), and
    # reading one must never remove the points of the others.
    seen = {source: ids for source, ids in seen.items() if _has_identity(source)}
    unreadable = {f.source for f in failures if f.task is None}
    content_gone = {f.source for f in failures if f.task is None and isinstance(f.error, _CONTENT_ERRORS)}
    content_gone = {source for source in content_gone if _has_identity(source)}
    current = {source: ids for source, ids in seen.items() if source not in unreadable or source in content_gone}
    for source in content_gone:
        current.setdefault(source, set())  # nothing readable is left: every old point goes
    stale = [pid for source, points in store.points_of(current).items() for pid in points if pid not in current[source]]
    for source, points in store.points_of(folders, key="source_prefixes").items():
        if source not in seen and source not in unreadable and _vanished(source):
            stale += points
    return stale


def _has_identity(source: str) -> bool:
    """Whether a stored source names one thing that can change or vanish (a path, a URL)."""
    return is_local_path(source) or is_web_url(source)


def _source_text(source: str | os.PathLike | None) -> str | None:
    """A ``source`` filter as the index writes sources: a local path that is not UTF-8 in
    its text form (``media.names``), anything else as given."""
    if source is None:
        return None
    return text_path(source) if is_local_path(source) else str(source)


def _vanished(source: str) -> bool:
    """True when a local file is gone (a URL or a file we cannot stat is not 'gone')."""
    if not is_local_path(source):
        return False
    try:
        os.stat(local_path(source))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def remove(
    sources: "str | os.PathLike | Sequence[str | os.PathLike]" = (),
    *,
    missing: bool = False,
    db: str | os.PathLike | QdrantIndex | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    dry_run: bool = False,
) -> dict[str, int]:
    """Remove the points of ``sources`` (files or URLs exactly, folders and URL prefixes with
    everything under them), whether or not they still exist; ``missing=True`` keeps only
    the points of local files that are gone from disk (under ``sources``, or anywhere when
    none are given). Returns ``{source: points removed}`` (or that would be, ``dry_run``)."""
    if not sources and not missing:
        raise UsageError("name the files, folders or URLs to remove, or ask for the missing ones", option="sources")
    store, owned = _store_for(db, qdrant_url, api_key, collection, create=False)
    try:
        found: dict[str, dict[str, str]] = {}
        if sources:
            names = [absolute_path(s) if is_local_path(s) else str(s) for s in as_source_list(sources)]
            found.update(store.points_of(names))
            for source, points in store.points_of(names, key="source_prefixes").items():
                found.setdefault(source, {}).update(points)
        else:
            found = store.all_points()
        if missing:
            found = {source: points for source, points in found.items() if _vanished(source)}
        if not dry_run:
            store.delete([pid for points in found.values() for pid in points])
        return {source: len(points) for source, points in sorted(found.items())}
    finally:
        if owned:
            store.close()


def _either_layout(flt: Any) -> Any:
    """qdrant-client's form of :func:`molmo_rag.index.filters.either_layout` (the filter
    search used on every collection before the one-layout filter)."""
    from .index.conditions import to_qdrant_filter
    from .index.filters import either_layout

    return to_qdrant_filter(either_layout(flt))


class Hits(list):
    """The hits of a search, best first (a plain list), and how the query was read:
    ``count_query`` holds the text searched for and the count conditions taken from the
    words, when ``count_words`` was on (and, in ``kept``, the count phrases kept as text
    and why); ``made_with``: the backend and model the collection was made with (what
    :func:`molmo_rag.ground` checks with unless told otherwise), None if not recorded."""

    count_query: "CountQuery | None" = None
    made_with: dict | None = None


def search(
    query: str,
    *,
    db: str | os.PathLike | QdrantIndex | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    kind: str | Sequence[str] | None = None,
    where: str | Sequence[str] = (),
    source: str | None = None,
    after: float | None = None,
    before: float | None = None,
    top: int = 10,
    embedder: str | Embedder | None = None,
    count_words: bool = False,
    ground: bool | Run | RunOptions = False,
    ground_top: int = 10,
) -> Hits | GroundedHits:
    """The ``top`` items most similar to ``query`` that pass every filter, best first.

    ``kind``: image, slide, video (or several); ``where``: conditions such as
    ``"count.person>=2"`` (see :mod:`molmo_rag.index.filters`); ``source``: a file or URL,
    or a folder / URL prefix; ``after``/``before``: keep video segments overlapping that
    time range (seconds). ``count_words``: read count phrases of the query ("at least 3
    people", "no cars") as conditions on the labels counted in the collection, and search
    the remaining words (see :mod:`molmo_rag.index.count_words`). A query longer than
    ``MAX_QUERY_CHARS`` (4,096 characters) is a UsageError.

    ``ground``: re-rank the first ``ground_top`` hits by what a backend finds in them
    (:func:`molmo_rag.grounding.ground`, with the words left after the count phrases and
    the count conditions read from them): True for the backend and model that made the
    collection, or a :class:`~molmo_rag.run.Run` (left open) or
    :class:`~molmo_rag.run.RunOptions` to check with. Returns a
    :class:`~molmo_rag.grounding.GroundedHits` then (with ``count_query`` and ``made_with``
    too).
    """
    from .index.count_words import check_query
    from .index.filters import SearchFilter, filter_of

    if top < 1:
        raise UsageError(f"the number of hits must be at least 1, not {top}", option="top")
    if ground is not False and ground_top < 1:
        raise UsageError(f"the number of hits to ground must be at least 1, not {ground_top}", option="ground_top")
    if not query or not query.strip():
        raise UsageError("the query is empty: say in words what to look for", option="query")
    check_query(query)
    flt = SearchFilter(
        kind=[kind] if isinstance(kind, str) else (list(kind) if kind else None),
        where=[where] if isinstance(where, str) else list(where),
        source=_source_text(source),
        after=after,
        before=before,
    )
    filter_of(flt)  # a bad condition fails before opening anything
    store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=False)
    try:
        vectors = embedder_for(store, embedder)
        if store.exists():
            store.ensure(vectors)
        read = None
        if count_words and store.exists():
            from .index.count_words import split_counts

            read = split_counts(query, store.count_labels(), asked=store.asked_labels())
            flt = flt.model_copy(update={"where": [*flt.where, *read.where]})
        layout_filter = store.filter_for(flt)
        hits = Hits(store.search(vectors.embed_query((read.text if read else "") or query), layout_filter, top))
        hits.count_query = read
        hits.made_with = store.made_with()
    finally:
        if owned_store:
            store.close()
    if ground is False or not hits:
        return hits
    from .grounding import ground as ground_hits  # here: a plain search stays light

    return ground_hits(hits, (read.text if read else "") or query, None if ground is True else ground, count_query=read, top=ground_top)


def labels(
    *,
    db: str | os.PathLike | QdrantIndex | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
) -> list[str]:
    """The labels counted in a collection (``--count`` at index time): what ``count.LABEL``
    filters and counts in words can use."""
    return count_labels(db=db, qdrant_url=qdrant_url, api_key=api_key, collection=collection).counted


@dataclass
class CountLabels:
    """The count labels of a collection: ``counted``, with a count on at least one item
    (what filters can use), and ``without_counts``, asked for at index time but with no
    count on any item (every count failed, or the backend could not count those items)."""

    counted: list[str] = field(default_factory=list)
    without_counts: list[str] = field(default_factory=list)


def count_labels(
    *,
    db: str | os.PathLike | QdrantIndex | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
) -> CountLabels:
    """:func:`labels`, and the labels asked for whose counts were never read."""
    store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=False)
    try:
        counted = store.count_labels()
        return CountLabels(counted, [label for label in store.asked_labels() if label not in counted])
    finally:
        if owned_store:
            store.close()
