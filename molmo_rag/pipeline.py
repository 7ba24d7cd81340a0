"""The main job in two calls: :func:`index` media into Qdrant, :func:`search` it.

``index`` reads sources lazily and works in chunks: each chunk is enriched (cache first,
then the backend), turned into records, embedded and upserted before the next chunk is
read. Results are cached and points written as chunks finish, so a killed run loses at
most the chunk in flight, and starting it again finishes with the same points, re-using
the cache. Points whose content did not change are not re-embedded nor rewritten. Once
every source was read, points of those sources that no longer exist (an edited image, a
deck with fewer slides) are removed.

Failures (unreadable sources, failed requests) are collected in the :class:`RunSummary`,
never raised; errors of setup (an unknown backend, an explicit task the backend cannot
run, a collection made with another embedder) are raised before any work.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from .analyze import Failure
from .backends.base import Backend, create_backend
from .cache import ResultCache
from .enrich import EnrichedItem, Enricher, EnrichOptions
from .errors import (
    ConfigurationError,
    CorruptMediaError,
    MediaTooLargeError,
    MolmoRagError,
    UnsupportedMediaError,
    UsageError,
)
from .index.embeddings import Embedder, get_embedder
from .index.filters import SearchFilter, build_filter
from .index.records import MediaRecord, build_record, make_thumbnail, point_id
from .index.store import DEFAULT_COLLECTION, Hit, QdrantIndex
from .media.items import MediaItem
from .tasks import Detail

__all__ = ["RunSummary", "index", "search", "remove", "open_index"]


@dataclass
class RunSummary:
    """What an index run did. ``done`` and ``cached`` count task results (an item has one
    per task of its plan); ``indexed`` and ``unchanged`` count points."""

    items: int = 0
    """Media items read (images, slides, video segments)."""
    done: int = 0
    """Task results computed by the backend in this run."""
    cached: int = 0
    """Task results served from the cache (no backend call)."""
    indexed: int = 0
    """Points written (new or changed)."""
    unchanged: int = 0
    """Points already up to date, left as they were."""
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

    @property
    def ok(self) -> bool:
        """True when something was indexed or nothing failed."""
        return not self.failed or (self.indexed + self.unchanged) > 0

    def to_json(self) -> dict:
        return {
            "items": self.items,
            "done": self.done,
            "cached": self.cached,
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
) -> QdrantIndex:
    """The collection at a local path (default ``./.molmo-rag/qdrant``) or a server URL."""
    return QdrantIndex(db, url=qdrant_url, api_key=api_key, collection=collection, create=create)


_MEMORY_HINT = (
    "an in-memory index (':memory:') would be lost as soon as this run ends: give a folder "
    "(--db PATH) or a Qdrant server (--qdrant-url URL); from Python, pass db=open_index(':memory:') "
    "and keep it open for index() and search()"
)


def _store_for(
    db: "str | os.PathLike | QdrantIndex | None", qdrant_url: str | None, api_key: str | None, collection: str, create: bool
) -> tuple[QdrantIndex, bool]:
    """The index to use and whether this call owns it (and must close it)."""
    if isinstance(db, QdrantIndex):
        if qdrant_url:
            raise ConfigurationError("give either an open index as db or a --qdrant-url, not both")
        if collection not in (DEFAULT_COLLECTION, db.collection):
            raise ConfigurationError(f"the open index holds collection {db.collection!r}, not {collection!r}")
        return db, False
    if db is not None and str(db) == ":memory:":
        raise ConfigurationError(_MEMORY_HINT)
    return open_index(db, qdrant_url=qdrant_url, api_key=api_key, collection=collection, create=create), True


def _make_backend(backend: Backend | str | None, model: str | None, concurrency: int | None) -> tuple[Backend, bool]:
    if isinstance(backend, Backend):
        return backend, False
    return create_backend(backend, model, concurrency), True


def _open_cache(cache: ResultCache | str | os.PathLike | bool | None, no_cache: bool) -> tuple[ResultCache | None, bool]:
    if cache is False:
        return None, False
    if isinstance(cache, ResultCache):
        if no_cache:
            cache.read = False
        return cache, False
    directory = None if cache in (None, True) else cache
    return ResultCache(directory, read=not no_cache), True  # type: ignore[arg-type]


def _input_policy(reader_options: Any) -> dict:
    """Reader settings that change what the model sees (caps on size, frames, fps)."""
    if reader_options is None or not hasattr(reader_options, "model_dump"):
        return {}
    words = ("size", "side", "pixel", "frame", "fps", "dpi", "scale", "resolution")
    dumped = reader_options.model_dump(mode="json", exclude_defaults=True)
    return {f"reader.{k}": v for k, v in dumped.items() if any(w in k for w in words)}


def _absolute(source: str, memo: dict[str, str]) -> str:
    """A local file's path made absolute, so the index points back at it from any working
    directory and a re-run from elsewhere finds its own points; other sources unchanged."""
    if source not in memo:
        local = "://" not in source and not source.startswith("<") and os.path.exists(source)
        memo[source] = os.path.abspath(source) if local else source
    return memo[source]


def _read(sources: Iterable[Any], reader_options: Any) -> Iterator[MediaItem | MolmoRagError]:
    memo: dict[str, str] = {}
    for entry in _read_raw(sources, reader_options):
        if isinstance(getattr(entry, "source", None), str) and entry.source:
            entry.source = _absolute(entry.source, memo)
        yield entry


def _folders(sources: Any) -> list[str]:
    """The local folders among the sources, absolute (their vanished files get pruned)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    elif not isinstance(sources, (list, tuple)):
        return []  # a one-shot iterator: not ours to consume twice
    return [os.path.abspath(s) for s in sources if isinstance(s, (str, os.PathLike)) and os.path.isdir(s)]


