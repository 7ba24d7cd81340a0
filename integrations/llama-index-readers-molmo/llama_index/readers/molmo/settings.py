"""What the reader and the extractor share: which backend, which tasks, which cache, and how
a failure is reported. Everything here is handed to the core (``molmo_rag``): this package
reads, caches and calls no model itself."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

from llama_index.core.bridge.pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from molmo_rag import (
    Backend,
    Caption,
    EnrichOptions,
    Failure,
    MolmoRagError,
    ReaderOptions,
    Scene,
    Task,
    create_backend,
    task_from_dict,
)

__all__ = ["MolmoLoadError", "MolmoSettings", "describe_failure", "logger"]

logger = logging.getLogger("llama_index.readers.molmo")


class MolmoLoadError(MolmoRagError):
    """A source, or one task on one item, failed and ``raise_on_error`` is on.

    ``failure`` is the core's :class:`molmo_rag.Failure` (source, task, the typed error,
    also kept as ``__cause__``)."""

    def __init__(self, failure: Failure):
        super().__init__(describe_failure(failure))
        self.failure = failure


def describe_failure(failure: Failure) -> str:
    """One line: where (source, slide or time range), which task, the error type and its message."""
    info = failure.to_json()
    where = info["source"]
    if info.get("slide") is not None:
        where += f" slide {info['slide']}"
    elif info.get("start") is not None:
        where += f" {info['start']:.1f}-{info.get('end', 0.0):.1f}s"
    task = f" ({info['task']})" if info.get("task") else ""
    return f"{where}{task}: {info['error_type']}: {info['error']}"


class MolmoSettings(BaseModel):
    """Backend, tasks, reading and caching options (every field is handed to the core)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # -- the backend ------------------------------------------------------------------------
    backend: str | Backend | None = Field(
        default=None,
        description="Backend name (local, wavespeed, openoctopus, openai; None: MOLMO_RAG_BACKEND, else local) "
        "or a ready molmo_rag Backend instance (e.g. get_backend('wavespeed', base_url=...)).",
    )
    model: str | None = Field(
        default=None,
        description="Model id or local checkpoint path (local and openai backends; None: MOLMO_RAG_MODEL or the default).",
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the named backend, e.g. {'base_url': ..., 'api_key': ...} or {'batch_size': 8}.",
    )
    concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight (REST backends) or batch size (local)."
    )
    window: int | None = Field(
        default=None, ge=1, description="Requests kept in flight by the engine (None: the backend's own)."
    )

    # -- the tasks --------------------------------------------------------------------------
    detail: Literal["low", "medium", "high"] = Field(default="medium", description="Caption detail.")
    caption: bool = Field(default=True, description="Caption every photo, slide and video segment.")
    scene: bool = Field(default=True, description="Describe the scene of every item.")
    count: list[str] = Field(
        default_factory=list,
        description="Things to count on every item, e.g. ['person', 'car']: metadata counts.<label> and points.",
    )
    questions: list[str] = Field(
        default_factory=list, description="Questions to answer about every item: metadata answers."
    )
    tasks: list[Task] = Field(
        default_factory=list,
        description="More molmo_rag tasks to run, e.g. [VideoTask(task='summary')] or [Caption(detail='high')].",
    )

    # -- reading and caching ------------------------------------------------------------------
    reader_options: ReaderOptions | None = Field(
        default=None,
        description="How media is read: video segmenting (segment_mode, segment_seconds, ...), slide rendering "
        "(slide_dpi, render_timeout, cache_dir), size caps. A molmo_rag ReaderOptions or a dict of its fields.",
    )
    cache: Any = Field(
        default=None,
        description="Result cache: None/True for the default (MOLMO_RAG_CACHE_DIR), a folder, a molmo_rag "
        "ResultCache, or False for none. Cached answers cost no backend call on a re-run.",
    )
    no_cache: bool = Field(default=False, description="Skip cache lookups (fresh answers are still stored).")
    raise_on_error: bool = Field(
        default=False,
        description="Raise MolmoLoadError on the first failure (an unreadable source, a failed task). By default "
        "each failure is logged as a warning with its cause, kept in `failures`, and the others go on.",
    )

    _backend: Backend | None = PrivateAttr(default=None)
    _owns_backend: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _failures: list[Failure] = PrivateAttr(default_factory=list)

    @field_validator("reader_options", mode="before")
    @classmethod
    def _reader_options(cls, value: Any) -> Any:
        return ReaderOptions(**value) if isinstance(value, dict) else value

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [task_from_dict(t) if isinstance(t, dict) else t for t in value]
        return value

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        return Path(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_backend(self) -> MolmoSettings:
        if isinstance(self.backend, Backend) and (self.model or self.backend_options):
            raise ValueError("give model and backend_options to get_backend() when passing a Backend instance")
        return self

    @field_serializer("backend")
    def _backend_name(self, value: Any) -> str | None:
        return value.name if isinstance(value, Backend) else value

    @field_serializer("tasks")
    def _task_dicts(self, value: list[Task]) -> list[dict]:
        return [task.to_dict() for task in value]

    @field_serializer("reader_options")
    def _reader_options_dict(self, value: ReaderOptions | None) -> dict | None:
        return None if value is None else value.model_dump(mode="json", exclude_defaults=True)

    @field_serializer("cache")
    def _cache_name(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        return str(getattr(value, "directory", value))

    # -- what the core gets -------------------------------------------------------------------
    @property
    def failures(self) -> list[Failure]:
        """Every failure reported since this object was made (``failures.clear()`` to reset)."""
        return self._failures

    def get_backend(self) -> Backend:
        """The backend instance: the one given, or one made once from the name and options
        and reused by every call (a local model loads once)."""
        if isinstance(self.backend, Backend):
            return self.backend
        with self._lock:
            if self._backend is None:
                self._backend = create_backend(self.backend, self.model, self.concurrency, **self.backend_options)
                self._owns_backend = True
            return self._backend

    def enrich_options(self) -> EnrichOptions:
        """The plan: the core's default (caption + scene) when both are on, so results are
        shared with ``molmo-rag index`` through the cache; otherwise the chosen tasks."""
        default = self.caption and self.scene
        tasks: list[Task] = list(self.tasks)
        if not default:
            tasks = [Caption(detail=self.detail)] * self.caption + [Scene()] * self.scene + tasks
        return EnrichOptions(
            detail=self.detail, default_tasks=default, count=list(self.count), ask=list(self.questions), tasks=tasks
        )

    def run_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`molmo_rag.aiter_documents` (the sources aside)."""
        return {
            "backend": self.get_backend(),
            "tasks": self.enrich_options(),
            "cache": self.cache,
            "no_cache": self.no_cache,
            "reader_options": self.reader_options,
            "window": self.window,
            "on_warning": self._warn,
        }

    def frames_dir(self) -> Path | None:
        """Where rendered slides and segment frames are kept: ``frames`` in the cache folder
        given, else the core's default (the default cache folder)."""
        cache = self.cache
        directory = getattr(cache, "directory", cache)
        if isinstance(directory, (str, os.PathLike)):
            return Path(directory) / "frames"
        return None

    # -- reporting -----------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        logger.warning("molmo: %s", message)

    def report(self, failure: Failure) -> None:
        """Log a failure with its cause and keep it; raise it when ``raise_on_error``."""
        self._failures.append(failure)
        logger.warning("molmo: failed: %s", describe_failure(failure))
        if self.raise_on_error:
            raise MolmoLoadError(failure) from failure.error

    def close(self) -> None:
        """Release the backend this object made (a model in memory, HTTP clients)."""
        with self._lock:
            backend, self._backend = self._backend, None
            owned, self._owns_backend = self._owns_backend, False
        if backend is not None and owned:
            backend.close()
