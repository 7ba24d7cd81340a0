"""The Qdrant side: one collection, one point per image, slide or video segment.

Where the index lives (one facade, like qdrant-client's own):

* embedded, on disk: ``db=PATH`` (default ``MOLMO_RAG_DB`` or ``./.molmo-rag/qdrant``),
  or ``db=":memory:"``; one process at a time may open an embedded path;
* a Qdrant server or cluster: ``url=...`` (or ``MOLMO_RAG_QDRANT_URL``), key from
  ``api_key`` or ``QDRANT_API_KEY``.

Layout ("one collection, every door", see ``docs/architecture.md``): a named dense vector
``text-dense`` (cosine), the metadata at the payload root plus the embedded text under
``text`` (LlamaIndex), and a copy as ``page_content`` + ``metadata`` (LangChain, opened
with ``vector_name="text-dense"``). The embedder's name and dimension are recorded in the
collection's metadata; a run with another embedder is refused instead of mixing vectors.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import warnings
from urllib.parse import urlsplit
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigurationError,
    IndexUnavailableError,
    MissingDependencyError,
    UsageError,
    check_key,
    redact,
    register_secret,
)
from ..folders import blocking_file, read_only_fs
from .embeddings import Embedder
from .records import PAYLOAD_KEYS, MediaRecord

__all__ = ["QdrantIndex", "Hit", "VECTOR_NAME", "DEFAULT_COLLECTION", "COLLECTION_NAME_RULE", "check_collection_name", "default_db_path"]

VECTOR_NAME = "text-dense"
DEFAULT_COLLECTION = "molmo_rag"
_META_KEY = "molmo_rag"


COLLECTION_NAME_RULE = "1 to 255 ASCII letters, digits, '_', '-' or '.', not starting with '.'"
"""The collection names molmo-rag accepts: a subset of what Qdrant itself takes (no ``/ \\ :
* ? " < > |`` nor control characters, at most 255 characters, not ``.`` or ``..``), so a
name is one plain folder of embedded Qdrant on any file system and a valid name on a
server."""
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


def check_collection_name(name: object) -> str:
    """``name`` if it is an allowed collection name (:data:`COLLECTION_NAME_RULE`), else a
    :class:`UsageError` for option ``collection`` that says which names are allowed."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"the collection name is empty: use {COLLECTION_NAME_RULE}", option="collection")
    if _COLLECTION_NAME.fullmatch(name) is None:
        shown = repr(name) if len(name) <= 40 else f"{name[:37]!r}... ({len(name)} characters)"
        raise UsageError(f"{shown} is not a collection name: use {COLLECTION_NAME_RULE}", option="collection")
    return name


def default_db_path() -> Path:
    """``MOLMO_RAG_DB`` if set, else ``./.molmo-rag/qdrant`` (next to the project, like .git)."""
    return Path(os.environ.get("MOLMO_RAG_DB") or Path(".molmo-rag") / "qdrant")


@dataclass
class Hit:
    """One search result: its score and the metadata of the item it points back at."""

    score: float
    id: str
    kind: str
    source: str
    media_id: str
    caption: str | None = None
    scene: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    slide: int | None = None
    title: str | None = None
    start: float | None = None
    end: float | None = None
    thumbnail: str | None = field(default=None, repr=False)
    payload: dict = field(default_factory=dict, repr=False)
    """Every public payload key (points, answers, slide_text, backend, model, ...)."""
    text: str | None = field(default=None, repr=False)
    """The text the point's vector was made from."""
    grounded: float | None = None
    """After grounded re-ranking: 1.0 when the backend found what the query names (and in
    the number asked for), 0.0 when it did not or the check failed (``evidence["error"]``);
    None when the hit was not checked (``evidence["skipped"]`` says why, when it was asked)."""
    evidence: dict | None = field(default=None, repr=False)
    """After grounded re-ranking: ``target``, ``count``, ``points`` (x, y in 0..1, t in
    seconds of the video) and the backend's ``answer``."""
    vector_score: float | None = None
    """The similarity score before re-ranking (``score`` is then the combined score)."""

    @classmethod
    def from_point(cls, point: Any) -> "Hit":
        raw = point.payload or {}
        if "kind" not in raw and isinstance(raw.get("metadata"), dict):  # written by LangChain
            raw = {**raw["metadata"], "text": raw.get("page_content")}
        return cls.from_payload(raw, score=float(point.score), id=str(point.id))

    @classmethod
    def from_payload(cls, raw: dict, *, score: float = 0.0, id: str = "", text: str | None = None) -> "Hit":
        """A hit from a payload or a document's metadata (the payload keys), e.g. to ground
        what a framework's retriever returned."""
        payload = {k: raw[k] for k in PAYLOAD_KEYS if k in raw}
        return cls(
            score=score,
            id=id,
            kind=payload.get("kind", ""),
            source=payload.get("source", ""),
            media_id=payload.get("media_id", ""),
            caption=payload.get("caption"),
            scene=payload.get("scene"),
            counts=dict(payload.get("counts") or {}),
            slide=payload.get("slide"),
            title=payload.get("title"),
            start=payload.get("start"),
            end=payload.get("end"),
            thumbnail=payload.get("thumbnail"),
            payload=payload,
            text=text if text is not None else (raw.get("text") or raw.get("page_content")),
        )

    def to_json(self) -> dict:
        out = {"score": round(self.score, 6), "id": self.id, **self.payload}
        if self.grounded is not None or self.evidence is not None:  # checked, or said why not
            out.update(grounded=self.grounded, evidence=self.evidence, vector_score=round(self.vector_score or 0.0, 6))
        return out


def _settle_meta(path: Path) -> None:
    """Embedded Qdrant writes a new folder's ``meta.json`` in place (open, then write): a run
    killed between the two leaves an empty file that no later run can open. Write it whole
    first (a temporary file, then a rename), and take an empty one with no collection
    beside it for what a kill left: a folder with nothing in it yet."""
    meta = path / "meta.json"
    try:
        if meta.stat().st_size or (path / "collection").exists():
            return
    except FileNotFoundError:
        pass
    tmp = path / f".meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"collections": {}, "aliases": {}}))
    os.replace(tmp, meta)


def _check_free(path: Path) -> None:
    """Raise qdrant-client's own "already accessed" error when another process holds the
    folder's lock, before qdrant-client reads (and may tidy) the storage that process is
    writing; qdrant-client takes the lock itself right after, so a race still ends in that
    same error."""
    lock = path / ".lock"
    try:
        import portalocker  # qdrant-client's own locker, so the same kind of lock

        handle = open(lock, "r+")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        return  # no lock file yet (nobody holds it), or qdrant-client will say why
    try:
        portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
    except portalocker.exceptions.LockException:
        raise RuntimeError(f"Storage folder {path} is already accessed by another instance of Qdrant client.") from None
    else:
        portalocker.unlock(handle)
    finally:
        handle.close()


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{url!r} is not a Qdrant server URL: expected http(s)://HOST[:PORT], e.g. http://localhost:6333",
            option="qdrant_url",
        )


