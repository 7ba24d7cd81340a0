"""Qdrant Edge (``qdrant-edge-py``) as the embedded store: Qdrant's own engine, in process.

A folder written this way holds one Edge shard per collection under ``edge/NAME/`` and a
file, :data:`MARKER`, that says so and keeps each collection's metadata (what molmo-rag
records with a collection: the embedder, the counted labels, the backend that made it).
Search filters arrive as the project's filter tree (:mod:`molmo_rag.index.conditions`,
qdrant-client's shapes without importing it) or as ``qdrant_client.models`` (what a
framework store builds) and are translated here.

Every field search filters on has a payload index, made with the collection, so a
filtered query costs about what a plain one does. New points land in a small appendable
segment; once it outgrows :data:`IMMUTABLE_FROM_KB`, :meth:`EdgeStorage.settle` lets the
optimizer turn it into an immutable segment with an HNSW graph (tuned for build time) and
memory-mapped payload indexes, which open in a fraction of the time an appendable segment
takes to load. A search that can match at most :data:`EXACT_UP_TO` points (Edge's own
estimate, from the payload indexes) is exact, recall 1.0; past that it walks the graph
(see ``BENCHMARKS.md``, "Search at scale").
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, IndexUnavailableError, MissingDependencyError, MolmoRagError

__all__ = ["MARKER", "EdgeStorage", "is_edge_folder", "in_use", "to_edge_filter"]

MARKER = "molmo-rag-edge.json"
"""The file that marks a folder as Qdrant Edge storage (and holds collection metadata)."""
_FORMAT = 1
_SHARDS = "edge"
RESERVE_BYTES = 128 * 2**20
"""Free space a write needs beyond what it adds. Edge writes through memory-mapped files,
and a mapped page the file system cannot back kills the process (SIGBUS) instead of
raising: so every write first checks that the disk has room, and says so in one line."""
IMMUTABLE_FROM_KB = 10_000
"""Appendable segments above this size (KB of vectors: about 10,000 points of 256
dimensions) are optimized into immutable ones with an HNSW graph. Opening an appendable
segment rebuilds its payload indexes in memory (0.7 s at 100,000 points, against 0.2 s
for the immutable form), so only the newest few thousand points stay appendable."""
EXACT_UP_TO = 200_000
"""Searches that can match at most this many points score every one of them (recall 1.0,
about 6 ms per 100,000 points of 256 dimensions here). Past it the HNSW graph answers; a
filter that lets few points through breaks a graph built without per-value links
(``payload_m=0``, which keeps the build three times shorter), so only filters matching
many points use it."""
HNSW_EF = 128
"""Candidates the graph search keeps (Qdrant's ``hnsw_ef``) when it is used."""


def is_edge_folder(path: Path) -> bool:
    return (path / MARKER).is_file()


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:
        raise MissingDependencyError("qdrant-edge-py", "index", "the embedded Qdrant Edge index") from exc
    return qdrant_edge


def _lock_folder(path: Path) -> Any:
    """Hold ``path/.lock`` for as long as the storage is open: a second process is told the
    folder is in use before it reads anything (Edge's own lock is per shard)."""
    import portalocker  # comes with qdrant-client

    handle = open(path / ".lock", "a+")  # noqa: SIM115 - held until close()
    try:
        portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
    except portalocker.exceptions.LockException:
        handle.close()
        raise ConfigurationError(in_use(path)) from None
    return handle


def _point_id(value: Any) -> str:
    return str(value) if isinstance(value, uuid.UUID) else value


class _Point:
    """A stored point as the index reads it (id as text, like qdrant-client gives)."""

    __slots__ = ("id", "payload", "score", "vector")

    def __init__(self, raw: Any, score: float | None = None, vector: Any = None):
        self.id = _point_id(raw.id)
        self.payload = raw.payload
        self.score = score
        self.vector = vector


class EdgeStorage:
    """The collections of one Qdrant Edge folder (one process at a time: Edge locks each
    shard's write-ahead log, and molmo-rag the folder)."""

    kind = "qdrant-edge"

    def __init__(self, path: Path, *, create: bool):
        self._q = _edge()
        self.path = path
        self._shards: dict[str, Any] = {}
        self._collections: dict[str, dict] = {}
        self._lock = _lock_folder(path)
        try:
            self._collections = self._read_marker(create)
        except BaseException:
            self._lock.close()
            raise

    def _read_marker(self, create: bool) -> dict[str, dict]:
        marker = self.path / MARKER
        if not marker.is_file():
            if not create:
                raise IndexUnavailableError(f"the folder {self.path} holds no molmo-rag index")
            self._collections = {}
            self._save()
            return self._collections
        try:
            state = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexUnavailableError(f"cannot open the index at {self.path}: its {MARKER} is damaged ({exc})") from exc
        if not isinstance(state, dict) or not isinstance(state.get("collections", {}), dict):
            raise IndexUnavailableError(f"cannot open the index at {self.path}: its {MARKER} is damaged (not a molmo-rag marker)")
        if state.get("format", 0) > _FORMAT:
            raise IndexUnavailableError(
                f"the index at {self.path} was written by a newer molmo-rag (Edge format {state.get('format')}): upgrade molmo-rag"
            )
        return dict(state.get("collections") or {})

    def _room(self, need: int = 0) -> None:
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        if free < RESERVE_BYTES + need:
            raise IndexUnavailableError(
                f"cannot write the index at {self.path}: no space left on the device ({free / 2**20:.0f} MB free; "
                f"Qdrant Edge needs {(RESERVE_BYTES + need) / 2**20:.0f} MB free to write safely)"
            )

    # -- the marker ----------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.path / f".{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"storage": self.kind, "format": _FORMAT, "collections": self._collections}, indent=1))
        os.replace(tmp, self.path / MARKER)

    def _shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is None:
            where = self.path / _SHARDS / name
            try:
                shard = self._q.EdgeShard.load(str(where))
            except Exception as exc:
                raise _edge_error(exc, where, "open") from exc
            self._shards[name] = shard
        return shard

    # -- collections ---------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._collections)

    def exists(self, name: str) -> bool:
        return name in self._collections

    def vectors(self, name: str) -> dict[str, int]:
        return {vec: spec["size"] for vec, spec in self._collections[name]["vectors"].items()}

    def metadata(self, name: str) -> dict:
        return dict(self._collections[name].get("metadata") or {})

    def set_metadata(self, name: str, metadata: dict) -> None:
        self._collections[name]["metadata"] = metadata
        self._save()

    def create(self, name: str, vectors: dict[str, int], metadata: dict) -> None:
        q = self._q
        where = self.path / _SHARDS / name
        config = q.EdgeConfig(
            vectors={vec: q.EdgeVectorParams(size=size, distance=q.Distance.Cosine) for vec, size in vectors.items()},
            # payload_m=0: no per-value graph links (they tripled the build); filters with few
            # matches are answered exactly instead (EXACT_UP_TO)
            hnsw_config=q.HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=IMMUTABLE_FROM_KB, payload_m=0),
            optimizers=q.EdgeOptimizersConfig(indexing_threshold=IMMUTABLE_FROM_KB),
            id_tracker_memory=q.Memory.Cold,
        )
        if where.exists():
            shutil.rmtree(where)  # a create a kill cut short: the marker does not list it, so no point was written
        self._room()
        try:
            self._shards[name] = q.EdgeShard.create(str(where), config)
        except Exception as exc:
            raise _edge_error(exc, where, "write") from exc
        self._collections[name] = {"vectors": {vec: {"size": size, "distance": "cosine"} for vec, size in vectors.items()}, "metadata": metadata}
        self._save()

    def index_field(self, name: str, key: str, schema: str) -> None:
        q = self._q
        cold = q.Memory.Cold  # memory-mapped in immutable segments: opening reads nothing up front
        params = {
            "keyword": lambda: q.KeywordIndexParams(memory=cold, enable_hnsw=False),
            "integer": lambda: q.IntegerIndexParams(lookup=True, range=True, memory=cold, enable_hnsw=False),
            "float": lambda: q.FloatIndexParams(memory=cold, enable_hnsw=False),
        }[schema]()
        self._update(name, q.UpdateOperation.create_field_index(key, params))

    def indexed_fields(self, name: str) -> dict[str, str]:
        schema = self._shard(name).info().payload_schema
        return {key: str(info.data_type).rpartition(".")[2].lower() for key, info in schema.items()}

    # -- points --------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[tuple[str, dict[str, list[float]], dict]]) -> None:
        q = self._q
        self._update(name, q.UpdateOperation.upsert_points([q.Point(id=pid, vector=vec, payload=payload) for pid, vec, payload in points]))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self._update(name, self._q.UpdateOperation.delete_points(list(ids)))

    def _update(self, name: str, operation: Any) -> None:
        self._room()
        try:
            self._shard(name).update(operation)
        except IndexUnavailableError:
            raise
        except Exception as exc:
            raise _edge_error(exc, self.path, "write") from exc

    def retrieve(self, name: str, ids: Sequence[str], fields: list[str] | bool = True, vectors: bool = False) -> list[_Point]:
        records = self._shard(name).retrieve(list(ids), with_payload=fields, with_vector=vectors)
        return [_Point(r, vector=r.vector if vectors else None) for r in records]

    def scroll(self, name: str, flt: Any, fields: list[str] | bool, limit: int, offset: Any, vectors: bool = False) -> tuple[list[_Point], Any]:
        q = self._q
        request = q.ScrollRequest(offset=offset, limit=limit, filter=to_edge_filter(flt, q), with_payload=fields, with_vector=vectors)
        records, after = self._shard(name).scroll(request)
        return [_Point(r, vector=r.vector if vectors else None) for r in records], after

    def query(self, name: str, vector: Sequence[float], using: str, flt: Any, top: int) -> list[_Point]:
        q = self._q
        shard = self._shard(name)
        edge_filter = to_edge_filter(flt, q)
        reach = shard.count(q.CountRequest(exact=False, filter=edge_filter))  # from the indexes: microseconds
        params = q.SearchParams(exact=True) if reach <= EXACT_UP_TO else q.SearchParams(hnsw_ef=max(HNSW_EF, top))
        request = q.QueryRequest(
            limit=top, query=q.Query.Nearest(list(vector), using=using), filter=edge_filter, params=params, with_payload=True
        )
        return [_Point(p, score=p.score) for p in shard.query(request)]

    def count(self, name: str, flt: Any = None) -> int:
        q = self._q
        return self._shard(name).count(q.CountRequest(exact=True, filter=to_edge_filter(flt, q)))

    def settle(self) -> None:
        """Flush what was written and let the optimizer merge segments and build what the
        configuration asks for (called once at the end of a write run)."""
        for name, shard in self._shards.items():
            self._room(_disk_usage(self.path / _SHARDS / name))  # merging segments copies them
            shard.optimize()
            shard.flush()

    def close(self) -> None:
        shards, self._shards = self._shards, {}
        try:
            for shard in shards.values():
                try:
                    shard.flush()
                finally:
                    shard.close()
        finally:
            if self._lock is not None:
                self._lock.close()  # closing the handle releases the lock
                self._lock = None


