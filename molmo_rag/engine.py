"""The streaming engine: sources in, finished items out, through a sliding window.

Every entry point runs on it (the CLI commands, :func:`molmo_rag.analyze.analyze`,
:func:`molmo_rag.pipeline.index`, :func:`molmo_rag.documents.aiter_documents` and the
framework integrations)::

    sources --(worker thread: expand, fetch, sniff, decode)--> MediaItem | InputError
      --> plan (tasks per item) --> cache hit? ------------------------------.
      --> window of requests in flight --> backend session --> Result -----> item done
            (a slot frees the moment any request finishes;                      |
             each fresh result is cached as it arrives)                         v
                                           outcomes (as they finish, or in order)

* **Reading overlaps the backend.** Sources are read in a worker thread while requests are
  in flight; a video's first segments are sent before the rest of it is cut.
* **A sliding window, not chunks.** At most ``window`` requests are in flight (by default
  the backend's own: ``concurrency`` jobs for hosted APIs, two batches for a local model,
  whose batcher forms each batch from whatever is ready and decodes the next batch's
  pixels while the current one generates). A slow job holds one slot, never a whole wave.
* **Bounded memory.** At most ``max_pending`` items are between being read and being
  handed out (in ``ordered`` mode that includes the ones waiting for an earlier, slower
  item), so a folder of 100k photos or a 3-hour video streams through.
* **Nothing finished is lost.** Each fresh result is stored in the cache the moment it
  arrives, so a killed run keeps it; identical requests in flight (copies of one file) are
  sent once. A permanent failure (:func:`~molmo_rag.cache.is_permanent_failure`: content
  policy, invalid input) is remembered the same way: a re-run reports it again, marked
  ``cached``, without sending it (unless the cache's ``retry_failed`` is on).
* **Interrupts stop at once.** A cancelled run (Ctrl-C) cancels its requests in flight
  (hosted jobs already accepted stay journaled for the next run to poll; a local batch
  stops at its next token) and keeps what was stored.

Outcomes are :class:`~molmo_rag.enrich.EnrichedItem` (an item with its results and the
tasks that failed) or a :class:`~molmo_rag.results.Failure` for a source that could not be
read. An error marked ``fatal`` (a refused key, an empty balance: every other request would
fail the same way) ends the run instead: nothing more is read or sent, the requests in
flight settle and their outcomes are handed out, then :meth:`Engine.run_in` raises that
error once, its ``not_done`` the number of items read and left undone, ``not_read`` the
number of sources not read at all (None when unknown). A :class:`Progress` counts
done items against a total estimated up front (files counted, decks by their slide count,
videos by their duration) and refined as reading goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backends.base import Backend, Request, Session, model_of
from .cache import ResultCache, is_permanent_failure
from .errors import CacheWriteError, MolmoRagError
from .media.items import MediaItem
from .results import Failure, Result
from .tasks import Task

log = logging.getLogger(__name__)

__all__ = ["Engine", "EnrichedItem", "Planner", "FixedPlan", "Progress", "read_entries", "count_sources", "was_sent"]


@dataclass
class EnrichedItem:
    """One item with the results of its plan and the tasks that failed."""

    item: MediaItem
    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def cached(self) -> int:
        return sum(1 for r in self.results if r.cached)

    @property
    def fresh(self) -> list[Result]:
        return [r for r in self.results if not r.cached]

    @property
    def failed_sent(self) -> int:
        """Failed tasks that were sent to the backend in this run (see :func:`was_sent`)."""
        return sum(1 for f in self.failures if was_sent(f))

    @property
    def failed_cost_usd(self) -> float:
        """What this run paid for tasks that failed (an answer that did not validate)."""
        return sum(float(getattr(f.error, "cost_usd", 0.0) or 0.0) for f in self.failures if not f.cached)

    @property
    def failed_cached(self) -> int:
        """Failed tasks reported from the cache (a permanent failure of an earlier run)."""
        return sum(1 for f in self.failures if f.cached)


class Planner(Protocol):
    """What to run on each item, and the cache key of each (item, task)."""

    def plan(self, item: MediaItem) -> list[Task]: ...

    def key(self, item: MediaItem, task: Task) -> str: ...


class FixedPlan:
    """The same tasks on every item they apply to (a video task skips photos); requests the
    backend cannot run fail one by one with an error naming the backends that can."""

    def __init__(self, tasks: Sequence[Task], backend: Backend, *, input_policy: dict | None = None):
        from .cache import cache_key, run_policy

        self.tasks = list(tasks)
        self._model = model_of(backend)
        self._name = backend.name
        # the same keys as the index's plan (enrich.Enricher): one cache for every command
        self._policy = run_policy(backend, input_policy)
        self._cache_key = cache_key

    def plan(self, item: MediaItem) -> list[Task]:
        return [t for t in self.tasks if item.model_input in t.inputs]

    def key(self, item: MediaItem, task: Task) -> str:
        return self._cache_key(item.media_id, self._name, self._model, task.key(), self._policy)


# -- reading -----------------------------------------------------------------------------------


def read_entries(
    sources: Any, reader_options: Any = None, *, absolute: bool = False
) -> Iterator[MediaItem | MolmoRagError]:
    """Media items (or the typed error of each source that cannot be read), lazily, from
    anything :func:`molmo_rag.media.read` takes, ready :class:`MediaItem` objects and errors
    (the output of ``read``) included. ``absolute``: local paths made absolute."""
    from .media import ReaderOptions, read
    from .media.door import absolute_source, as_sources

    sources = as_sources(sources)
    memo: dict[str, str] = {}
    options = reader_options if reader_options is not None else ReaderOptions()

    def entries() -> Iterator[MediaItem | MolmoRagError]:
        # One source at a time: a source is pulled only when its items are wanted, so a
        # stream of in-memory sources (bytes, PIL images) is never read ahead in chunks.
        for source in sources:
            if isinstance(source, (MediaItem, MolmoRagError)):
                yield source
            else:
                yield from read([source], options)

    for entry in entries():
        if absolute and isinstance(getattr(entry, "source", None), str) and entry.source:
            entry.source = absolute_source(entry.source, memo)
        yield entry


def count_sources(sources: Any, reader_options: Any = None) -> int | None:
    """How many files the sources hold (a cheap listing: nothing is opened or fetched), or
    None for a one-shot iterator that must not be consumed twice."""
    from .media.door import is_local_path, reusable_source_list
    from .media.sources import expand

    listed = reusable_source_list(sources)
    if listed is None:
        return None
    total = 0
    for source in listed:
        if is_local_path(source):
            total += sum(1 for _ in expand(source, reader_options)) or 1
        else:
            total += 1
    return total


class _ThreadedIterator:
    """A blocking iterator pulled one step at a time in worker threads (never two steps at
    once), so reading and decoding overlap the event loop's work."""

    _END = object()

    def __init__(self, iterator: Iterator[Any]):
        self._it = iterator
        self._step: asyncio.Future | None = None

    async def next(self) -> Any:
        self._step = asyncio.ensure_future(asyncio.to_thread(next, self._it, self._END))
        value = await asyncio.shield(self._step)
        self._step = None
        if value is self._END:
            raise StopAsyncIteration
        return value

    async def aclose(self) -> None:
        if self._step is not None:  # a step still running in its thread: let it finish first
            try:
                await self._step
            except BaseException:  # noqa: BLE001 - closing anyway
                pass
        close = getattr(self._it, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


# -- progress ------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Done items against an estimated total, refined as reading goes; ``on_change`` is
    called after each change (e.g. to move a progress bar)."""

    done: int = 0
    failed: int = 0
    cached: int = 0
    files_total: int | None = None
    files_seen: int = 0
    started: float = field(default_factory=time.perf_counter)
    on_change: Callable[["Progress"], None] | None = None
    _expected: dict[str, float] = field(default_factory=dict)
    _items_of: dict[str, int] = field(default_factory=dict)
    _seen_items: int = 0

    @property
    def total(self) -> int | None:
        """Items expected in all: items of the sources read so far (decks by their slide
        count, videos by their duration over the mean segment so far), plus one per file
        not yet read; None when the number of files is unknown."""
        if self.files_total is None:
            return None
        known = sum(self._expected.values())
        unread = max(0, self.files_total - self.files_seen)
        return max(self.done, round(known) + unread)

    def saw(self, entry: MediaItem | MolmoRagError) -> None:
        source = getattr(entry, "source", None) or "?"
        if source not in self._expected:
            self.files_seen += 1
            self._expected[source] = 0.0
            self._items_of[source] = 0
        if isinstance(entry, MediaItem):
            self._seen_items += 1
            self._items_of[source] += 1
            estimate = self._estimate(entry)
            if entry.kind == "video_segment":
                # the latest estimate (from the mean segment so far) replaces the earlier
                # ones: a short first segment must not leave the total too high for good
                self._expected[source] = max(float(self._items_of[source]), estimate)
            else:
                self._expected[source] = max(self._expected[source], estimate)
        else:
            self._expected[source] = max(self._expected[source], 1.0)
        self._changed()

    def finished(self, outcome: "EnrichedItem | Failure") -> None:
        failed = isinstance(outcome, Failure) or bool(outcome.failures)
        self.count(failed=failed, cached=0 if failed else outcome.cached)

    def count(self, *, failed: bool = False, cached: int = 0) -> None:
        """One item done (failed, or with ``cached`` results from the cache), wherever it
        ran: here, or on a Ray worker (:mod:`molmo_rag.ray`)."""
        self.done += 1
        if failed:
            self.failed += 1
        else:
            self.cached += cached
        self._changed()

    def _estimate(self, item: MediaItem) -> float:
        extra = item.extra or {}
        if item.kind == "slide" and isinstance(extra.get("slides"), int):
            return float(extra["slides"])
        if item.kind == "video_segment" and item.end and item.start is not None:
            duration = extra.get("video_duration")
            index = extra.get("segment", extra.get("segment_index"))  # the video reader's key is "segment"
            if isinstance(duration, (int, float)) and duration > 0:
                mean = item.end / (index + 1) if isinstance(index, int) else (item.end - item.start) or 1.0
                return max(1.0, duration / max(mean, 1e-3))
        index = extra.get("segment", extra.get("segment_index", 0))
        return float(index) + 1 if item.kind == "video_segment" and isinstance(index, int) else 1.0

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


# -- the engine ----------------------------------------------------------------------------------

_END = object()


class _NotSent(MolmoRagError):
    """A request not sent because the run is ending on a fatal (account) error. Internal,
    not in errors.py: it only stands in a Failure beside the fatal error that is raised."""


@dataclass
class _Stop:
    error: BaseException | None = None
    """The first fatal error of the run: nothing more is sent once it is set."""


def _shared(error: MolmoRagError) -> MolmoRagError:
    """The failure of a request in flight, for a copy of its media that was not sent
    itself: marked ``shared``, so a summary counts the one submission once. Built without
    calling the class's initializer, which may want arguments the error no longer has."""
    twin = type(error).__new__(type(error))
    twin.__dict__.update(error.__dict__)
    twin.args = error.args
    twin.__cause__ = error.__cause__
    twin.shared = True
    return twin


def was_sent(failure: Failure) -> bool:
    """Whether a failed request was sent to the backend in this run (a service error; not
    a failure remembered from an earlier run, nor the copy of a request sent once)."""
    from .errors import BackendError

    error = failure.error
    return not failure.cached and not getattr(error, "shared", False) and isinstance(error, BackendError)


def _undone(outcome: Any) -> bool:
    """An item with no result whose every failure is the fatal error or not sent."""
    return (
        isinstance(outcome, EnrichedItem)
        and not outcome.results
        and bool(outcome.failures)
        and all(isinstance(f.error, _NotSent) or f.error.fatal for f in outcome.failures)
    )


class Engine:
    """Runs a plan over a stream of sources through one backend (see the module docstring).

    ``window``: requests in flight (default: the backend's own); ``max_pending``: items
    between read and handed out (default: a generous multiple of the window);
    ``ordered``: hand out outcomes in source order instead of as they finish;
    ``absolute``: store local paths absolute (what the index and documents use).
    """

    def __init__(
        self,
        backend: Backend,
        planner: Planner,
        *,
        cache: ResultCache | None = None,
        reader_options: Any = None,
        window: int | None = None,
        max_pending: int | None = None,
        ordered: bool = False,
        absolute: bool = False,
        progress: Progress | None = None,
    ):
        self.backend = backend
        self.planner = planner
        self.cache = cache
        from .media.options import with_cache_root

        # slide renders go under the result cache's folder: one root (--cache-dir) for all
        self.reader_options = with_cache_root(reader_options, getattr(cache, "directory", None))
        self.window = max(1, window or backend.window)
        self.max_pending = max(self.window + 1, max_pending or 4 * self.window + 16)
        self.ordered = ordered
        self.absolute = absolute
        self.progress = progress or Progress()
        self._cache_warned = False

    # -- public --------------------------------------------------------------------------
    async def run(self, sources: Any) -> AsyncIterator[EnrichedItem | Failure]:
        """Outcomes of every item of ``sources``, as each finishes (or in order)."""
        async with self.backend.session() as session:
            # closed before the session: an early exit cancels the requests in flight now,
            # not whenever the event loop gets round to finalizing the inner generator
            async with contextlib.aclosing(self.run_in(session, sources)) as outcomes:
                async for outcome in outcomes:
                    yield outcome

    async def run_items(self, items: Sequence[MediaItem]) -> list[EnrichedItem]:
        """Enrich ready items; outcomes in the order given."""
        keep, self.ordered = self.ordered, True
        try:
            async with contextlib.aclosing(self.run(list(items))) as outcomes:
                return [o async for o in outcomes if isinstance(o, EnrichedItem)]
        finally:
            self.ordered = keep

    async def run_in(self, session: Session, sources: Any) -> AsyncIterator[EnrichedItem | Failure]:
        """:meth:`run` on a session that is already open (e.g. shared by several calls)."""
        if self.progress.files_total is None:
            self.progress.files_total = await asyncio.to_thread(count_sources, sources, self.reader_options)
        reader = _ThreadedIterator(read_entries(sources, self.reader_options, absolute=self.absolute))
        done: asyncio.Queue = asyncio.Queue()
        admitted = asyncio.Semaphore(self.max_pending)
        slots = asyncio.Semaphore(self.window)
        inflight: dict[str, asyncio.Future] = {}
        workers: set[asyncio.Task] = set()
        stop = _Stop()

        async def feed() -> None:
            seq = 0
            try:
                while True:
                    await admitted.acquire()
                    try:
                        entry = await reader.next()
                    except StopAsyncIteration:
                        admitted.release()
                        break
                    self.progress.saw(entry)
                    if isinstance(entry, MediaItem):
                        task = asyncio.create_task(self._item(seq, entry, session, slots, inflight, done, stop))
                        workers.add(task)
                        task.add_done_callback(workers.discard)
                    else:
                        done.put_nowait((seq, self._read_failure(entry)))
                    seq += 1
                done.put_nowait((seq, _END))
            except BaseException as exc:  # a setup error (a missing extra): end the run with it
                done.put_nowait((-1, exc))
                raise

        feeder = asyncio.create_task(feed())
        buffered: dict[int, Any] = {}
        handed = 0
        total: int | None = None
        try:
            while total is None or handed < total:
                seq, outcome = await done.get()
                if seq == -1:
                    raise outcome
                if stop.error is not None:  # a fatal error: stop handing out, wind down below
                    if outcome is not _END:
                        buffered[seq] = outcome
                    break
                if outcome is _END:
                    total = seq
                    continue
                if not self.ordered:
                    handed += 1
                    admitted.release()
                    self.progress.finished(outcome)
                    yield outcome
                    continue
                buffered[seq] = outcome
                while handed in buffered:
                    ready = buffered.pop(handed)
                    handed += 1
                    admitted.release()
                    self.progress.finished(ready)
                    yield ready
            if stop.error is not None:
                # Nothing more is read; requests in flight settle (those not sent yet return
                # at once), their outcomes are handed out, then the run ends with the error.
                feeder.cancel()
                await asyncio.gather(feeder, *list(workers), return_exceptions=True)
                while not done.empty():
                    seq, outcome = done.get_nowait()
                    if seq >= 0 and outcome is not _END:
                        buffered[seq] = outcome
                not_done = 0
                for seq in sorted(buffered):
                    if _undone(buffered[seq]):
                        not_done += 1
                        continue
                    self.progress.finished(buffered[seq])
                    yield buffered[seq]
                error = stop.error
                files = self.progress.files_total
                error.not_done = not_done
                error.not_read = None if files is None else max(0, files - self.progress.files_seen)
                unread = f", {error.not_read} more source(s) not read" if error.not_read else ""
                error.args = (f"{error} (run stopped: {not_done} item(s) not done{unread})",)
                raise error
        finally:
            # Interrupted (Ctrl-C) or closed early: requests in flight are cancelled (a
            # hosted job already accepted stays in the journal, so the next run polls it;
            # a local batch stops at its next token when the session closes), results
            # already stored stay stored.
            feeder.cancel()
            for task in list(workers):
                task.cancel()
            await asyncio.gather(feeder, *workers, return_exceptions=True)
            await reader.aclose()

    # -- one item ------------------------------------------------------------------------
    def _keep(self, key: str, item: MediaItem, task: Task, outcome: Result) -> None:
        """Store a fresh result the moment it arrives (a run killed now loses none of it)."""
        self._store(
            self.cache.put, key, media_id=item.media_id, backend=outcome.backend, model=outcome.model,
            task=task.key(), text=outcome.text, fields=outcome.fields, cost_usd=outcome.cost_usd,
        )

    def _remember(self, key: str, item: MediaItem, task: Task, error: MolmoRagError) -> None:
        """Store a permanent failure, so a re-run reports it without sending it again."""
        put = getattr(self.cache, "put_failure", None)
        if put is not None:
            self._store(
                put, key, media_id=item.media_id, backend=self.backend.name, model=model_of(self.backend),
                task=task.key(), error=error,
            )

    def _store(self, put: Callable[..., None], key: str, **fields: Any) -> None:
        """A cache that cannot store (a full disk) costs the re-use, never the outcome: one
        warning, and the run goes on."""
        try:
            put(key, **fields)
        except CacheWriteError as exc:
            if not self._cache_warned:
                self._cache_warned = True
                log.warning("%s; results are still used, but a re-run will ask for them again", exc)

    def _read_failure(self, error: MolmoRagError) -> Failure:
        return Failure(
            source=getattr(error, "source", None) or "?",
            error=error,
            backend=self.backend.name,
            model=getattr(self.backend, "model", None),
        )

    async def _item(
        self,
        seq: int,
        item: MediaItem,
        session: Session,
        slots: asyncio.Semaphore,
        inflight: dict[str, asyncio.Future],
        done: asyncio.Queue,
        stop: _Stop,
    ) -> None:
        try:
            tasks = self.planner.plan(item)
            keys = [self.planner.key(item, task) for task in tasks]
            hits = self.cache.get_many(keys) if self.cache is not None else {}
            failed = getattr(self.cache, "failures_many", None)
            remembered = failed([k for k in keys if k not in hits]) if failed is not None else {}
            outcomes = await asyncio.gather(
                *(
                    self._task(item, task, key, hits.get(key), session, slots, inflight, stop, remembered.get(key))
                    for task, key in zip(tasks, keys)
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken cache: this item fails, the run goes on
            log.exception("unexpected error on %s", item.source)
            error = exc if isinstance(exc, MolmoRagError) else MolmoRagError(f"{type(exc).__name__}: {exc}")
            done.put_nowait((seq, Failure(source=item.source, error=error, media_id=item.media_id, item=item)))
            return
        enriched = EnrichedItem(item)
        for task, outcome in zip(tasks, outcomes):
            if isinstance(outcome, Result):
                enriched.results.append(outcome)
            else:
                enriched.failures.append(
                    Failure(
                        source=item.source, error=outcome, media_id=item.media_id, task=task, item=item,
                        backend=self.backend.name, model=getattr(self.backend, "model", None),
                        cached=bool(getattr(outcome, "cached", False)),
                    )
                )
        done.put_nowait((seq, enriched))

    async def _task(
        self,
        item: MediaItem,
        task: Task,
        key: str,
        hit: Any,
        session: Session,
        slots: asyncio.Semaphore,
        inflight: dict[str, asyncio.Future],
        stop: _Stop,
        remembered: Any = None,
    ) -> Result | MolmoRagError:
        if hit is not None:
            return Result(
                item=item, task=task, text=hit.text, fields=hit.fields, backend=self.backend.name,
                model=hit.model, cost_usd=hit.cost_usd, cached=True,
            )
        if remembered is not None:  # failed for good in an earlier run: reported, not sent again
            return remembered.error()
        twin = inflight.get(key)
        if twin is not None:  # a copy of this media with the same task is in flight: ask once
            outcome = await asyncio.shield(twin)
            if isinstance(outcome, Result):
                return dataclasses.replace(outcome, item=item, cached=True)
            if isinstance(outcome, MolmoRagError):
                outcome = _shared(outcome)
            return outcome
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            async with slots:
                if stop.error is not None:
                    outcome = _NotSent(f"not sent: the run stopped on: {stop.error}")
                else:
                    # the journal: a hosted backend records the job it submits for this key,
                    # so a later run polls that job instead of paying for a new one
                    journal = self.cache.journal(key) if hasattr(self.cache, "journal") else None
                    outcome = await session.answer(Request(item, task, journal=journal))
            if stop.error is None and isinstance(outcome, MolmoRagError) and outcome.fatal:
                stop.error = outcome
            if isinstance(outcome, Result) and self.cache is not None:
                self._keep(key, item, task, outcome)
            elif self.cache is not None and is_permanent_failure(outcome):
                self._remember(key, item, task, outcome)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, MolmoRagError) else MolmoRagError(f"request cancelled: {exc!r}"))
                future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            inflight.pop(key, None)