def _server_error(exc: BaseException, location: str, secrets: list[str | None]) -> IndexUnavailableError | None:
    """One readable line for what a Qdrant server (or whatever answered) did; None when
    ``exc`` is not a transport or server error."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code
        if status in (401, 403):
            why = f"refused the API key (HTTP {status}): set QDRANT_API_KEY to the server's key"
        elif status == 404:
            why = "answered HTTP 404: is this a Qdrant server? (its REST port is 6333 by default)"
        else:
            reason = f" ({exc.reason_phrase})" if exc.reason_phrase else ""
            why = f"answered HTTP {status}{reason}"
        return IndexUnavailableError(redact(f"Qdrant at {location} {why}", secrets), status=status)
    if isinstance(exc, ResponseHandlingException):
        cause = exc.source if isinstance(getattr(exc, "source", None), BaseException) else exc
        detail = str(cause) or type(cause).__name__
        lowered = detail.lower()
        if "refused" in lowered:
            why = "connection refused (is the server running, and is the port right?)"
        elif "name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered:
            why = "the host name does not resolve (DNS)"
        elif "timed out" in lowered or "timeout" in lowered:
            why = f"no answer in time ({detail})"
        elif "ssl" in lowered or "certificate" in lowered:
            why = f"TLS failed ({detail})"
        else:
            why = f"the answer could not be read ({detail}): is this a Qdrant server?"
        return IndexUnavailableError(redact(f"cannot use Qdrant at {location}: {why}", secrets))
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio comes with qdrant-client
        return None
    if isinstance(exc, grpc.RpcError):
        return IndexUnavailableError(redact(f"cannot use Qdrant at {location}: gRPC {exc.code().name}", secrets))
    return None


# What the file system says, in words (errno, or SQLite's result code for embedded Qdrant's
# storage.sqlite), for one-line errors that name the cause.
_OS_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "an I/O error",
}
_SQLITE_CAUSES = {
    "SQLITE_FULL": "no space left on the device",
    "SQLITE_READONLY": "the storage is read-only",
    "SQLITE_CANTOPEN": "its storage file cannot be opened (a read-only or missing folder?)",
    "SQLITE_IOERR": "an I/O error",
    "SQLITE_CORRUPT": "its storage file is damaged",
    "SQLITE_NOTADB": "its storage file is damaged",
}
_SQLITE_TEXTS = {  # before Python 3.11, or when sqlite_errorname is missing
    "disk is full": "no space left on the device",
    "readonly database": "the storage is read-only",
    "unable to open database file": _SQLITE_CAUSES["SQLITE_CANTOPEN"],
    "disk i/o error": "an I/O error",
    "malformed": "its storage file is damaged",
}
_WRITES = frozenset(
    {"upsert", "delete", "create_collection", "update_collection", "delete_collection", "create_payload_index"}
)


def _storage_error(exc: BaseException, location: str, doing: str) -> IndexUnavailableError | None:
    """One line naming the embedded index's folder and what the file system refused (a full
    disk, a read-only folder, no permission); None when ``exc`` is not a storage error."""
    import sqlite3

    if isinstance(exc, OSError):
        said = exc.strerror or str(exc) or type(exc).__name__
        cause = _OS_CAUSES.get(exc.errno or -1)
        if cause is None:
            cause, detail = said, str(exc.filename or said)
        else:
            detail = f"{said}: {exc.filename}" if exc.filename else said
    elif isinstance(exc, sqlite3.Error):
        detail = str(exc) or type(exc).__name__
        cause = _SQLITE_CAUSES.get(getattr(exc, "sqlite_errorname", "") or "") or next(
            (words for text, words in _SQLITE_TEXTS.items() if text in detail.lower()), detail
        )
    else:
        return None
    more = f" ({detail})" if detail != cause else ""
    return IndexUnavailableError(f"cannot {doing} the index at {location}: {cause}{more}")


class _Guarded:
    """The client's methods, with transport and server errors (and, for an embedded index,
    file-system errors: a full disk, a read-only folder) turned into one
    :class:`IndexUnavailableError` line instead of a deep traceback."""

    def __init__(self, client: Any, location: str, secrets: list[str | None], local: bool = False):
        self._client, self._location, self._secrets, self._local = client, location, secrets, local

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if self._local:
                    error = _storage_error(exc, self._location, "write" if name in _WRITES else "read")
                else:
                    error = _server_error(exc, self._location, self._secrets)
                if error is None:
                    raise
                raise error from exc

        return call


class QdrantIndex:
    """A molmo-rag collection in embedded or server Qdrant."""

    def __init__(
        self,
        db: str | os.PathLike | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        create: bool = True,
    ):
        """``create=False``: a missing embedded folder is an error instead of being made."""
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:
            raise MissingDependencyError("qdrant-client", "index", "the Qdrant index") from exc
        url = url or (None if db is not None else os.environ.get("MOLMO_RAG_QDRANT_URL"))
        if db is not None and url:
            raise UsageError("give either a local index folder or a Qdrant server URL, not both", option="qdrant_url")
        self.collection = check_collection_name(collection)
        self.is_local = not url
        key: str | None = None
        try:
            if url:
                _check_url(url)
                self.location = url
                key = api_key or os.environ.get("QDRANT_API_KEY")
                check_key(key, "the api_key option" if api_key else "QDRANT_API_KEY", option="api_key" if api_key else None)
                register_secret(key)
                self.client = QdrantClient(url=url, api_key=key)
            elif str(db) == ":memory:":
                self.location = ":memory:"
                self.client = QdrantClient(location=":memory:", force_disable_check_same_thread=True)
            else:
                path = Path(db) if db is not None else default_db_path()
                if not create and not path.exists():
                    raise ConfigurationError(f"no index at {path}: index something first (molmo-rag index ...)")
                self.location = str(path)
                self.client = self._open_local(path, create)
        except RuntimeError as exc:  # qdrant's lock: another process holds the embedded path
            if "already accessed" not in str(exc):
                raise
            raise ConfigurationError(
                f"the index at {db or default_db_path()} is in use by another process "
                f"(embedded Qdrant allows one at a time; use a Qdrant server for sharing)"
            ) from exc
        self._api = _Guarded(self.client, self.location, [key], local=self.is_local and self.location != ":memory:")
        if url:
            try:
                self._api.get_collections()  # a wrong URL fails here, before any media is read
            except IndexUnavailableError:
                self.client.close()
                raise
        self._count_labels: set[str] = set()
        self._checked: str | None = None

    @staticmethod
    def _open_local(path: Path, create: bool) -> Any:
        """Embedded Qdrant at ``path``. A folder that cannot be written (read-only, full, not
        ours) is one line naming it and why, before any media is read or any backend called;
        an index run (``create``) needs a writable folder even when the index exists."""
        from qdrant_client import QdrantClient

        in_the_way = blocking_file(path)
        if in_the_way is not None:
            what = "give a folder for the index (a new one is made)" if create else "give the folder an index run wrote"
            raise IndexUnavailableError(f"cannot {'write' if create else 'open'} the index at {path}: {in_the_way}: {what}")
        try:
            path.mkdir(parents=True, exist_ok=True)
            if create and not os.access(path, os.W_OK | os.X_OK):
                why = "the file system is read-only" if read_only_fs(path) else "permission denied"
                raise IndexUnavailableError(f"cannot write the index at {path}: {why} (the folder is not writable)")
            _settle_meta(path)
            _check_free(path)
            # used by one thread at a time, but not always the one that opened it
            return QdrantClient(path=str(path), force_disable_check_same_thread=True)
        except IndexUnavailableError:
            raise
        except json.JSONDecodeError as exc:
            raise IndexUnavailableError(f"cannot open the index at {path}: its meta.json is damaged ({exc})") from exc
        except Exception as exc:
            error = _storage_error(exc, str(path), "write" if create else "open")
            if error is None:
                raise
            raise error from exc

    # -- the collection ---------------------------------------------------------------
    def exists(self) -> bool:
        return self._api.collection_exists(self.collection)

    def embedder_info(self) -> dict | None:
        """``{"embedder": name, "dim": n}`` of an existing collection, None if it is new.

        A collection made by another tool has no name recorded; its dimension is read
        from the vector config.
        """
        if not self.exists():
            return None
        config = self._api.get_collection(self.collection).config
        vectors = config.params.vectors
        if not isinstance(vectors, dict) or VECTOR_NAME not in vectors:
            raise ConfigurationError(
                f"collection {self.collection!r} at {self.location} has no dense vector named {VECTOR_NAME!r}; "
                "it was not made by molmo-rag: choose another collection",
                option="collection",
            )
        info = dict((config.metadata or {}).get(_META_KEY) or {})
        info["dim"] = vectors[VECTOR_NAME].size
        return info

    def ensure(self, embedder: Embedder) -> None:
        """Create the collection for this embedder, or check that it was made with it."""
        if self._checked == embedder.name:
            return
        from qdrant_client import models

        info = self.embedder_info()
        if info is None:
            self._api.create_collection(
                self.collection,
                vectors_config={VECTOR_NAME: models.VectorParams(size=embedder.dim, distance=models.Distance.COSINE)},
                metadata={_META_KEY: {"embedder": embedder.name, "dim": embedder.dim}},
            )
            self._create_indexes()
        elif info["dim"] != embedder.dim or info.get("embedder", embedder.name) != embedder.name:
            recorded = info.get("embedder", "an unknown embedder")
            raise ConfigurationError(
                f"collection {self.collection!r} holds {info['dim']}-d vectors from {recorded}; this run embeds "
                f"with {embedder.name} ({embedder.dim}-d). Vectors of different embedders cannot be mixed: "
                "use the same embedder or another collection.",
                option="embedder",
            )
        self._checked = embedder.name

    def _index_field(self, key: str, schema: Any) -> None:
        if self.is_local:
            return  # embedded Qdrant ignores payload indexes (and warns about each one)
        self._api.create_payload_index(self.collection, key, field_schema=schema)

    def _create_indexes(self) -> None:
        from qdrant_client import models

        for key in ("kind", "source", "source_prefixes", "media_id"):
            self._index_field(key, models.PayloadSchemaType.KEYWORD)
        for key in ("start", "end"):
            self._index_field(key, models.PayloadSchemaType.FLOAT)
        self._index_field("slide", models.PayloadSchemaType.INTEGER)

    def ensure_count_indexes(self, labels: Iterable[str]) -> None:
        """Payload indexes for count labels, and the labels recorded in the collection's
        metadata (what :meth:`count_labels` reads without scanning)."""
        from qdrant_client import models

        new = set(labels) - self._count_labels
        if not new:
            return
        for label in new:
            self._index_field(f"counts.{label}", models.PayloadSchemaType.INTEGER)
        self._count_labels |= new
        info = dict((self._api.get_collection(self.collection).config.metadata or {}).get(_META_KEY) or {})
        recorded = set(info.get("labels") or [])
        if not new <= recorded:
            info["labels"] = sorted(recorded | new)
            self._api.update_collection(self.collection, metadata={_META_KEY: info})

    def count_labels(self) -> list[str]:
        """The labels counted in this collection (``--count`` at index time), sorted: from
        the collection's metadata, or a scan of the points for a collection made without."""
        if not self.exists():
            return []
        info = (self._api.get_collection(self.collection).config.metadata or {}).get(_META_KEY) or {}
        if "labels" in info:
            return sorted(info["labels"])
        labels: set[str] = set()
        offset = None
        while True:
            points, offset = self._api.scroll(
                self.collection, limit=1024, offset=offset, with_payload=["counts", "metadata"], with_vectors=False
            )
            for p in points:
                payload = p.payload or {}
                nested = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
                labels.update(payload.get("counts") or nested.get("counts") or {})  # LangChain: under metadata
            if offset is None:
                return sorted(labels)

    def record_run(self, backend: str, model: str | None, count_labels: Iterable[str]) -> None:
        """Record with the collection what an index run enriched it with: the backend and
        model (what grounding checks with later: the latest run's) and the labels it asked
        to count (kept across runs, so a label asked for that no item has a count of can be
        told from one never asked for)."""
        meta = self._meta()
        made = {"backend": backend, "model": model}
        asked = sorted(set(meta.get("asked_labels") or []) | set(count_labels))
        if meta.get("made_with") != made or meta.get("asked_labels", []) != asked:
            self._api.update_collection(self.collection, metadata={_META_KEY: {**meta, "made_with": made, "asked_labels": asked}})

    def made_with(self) -> dict | None:
        """``{"backend": name, "model": id}`` of the latest index run, None if none was recorded."""
        made = self._meta().get("made_with") if self.exists() else None
        return dict(made) if isinstance(made, dict) and made.get("backend") else None

    def asked_labels(self) -> list[str]:
        """The labels index runs asked to count (``--count``), sorted; [] if none recorded."""
        return sorted(self._meta().get("asked_labels") or []) if self.exists() else []

    def _meta(self) -> dict:
        return dict((self._api.get_collection(self.collection).config.metadata or {}).get(_META_KEY) or {})

    # -- writing -------------------------------------------------------------------------
    def stored_fingerprints(self, ids: Sequence[str]) -> dict[str, str]:
        """``record_hash`` of the points that already exist, by point id."""
        if not ids or not self.exists():
            return {}
        points = self._api.retrieve(self.collection, ids=list(ids), with_payload=["record_hash"], with_vectors=False)
        return {str(p.id): (p.payload or {}).get("record_hash", "") for p in points}

    def upsert(self, records: Sequence[MediaRecord], vectors: Sequence[Sequence[float]], embedder: Embedder) -> None:
        from qdrant_client import models

        self.ensure(embedder)
        self.ensure_count_indexes(label for r in records for label in r.payload.get("counts", {}))
        points = [
            models.PointStruct(id=r.id, vector={VECTOR_NAME: list(v)}, payload=r.point_payload(embedder.name))
            for r, v in zip(records, vectors)
        ]
        if points:
            self._api.upsert(self.collection, points=points, wait=True)

    def points_of(self, sources: Iterable[str], key: str = "source") -> dict[str, dict[str, str]]:
        """source -> {point id: media_id} for every point of these sources (one scan per
        1,000 sources, not one per source); ``key="source_prefixes"``: every point under
        these folders / URL prefixes."""
        from qdrant_client import models

        wanted = list(dict.fromkeys(sources))
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(wanted), 1000):
            part = wanted[start : start + 1000]
            for source, points in self._scan(models.Filter(must=[models.FieldCondition(key=key, match=models.MatchAny(any=part))])).items():
                found.setdefault(source, {}).update(points)
        return found

    def _scan(self, flt: Any) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        if not self.exists():
            return found
        offset = None
        while True:
            points, offset = self._api.scroll(
                self.collection, scroll_filter=flt, limit=1024, offset=offset,
                with_payload=["source", "media_id"], with_vectors=False,
            )
            for p in points:
                payload = p.payload or {}
                found.setdefault(payload.get("source", ""), {})[str(p.id)] = payload.get("media_id", "")
            if offset is None:
                break
        return found

    def all_points(self) -> dict[str, dict[str, str]]:
        """source -> {point id: media_id} for every point of the collection."""
        return self._scan(None)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids:
            self._api.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    # -- reading -------------------------------------------------------------------------
    def search(self, vector: Sequence[float], query_filter: Any = None, top: int = 10) -> list[Hit]:
        if not self.exists():
            others = sorted(c.name for c in self._api.get_collections().collections)
            hint = f" (collections there: {', '.join(others)}; choose one of them)" if others else ""
            raise ConfigurationError(
                f"no collection {self.collection!r} at {self.location}: index something first (molmo-rag index ...){hint}",
                option="collection",
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode's note about payload indexes
            response = self._api.query_points(
                self.collection,
                query=list(vector),
                using=VECTOR_NAME,
                query_filter=query_filter,
                limit=top,
                with_payload=True,
            )
        return [Hit.from_point(p) for p in response.points]

    def count(self) -> int:
        if not self.exists():
            return 0
        return self._api.count(self.collection, exact=True).count

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "QdrantIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantIndex({self.location!r}, collection={self.collection!r})"
