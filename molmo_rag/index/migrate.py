"""Copy a collection between storages: the one way up.

When to migrate: a qdrant-client local-mode folder (what molmo-rag wrote before Qdrant
Edge became the embedded default) keeps every point in memory and scans it, which
qdrant-client itself warns about past 20,000 points: copy it to an Edge folder
(``molmo-rag migrate --db OLD --to-db NEW``). A collection that outgrows one machine, or
that several processes must share, goes to a Qdrant server or cluster
(``--to-qdrant-url URL``); a server's collection comes back to a folder the same way.

The copy is batched (one page of points read with their vectors, then written), exact
(ids, vectors and payloads as stored; the collection's metadata: embedder, counted labels,
the backend that made it), made with the target's payload indexes, and resumable: a point
already in the target with the same payload is not written again, so a run that was
stopped copies only what is missing. It is checked at the end: every source id is read
back from the target.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..errors import ConfigurationError, UsageError
from .store import DEFAULT_COLLECTION, VECTOR_NAME, QdrantIndex

__all__ = ["MigrateSummary", "migrate"]


@dataclass
class MigrateSummary:
    """What a migration did: ``copied`` points written, ``already`` found in the target as
    they are in the source, of ``total``; ``verified``: every source id is in the target."""

    source: str
    target: str
    collection: str
    to_collection: str
    to_storage: str
    total: int = 0
    copied: int = 0
    already: int = 0
    verified: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def migrate(
    *,
    db: str | os.PathLike | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    to_db: str | os.PathLike | None = None,
    to_qdrant_url: str | None = None,
    to_api_key: str | None = None,
    to_collection: str | None = None,
    to_storage: str | None = None,
    batch: int = 512,
    on_progress: Callable[[int, int], None] | None = None,
) -> MigrateSummary:
    """Copy ``collection`` of ``db`` (a folder, either storage) or ``qdrant_url`` into
    ``to_db`` (a new folder is stored as ``to_storage``: ``edge``, the default, or
    ``local``) or ``to_qdrant_url``, as ``to_collection`` (default: the same name).
    ``on_progress(done, total)`` after each batch. Returns a :class:`MigrateSummary`."""
    if batch < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch}", option="batch")
    if to_db is None and not to_qdrant_url:
        raise UsageError("say where to copy to: a folder (to_db) or a Qdrant server (to_qdrant_url)", option="to_db")
    if db is None and not qdrant_url:
        raise UsageError("say what to copy: a folder (db) or a Qdrant server (qdrant_url)", option="db")
    name = to_collection or collection
    if _same_place(db, qdrant_url, to_db, to_qdrant_url) and name == collection:
        raise UsageError("the source and the target are the same collection: give another folder, server or collection", option="to_db")
    with QdrantIndex(db, url=qdrant_url, api_key=api_key, collection=collection, create=False) as source:
        info = source.embedder_info()
        if info is None:
            raise ConfigurationError(f"no collection {collection!r} at {source.location}: nothing to copy", option="collection")
        with QdrantIndex(to_db, url=to_qdrant_url, api_key=to_api_key, collection=name, storage=to_storage) as target:
            summary = MigrateSummary(source.location, target.location, collection, name, target.storage_kind, total=source.count())
            target.ensure((info.get("embedder") or f"unrecorded-{info['dim']}", info["dim"]))  # a mismatch is refused here
            target.ensure_count_indexes(source.count_labels())
            target.upsert_meta(source.meta())
            offset = None
            while True:
                page, offset = source.scroll(limit=batch, offset=offset, with_vectors=True)
                there = {str(p.id): p.payload for p in target.retrieve([str(p.id) for p in page])}
                missing = [p for p in page if there.get(str(p.id)) != p.payload]
                target.upsert_points([(str(p.id), _dense(p.vector), p.payload or {}) for p in missing])
                summary.copied += len(missing)
                summary.already += len(page) - len(missing)
                if on_progress:
                    on_progress(summary.copied + summary.already, summary.total)
                if offset is None:
                    break
            target.settle()
            summary.verified = _all_there(source, target, batch)
    return summary


def _dense(vector: object) -> list[float]:
    if isinstance(vector, dict):
        return list(vector[VECTOR_NAME])
    raise ConfigurationError(f"a point has no dense vector named {VECTOR_NAME!r}: this collection was not made by molmo-rag")


def _all_there(source: QdrantIndex, target: QdrantIndex, batch: int) -> bool:
    offset = None
    while True:
        page, offset = source.scroll(limit=batch, offset=offset)
        ids = [str(p.id) for p in page]
        if len(target.retrieve(ids)) != len(ids):
            return False
        if offset is None:
            return True


def _same_place(db: object, url: str | None, to_db: object, to_url: str | None) -> bool:
    if url or to_url:
        return bool(url) and url == to_url
    return os.path.realpath(os.fspath(db)) == os.path.realpath(os.fspath(to_db))  # type: ignore[arg-type]
