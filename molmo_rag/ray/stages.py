"""The stages of a Ray Data run, each the same code as a single-machine run's.

* :func:`list_sources` (driver): sources to one row per file, URL or in-memory source
  (folders and globs expanded; nothing opened or fetched).
* :func:`read_rows` (CPU tasks): each row read, sniffed and cut into media items (slides
  rendered, videos cut into segments: :func:`molmo_rag.engine.read_entries`); a source
  that cannot be read becomes its failure.
* :class:`ModelStage` (an actor pool): each actor holds one :class:`~molmo_rag.run.Run`
  (one local Molmo2, or a hosted backend with its share of the concurrency) and runs its
  batches through the streaming engine (cache first, jobs journaled), then makes each
  document (thumbnail, picture) and its vector. An item whose point the collection
  already holds with this plan's key is passed on as done, asking nothing.
* :func:`write_rows` (CPU tasks, Qdrant server only): batches upserted from the workers.

Rows carry their objects pickled in ``blob`` (a :class:`RayOutcome` after the model
stage) beside plain columns (``outcome``, ``id``, ``source``, ``kind``, ``text``) that a
user's own stages can filter on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..documents import MediaDocument, document_of
from ..errors import MolmoRagError, register_secret
from ..media.items import MediaItem
from ..results import Failure

__all__ = ["RayOutcome", "list_sources", "read_rows", "ModelStage", "write_rows", "outcome_of"]


@dataclass
class RayOutcome:
    """What the model stage made of one item (or one source that could not be read)."""

    source: str
    document: MediaDocument | None = None
    vector: list[float] | None = None
    failures: list[Failure] = field(default_factory=list)
    done_id: str | None = None
    """A point the collection already holds with this run's plan: nothing was asked."""
    tally: dict[str, float] = field(default_factory=dict)
    """done, cached, failed_sent, failed_cached, cost_usd of this item's tasks."""
    skipped: list[str] = field(default_factory=list)
    """Warnings of tasks the backend cannot run (each actor's, the first time it met them)."""
    seen: dict[str, Any] = field(default_factory=dict)
    """What the driver's progress estimate needs: kind, media_id, start, end, extra."""
    fatal: MolmoRagError | None = None
    """An error that ends the run (a refused key): the driver stops and raises it."""
    written: bool | None = None
    """Set by a worker that wrote the document itself (a Qdrant server): True when the
    point changed, False when it was up to date; None when the driver writes it."""

    @property
    def kind(self) -> str:
        if self.fatal is not None:
            return "fatal"
        if self.done_id is not None:
            return "done"
        return "document" if self.document is not None else "failure"

    def row(self) -> dict[str, Any]:
        document = self.document
        return {
            "outcome": self.kind,
            "id": document.id if document is not None else (self.done_id or ""),
            "source": self.source,
            "kind": document.kind if document is not None else str(self.seen.get("kind", "")),
            "text": document.text if document is not None else "",
            "blob": pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL),
        }


def outcome_of(row: dict[str, Any]) -> RayOutcome:
    """The :class:`RayOutcome` of a row of a documents dataset."""
    return pickle.loads(row["blob"])


# -- listing (driver) ---------------------------------------------------------------------


def list_sources(sources: Any, reader_options: Any = None) -> list[Any]:
    """One entry per file (folders and globs expanded), URL or in-memory source, and the
    typed error of a folder entry that cannot be listed. Nothing is opened or fetched."""
    from ..media.door import as_source_list, is_local_path, is_stream
    from ..media.sources import expand

    listed: list[Any] = []
    for source in as_source_list(sources):
        if isinstance(source, (MediaItem, MolmoRagError)) or not is_local_path(source):
            listed.append(source.read() if is_stream(source) else source)  # a stream does not pickle: its bytes do
            continue
        found = False
        for entry in expand(source, reader_options):
            found = True
            listed.append(entry if isinstance(entry, MolmoRagError) else (entry.path or entry.source))
        if not found:
            listed.append(source)  # nothing matched: reading it says why (not found, empty glob)
    return listed


_ALONE_BYTES = 4 << 20
"""A local file this large is read by a task of its own (so is every video and deck)."""
_GROUP_MAX = 32


def _reads_long(entry: Any) -> bool:
    """Whether reading this source takes long: a video to cut, a deck to render, a big file."""
    from ..media.door import is_local_path
    from ..media.options import SLIDE_EXTENSIONS, VIDEO_EXTENSIONS

    if not is_local_path(entry):
        return False
    path = os.fsdecode(entry)
    if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS | SLIDE_EXTENSIONS:
        return True
    try:
        return os.path.getsize(path) >= _ALONE_BYTES
    except OSError:
        return False


