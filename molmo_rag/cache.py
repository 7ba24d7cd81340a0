"""A persistent cache of backend results, so a re-run on unchanged media calls nothing.

One SQLite file (WAL mode, busy timeout) that several processes may read and write at
once. A result is stored under :func:`cache_key`: the media content hash (``media_id``,
which carries the slide or segment suffix), the backend name and model, the task with its
parameters, and the input policy: every option declared with
:func:`~molmo_rag.options_base.cache_key_field` (frames per segment, fps, image size caps,
JPEG quality, clip encoding, answer limits) whose value is not its default. Stored: the
answer text, its parsed fields and its cost. Never stored: API keys, request headers, media
bytes.

**Permanent failures are remembered** (table ``failures``) under the same key: a request
the service refused for good for this media (:func:`is_permanent_failure`: a content policy
violation, invalid input, an answer that failed validation), with its error type, code,
status, message (redacted) and cost, so a re-run reports it again without sending it (and
paying) again. ``retry_failed=True`` (the CLI's ``--retry-failed``) looks past them and
sends those requests again; a result stored later replaces the failure. Transient failures
(timeouts, 5xx, rate limits) and account errors (a refused key, an empty balance) are
never remembered.

``read=False`` (the CLI's ``--no-cache``) bypasses lookups (of results and remembered
failures) but still writes the fresh results, so the next normal run re-uses them.

The same file keeps a **pending-jobs journal** (table ``pending_jobs``): for a request sent
to a hosted API whose job was accepted (its job id known) but whose answer is not cached
yet, the cache key, the backend, the job id and when it was submitted. It is written the
moment a submission is accepted and cleared when the answer is stored (:meth:`ResultCache.put`
clears it in the same transaction) or the job failed for good, so a run killed while jobs
were in flight leaves them in the journal and the next run polls those jobs instead of
paying for new ones (see :meth:`ResultCache.journal` and
:class:`molmo_rag.backends.jobs.SubmitAndPoll`). Pending jobs are looked up whatever
``read`` says (finishing a paid job is not re-using an old answer); nothing is journaled
when ``write`` is off.

Location: ``MOLMO_RAG_CACHE_DIR`` if set, else the user cache directory
(``platformdirs``; ``~/.cache/molmo-rag`` on Linux): the one root of everything molmo-rag
stores (see :mod:`molmo_rag.locations`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CacheWriteError, ConfigurationError
from .locations import default_cache_dir
from .folders import blocking_file, unwritable
from .options_base import cache_key_values

__all__ = [
    "CachedAnswer", "CachedFailure", "JobJournal", "PendingJob", "ResultCache", "cache_key", "default_cache_dir",
    "backend_policy", "run_policy", "is_permanent_failure", "CacheWriteError",
]

_FILENAME = "results.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    media_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    text TEXT NOT NULL,
    fields TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_media ON results (media_id);
CREATE TABLE IF NOT EXISTS pending_jobs (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    job_id TEXT NOT NULL,
    submitted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    media_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    error_type TEXT NOT NULL,
    code TEXT NOT NULL,
    status INTEGER,
    message TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""


def backend_policy(backend: Any) -> dict:
    """The backend settings that change what it is sent or what is kept of its answers:
    the fields of its ``options`` declared with
    :func:`~molmo_rag.options_base.cache_key_field` that differ from their default. A
    backend without typed options may define ``cache_params() -> dict`` to say so itself.
    """
    explicit = getattr(backend, "cache_params", None)
    if callable(explicit):
        return dict(explicit())
    return cache_key_values(getattr(backend, "options", None))


def run_policy(backend: Any, input_policy: Mapping[str, Any] | None = None) -> dict:
    """The policy part of every cache key of a run: the backend's settings
    (:func:`backend_policy`) and the reader's (``documents.input_policy``)."""
    return {**backend_policy(backend), **(input_policy or {})}


