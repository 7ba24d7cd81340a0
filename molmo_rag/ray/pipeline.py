"""Sources to a Ray Dataset of documents, and such a dataset into the collection.

:func:`document_dataset` is :func:`molmo_rag.documents.iter_documents` on Ray Data (listing
on the driver, reading on CPU tasks, model work in an actor pool); :func:`write_documents`
writes a dataset of documents, whatever stages a user put in between, into the collection
with :func:`molmo_rag.pipeline.write_batch`, the one writer every index run uses: from the
workers to a Qdrant server, or through the driver when the index is embedded (an embedded
folder has one writer). :func:`index` is the two together, with the summary, pruning and
settling of :func:`molmo_rag.pipeline.index`, so the collection is the same.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from ..errors import UsageError
from ..index.store import DEFAULT_COLLECTION, QdrantIndex
from ..pipeline import RunSummary, _folders, _progress_bar, _record_run, _stale_points, _store_for, _Writer, embedder_for, write_batch
from ..results import Failure
from .cluster import connect, ray_module
from .stages import ModelStage, RayOutcome, list_sources, outcome_of, read_rows, source_groups, source_rows, write_rows

if TYPE_CHECKING:  # pragma: no cover
    from ray.data import Dataset

    from ..index.embeddings import Embedder
    from ..index.records import MediaRecord
    from ..run import Run, RunChoices, RunOptions

__all__ = ["PoolOptions", "document_dataset", "write_documents", "index"]


@dataclass
class PoolOptions:
    """How the model stage runs on the cluster."""

    actors: int | None = None
    """Model actors (None: one per GPU asked for with a local model, else up to one per two
    CPUs of the cluster, never more than the hosted concurrency)."""
    num_gpus: float = 0.0
    """GPUs per model actor (a local Molmo2 per GPU: 1)."""
    actor_cpus: float = 1.0
    """CPUs each model actor reserves (it decodes the frames and clips it sends)."""
    batch_rows: int | None = None
    """Items per batch an actor takes (None: two windows of its backend)."""


def _resolved_options(run: "Run") -> "RunOptions":
    """The run's options as every worker must see them: the cache as the driver's folder
    (a worker has neither the driver's working directory nor its environment), slide
    renders under the same root."""
    from ..media.options import with_cache_root

    options = run.options
    update: dict[str, Any] = {}
    if run.cache is not None:
        update["cache"] = Path(run.cache.directory).resolve()
        update["reader_options"] = with_cache_root(options.reader_options, Path(run.cache.directory).resolve())
    elif options.cache is not False:
        update["cache"] = False
    return options.model_copy(update=update)


def _pool_size(run: "Run", options: "RunOptions", pool: PoolOptions) -> tuple["RunOptions", int]:
    """The actors of the model pool and the options each runs with: a hosted backend's
    concurrency split between them, so the account-wide total is what was asked (a ready
    backend instance too: each actor gets a copy made with its share)."""
    ray = ray_module()
    cls = type(run.backend)
    if cls.concurrency_option == "concurrency":
        ready = _ready_backend(options)
        given = run.backend.made_with().get("concurrency") if ready else options.concurrency
        total = given or getattr(getattr(run.backend, "options", None), "concurrency", None) or 16
        actors = pool.actors or max(1, min(total, int(ray.cluster_resources().get("CPU", 2)) // 2))
        actors = max(1, min(actors, total))
        share = max(1, total // actors)
        if not ready:
            return options.model_copy(update={"concurrency": share}), actors
        args, kwargs = getattr(run.backend, "_made_with", ((), {}))
        copy = cls(*args, **{**kwargs, "concurrency": share})  # pickled as its configuration, opened in each actor
        return options.model_copy(update={"backend": copy}), actors
    if pool.actors:
        return options, pool.actors
    gpus = ray.cluster_resources().get("GPU", 0)
    return options, max(1, int(gpus // pool.num_gpus)) if pool.num_gpus and gpus else 1


def _cluster_cpus(ray: Any) -> float:
    """The CPUs of the cluster this process is connected to (of this machine before Ray starts)."""
    if ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 1.0))
    return float(os.cpu_count() or 1)


def _fit_pool(pool: PoolOptions, actors: int, cpus: float, on_warning: Callable[[str], None] | None) -> PoolOptions:
    """The pool with at least one CPU left for reading: model actors that reserve every CPU
    of the cluster would leave the read tasks unscheduled, and the run would wait forever."""
    from dataclasses import replace

    if actors * pool.actor_cpus <= cpus - 1:
        return pool
    fitted = max(0.0, (cpus - 1) / actors)
    message = (
        f"{actors} model actor(s) reserving {pool.actor_cpus:g} CPU each would leave none of the cluster's "
        f"{cpus:g} for reading: each reserves {fitted:.2g} instead (set the actor CPUs, or fewer actors)"
    )
    if on_warning is not None:
        on_warning(message)
    else:
        import logging

        logging.getLogger("molmo_rag").warning(message)
    return replace(pool, actor_cpus=fitted)


def _ready_backend(options: "RunOptions") -> bool:
    from ..backends.base import Backend

    return isinstance(options.backend, Backend)


def _environment(run: "Run") -> tuple[dict[str, str], list[str]]:
    """The variables a worker's backend reads (its key, base URL, model) and molmo-rag's
    own, as set on the driver, and the secret values among them (kept out of logs there)."""
    env = type(run.backend).env
    names = [n for n in (env.api_key, env.base_url, env.model) if n]
    names += [n for n in os.environ if n.startswith("MOLMO_RAG_")]
    environment = {n: os.environ[n] for n in names if os.environ.get(n)}
    secrets = [environment[env.api_key]] if env.api_key and env.api_key in environment else []
    secrets += [str(v) for k, v in run.options.backend_options.items() if any(w in k.lower() for w in ("key", "token", "secret", "password")) and v]
    return environment, secrets


def document_dataset(
    sources: Any,
    run: "Run | RunOptions | None" = None,
    /,
    *,
    pool: PoolOptions | None = None,
    embedder: "str | None" = None,
    done: dict[str, str] | None = None,
    listed: list[Any] | None = None,
    on_warning: Callable[[str], None] | None = None,
    **choices: Unpack["RunChoices"],
) -> "Dataset":
    """A Ray Dataset of the documents of ``sources`` (one row per photo, slide or video
    segment, or per failure), built lazily: nothing runs until it is consumed.

    Sources are listed here, on the driver; reading, sniffing, slide rendering and video
    cutting run as CPU tasks (a video or deck a task, photos packed up to 32 a task); the
    plan runs in a pool of model actors (``pool``), each with its own
    :class:`~molmo_rag.run.Run` of ``run``'s options (or ``choices``). ``embedder``:
    also embed each document's text in the actor (its ``vector``). ``done``: point id ->
    plan key of points already written with a complete plan: those items are passed on as
    ``done`` without asking anything (:func:`index` reads it from the collection).
    ``listed``: the sources as :func:`molmo_rag.ray.stages.list_sources` listed them already.

    Rows: ``outcome`` (``document``, ``failure``, ``done`` or ``fatal``), ``id``,
    ``source``, ``kind``, ``text`` and ``blob``; :func:`molmo_rag.ray.outcome_of` gives
    the :class:`~molmo_rag.ray.RayOutcome` of a row (its ``document``, ``failures``...).
    Put your own stages after it, and :func:`write_documents` at the end.
    """
    from ..run import Run

    ray = ray_module()
    pool = pool or PoolOptions()
    live, owned = Run.of(run, choices, on_warning=on_warning)  # the plan is checked here, before any work
    try:
        options = _resolved_options(live)
        actor_options, actors = _pool_size(live, options, pool)
        environment, secrets = _environment(live)
        ready = _ready_backend(actor_options)
        registry: dict[str, str] = {}
        if not ready:
            # the name as the driver resolves it, and what it names: a backend registered
            # in this process only (a test's, a plugin's) is known to the workers too
            from ..backends.base import backend_name
            from ..vocabulary import BACKENDS

            name = backend_name(actor_options.backend)
            actor_options = actor_options.model_copy(update={"backend": name})
            registry = {name: BACKENDS[name]}
        listed = listed if listed is not None else list_sources(sources, options.reader_options)
        made_by, model = live.backend.name, live.model
        window = actor_options.backend.window if ready else (actor_options.concurrency or live.backend.window)
    finally:
        if owned:
            live.close()
    cpus = _cluster_cpus(ray)
    pool = _fit_pool(pool, actors, cpus, on_warning)
    rows = source_rows(source_groups(listed, max(1, int(cpus - actors * pool.actor_cpus))))
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))  # a block per read task
    dataset = dataset.flat_map(
        read_rows, fn_kwargs={"reader_options": options.reader_options, "backend": made_by, "model": model},
        num_cpus=1,
    )
    # the done map (one entry per point already written) goes to the object store once,
    # not once per actor's arguments; each actor fetches it (ModelStage)
    done_ref = ray.put(dict(done or {}))
    return dataset.map_batches(
        ModelStage,
        fn_constructor_kwargs={
            "options": actor_options, "registry": registry, "environment": environment, "secrets": secrets, "done": done_ref,
            "embedder": embedder, "pictures": options.pictures,
        },
        batch_size=pool.batch_rows or max(4, window),
        batch_format="numpy",
        # several batches at once per actor, all feeding the actor's one engine: its window
        # slides across them (ModelStage), and the concurrency stays the actor's share
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=4, max_concurrent_calls_per_actor=4),
        num_gpus=pool.num_gpus or None,
        num_cpus=pool.actor_cpus,
    )  # Ray Data restarts a lost actor and retries its batches (max_restarts, max_task_retries: -1)


def write_documents(
    dataset: "Dataset",
    *,
    db: "str | os.PathLike | QdrantIndex | None" = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    storage: str | None = None,
    embedder: "str | Embedder | None" = None,
    write_batch_size: int = 16,
    progress: bool | None = False,
    total: int | None = None,
    on_record: "Callable[[MediaRecord, str], None] | None" = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> RunSummary:
    """Write a dataset of documents (from :func:`document_dataset`, through any stages of
    yours) into the collection, and return what was done. With ``qdrant_url`` the workers
    upsert their batches themselves; an embedded folder (``db``) is written by this
    process alone, in batches, as rows arrive. Failures are reported (``on_failure``, the
    summary), never raised; an error that ends the run (a refused key) is raised once
    what arrived before it is written."""
    started = time.perf_counter()
    store, owned = _store_for(db, qdrant_url, api_key, collection, create=True, storage=storage)
    try:
        vectors = embedder_for(store, embedder)
        store.ensure(vectors)
        server = {"url": qdrant_url, "api_key": api_key, "collection": store.collection} if qdrant_url else None
        drive = _write_all(dataset, store, vectors, server=server, write_batch_size=write_batch_size, progress=progress,
                           total=total, on_record=on_record, on_failure=on_failure)
        drive.summary.elapsed_s = time.perf_counter() - started
        return drive.summary
    finally:
        if owned:
            store.close()


def _write_all(dataset: "Dataset", store: QdrantIndex, vectors: "Embedder", *, server: dict | None, write_batch_size: int,
               progress: bool | None, total: int | None, on_record: Any, on_failure: Any, on_warning: Any = None) -> "_Drive":
    """Consume the dataset into the store: the workers upsert to a server themselves
    (``server``: its URL, key and collection), else this process writes."""
    summary = RunSummary(collection=store.collection, location=store.location)
    drive = _Drive(store, vectors, summary, on_record, on_failure, write_batch_size, progress, total, on_warning)
    if server is not None:
        dataset = dataset.map_batches(
            write_rows, fn_kwargs={"store": server, "embedder": vectors.name},
            batch_size=write_batch_size, batch_format="numpy", num_cpus=0.25,
        )
    try:
        drive.consume(dataset)
    finally:
        drive.close()
    return drive


class _Drive:
    """The driver's side of a run: rows in, the summary, progress, the embedded writer."""

    def __init__(self, store, vectors, summary, on_record, on_failure, batch_size, progress, total, on_warning=None):
        from ..engine import Progress

        self.on_warning = on_warning
        self.store, self.vectors, self.summary = store, vectors, summary
        self.on_record, self.on_failure = on_record, on_failure
        self.writer = _Writer(store, vectors, summary, 0, on_record, batch_size, max_wait=1.0)
        self.pending: list[RayOutcome] = []
        self.done_pending: list[str] = []
        self.last = time.monotonic()
        self.seen: dict[str, set[str]] = {}
        self.with_point: set[str] = set()
        self.bar = _progress_bar(progress)
        self.tracker = Progress(files_total=total, on_change=None if self.bar.disable else self._show)
        self.fatal: BaseException | None = None

    def _show(self, p) -> None:
        if p.total is not None and self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.n = p.done
        self.bar.set_postfix(cached=p.cached, failed=len(self.summary.failed), refresh=False)
        self.bar.update(0)

    def failed(self, failure: Failure) -> None:
        self.summary.failed.append(failure)
        if self.on_failure:
            self.on_failure(failure)

    def consume(self, dataset: "Dataset") -> None:
        try:
            for row in dataset.iter_rows():
                outcome = outcome_of(row)
                if outcome.fatal is not None:
                    self.fatal = outcome.fatal
                    break
                self.take(outcome)
        except KeyboardInterrupt:
            self.flush()  # what arrived is kept in the index, not only in the cache
            raise
        self.flush()
        if self.fatal is not None:
            raise self.fatal

    def take(self, outcome: RayOutcome) -> None:
        from ..index.records import point_id
        from ..media.items import MediaItem

        s = self.summary
        for warning in outcome.skipped:
            if warning not in s.skipped:
                s.skipped.append(warning)
                if self.on_warning is not None:
                    self.on_warning(warning)
        for name, value in outcome.tally.items():
            setattr(s, name, getattr(s, name) + value)
        seen = outcome.seen
        if seen:
            light = MediaItem(kind=seen["kind"], source=outcome.source, media_id=seen["media_id"], loader=None,
                              start=seen["start"], end=seen["end"], extra=seen["extra"])
            self.tracker.saw(light)
            self.seen.setdefault(outcome.source, set()).add(point_id(seen["media_id"], outcome.source))
        elif outcome.failures:  # a source that could not be read
            self.tracker.saw(outcome.failures[0].error)
        self.tracker.count(failed=bool(outcome.failures), cached=int(outcome.tally.get("cached", 0)))
        for failure in outcome.failures:
            self.failed(failure)
        if outcome.done_id is not None:
            self.with_point.add(outcome.done_id)
            self.done_pending.append(outcome.done_id)
        elif outcome.document is not None:
            self.with_point.add(outcome.document.id)
            if outcome.written is None:
                self.pending.append(outcome)
            else:
                self.writer.count([outcome.document.record], {outcome.document.id} if outcome.written else set())
        if len(self.pending) + len(self.done_pending) >= self.writer.batch_size or time.monotonic() - self.last >= 1.0:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if self.pending:
            batch, self.pending = self.pending, []
            records, changed = write_batch(self.store, self.vectors, [o.document for o in batch], given=[o.vector for o in batch])
            self.writer.count(records, changed)
        if self.done_pending:
            ids, self.done_pending = self.done_pending, []
            self.writer.count(self._stored_records(ids), set())

    def _stored_records(self, ids: list[str]) -> list["MediaRecord"]:
        """Records of points found done, as stored (what ``on_record`` is shown)."""
        from ..index.records import MediaRecord, public_keys

        if self.on_record is None:
            return [_IdOnly(pid) for pid in ids]  # type: ignore[list-item]
        records = []
        for point in self.store.retrieve(ids):
            payload = point.payload or {}
            records.append(MediaRecord(payload={k: payload[k] for k in public_keys(payload)}, text=payload.get("text", ""),
                                       plan_key=payload.get("plan_key")))
        return records

    def close(self) -> None:
        self.bar.close()
        self.summary.items = len(self.with_point)


@dataclass
class _IdOnly:
    id: str


def index(
    sources: "Iterable[Any] | str | os.PathLike",
    run: "Run | RunOptions | None" = None,
    /,
    *,
    ray: str | None = None,
    pool: PoolOptions | None = None,
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
    **choices: Unpack["RunChoices"],
) -> RunSummary:
    """:func:`molmo_rag.pipeline.index` on a Ray cluster: the same collection (point ids,
    payloads, pruning), the same summary. ``ray``: ``local`` (a Ray instance on this
    machine for the run), ``auto``, ``ray://host:port`` or a GCS address (None:
    ``RAY_ADDRESS``, else local). ``pool``: the model actors (:class:`PoolOptions`).

    Items whose point the collection holds with this run's plan key are not asked again
    (the collection is the record of what is done: a driver killed and started again, on
    other nodes even, pays only for what is missing); everything else goes through the
    result cache and its job journal (shared by every worker that sees the cache folder)."""
    from ..run import Run

    started = time.perf_counter()
    ray_module()  # without the extra, say so before anything is made
    sources = list(sources) if not isinstance(sources, (str, os.PathLike)) and isinstance(sources, Iterable) else sources
    if isinstance(db, QdrantIndex) and db.location == ":memory:":
        raise UsageError("an in-memory index lives in this process only: Ray workers cannot write to it; give a folder or a server", option="db")
    live, owned_run = Run.of(run, choices, on_warning=on_warning)  # the plan is checked before anything starts
    store: QdrantIndex | None = None
    owned_store = started_ray = False
    try:
        started_ray = connect(ray)  # a cluster that cannot be joined leaves no empty collection behind
        store, owned_store = _store_for(db, qdrant_url, api_key, collection, create=True, storage=storage)
        vectors = embedder_for(store, embedder)
        store.ensure(vectors)
        _record_run(store, live)
        listed = list_sources(sources, live.options.reader_options)
        _check_shared(live, listed)
        done = _done_points(store, listed)
        dataset = document_dataset(sources, live, pool=pool, embedder=vectors.name, done=done, listed=listed,
                                   on_warning=live.planner.on_warning)
        server = {"url": qdrant_url, "api_key": api_key, "collection": store.collection} if qdrant_url else None
        drive = _write_all(dataset, store, vectors, server=server, write_batch_size=write_batch, progress=progress,
                           total=len(listed), on_record=on_record, on_failure=on_failure, on_warning=live.planner.on_warning)
        summary = drive.summary
        if prune:
            stale = _stale_points(store, drive.seen, summary.failed, _folders(sources))
            store.delete(stale)
            summary.pruned = len(stale)
        store.settle()
        summary.elapsed_s = time.perf_counter() - started
        return summary
    finally:
        if owned_run:
            live.close()
        if owned_store and store is not None:
            store.close()
        if started_ray:
            ray_module().shutdown()


def _check_shared(run: "Run", listed: list[Any]) -> None:
    """Warn, once, when a node cannot see the sources or the result cache folder at the
    driver's paths (they must be on shared storage: docs/scale-out.md)."""
    from .shared_storage import missing_on_nodes

    from ..media.door import is_local_path

    folder = Path(run.cache.directory).resolve() if run.cache is not None else None
    seen_here = [entry for entry in listed if is_local_path(entry) and os.path.exists(os.fsdecode(entry))][:1]
    for line in missing_on_nodes(ray_module(), folder, seen_here):  # what the driver cannot see either says nothing
        run.planner.on_warning(
            f"{line}: its items fail as not found, or keep files only it can open; mount the sources and the "
            "cache folder at the same path on every node (docs/scale-out.md)"
        )


def _done_points(store: QdrantIndex, listed: list[Any]) -> dict[str, str]:
    """point id -> plan key of every point of these sources written with a complete plan."""
    from ..media.door import absolute_path, is_local_path, is_web_url

    files = [absolute_path(entry) for entry in listed if is_local_path(entry)]
    urls = [entry for entry in listed if is_web_url(entry)]
    return store.plan_keys_of(files + urls)