def source_groups(listed: list[Any], slots: int) -> list[list[Any]]:
    """The listed sources as the read tasks take them: a video, a deck or a big file alone;
    small ones (photos) packed, up to 32 a task, so a photo does not pay a Ray task of its
    own, yet in enough tasks to keep ``slots`` readers busy (four tasks a slot)."""
    alone = [[entry] for entry in listed if _reads_long(entry)]
    small = [entry for entry in listed if not _reads_long(entry)]
    size = max(1, min(_GROUP_MAX, len(small) // max(1, 4 * slots)))
    return alone + [small[i : i + size] for i in range(0, len(small), size)]


def source_rows(groups: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"blob": pickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL)} for group in groups]


# -- reading (CPU tasks) --------------------------------------------------------------------


def read_rows(row: dict[str, Any], *, reader_options: Any, backend: str, model: str | None) -> Iterator[dict[str, Any]]:
    """The media items of one group of listed sources (or the failure of each source that
    cannot be read), as rows."""
    from ..engine import read_entries

    for entry in read_entries(pickle.loads(row["blob"]), reader_options, absolute=True):
        if isinstance(entry, MolmoRagError):
            entry = Failure(source=getattr(entry, "source", None) or "?", error=entry, backend=backend, model=model)
        yield {"blob": pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)}


# -- model work (actor pool) ----------------------------------------------------------------


def _seen(item: MediaItem) -> dict[str, Any]:
    extra = {k: v for k, v in (item.extra or {}).items() if k in ("slides", "video_duration", "segment", "segment_index")}
    return {"kind": item.kind, "media_id": item.media_id, "start": item.start, "end": item.end, "extra": extra}


_END = object()


class ModelStage:
    """One actor of the model pool: a Run of its own, one streaming engine serving every
    batch Ray hands it, its embedder.

    The engine runs for the actor's life over a feed of items: each batch (several run at
    once: an async UDF) puts its items in and waits for their outcomes, so the engine's
    window slides across batches (a slow hosted job holds one slot, not a batch; a local
    model's batcher always finds requests ready) and the run's concurrency is this
    actor's, whatever the number of batches in flight."""

    def __init__(
        self,
        options: Any,
        *,
        registry: dict[str, str],
        environment: dict[str, str],
        secrets: list[str],
        done: "dict[str, str] | Any",
        embedder: str | None,
        pictures: bool,
    ):
        from ..vocabulary import BACKENDS

        BACKENDS.update(registry)
        for name, value in environment.items():
            os.environ[name] = value
        for value in secrets:
            register_secret(value)
        from ..run import Run

        self.run = Run(options, on_warning=lambda message: None)  # warnings travel in the rows
        import ray

        self.done = ray.get(done) if isinstance(done, ray.ObjectRef) else done  # the driver's one copy
        self.embedder = None
        if embedder is not None:
            from ..index.embeddings import get_embedder

            self.embedder = get_embedder(embedder)
        self.pictures = self.run.pictures_folder if pictures else None
        self._feed: queue.Queue = queue.Queue()
        self._waiting: dict[int, asyncio.Future] = {}
        self._serving: asyncio.Task | None = None
        self._ended: BaseException | None = None
        self._warned = 0

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from ..index.records import point_id

        outcomes: list[RayOutcome] = []
        todo: list[MediaItem] = []
        for blob in batch["blob"]:
            entry = pickle.loads(blob)
            if isinstance(entry, Failure):
                outcomes.append(RayOutcome(source=entry.source, failures=[entry]))
                continue
            pid = point_id(entry.media_id, entry.source)
            stored = self.done.get(pid)
            if stored is not None and stored == self.run.planner.plan_key(entry):
                outcomes.append(RayOutcome(source=entry.source, done_id=pid, seen=_seen(entry)))
            else:
                todo.append(entry)
        if todo:
            outcomes += await self._enrich(todo)
        await asyncio.to_thread(self._embed, outcomes)
        skipped = self.run.skipped
        if len(skipped) > self._warned and outcomes:
            outcomes[0].skipped = skipped[self._warned :]
            self._warned = len(skipped)
        rows = [o.row() for o in outcomes]
        return {name: [row[name] for row in rows] for name in ("outcome", "id", "source", "kind", "text", "blob")}

    async def _enrich(self, items: list[MediaItem]) -> list[RayOutcome]:
        if self._ended is not None:
            return self._after_end(items)
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            future = loop.create_future()
            self._waiting[id(item)] = future
            futures.append(future)
        if self._serving is None:
            self._serving = asyncio.ensure_future(self._serve())
        for item in items:
            self._feed.put(item)
        return list(await asyncio.gather(*futures))

    def _after_end(self, items: list[MediaItem]) -> list[RayOutcome]:
        ended = self._ended
        if isinstance(ended, MolmoRagError) and ended.fatal:
            return [RayOutcome(source=item.source, fatal=ended) for item in items]
        raise ended  # type: ignore[misc]

    def _items(self) -> Iterator[MediaItem]:
        """The feed, read by the engine's reader thread: waits until a batch puts items in.
        It ends when the actor's process does (its main thread finished, or it was left
        without its parent): a reader blocked for good would keep the process from exiting,
        since Python joins its worker threads before it exits."""
        while True:
            try:
                item = self._feed.get(timeout=0.5)
            except queue.Empty:
                if not threading.main_thread().is_alive() or os.getppid() == 1:
                    return
                continue
            if item is _END:
                return
            yield item

    async def _serve(self) -> None:
        from ..engine import EnrichedItem

        engine = self.run.engine()
        try:
            async with contextlib.aclosing(engine.run(self._items())) as results:
                async for outcome in results:
                    item = outcome.item
                    future = self._waiting.pop(id(item), None)
                    if future is None or future.done():
                        continue
                    if isinstance(outcome, EnrichedItem):
                        future.set_result(await asyncio.to_thread(self._outcome_of, outcome))
                    else:
                        future.set_result(RayOutcome(source=outcome.source, failures=[outcome]))
        except BaseException as error:  # noqa: BLE001 - every waiting batch hears of it
            self._ended = error
        else:
            self._ended = MolmoRagError("the model stage's engine ended")
        finally:
            waiting, self._waiting = self._waiting, {}
            ended = self._ended
            for future in waiting.values():
                if future.done():
                    continue
                if isinstance(ended, MolmoRagError) and ended.fatal:  # an item left undone by an account error
                    future.set_result(RayOutcome(source="", fatal=ended))
                else:
                    future.set_exception(ended if isinstance(ended, Exception) else MolmoRagError(repr(ended)))

    def _outcome_of(self, outcome: Any) -> RayOutcome:
        """The document of an enriched item (its thumbnail and picture made here)."""
        from ..pipeline import RunSummary

        options = self.run.options
        tally = RunSummary()
        tally.tally(outcome)
        counts = {k: getattr(tally, k) for k in ("done", "cached", "failed_sent", "failed_cached", "cost_usd")}
        made = document_of(outcome, options.thumbnail_size, self.pictures, options.segment_frames, self.run.planner)
        if isinstance(made, MediaDocument):
            return RayOutcome(source=outcome.item.source, document=made, failures=list(made.failures), tally=counts, seen=_seen(outcome.item))
        return RayOutcome(source=outcome.item.source, failures=made, tally=counts, seen=_seen(outcome.item))

    def _embed(self, outcomes: list[RayOutcome]) -> None:
        documents = [o for o in outcomes if o.document is not None]
        if self.embedder is not None and documents:
            for outcome, vector in zip(documents, self.embedder.embed([o.document.text for o in documents])):
                outcome.vector = [float(x) for x in vector]

    def __del__(self) -> None:  # an actor that ends closes its backend and cache
        with contextlib.suppress(Exception):
            self._feed.put(_END)
            self.run.close()