def cache_key(
    media_id: str, backend: str, model: str, task_key: str, policy: Mapping[str, Any] | None = None
) -> str:
    """A stable hex key; equal inputs give equal keys in every process."""
    blob = json.dumps(
        {"media": media_id, "backend": backend, "model": model, "task": task_key, "policy": dict(policy or {})},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    fields: dict
    cost_usd: float
    model: str


# Codes that say something about the account, the endpoint or the moment, not about the
# media: never remembered, whatever the error's ``retryable`` says.
_NOT_ABOUT_THE_MEDIA = frozenset(
    {
        "unauthorized", "invalid_api_key", "insufficient_balance", "insufficient_credits", "insufficient_funds",
        "payment_required", "model_not_available", "model_not_found", "model_billing_not_configured",
        "provider_pricing_not_configured", "task_not_found", "file_not_found", "job_not_found",
        "submission_unconfirmed", "timeout", "cancelled", "prediction_cancelled", "prediction_deleted",
    }
)
_NOT_ABOUT_THE_MEDIA_STATUS = frozenset({401, 402, 403, 404, 405, 408, 409, 429})


def is_permanent_failure(error: Any) -> bool:
    """Whether a request's failure will recur for this media, so it is remembered: a
    :class:`~molmo_rag.errors.BackendError` that is not ``retryable`` and not ``fatal``
    (a refused key or an empty balance ends the run; they are about the account) and that
    carries a vendor code (``content_policy_violation``, ``invalid_input``,
    ``malformed_answer``, ...), not one about the account, the endpoint or a passing state."""
    from .errors import AuthenticationError, BackendError

    if not isinstance(error, BackendError) or isinstance(error, AuthenticationError):
        return False
    if error.retryable or error.fatal:
        return False
    code = error.code
    if not isinstance(code, str) or not code or code.isdigit() or code in _NOT_ABOUT_THE_MEDIA:
        return False
    status = error.status
    return status is None or (400 <= status < 500 and status not in _NOT_ABOUT_THE_MEDIA_STATUS)


@dataclass(frozen=True)
class CachedFailure:
    """A permanent failure remembered for one request (see :func:`is_permanent_failure`)."""

    error_type: str
    code: str
    status: int | None
    message: str
    backend: str
    model: str
    cost_usd: float = 0.0

    def error(self) -> Exception:
        """The error again, of its own class when that is one of ours (so ``error_type``
        reads the same as in the run that got it), marked ``cached``."""
        from .errors import BackendError

        cls = _error_class(self.error_type)
        error = cls.__new__(cls)
        # the base initializer only: a subclass's own may want arguments we did not keep
        BackendError.__init__(error, self.message, backend=self.backend, code=self.code, status=self.status, retryable=False)
        for name, value in (("resubmit", False), ("job_id", None)):
            if not hasattr(error, name):
                setattr(error, name, value)
        error.cost_usd = self.cost_usd  # what it cost then (as a cached result shows); not paid again
        error.cached = True
        return error


def _error_class(name: str) -> type:
    """The BackendError subclass of that name among molmo-rag's modules already loaded,
    else BackendError: a name read from the cache never imports anything."""
    import sys

    from .errors import BackendError

    for module_name, module in list(sys.modules.items()):
        if module_name == "molmo_rag" or module_name.startswith("molmo_rag."):
            found = getattr(module, name, None)
            if isinstance(found, type) and issubclass(found, BackendError):
                return found
    return BackendError


@dataclass(frozen=True)
class PendingJob:
    """A job submitted for a request (by cache key) whose answer is not cached yet."""

    key: str
    backend: str
    job_id: str
    submitted_at: float


class JobJournal:
    """The pending-jobs journal of one request (one cache key), handed to the backend with
    the request (``Request.journal``): what a hosted backend reads before submitting and
    writes the moment a submission is accepted. Never holds keys, payloads or media."""

    __slots__ = ("cache", "key")

    def __init__(self, cache: ResultCache, key: str):
        self.cache = cache
        self.key = key

    def pending(self, backend: str | None = None) -> PendingJob | None:
        """The job submitted earlier for this request and not finished since (of
        ``backend`` only, when given), or None."""
        job = self.cache.pending_job(self.key)
        if job is not None and backend is not None and job.backend != backend:
            return None
        return job

    def submitted(self, backend: str, job_id: str) -> None:
        """A submission was accepted: the job exists and will be paid for."""
        self.cache.add_pending(self.key, backend, job_id)

    def finished(self, job_id: str | None = None) -> None:
        """The job is over without an answer to store (it failed for good, or the server
        no longer knows it); with ``job_id``, only if that is still the job recorded."""
        self.cache.clear_pending(self.key, job_id)

    def __repr__(self) -> str:
        return f"JobJournal({self.key[:12]}...)"


def _cause(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "full" in text.lower():
        return f"no space left on the device ({text})"
    if "readonly" in text.lower() or "read-only" in text.lower():
        return f"the file system is read-only ({text})"
    return text


_MOVE_IT = "; point MOLMO_RAG_CACHE_DIR (or --cache-dir) at a folder that can be written"


class ResultCache:
    """SQLite result cache; safe to share between threads and processes.

    ``read`` turns lookups on or off, ``write`` storing; ``ResultCache(read=False)`` is
    the ``--no-cache`` mode (fresh results, still stored). ``retry_failed``: requests whose
    permanent failure is remembered are sent again (``--retry-failed``).
    """

    def __init__(
        self, directory: str | os.PathLike | None = None, *, read: bool = True, write: bool = True, retry_failed: bool = False
    ):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.read = read
        self.write = write
        self.retry_failed = retry_failed
        """Look past remembered permanent failures: send those requests again."""
        self.path = self.directory / _FILENAME
        self._check_folder()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open the result cache at {self.path}: {exc}{_MOVE_IT}") from exc
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __reduce__(self) -> tuple:
        """A copy in another process opens the same folder (SQLite's WAL lets processes share it)."""
        return (_reopened, (str(self.directory), self.read, self.write, self.retry_failed))

    def _check_folder(self) -> None:
        """A file where the folder must be, or (when storing) a folder that cannot be
        written: one error naming it, instead of SQLite's "unable to open database file"."""
        why = blocking_file(self.directory) or (unwritable(self.directory) if self.write else None)
        if why is not None:
            raise ConfigurationError(f"cannot open the result cache at {self.directory}: {why}{_MOVE_IT}")

    # -- lookups --------------------------------------------------------------------------
    def get(self, key: str) -> CachedAnswer | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        keys = list(dict.fromkeys(keys))
        if not self.read or not keys:
            return {}
        found = {
            key: CachedAnswer(text=text, fields=json.loads(fields), cost_usd=cost, model=model)
            for key, text, fields, cost, model in self._rows("SELECT key, text, fields, cost_usd, model FROM results", keys)
        }
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    # -- storing --------------------------------------------------------------------------
    def put(self, key: str, *, media_id: str, backend: str, model: str, task: str, text: str, fields: dict, cost_usd: float = 0.0) -> None:
        self.put_many([(key, dict(media_id=media_id, backend=backend, model=model, task=task, text=text, fields=fields, cost_usd=cost_usd))])

    def put_many(self, entries: Iterable[tuple[str, dict]]) -> None:
        if not self.write:
            return
        now = time.time()
        rows = [
            (
                key,
                e["media_id"],
                e["backend"],
                e["model"],
                e["task"],
                e["text"],
                json.dumps(e["fields"], ensure_ascii=False, default=str),
                float(e.get("cost_usd") or 0.0),
                now,
            )
            for key, e in entries
        ]
        if not rows:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?)", rows)
                # the answer is kept: its job is no longer pending, nor a failure (same transaction)
                self._conn.executemany("DELETE FROM pending_jobs WHERE key = ?", [(row[0],) for row in rows])
                self._conn.executemany("DELETE FROM failures WHERE key = ?", [(row[0],) for row in rows])
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:  # a failed COMMIT may have ended it already
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise CacheWriteError(f"cannot store results in the cache at {self.path}: {_cause(exc)}") from exc
                raise

    # -- remembered failures --------------------------------------------------------------
    def put_failure(self, key: str, *, media_id: str, backend: str, model: str, task: str, error: Any) -> None:
        """Remember the permanent failure of one request (its job, if any, is over)."""
        from .errors import redact

        if not self.write:
            return
        row = (
            key, media_id, backend, model, task, type(error).__name__, redact(str(error.code)), error.status,
            redact(str(error)), float(getattr(error, "cost_usd", 0.0) or 0.0), time.time(),
        )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
                self._conn.execute("DELETE FROM pending_jobs WHERE key = ?", (key,))
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise CacheWriteError(f"cannot store a failure in the cache at {self.path}: {_cause(exc)}") from exc
                raise

    def failures_many(self, keys: Iterable[str]) -> dict[str, CachedFailure]:
        """The remembered failures among ``keys`` (none when ``read`` is off or
        ``retry_failed`` is on)."""
        keys = list(dict.fromkeys(keys))
        if not self.read or self.retry_failed or not keys:
            return {}
        select = "SELECT key, error_type, code, status, message, backend, model, cost_usd FROM failures"
        return {key: CachedFailure(*fields) for key, *fields in self._rows(select, keys)}

    def _rows(self, select: str, keys: list[str]) -> list[tuple]:
        """``select`` (a query without WHERE) for the rows whose key is one of ``keys``, in
        parts that stay under SQLite's variable limit."""
        rows: list[tuple] = []
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                rows += self._conn.execute(f"{select} WHERE key IN ({','.join('?' * len(part))})", part).fetchall()
        return rows

    def failure_count(self) -> int:
        """How many permanent failures are remembered."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0]

    def stored_since(self, when: float) -> int:
        """Results stored at or after ``when`` (``time.time()``): what a run kept."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM results WHERE created >= ?", (when,)).fetchone()[0]

    # -- the pending-jobs journal ---------------------------------------------------------
    def journal(self, key: str) -> JobJournal | None:
        """The journal of one request (None when this cache does not write)."""
        return JobJournal(self, key) if self.write else None

    def add_pending(self, key: str, backend: str, job_id: str, submitted_at: float | None = None) -> None:
        """Record (or replace) the job submitted for ``key``."""
        if not self.write:
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO pending_jobs VALUES (?,?,?,?)",
                (key, backend, job_id, time.time() if submitted_at is None else submitted_at),
            )

    def pending_job(self, key: str) -> PendingJob | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT key, backend, job_id, submitted_at FROM pending_jobs WHERE key = ?", (key,)
            ).fetchone()
        return PendingJob(*row) if row else None

    def pending_jobs(self, backend: str | None = None) -> list[PendingJob]:
        """Every pending job (of ``backend``), oldest first."""
        query = "SELECT key, backend, job_id, submitted_at FROM pending_jobs"
        args: tuple = ()
        if backend is not None:
            query, args = query + " WHERE backend = ?", (backend,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY submitted_at", args).fetchall()
        return [PendingJob(*row) for row in rows]

    def clear_pending(self, key: str, job_id: str | None = None) -> None:
        """Forget the pending job of ``key`` (only if it is ``job_id``, when given)."""
        if not self.write:
            return
        with self._lock:
            if job_id is None:
                self._conn.execute("DELETE FROM pending_jobs WHERE key = ?", (key,))
            else:
                self._conn.execute("DELETE FROM pending_jobs WHERE key = ? AND job_id = ?", (key, job_id))

    # -- housekeeping ---------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def clear(self) -> int:
        """Delete every stored result and remembered failure; returns how many results
        there were. The pending-jobs journal is kept: those jobs exist (and are paid for)
        whatever the cache holds."""
        with self._lock:
            self._conn.execute("DELETE FROM failures")
            return self._conn.execute("DELETE FROM results").rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ResultCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultCache({str(self.path)!r}, read={self.read}, write={self.write})"


def _reopened(directory: str, read: bool, write: bool, retry_failed: bool) -> ResultCache:
    return ResultCache(directory, read=read, write=write, retry_failed=retry_failed)
