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
from collections.abc import Iterable, Iterator, Sequence
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
from .client_storage import ClientStorage
from .conditions import FieldCondition, Filter, MatchAny
from .edge import in_use
from .embeddings import Embedder
from .records import MediaRecord, count_key, public_keys

__all__ = ["QdrantIndex", "Hit", "STORAGES", "INDEXED_FIELDS", "folder_storage", "VECTOR_NAME", "DEFAULT_COLLECTION", "COLLECTION_NAME_RULE", "check_collection_name", "default_db_path"]

VECTOR_NAME = "text-dense"
DEFAULT_COLLECTION = "molmo_rag"
_META_KEY = "molmo_rag"

INDEXED_FIELDS = {
    "kind": "keyword",
    "source": "keyword",
    "source_prefixes": "keyword",
    "media_id": "keyword",
    "backend": "keyword",
    "model": "keyword",
    "title": "keyword",
    "start": "float",
    "end": "float",
    "slide": "integer",
}
"""The payload indexes made with every collection (on the root keys, the layout search
filters on); each count label gets ``counts.LABEL`` and its flat ``count_LABEL`` (integer)
when it is first written."""


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
    picture: Any = field(default=None, repr=False)
    """The hit's own picture when it was handed one (a framework node's image: a path, URL,
    data URI or bytes); grounding looks at it, then at ``payload["image_path"]`` /
    ``["image_url"]``, before reopening ``source``."""
    grounded: float | None = None
    """After grounded re-ranking: 1.0 when the backend found what the query names (and in
    the number asked for), 0.0 when it did not; None when the hit was not checked: its check
    failed (``evidence["error"]`` says why), it has no picture, or the backend cannot check
    it (``evidence["skipped"]``)."""
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
    def from_payload(
        cls, raw: dict, *, score: float = 0.0, id: str = "", text: str | None = None, picture: Any = None
    ) -> "Hit":
        """A hit from a payload or a document's metadata (the payload keys), e.g. to ground
        what a framework's retriever returned; ``picture``: the node's own image, if any."""
        payload = {k: raw[k] for k in public_keys(raw)}
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
            picture=picture,
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


def _qdrant_client() -> Any:
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client", "index", "the Qdrant index") from exc
    return QdrantClient


def _open_local_mode(path: Path) -> Any:
    """qdrant-client's local mode at ``path`` (a folder molmo-rag wrote before Edge, or one
    asked for with ``storage="local"``)."""
    client = _qdrant_client()
    _settle_meta(path)
    _check_free(path)
    # used by one thread at a time, but not always the one that opened it
    return client(path=str(path), force_disable_check_same_thread=True)


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
_WRITES = frozenset({"upsert", "delete", "create", "set_metadata", "index_field", "settle"})


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


STORAGES = ("edge", "local")
"""How an embedded folder is stored: ``edge``, Qdrant Edge (the default for a new folder:
Qdrant's own engine in process, payload indexes, milliseconds at a million points) or
``local``, qdrant-client's local mode (what molmo-rag wrote before; the frameworks' stock
``QdrantVectorStore`` opens it, and it suits small sets)."""


def folder_storage(path: Path) -> str | None:
    """The storage an existing embedded folder was written with, None for a new (or empty) one."""
    from .edge import is_edge_folder

    if is_edge_folder(path):
        return "edge"
    meta = path / "meta.json"
    if (path / "collection").is_dir() or (meta.is_file() and meta.stat().st_size):
        return "local"
    return None


