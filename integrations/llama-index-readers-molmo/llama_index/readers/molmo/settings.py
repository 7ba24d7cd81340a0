"""What the reader and the extractor share: the core's run options (they *are*
:class:`molmo_rag.RunOptions`, with a few LlamaIndex shorthands on top), the one
:class:`molmo_rag.Run` made from them, and how a failure is reported. Everything is handed
to the core (``molmo_rag``): this package reads, caches and calls no model itself."""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator

from molmo_rag import Backend, Caption, Failure, MolmoRagError, Run, RunOptions, Scene, UsageError

__all__ = ["MolmoLoadError", "MolmoSettings", "RunFields", "describe_failure", "logger", "options_fields"]

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


def options_fields(options: RunOptions) -> dict[str, Any]:
    """The core run options set on ``options``, as given (instances kept, nothing dumped;
    fields of a framework class on top of ``RunOptions`` left out). A component of this
    package always says ``share_backend`` (on unless turned off)."""
    fields = {name: getattr(options, name) for name in options.model_fields_set if name in RunOptions.model_fields}
    if isinstance(options, RunFields):
        fields.setdefault("share_backend", options.share_backend)
    return fields


class RunFields(RunOptions):
    """:class:`molmo_rag.RunOptions` as the fields of a LlamaIndex component. The first
    argument may be a ``RunOptions`` (its fields are taken, keywords on top) or a ready
    :class:`molmo_rag.Run` (its options are taken and the run is used, never closed here:
    whoever made it closes it); errors name the component."""

    fixed_by_run: ClassVar[frozenset[str]] = frozenset(RunOptions.model_fields)
    """Fields a ready Run decides: refused as keywords next to one."""

    share_backend: bool = Field(
        default=True,
        description="Use the process's one backend of this configuration, shared by every reader, extractor and "
        "reranker that asks for the same one (a local model loads once per process).",
    )

    _run: Run | None = PrivateAttr(default=None)

    def __init__(self, run: Run | RunOptions | None = None, /, **data: Any) -> None:
        given = run if isinstance(run, Run) else None
        if given is not None:
            fixed = sorted(set(data) & self.fixed_by_run)
            if fixed:
                raise UsageError(
                    f"a ready Run was given: {', '.join(fixed)} cannot change it (set them in the RunOptions "
                    "the Run is made from)",
                    option=fixed[0],
                )
            run = given.options
        if run is not None:
            data = {**options_fields(run), **data}
        super().__init__(**data)
        self._run = given

    @classmethod
    def _what(cls) -> str:
        return f"{cls.__name__} options"

    def __getstate__(self) -> dict[str, Any]:
        """The fields, whole (the backend as its name and options: see
        ``molmo_rag.backends.shared``); private state (the run, locks) is made again where
        the copy lands. Unlike LlamaIndex's default, nothing is dropped silently: a field
        that cannot travel fails the pickling."""
        from pydantic import BaseModel

        state = BaseModel.__getstate__(self)
        return {**state, "__pydantic_private__": None}


class MolmoSettings(RunFields):
    """The core's :class:`molmo_rag.RunOptions` (backend, model, backend_options,
    concurrency, detail, count, ask, tasks, reader_options, cache, no_cache, window, ...:
    their defaults and checks are the core's), plus ``caption`` / ``scene`` (shape the
    default plan), ``questions`` (another name for ``ask``) and ``raise_on_error``.

    Given a ready :class:`molmo_rag.Run` (first argument), every call uses it: share one
    between a reader, an extractor, a reranker and the core's doors. Otherwise a ``Run`` is
    made from these options on first use, reused by every call (one backend: a local model
    loads once) and released by :meth:`close`."""

    fixed_by_run: ClassVar[frozenset[str]] = RunFields.fixed_by_run | {"caption", "scene", "questions"}

    caption: bool = Field(default=True, description="Caption every photo, slide and video segment (default plan).")
    scene: bool = Field(default=True, description="Describe the scene of every item (default plan).")
    raise_on_error: bool = Field(
        default=False,
        description="Raise MolmoLoadError on the first failure (an unreadable source, a failed task). By default "
        "each failure is logged as a warning with its cause, kept in `failures`, and the others go on.",
    )

    _owns_run: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _failures: list[Failure] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _questions_are_ask(cls, data: Any) -> Any:
        if isinstance(data, dict) and "questions" in data:
            if "ask" in data:
                raise UsageError("give questions or ask (the same option), not both", option="questions")
            data = {**data, "ask": data["questions"]}
            del data["questions"]
        return data

    @property
    def questions(self) -> list[str]:
        """The questions asked about every item (``ask``)."""
        return self.ask

    @property
    def failures(self) -> list[Failure]:
        """Every failure reported since this object was made (``failures.clear()`` to reset)."""
        return self._failures

    # -- the run ------------------------------------------------------------------------------
    def run_options(self) -> RunOptions:
        """The core's options of this object's run: its fields, with ``caption`` / ``scene``
        turned into the plan (both on: the core's default plan, so results are shared with
        ``molmo-rag index`` through the cache; else the chosen ones instead of it). A Run
        given ready keeps its own options."""
        fields = {**options_fields(self), **self._run_overrides()}
        if self.runs_default_plan and not (self.caption and self.scene):
            fields["default_tasks"] = False
            fields["tasks"] = [Caption(detail=self.detail)] * self.caption + [Scene()] * self.scene + list(self.tasks)
        return RunOptions(**fields)

    def _run_overrides(self) -> dict[str, Any]:
        """Run options a subclass sets for its own use (e.g. no thumbnails it would drop)."""
        return {}

    def get_run(self) -> Run:
        """The run every call uses: the one given, or one made once from these options."""
        with self._lock:
            if self._run is None:
                self._run = Run(self.run_options(), on_warning=self._warn)
                self._owns_run = True
            return self._run

    def get_backend(self) -> Backend:
        """The backend of :meth:`get_run` (made once; a ready instance given is that one)."""
        return self.get_run().backend

    def enrich_options(self) -> RunOptions:
        """The plan handed to the core (:meth:`run_options`)."""
        return self.run_options()

    def close(self) -> None:
        """Release the run this object made (a model in memory, HTTP clients, the cache);
        a ``Run`` or ``Backend`` given ready is left open. A later call makes a new run."""
        with self._lock:
            run = self._run if self._owns_run else None
            if run is not None:
                self._run, self._owns_run = None, False
        if run is not None:
            run.close()

    # -- reporting -----------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        logger.warning("molmo: %s", message)

    def report(self, failure: Failure) -> None:
        """Log a failure with its cause and keep it; raise it when ``raise_on_error``."""
        self._failures.append(failure)
        logger.warning("molmo: failed: %s", describe_failure(failure))
        if self.raise_on_error:
            raise MolmoLoadError(failure) from failure.error
