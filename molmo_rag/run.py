"""One run: its options as data (:class:`RunOptions`) and the live parts made from them
(:class:`Run`: the backend, the result cache, the planner, and engines on demand).

Every door takes one (``analyze``, ``iter_documents``, ``index``, ``ground``, ``search``
with ``ground=``, the CLI commands and both framework packages)::

    options = RunOptions(backend="wavespeed", count=["person"], detail="high")
    summary = index("photos/", options)            # builds a Run, closes it after
    with Run(options) as run:                      # or keep one for many calls:
        docs = list(iter_documents("deck.pptx", run))   # the backend (a local model) loads once
        summary = index("videos/", run)

A door given ``RunOptions`` (or the same fields as keywords, :class:`RunChoices`) builds a
``Run`` for that call and closes it; a door given a ``Run`` uses it and leaves it open
(whoever made it closes it). A ``Run`` checks the plan against the backend's declared
capabilities before the backend is made: no key is read, nothing loaded or sent for a task
the backend cannot run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from pydantic import ConfigDict, Field, field_serializer, field_validator, model_validator

from .backends.base import Backend, backend_class, backend_name, create_backend, model_of
from .cache import ResultCache
from .enrich import EnrichOptions, Enricher
from .media.options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine, Progress
    from .tasks import Detail, Task

__all__ = ["RunOptions", "RunChoices", "Run", "run_options"]

_SECRET_WORDS = ("key", "token", "secret", "password")


def _plain(value: Any) -> bool:
    """Whether an option value is plain data a dump can carry (not a client or a callable)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class RunOptions(EnrichOptions):
    """Everything a run is made of, typed and described: the backend and its options, the
    plan (inherited from :class:`~molmo_rag.enrich.EnrichOptions`: ``detail``, ``count``,
    ``ask``, ``tasks``, ``default_tasks``), how media is read, the result cache, and how the
    engine runs (window, memory bound, ordering, thumbnails). Each default is written here
    once; the CLI flags, the Python doors and both framework packages read it from here."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    what = "run options"

    # -- the backend ------------------------------------------------------------------------
    backend: str | Backend | None = Field(
        None,
        description="Backend name (local, wavespeed, openoctopus, openai; None: env MOLMO_RAG_BACKEND, else local), "
        "or a ready Backend instance (left open: whoever made it closes it).",
    )
    model: str | None = Field(
        None, description="Model id or local checkpoint path (None: the backend's model variable, else its default)."
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        repr=False,
        description="Options of the named backend (e.g. {'base_url': ..., 'api_key': ...}, {'device': 'cuda'}); "
        "never printed: values of keys, tokens and secrets are left out of repr and dumps.",
    )
    concurrency: int | None = Field(
        None, ge=1,
        description="Requests at once: sets the backend's concurrency option (batch size of a local model, "
        "requests in flight of a hosted API).",
    )
    share_backend: bool = Field(
        False,
        description="Use this process's one backend of this configuration (made on first use, kept until the "
        "process exits or molmo_rag.close_shared_backends()) instead of one of this run's own; the framework "
        "packages turn it on, so every loader, parser and retriever shares one model.",
    )

    # -- reading ----------------------------------------------------------------------------
    reader_options: ReaderOptions | None = Field(
        None,
        description="How media is read: video segmenting, slide rendering, size caps, JPEG quality (a "
        "ReaderOptions or a dict of its fields; None: the readers' defaults).",
    )

    # -- the result cache -------------------------------------------------------------------
    cache: ResultCache | Path | bool | None = Field(
        None,
        description="Result cache: None/True for the default folder (env MOLMO_RAG_CACHE_DIR), a folder, a ready "
        "ResultCache (left open), or False for none.",
    )
    no_cache: bool = Field(False, description="Do not read cached results (fresh results are still stored).")
    retry_failed: bool = Field(
        False, description="Send again requests an earlier run failed for good (content policy, invalid input)."
    )

    # -- the engine -------------------------------------------------------------------------
    window: int | None = Field(None, ge=1, description="Requests in flight (None: the backend's own window).")
    max_pending: int | None = Field(
        None, ge=1, description="Items between read and handed out, bounding memory (None: a multiple of the window)."
    )
    ordered: bool = Field(False, description="Hand out results in source order (else as each item finishes).")
    thumbnail_size: int = Field(128, ge=0, description="Longest side of each document's thumbnail (0: none).")
    pictures: bool = Field(
        True,
        description="Give every document a full-resolution picture in metadata `image_path`: a local photo's own "
        "file, else the photo, rendered slide or segment frame saved once under the cache root's `pictures` folder.",
    )
    segment_frames: int = Field(
        0, ge=0, le=64, description="Also save this many frames of each video segment (metadata `frame_paths`)."
    )

    @field_validator("reader_options", mode="before")
    @classmethod
    def _reader_options(cls, value: Any) -> Any:
        return ReaderOptions(**value) if isinstance(value, dict) else value

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        return Path(os.fsdecode(value)) if isinstance(value, (str, bytes, os.PathLike)) else value

    @field_validator("count", "ask", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_dicts(cls, value: Any) -> Any:
        from .tasks import task_from_dict

        if isinstance(value, (list, tuple)):
            return [task_from_dict(t) if isinstance(t, dict) else t for t in value]
        return value

    @model_validator(mode="after")
    def _instance_takes_no_options(self) -> "RunOptions":
        if isinstance(self.backend, Backend) and (self.model or self.backend_options or self.concurrency):
            from .errors import UsageError

            raise UsageError(
                "a ready Backend instance was given: set its model, options and concurrency where it is made, "
                "not in the run options",
                option="backend",
            )
        return self

    @field_serializer("backend")
    def _backend_name(self, value: Any) -> str | None:
        return value.name if isinstance(value, Backend) else value

    @field_serializer("backend_options")
    def _no_secrets(self, value: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.backend, Backend):  # a ready instance travels as its name and options
            value = {k: v for k, v in self.backend.made_with().items() if _plain(v)}
        return {k: v for k, v in value.items() if not any(word in k.lower() for word in _SECRET_WORDS)}

    @field_serializer("tasks")
    def _tasks_as_dicts(self, value: list["Task"]) -> list[dict]:
        return [task.to_dict() for task in value]

    @field_serializer("reader_options")
    def _reader_dict(self, value: ReaderOptions | None) -> dict | None:
        return None if value is None else value.model_dump(mode="json", exclude_defaults=True)

    @field_serializer("cache")
    def _cache_folder(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        return str(getattr(value, "directory", value))

    # -- what the options say ---------------------------------------------------------------
    def backend_class(self) -> type[Backend]:
        """The backend's class: its declared facts (capabilities, price, variables), no key read."""
        return type(self.backend) if isinstance(self.backend, Backend) else backend_class(backend_name(self.backend))

    def check(self) -> None:
        """Refuse now a task the backend can run on no input (:meth:`Backend.check_plan`)."""
        self.backend_class().check_plan(self.explicit_tasks())