class QdrantIndex:
    """A molmo-rag collection in embedded Qdrant (Edge or local mode) or a Qdrant server."""

    def __init__(
        self,
        db: str | os.PathLike | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        create: bool = True,
        storage: str | None = None,
    ):
        """``create=False``: a missing embedded folder is an error instead of being made.
        ``storage``: how a new embedded folder is stored (:data:`STORAGES`; default
        ``MOLMO_RAG_STORAGE``, else ``edge``); an existing folder is always opened with the
        storage that wrote it, and naming another one is an error that says how to migrate."""
        url = url or (None if db is not None else os.environ.get("MOLMO_RAG_QDRANT_URL"))
        if db is not None and url:
            raise UsageError("give either a local index folder or a Qdrant server URL, not both", option="qdrant_url")
        wanted = storage or os.environ.get("MOLMO_RAG_STORAGE") or None
        if wanted is not None and wanted not in STORAGES:
            raise UsageError(f"unknown storage {wanted!r}: choose one of {', '.join(STORAGES)}", option="storage")
        self.collection = check_collection_name(collection)
        self.is_local = not url
        self.client: Any = None
        """The ``QdrantClient`` behind a server, ``:memory:`` or local-mode index (what the
        frameworks' stock Qdrant classes take); None for Qdrant Edge."""
        key: str | None = None
        if url:
            _check_url(url)
            self.location = url
            key = api_key or os.environ.get("QDRANT_API_KEY")
            check_key(key, "the api_key option" if api_key else "QDRANT_API_KEY", option="api_key" if api_key else None)
            register_secret(key)
            self.storage: Any = ClientStorage(_qdrant_client()(url=url, api_key=key), local_mode=False)
        elif str(db) == ":memory:":
            self.location = ":memory:"
            self.storage = ClientStorage(_qdrant_client()(location=":memory:", force_disable_check_same_thread=True), local_mode=True)
        else:
            path = Path(db) if db is not None else default_db_path()
            if not create and not path.exists():
                raise ConfigurationError(f"no index at {path}: index something first (molmo-rag index ...)")
            self.location = str(path)
            self.storage = self._open_folder(path, create, wanted)
        self.client = getattr(self.storage, "client", None)
        self.storage_kind: str = self.storage.kind
        """``qdrant-edge``, ``qdrant-local`` (local mode or ``:memory:``) or ``qdrant-server``."""
        self._api = _Guarded(self.storage, self.location, [key], local=self.is_local and self.location != ":memory:")
        if url:
            try:
                self._api.names()  # a wrong URL fails here, before any media is read
            except IndexUnavailableError:
                self.storage.close()
                raise
        self._count_labels: set[str] = set()
        self._checked: str | None = None

    @staticmethod
    def _open_folder(path: Path, create: bool, wanted: str | None) -> Any:
        """The embedded store at ``path``, with the storage that wrote it. A folder that
        cannot be written (read-only, full, not ours) is one line naming it and why, before
        any media is read or any backend called; an index run (``create``) needs a writable
        folder even when the index exists."""
        in_the_way = blocking_file(path)
        if in_the_way is not None:
            what = "give a folder for the index (a new one is made)" if create else "give the folder an index run wrote"
            raise IndexUnavailableError(f"cannot {'write' if create else 'open'} the index at {path}: {in_the_way}: {what}")
        found = folder_storage(path) if path.is_dir() else None
        if wanted is not None and found is not None and found != wanted:
            raise ConfigurationError(
                f"the index at {path} is stored with {found} storage, not {wanted}: open it as it is "
                f"(leave storage unset), or copy it with: molmo-rag migrate --db {path} --to-db NEW_FOLDER --to-storage {wanted}",
                option="storage",
            )
        storage = found or wanted or "edge"
        try:
            path.mkdir(parents=True, exist_ok=True)
            if create and not os.access(path, os.W_OK | os.X_OK):
                why = "the file system is read-only" if read_only_fs(path) else "permission denied"
                raise IndexUnavailableError(f"cannot write the index at {path}: {why} (the folder is not writable)")
            if storage == "edge":
                from .edge import EdgeStorage

                return EdgeStorage(path, create=True)
            return ClientStorage(_open_local_mode(path), local_mode=True)
        except (IndexUnavailableError, ConfigurationError):
            raise
        except RuntimeError as exc:  # qdrant's lock: another process holds the embedded path
            if "already accessed" not in str(exc):
                raise
            raise ConfigurationError(in_use(path)) from exc
        except json.JSONDecodeError as exc:
            raise IndexUnavailableError(f"cannot open the index at {path}: its meta.json is damaged ({exc})") from exc
        except Exception as exc:
            error = _storage_error(exc, str(path), "write" if create else "open")
            if error is None:
                raise
            raise error from exc

    # -- the collection ---------------------------------------------------------------
    def exists(self) -> bool:
        return self._api.exists(self.collection)

    def embedder_info(self) -> dict | None:
        """``{"embedder": name, "dim": n}`` of an existing collection, None if it is new.

        A collection made by another tool has no name recorded; its dimension is read
        from the vector config.
        """
        if not self.exists():
            return None
        vectors = self._api.vectors(self.collection)
        if VECTOR_NAME not in vectors:
            raise ConfigurationError(
                f"collection {self.collection!r} at {self.location} has no dense vector named {VECTOR_NAME!r}; "
                "it was not made by molmo-rag: choose another collection",
                option="collection",
            )
        info = self._meta()
        info["dim"] = vectors[VECTOR_NAME]
        return info

    def ensure(self, embedder: "Embedder | tuple[str, int]") -> None:
        """Create the collection for this embedder (or ``(name, dim)`` of a framework's
        embedding model), with the payload indexes; or check that it was made with it."""
        name, dim = embedder if isinstance(embedder, tuple) else (embedder.name, embedder.dim)
        if self._checked == name:
            return
        info = self.embedder_info()
        if info is None:
            self._api.create(self.collection, {VECTOR_NAME: dim}, {_META_KEY: {"embedder": name, "dim": dim}})
            self._index_fields()
        elif info["dim"] != dim or info.get("embedder", name) != name:
            recorded = info.get("embedder", "an unknown embedder")
            raise ConfigurationError(
                f"collection {self.collection!r} holds {info['dim']}-d vectors from {recorded}; this run embeds "
                f"with {name} ({dim}-d). Vectors of different embedders cannot be mixed: "
                "use the same embedder or another collection.",
                option="embedder",
            )
        else:
            self._index_fields()  # a collection made before an index was added (or a kill cut its making short)
        self._checked = name

    def _index_fields(self) -> None:
        have = self._api.indexed_fields(self.collection)
        for key, schema in INDEXED_FIELDS.items():
            if key not in have:
                self._api.index_field(self.collection, key, schema)

    def ensure_count_indexes(self, labels: Iterable[str]) -> None:
        """Payload indexes for count labels, and the labels recorded in the collection's
        metadata (what :meth:`count_labels` reads without scanning)."""
        new = set(labels) - self._count_labels
        if not new:
            return
        info = self._meta()
        recorded = set(info.get("labels") or [])
        for label in sorted(new - recorded):
            self._api.index_field(self.collection, f"counts.{label}", "integer")
            self._api.index_field(self.collection, count_key(label), "integer")  # the stock classes' flat key
        self._count_labels |= new
        if not new <= recorded:
            info["labels"] = sorted(recorded | new)
            self._set_meta(info)

    def count_labels(self) -> list[str]:
        """The labels counted in this collection (``--count`` at index time), sorted: from
        the collection's metadata, or a scan of the points for a collection made without."""
        if not self.exists():
            return []
        info = self._meta()
        if "labels" in info:
            return sorted(info["labels"])
        labels: set[str] = set()
        offset = None
        while True:
            points, offset = self._api.scroll(self.collection, None, ["counts", "metadata"], 1024, offset)
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
            self._set_meta({**meta, "made_with": made, "asked_labels": asked})

    def made_with(self) -> dict | None:
        """``{"backend": name, "model": id}`` of the latest index run, None if none was recorded."""
        made = self._meta().get("made_with") if self.exists() else None
        return dict(made) if isinstance(made, dict) and made.get("backend") else None

    def asked_labels(self) -> list[str]:
        """The labels index runs asked to count (``--count``), sorted; [] if none recorded."""
        return sorted(self._meta().get("asked_labels") or []) if self.exists() else []

    def meta(self) -> dict:
        """What molmo-rag records with the collection: ``embedder``, ``dim``, ``labels``,
        ``made_with``, ``asked_labels`` (empty for a collection another tool made)."""
        return self._meta() if self.exists() else {}

    def upsert_meta(self, info: dict) -> None:
        """Merge ``info`` into the recorded metadata (a migration copies it); the embedder
        and dimension this collection was made with are kept."""
        mine = self._meta()
        self._set_meta({**mine, **info, **{k: mine[k] for k in ("embedder", "dim") if k in mine}})

    def _meta(self) -> dict:
        return dict(self._api.metadata(self.collection).get(_META_KEY) or {})

    def _set_meta(self, info: dict) -> None:
        self._api.set_metadata(self.collection, {_META_KEY: info})

    # -- writing -------------------------------------------------------------------------
    def stored_fingerprints(self, ids: Sequence[str]) -> dict[str, str]:
        """``record_hash`` of the points that already exist, by point id."""
        if not ids or not self.exists():
            return {}
        points = self._api.retrieve(self.collection, list(ids), ["record_hash"])
        return {str(p.id): (p.payload or {}).get("record_hash", "") for p in points}

    def upsert(self, records: Sequence[MediaRecord], vectors: Sequence[Sequence[float]], embedder: Embedder) -> None:
        self.ensure(embedder)
        self.ensure_count_indexes(label for r in records for label in r.payload.get("counts", {}))
        points = [(r.id, {VECTOR_NAME: [float(x) for x in v]}, r.point_payload(embedder.name)) for r, v in zip(records, vectors)]
        if points:
            self._api.upsert(self.collection, points)

    def upsert_points(self, points: Sequence[tuple[str, Sequence[float], dict]]) -> None:
        """Write points as they are: ``(id, vector of VECTOR_NAME, payload)`` (for the
        framework stores, which lay out their own payloads; :meth:`ensure` first). Count
        labels in ``payload["counts"]`` get their payload index."""
        self.ensure_count_indexes(label for _, _, payload in points for label in (payload.get("counts") or {}))
        if points:
            self._api.upsert(self.collection, [(pid, {VECTOR_NAME: [float(x) for x in v]}, payload) for pid, v, payload in points])

    def query_points(self, vector: Sequence[float], query_filter: Any = None, top: int = 10) -> list[Any]:
        """The nearest points with their whole payload (``.id``, ``.score``, ``.payload``):
        what the framework stores turn into their own nodes and documents."""
        return self._api.query(self.collection, [float(x) for x in vector], VECTOR_NAME, query_filter, top) if self.exists() else []

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Any]:
        """The points with these ids (whole payload; ``.vector`` by name when asked)."""
        return self._api.retrieve(self.collection, list(ids), True, with_vectors) if ids and self.exists() else []

    def scroll(self, query_filter: Any = None, *, limit: int = 1024, offset: Any = None, with_vectors: bool = False) -> tuple[list[Any], Any]:
        """One page of points (whole payload) and the offset of the next page (None at the end)."""
        if not self.exists():
            return [], None
        return self._api.scroll(self.collection, query_filter, True, limit, offset, with_vectors)

    def delete_where(self, query_filter: Any) -> None:
        """Delete every point that passes ``query_filter`` (a filter tree of
        :mod:`molmo_rag.index.conditions` or a ``qdrant_client.models.Filter``)."""
        self.delete([str(p.id) for p in self._each_point(query_filter, False)])

    def settle(self) -> None:
        """After a write run: let the store finish its indexes (Edge merges segments and,
        past its threshold, builds HNSW), so the next search is fast from its first query."""
        self._api.settle()

    def points_of(self, sources: Iterable[str], key: str = "source") -> dict[str, dict[str, str]]:
        """source -> {point id: media_id} for every point of these sources (one scan per
        1,000 sources, not one per source); ``key="source_prefixes"``: every point under
        these folders / URL prefixes."""
        found: dict[str, dict[str, str]] = {}
        for flt in self._filters_of(sources, key):
            for source, points in self._scan(flt).items():
                found.setdefault(source, {}).update(points)
        return found

    def plan_keys_of(self, sources: Iterable[str], key: str = "source") -> dict[str, str]:
        """point id -> ``plan_key`` of every point of these sources (``key="source_prefixes"``:
        under these folders / URL prefixes) written with a complete plan: what a run finds
        done (:attr:`molmo_rag.index.records.MediaRecord.plan_key`)."""
        found: dict[str, str] = {}
        for flt in self._filters_of(sources, key):
            for p in self._each_point(flt, ["plan_key"]):
                if (p.payload or {}).get("plan_key"):
                    found[str(p.id)] = p.payload["plan_key"]
        return found

    @staticmethod
    def _filters_of(sources: Iterable[str], key: str) -> Iterator[Any]:
        """Filters matching ``key`` against these values, 1,000 values each."""
        wanted = list(dict.fromkeys(sources))
        for start in range(0, len(wanted), 1000):
            yield Filter(must=[FieldCondition(key=key, match=MatchAny(any=wanted[start : start + 1000]))])

    def _each_point(self, flt: Any, fields: list[str] | bool) -> Iterator[Any]:
        """Every point passing ``flt``, page by page, with these payload ``fields``."""
        offset = None
        while self.exists():
            points, offset = self._api.scroll(self.collection, flt, fields, 1024, offset)
            yield from points
            if offset is None:
                break

    def _scan(self, flt: Any) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for p in self._each_point(flt, ["source", "media_id"]):
            payload = p.payload or {}
            found.setdefault(payload.get("source", ""), {})[str(p.id)] = payload.get("media_id", "")
        return found

    def all_points(self) -> dict[str, dict[str, str]]:
        """source -> {point id: media_id} for every point of the collection."""
        return self._scan(None)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._api.delete(self.collection, list(ids))

    # -- reading -------------------------------------------------------------------------
    def one_layout(self) -> bool:
        """True when every point has its metadata at the payload root (molmo-rag and this
        project's framework stores write it there), so a filter on the root keys, which the
        payload indexes serve, sees every point; False when some point was written by a
        stock framework store (metadata under ``metadata`` only)."""
        from .filters import KINDS

        if not self.exists():
            return True
        ours = Filter(must=[FieldCondition(key="kind", match=MatchAny(any=list(KINDS)))])
        return self._api.count(self.collection, ours) == self._api.count(self.collection)

    def filter_for(self, search: Any) -> Any:
        """The filter tree of a :class:`~molmo_rag.index.filters.SearchFilter` for this
        collection: on the root keys the payload indexes serve, or on either layout when
        some point was written by a stock framework store (:meth:`one_layout`)."""
        from .filters import either_layout, filter_of

        return filter_of(search) if self.one_layout() else either_layout(search)

    def search(self, vector: Sequence[float], query_filter: Any = None, top: int = 10) -> list[Hit]:
        if not self.exists():
            others = self._api.names()
            hint = f" (collections there: {', '.join(others)}; choose one of them)" if others else ""
            raise ConfigurationError(
                f"no collection {self.collection!r} at {self.location}: index something first (molmo-rag index ...){hint}",
                option="collection",
            )
        points = self._api.query(self.collection, [float(x) for x in vector], VECTOR_NAME, query_filter, top)
        return [Hit.from_point(p) for p in points]

    def count(self) -> int:
        if not self.exists():
            return 0
        return self._api.count(self.collection)

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> "QdrantIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantIndex({self.location!r}, collection={self.collection!r})"