def in_use(path: Path | str) -> str:
    return f"the index at {path} is in use by another process (embedded Qdrant allows one at a time; use a Qdrant server for sharing)"


def _disk_usage(folder: Path) -> int:
    """Bytes the files under ``folder`` occupy on disk (Edge's mapped files are sparse)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _edge_error(exc: BaseException, where: Path, doing: str) -> MolmoRagError:
    said = str(exc) or type(exc).__name__
    if "WouldBlock" in said:
        return ConfigurationError(in_use(where))
    if "No space left" in said:
        return IndexUnavailableError(f"cannot {doing} the index at {where}: no space left on the device")
    return IndexUnavailableError(f"cannot {doing} the index at {where}: {said}")


# -- qdrant-client's filter models -> Edge's ----------------------------------------------
def _listed(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def to_edge_filter(flt: Any, q: Any = None) -> Any:
    """The Edge filter equal to a filter tree of :mod:`molmo_rag.index.conditions` or a
    ``qdrant_client.models.Filter`` (None stays None). Only the conditions molmo-rag and the
    frameworks' filters use are supported; anything else is a TypeError naming it, never a
    silently wider match."""
    if flt is None:
        return None
    q = q or _edge()
    return q.Filter(
        must=[_condition(c, q) for c in _listed(flt.must)] or None,
        should=[_condition(c, q) for c in _listed(flt.should)] or None,
        must_not=[_condition(c, q) for c in _listed(flt.must_not)] or None,
        min_should=(
            q.MinShould(conditions=[_condition(c, q) for c in flt.min_should.conditions], min_count=flt.min_should.min_count)
            if getattr(flt, "min_should", None) is not None
            else None
        ),
    )


def _condition(cond: Any, q: Any) -> Any:
    from . import conditions as ours

    if isinstance(cond, ours.Filter):
        return to_edge_filter(cond, q)
    if isinstance(cond, ours.FieldCondition):
        return q.FieldCondition(key=cond.key, match=_match(cond.match, q), range=_range(cond.range, q))
    from qdrant_client import models  # a filter a framework store built with qdrant-client

    if isinstance(cond, models.Filter):
        return to_edge_filter(cond, q)
    if isinstance(cond, models.FieldCondition):
        return q.FieldCondition(key=cond.key, match=_match(cond.match, q), range=_range(cond.range, q))
    if isinstance(cond, models.IsEmptyCondition):
        return q.IsEmptyCondition(key=cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return q.IsNullCondition(key=cond.is_null.key)
    if isinstance(cond, models.HasIdCondition):
        return q.HasIdCondition(point_ids={_point_id(i) for i in cond.has_id})
    raise TypeError(f"the embedded Qdrant Edge index cannot filter with {type(cond).__name__}")


def _match(match: Any, q: Any) -> Any:
    from . import conditions as ours

    if match is None:
        return None
    if isinstance(match, ours.MatchAny):
        return q.MatchAny(any=list(match.any))
    if isinstance(match, ours.MatchValue):
        return q.MatchValue(match.value)
    if isinstance(match, ours.MatchExcept):
        return q.MatchExcept(list(match.except_))  # positional: its keyword is the reserved word "except"
    from qdrant_client import models

    if isinstance(match, models.MatchValue):
        return q.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return q.MatchAny(any=list(match.any))
    if isinstance(match, models.MatchExcept):
        return q.MatchExcept(list(match.except_))  # positional: its keyword is the reserved word "except"
    if isinstance(match, models.MatchText):
        return q.MatchText(match.text)
    raise TypeError(f"the embedded Qdrant Edge index cannot match with {type(match).__name__}")


def _range(rng: Any, q: Any) -> Any:
    if rng is None:
        return None
    return q.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)