class RunChoices(TypedDict, total=False):
    """The fields of :class:`RunOptions` as keyword arguments of a door (``index(sources,
    count=["person"])``): typed for editors and checkers; their defaults live in
    ``RunOptions`` only."""

    backend: str | Backend | None
    model: str | None
    backend_options: dict[str, Any]
    concurrency: int | None
    share_backend: bool
    detail: "Detail"
    default_tasks: bool | None
    count: Sequence[str] | str
    ask: Sequence[str] | str
    tasks: Sequence["Task"]
    reader_options: ReaderOptions | dict[str, Any] | None
    cache: ResultCache | str | os.PathLike[str] | bool | None
    no_cache: bool
    retry_failed: bool
    window: int | None
    max_pending: int | None
    ordered: bool
    thumbnail_size: int
    pictures: bool
    segment_frames: int


def run_options(options: "RunOptions | Run | None" = None, choices: "RunChoices | dict[str, Any] | None" = None) -> RunOptions:
    """``options`` (or the defaults) with ``choices`` on top, validated as one object."""
    if isinstance(options, Run):
        options = options.options
    if not choices:
        return options if options is not None else RunOptions()
    if options is None:
        return RunOptions(**choices)
    return RunOptions(**{**_fields_of(options), **choices})


def _fields_of(options: RunOptions) -> dict[str, Any]:
    """The fields set on ``options``, as given (instances kept, nothing dumped)."""
    return {name: getattr(options, name) for name in options.model_fields_set}