def _read_raw(sources: Iterable[Any], reader_options: Any) -> Iterator[MediaItem | MolmoRagError]:
    pending: list[Any] = []

    def flush() -> Iterator[MediaItem | MolmoRagError]:
        if pending:
            from .media import read

            yield from read(list(pending), reader_options)
            pending.clear()

    if isinstance(sources, (str, os.PathLike, MediaItem)):
        sources = [sources]
    for source in sources:
        if isinstance(source, (MediaItem, MolmoRagError)):  # e.g. the output of media.read()
            yield from flush()
            yield source
        else:
            pending.append(source)
    yield from flush()


def _embedder_for(store: QdrantIndex, spec: str | Embedder | None) -> Embedder:
    """The embedder asked for, else the one the collection was made with, else the default."""
    if spec is None:
        info = store.embedder_info()
        if info and info.get("embedder"):
            return get_embedder(info["embedder"])
    return get_embedder(spec)


def _progress(enabled: bool | None):
    import sys

    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(desc="indexing", unit="item", disable=disable, file=sys.stderr, dynamic_ncols=True)


def index(
    sources: Iterable[Any] | str | os.PathLike | MediaItem,
    *,
    backend: Backend | str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    db: str | os.PathLike | QdrantIndex | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    count: Sequence[str] = (),
    ask: Sequence[str] = (),
    detail: Detail = "medium",
    default_tasks: bool = True,
    cache: ResultCache | str | os.PathLike | bool | None = None,
    no_cache: bool = False,
    embedder: str | Embedder | None = None,
    reader_options: Any = None,
    chunk_size: int = 16,
    thumbnail_size: int = 128,
    prune: bool = True,
    progress: bool | None = False,
    on_record: Callable[[MediaRecord, str], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunSummary:
    """Enrich every image, slide and video segment of ``sources`` and index it.

    ``sources``: paths, folders, globs, URLs, bytes or PIL images (whatever
    :func:`molmo_rag.media.read` takes) and ready :class:`MediaItem` objects.
    ``backend``: a Backend, or its name (env ``MOLMO_RAG_BACKEND``, default ``local``).
    ``cache``: None/True for the default cache dir, a directory, a ResultCache, or False
    for none; ``no_cache=True`` skips lookups but still stores fresh results.
    ``progress``: a progress bar on stderr (None: only when stderr is a terminal).
    ``on_record(record, status)``: called per item with status ``indexed`` or ``unchanged``.
    ``db``: a folder (embedded Qdrant), or an open :class:`QdrantIndex` (e.g.
    ``open_index(":memory:")``), which is left open.

    Local paths are stored absolute. Pruning removes the points of a source that no
    longer match its media (an edited image, a deck with fewer slides) and, for a folder
    given as a source, the points of files that vanished from it.
    """
    started = time.perf_counter()
    options = EnrichOptions(detail=detail, default_tasks=default_tasks, count=list(count), ask=list(ask))
    store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=True)
    collection = store.collection
    owned_backend = owned_cache = False
    engine: Backend | None = None
    result_cache: ResultCache | None = None
    try:
        vectors = _embedder_for(store, embedder)
        engine, owned_backend = _make_backend(backend, model, concurrency)
        result_cache, owned_cache = _open_cache(cache, no_cache)
        summary = RunSummary(collection=collection, location=store.location)

        def failed(failure: Failure) -> None:
            summary.failed.append(failure)
            if on_failure:
                on_failure(failure)

        enricher = Enricher(
            engine, options=options, cache=result_cache, input_policy=_input_policy(reader_options), on_warning=on_warning
        )
        store.ensure(vectors)  # after the plan was checked: a refused run leaves no empty collection
        seen: dict[str, set[str]] = {}
        bar = _progress(progress)
        # Storing chunk N (thumbnails, embedding, upsert) overlaps enriching chunk N+1; one
        # chunk at most is in the writer, so the store is used by one thread at a time.
        writer = ThreadPoolExecutor(1, thread_name_prefix="molmo-rag-index")
        pending: Future | None = None
        try:
            stream = _read(sources, reader_options)
            while chunk := list(islice(stream, max(1, chunk_size))):
                items: list[MediaItem] = []
                for entry in chunk:
                    if isinstance(entry, MediaItem):
                        items.append(entry)
                        seen.setdefault(entry.source, set()).add(point_id(entry.media_id, entry.source))
                    else:
                        failed(Failure(source=getattr(entry, "source", None) or "?", error=entry))
                enriched = enricher.enrich(items) if items else []
                if pending is not None:
                    pending.result()
                pending = writer.submit(_store_chunk, enriched, store, vectors, summary, thumbnail_size, on_record, failed)
                summary.items += len(items)
                bar.update(len(items))
                bar.set_postfix(cached=summary.cached, failed=len(summary.failed), refresh=False)
            if pending is not None:
                pending.result()
        finally:
            writer.shutdown(wait=True)
            bar.close()
        if prune:
            stale = _stale_points(store, seen, summary.failed, _folders(sources))
            store.delete(stale)
            summary.pruned = len(stale)
        summary.skipped = list(enricher.skipped)
        summary.elapsed_s = time.perf_counter() - started
        return summary
    finally:
        if owned_backend and engine is not None:
            engine.close()
        if owned_cache and result_cache is not None:
            result_cache.close()
        if owned_store:
            store.close()


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
    unreadable = {f.source for f in failures if f.task is None}
    content_gone = {f.source for f in failures if f.task is None and isinstance(f.error, _CONTENT_ERRORS)}
    current = {source: ids for source, ids in seen.items() if source not in unreadable or source in content_gone}
    for source in content_gone:
        current.setdefault(source, set())  # nothing readable is left: every old point goes
    stale = [pid for source, points in store.points_of(current).items() for pid in points if pid not in current[source]]
    for source, points in store.points_of(folders, key="source_prefixes").items():
        if source not in seen and source not in unreadable and _vanished(source):
            stale += points
    return stale


def _vanished(source: str) -> bool:
    """True when a local file is gone (a URL or a file we cannot stat is not 'gone')."""
    if "://" in source or source.startswith(("<", "data:")):
        return False
    try:
        os.stat(source)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def remove(
    sources: Sequence[str | os.PathLike] = (),
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
            names = [str(s) if "://" in str(s) else os.path.abspath(os.path.expanduser(str(s))) for s in sources]
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


def _store_chunk(
    enriched: Sequence[EnrichedItem],
    store: QdrantIndex,
    vectors: Embedder,
    summary: RunSummary,
    thumbnail_size: int,
    on_record: Callable[[MediaRecord, str], None] | None,
    failed: Callable[[Failure], None],
) -> None:
    records: list[MediaRecord] = []
    for entry in enriched:
        summary.cached += entry.cached
        summary.done += len(entry.fresh)
        summary.cost_usd += sum(r.cost_usd for r in entry.fresh)
        for failure in entry.failures:
            failed(failure)
        record = build_record(entry.item, entry.results)
        if record is not None and (entry.results or not entry.failures):
            records.append(record)
    stored = store.stored_fingerprints([r.id for r in records])
    changed = [r for r in records if stored.get(r.id) != r.fingerprint(vectors.name)]
    for record in changed:
        if record.item is not None:
            thumb = make_thumbnail(record.item, thumbnail_size)
            if thumb:
                record.payload["thumbnail"] = thumb
    if changed:
        store.upsert(changed, vectors.embed([r.text for r in changed]), vectors)
    summary.indexed += len(changed)
    summary.unchanged += len(records) - len(changed)
    if on_record:
        changed_ids = {r.id for r in changed}
        for record in records:
            on_record(record, "indexed" if record.id in changed_ids else "unchanged")


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
) -> list[Hit]:
    """The ``top`` items most similar to ``query`` that pass every filter, best first.

    ``kind``: image, slide, video (or several); ``where``: conditions such as
    ``"count.person>=2"`` (see :mod:`molmo_rag.index.filters`); ``source``: a file or URL,
    or a folder / URL prefix; ``after``/``before``: keep video segments overlapping that
    time range (seconds).
    """
    if top < 1:
        raise UsageError(f"the number of hits must be at least 1, not {top}", option="top")
    if not query or not query.strip():
        raise UsageError("the query is empty: say in words what to look for", option="query")
    flt = SearchFilter(
        kind=[kind] if isinstance(kind, str) else (list(kind) if kind else None),
        where=[where] if isinstance(where, str) else list(where),
        source=str(source) if isinstance(source, Path) else source,
        after=after,
        before=before,
    )
    query_filter = build_filter(flt)  # bad --where fails before opening anything
    store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=False)
    try:
        vectors = _embedder_for(store, embedder)
        if store.exists():
            store.ensure(vectors)
        return store.search(vectors.embed_query(query), query_filter, top)
    finally:
        if owned_store:
            store.close()