# -- writing from the workers (a Qdrant server) ---------------------------------------------


_STORES: dict[tuple, Any] = {}
"""One client per server and collection in each worker process, kept between batches."""


def _store_key(store: dict[str, Any]) -> tuple:
    import hashlib

    key = hashlib.sha256((store.get("api_key") or "").encode()).hexdigest()  # two keys, two clients
    return (store.get("db"), store.get("url"), store["collection"], key)


def _server_store(store: dict[str, Any]) -> Any:
    from ..index.store import QdrantIndex

    key = _store_key(store)
    if key not in _STORES:
        if store.get("api_key"):
            register_secret(store["api_key"])
        _STORES[key] = QdrantIndex(store.get("db"), url=store.get("url"), api_key=store.get("api_key"),
                                   collection=store["collection"], create=False)
    return _STORES[key]


def write_rows(batch: dict[str, Any], *, store: dict[str, Any], embedder: str) -> dict[str, list[Any]]:
    """Upsert the documents of a batch into a Qdrant server from this worker; each outcome
    says whether its point changed. ``store``: ``url``, ``api_key``, ``collection`` (or
    ``db``, a folder, for a process that may open it alone)."""
    from ..index.embeddings import get_embedder
    from ..pipeline import write_batch

    outcomes = [pickle.loads(blob) for blob in batch["blob"]]
    documents = [o for o in outcomes if o.document is not None]
    if documents:
        index = _server_store(store)
        try:
            _, changed = write_batch(index, get_embedder(embedder), [o.document for o in documents], given=[o.vector for o in documents])
        finally:
            if store.get("db"):  # a folder is not to be held open between batches
                _STORES.pop(_store_key(store), None)
                index.close()
        for outcome in documents:
            outcome.written = outcome.document.id in changed
    rows = [o.row() for o in outcomes]
    return {name: [row[name] for row in rows] for name in ("outcome", "id", "source", "kind", "text", "blob")}