class Run:
    """The backend, result cache and planner of one run, made from :class:`RunOptions`,
    owned and closed here (what was handed in ready, a Backend or a ResultCache, is left
    open). Use it as a context manager, or call :meth:`close`.

    ``on_warning``: called once per task the backend cannot run on some kind of input
    (default: the ``molmo_rag`` logger)."""

    def __init__(
        self,
        options: RunOptions | None = None,
        /,
        *,
        on_warning: Callable[[str], None] | None = None,
        **choices: Unpack[RunChoices],
    ) -> None:
        self.options = run_options(options, choices)
        self.options.check()  # before the backend is made: no key read, nothing loaded for a refused plan
        self._owned: list[Any] = []
        try:
            self.backend = self._make_backend()
            self.cache = self._open_cache()
            self.planner = Enricher(
                self.backend, options=self.options, cache=self.cache, input_policy=self.input_policy, on_warning=on_warning
            )
        except BaseException:
            self.close()
            raise

    @classmethod
    def of(
        cls,
        run: "Run | RunOptions | None",
        choices: "RunChoices | dict[str, Any] | None" = None,
        *,
        on_warning: Callable[[str], None] | None = None,
    ) -> tuple["Run", bool]:
        """The run a door uses, and whether the door owns it (and closes it): a ``Run``
        as given (choices on top are refused: it is already built), else a new one."""
        if isinstance(run, Run):
            if choices:
                from .errors import UsageError

                raise UsageError(
                    f"a ready Run was given: put {', '.join(sorted(choices))} in its RunOptions instead", option=next(iter(choices))
                )
            return run, False
        return cls(run_options(run, choices), on_warning=on_warning), True

    def _make_backend(self) -> Backend:
        opts = self.options
        spec = opts.backend
        if isinstance(spec, Backend):
            return spec

        def make() -> Backend:
            return create_backend(spec, opts.model, opts.concurrency, **opts.backend_options)

        if opts.share_backend:
            from .backends.shared import configuration_key, shared_backend

            name = backend_name(spec)
            key = configuration_key(name, (opts.model, opts.concurrency), opts.backend_options)
            return shared_backend(key, make)  # the process's, not this run's: left open by close()
        backend = make()
        self._owned.append(backend)
        return backend

    def _open_cache(self) -> ResultCache | None:
        spec, opts = self.options.cache, self.options
        if spec is False:
            return None
        if isinstance(spec, ResultCache):
            if opts.no_cache:
                spec.read = False
            if opts.retry_failed:
                spec.retry_failed = True
            return spec
        cache = ResultCache(None if spec in (None, True) else spec, read=not opts.no_cache, retry_failed=opts.retry_failed)  # type: ignore[arg-type]
        self._owned.append(cache)
        return cache

    # -- what the run is --------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model the backend runs."""
        return model_of(self.backend)

    @property
    def input_policy(self) -> dict:
        """The reader options that change what the model is sent, as ``reader.<name>``:
        part of every cache key (see :func:`molmo_rag.options_base.cache_key_values`)."""
        from .options_base import cache_key_values

        return cache_key_values(self.options.reader_options, prefix="reader.")

    @property
    def pictures_folder(self) -> Path:
        """Where the pictures of this run's documents are saved (:mod:`molmo_rag.pictures`):
        beside the result cache, or under the default cache directory without one."""
        from .pictures import picture_folder

        return picture_folder(self.cache.directory if self.cache is not None else None)

    @property
    def skipped(self) -> list[str]:
        """One warning per (task, model input) the backend cannot run, so far."""
        return list(self.planner.skipped)

    def engine(
        self,
        *,
        tasks: "Sequence[Task] | None" = None,
        ordered: bool | None = None,
        absolute: bool = True,
        progress: "Progress | None" = None,
    ) -> "Engine":
        """A streaming engine over this run's backend and cache: the run's plan (adapted to
        what the backend can do), or exactly ``tasks`` on every item they apply to (refused
        now if the backend can run one of them on no input). ``ordered``: None for the
        run's own setting."""
        from .engine import Engine, FixedPlan

        planner: Any = self.planner
        if tasks is not None:
            self.backend.check_plan(tasks, adapt=False)
            planner = FixedPlan(tasks, self.backend, input_policy=self.input_policy)
        opts = self.options
        return Engine(
            self.backend, planner, cache=self.cache, reader_options=opts.reader_options,
            window=opts.window, max_pending=opts.max_pending, ordered=opts.ordered if ordered is None else ordered,
            absolute=absolute, progress=progress,
        )

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close what this run made (the backend: a model's memory, HTTP clients; the cache)."""
        owned, self._owned = self._owned, []
        for thing in reversed(owned):
            thing.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run(backend={self.backend.name!r}, model={self.model!r}, cache={getattr(self.cache, 'directory', None)!s})"

