"""The Enricher: media items x tasks -> results, cache first, through one backend.

The plan for each item is the default plan of its kind (a medium caption and a scene
description) plus what the user asked for (``Count(target)`` per target, ``Ask(question)``
per question), adapted to what the backend can do:

* a task the backend cannot run on this input is replaced by an equivalent it can
  (on video: a scene description, a count or a question through ``VideoTask``);
* a *default* task with no runnable equivalent is skipped with one warning per
  (task, model input: images and slides, or video) for the whole run;
* an *explicit* task the backend can run on no input at all fails up front
  (:class:`~molmo_rag.errors.UnsupportedTaskError`, naming the backends that can); one it
  can run on some inputs only (e.g. counting on photos but not on video) is skipped on
  the others with one warning.

The Enricher is the *planner* of the streaming engine (:mod:`molmo_rag.engine`), which runs
the plan: results come from the cache when present, fresh ones are stored the moment they
arrive. Failures are collected per item and task, never raised; only permanent ones (a
content policy refusal) are remembered in the cache, so a re-run does not pay for them again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from .backends.base import Backend, capable_backends, equivalents, model_of
from .cache import ResultCache, cache_key, run_policy
from .engine import Engine, EnrichedItem
from .errors import UsageError
from .media.items import MediaItem, MediaKind
from .options_base import Options
from .syncio import run_sync
from .tasks import Ask, Caption, Count, Detail, ModelInput, Scene, Task

__all__ = ["EnrichOptions", "Enricher", "EnrichedItem", "check_explicit", "check_runnable", "default_plan", "equivalents"]

log = logging.getLogger("molmo_rag")


class EnrichOptions(Options):
    """What to ask of every item."""

    what: ClassVar[str] = "enrich options"

    detail: Detail = Field(Caption.model_fields["detail"].default, description="Caption detail of the default plan.")
    default_tasks: bool | None = Field(
        None,
        description="Run the default plan (caption + scene) on every item; None: unless `tasks` are given "
        "(counts and questions are always on top of it).",
    )
    count: list[str] = Field(default_factory=list, description="Things to count on every item, e.g. ['person', 'car']: each a word or a few, in letters or digits of any script ('人' too).")
    ask: list[str] = Field(default_factory=list, description="Questions to answer about every item.")
    tasks: list[Task] = Field(
        default_factory=list,
        description="Tasks of your own (e.g. Caption(detail='high'), VideoTask(task='summary')): instead of the "
        "default plan, or on top of it with default_tasks=True.",
    )

    @field_validator("count")
    @classmethod
    def _labels(cls, count: list[str]) -> list[str]:
        # refused before anything is read or paid for: the label becomes the payload key of its counts
        from .index.filters import label_key

        for label in count:
            try:
                label_key(label)
            except UsageError as exc:
                raise UsageError(str(exc), option="count") from None
        return count

    @property
    def runs_default_plan(self) -> bool:
        """Whether every item gets the default plan: ``default_tasks``, else unless tasks are given."""
        return (not self.tasks) if self.default_tasks is None else self.default_tasks

    def explicit_tasks(self) -> list[Task]:
        return [Count(target=t) for t in self.count] + [Ask(question=q) for q in self.ask] + list(self.tasks)


def default_plan(kind: MediaKind, detail: Detail) -> list[Task]:
    """Caption + scene for images, slides and video segments alike."""
    return [Caption(detail=detail), Scene()]


def check_runnable(backend: Backend | type[Backend], tasks: Sequence[Task], *, adapt: bool = True) -> None:
    """:meth:`Backend.check_plan <molmo_rag.backends.base.Backend.check_plan>` on every input."""
    backend.check_plan(tasks, adapt=adapt)


def check_explicit(backend: Backend | type[Backend], options: EnrichOptions) -> None:
    """:func:`check_runnable` for the tasks the user asked for."""
    check_runnable(backend, options.explicit_tasks())


class Enricher:
    """Runs the plan of each item through a backend, re-using cached results."""

    def __init__(
        self,
        backend: Backend,
        *,
        options: EnrichOptions | None = None,
        cache: ResultCache | None = None,
        input_policy: dict | None = None,
        on_warning: Callable[[str], None] | None = None,
    ):
        self.backend = backend
        self.options = options or EnrichOptions()
        self.cache = cache
        self.model = model_of(backend)
        self.policy = run_policy(backend, input_policy)
        self.on_warning = on_warning or log.warning
        self.skipped: list[str] = []
        self._warned: set[tuple[str, str]] = set()
        self._resolved: dict[tuple[str, ModelInput], Task | None] = {}
        self.check()

    # -- planning --------------------------------------------------------------------------
    def check(self) -> None:
        """Fail now if an explicit task can run on no input at all."""
        check_explicit(self.backend, self.options)

    def _resolve(self, task: Task, item: MediaItem, explicit: bool) -> Task | None:
        media = item.model_input
        memo = (task.key(), media)
        if memo not in self._resolved:
            runnable = [t for t in equivalents(task, media) if self.backend.supports(t, media)]
            self._resolved[memo] = runnable[0] if runnable else None
        chosen = self._resolved[memo]
        if chosen is None:
            warn_key = (task.name, media)  # photos and slides are both images to the model: one warning
            if warn_key not in self._warned:
                self._warned.add(warn_key)
                capable = capable_backends(task, media)
                hint = f" (backends that can: {', '.join(capable)})" if capable else ""
                what = "requested task" if explicit else "default task"
                items = "images or slides" if media == "image" else "video segments"
                message = f"backend {self.backend.name!r} cannot run {task.name} on {items}: {what} skipped{hint}"
                self.skipped.append(message)
                self.on_warning(message)
        return chosen

    def plan(self, item: MediaItem) -> list[Task]:
        """The runnable tasks for one item (warning once about each skipped one)."""
        wanted: list[tuple[Task, bool]] = []
        if self.options.runs_default_plan:
            wanted += [(t, False) for t in default_plan(item.kind, self.options.detail)]
        wanted += [(t, True) for t in self.options.explicit_tasks()]
        tasks: list[Task] = []
        for task, explicit in wanted:
            chosen = self._resolve(task, item, explicit)
            if chosen is not None and chosen not in tasks:
                tasks.append(chosen)
        return tasks

    def key(self, item: MediaItem, task: Task) -> str:
        return cache_key(item.media_id, self.backend.name, self.model, task.key(), self.policy)

    def plan_key(self, item: MediaItem) -> str:
        """One digest of every request this plan makes for ``item`` (the cache keys of its
        tasks): a point written with it holds the answers of exactly this plan, so a run
        that finds it in the collection has nothing left to ask for that item."""
        keys = sorted(self.key(item, task) for task in self.plan(item))
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()

    # -- running ---------------------------------------------------------------------------
    def engine(self, **options: Any) -> Engine:
        """A streaming :class:`~molmo_rag.engine.Engine` running this plan with this cache."""
        return Engine(self.backend, self, cache=self.cache, **options)

    async def aenrich(self, items: Sequence[MediaItem]) -> list[EnrichedItem]:
        """Enrich ready items (cache first, a sliding window for the rest), in order."""
        return await self.engine().run_items(items)

    def enrich(self, items: Sequence[MediaItem]) -> list[EnrichedItem]:
        return run_sync(self.aenrich(items))
