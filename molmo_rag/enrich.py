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

Results come from the cache when present; fresh ones are stored as soon as their chunk
returns. Failures are collected per item and task, never raised, and never cached.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar

from pydantic import Field

from .analyze import Failure
from .backends.base import Backend, Request, Result, capable_backends, run_sync
from .cache import ResultCache, backend_policy, cache_key
from .errors import MolmoRagError, UnsupportedTaskError
from .media.items import MediaItem, MediaKind
from .options_base import Options
from .tasks import Ask, Caption, Count, Detail, ModelInput, Scene, Task, VideoTask

__all__ = ["EnrichOptions", "Enricher", "EnrichedItem", "check_explicit", "default_plan", "equivalents"]

log = logging.getLogger("molmo_rag")


class EnrichOptions(Options):
    """What to ask of every item."""

    what: ClassVar[str] = "enrich options"

    detail: Detail = Field("medium", description="Caption detail of the default plan.")
    default_tasks: bool = Field(True, description="Run the default plan (caption + scene) on every item.")
    count: list[str] = Field(default_factory=list, description="Things to count on every item, e.g. ['person', 'car'].")
    ask: list[str] = Field(default_factory=list, description="Questions to answer about every item.")

    def explicit_tasks(self) -> list[Task]:
        return [Count(target=t) for t in self.count] + [Ask(question=q) for q in self.ask]


def default_plan(kind: MediaKind, detail: Detail = "medium") -> list[Task]:
    """Caption + scene for images, slides and video segments alike."""
    return [Caption(detail=detail), Scene()]


def equivalents(task: Task, media: ModelInput) -> list[Task]:
    """The task, then the tasks that give the same fields on this input, best first."""
    if media == "video":
        if isinstance(task, Scene):
            return [task, VideoTask(task="scene_description")]
        if isinstance(task, Count):
            return [task, VideoTask(task="counting", text=task.target)]
        if isinstance(task, Ask):
            return [task, VideoTask(task="general", text=task.question)]
    return [task]


def check_explicit(backend: Backend | type[Backend], options: EnrichOptions) -> None:
    """Raise UnsupportedTaskError (naming the capable backends) for a requested task the
    backend can run on no input at all; works on a backend class, before any key is read."""
    for task in options.explicit_tasks():
        if not any(backend.supports(alt, m) for m in task.inputs for alt in equivalents(task, m)):
            capable = sorted({b for m in task.inputs for b in capable_backends(task, m)})
            raise UnsupportedTaskError(task.name, backend.name, capable)


@dataclass
class EnrichedItem:
    """One item with the results of its plan and the tasks that failed."""

    item: MediaItem
    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def cached(self) -> int:
        return sum(1 for r in self.results if r.cached)

    @property
    def fresh(self) -> list[Result]:
        return [r for r in self.results if not r.cached]


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
        self.model = getattr(backend, "model", None) or backend.default_model
        self.policy = {**backend_policy(backend), **(input_policy or {})}
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
        if self.options.default_tasks:
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

    # -- running ---------------------------------------------------------------------------
    async def aenrich(self, items: Sequence[MediaItem]) -> list[EnrichedItem]:
        """Enrich a chunk of items: cached results first, one backend call for the rest."""
        out = [EnrichedItem(item) for item in items]
        wanted = [(i, task, self.key(item, task)) for i, item in enumerate(items) for task in self.plan(item)]
        hits = self.cache.get_many(k for _, _, k in wanted) if self.cache else {}
        misses: list[tuple[int, Task, str]] = []
        for i, task, key in wanted:
            hit = hits.get(key)
            if hit is None:
                misses.append((i, task, key))
                continue
            out[i].results.append(
                Result(
                    item=items[i], task=task, text=hit.text, fields=hit.fields, backend=self.backend.name,
                    model=hit.model, cost_usd=hit.cost_usd, cached=True,
                )
            )
        if misses:
            # Copies of one file in a chunk share a cache key: ask once, hand the answer to each.
            first: dict[str, int] = {}
            for n, (_, _, key) in enumerate(misses):
                first.setdefault(key, n)
            unique = sorted(first.values())
            requests = [Request(items[misses[n][0]], misses[n][1]) for n in unique]
            key_of = {id(request): misses[n][2] for n, request in zip(unique, requests)}

            def store(request: Request, outcome: Result | MolmoRagError) -> None:
                # Kept the moment it arrives: a run killed now loses none of it.
                if self.cache is not None and isinstance(outcome, Result):
                    self.cache.put(
                        key_of[id(request)], media_id=request.item.media_id, backend=outcome.backend,
                        model=outcome.model, task=request.task.key(), text=outcome.text,
                        fields=outcome.fields, cost_usd=outcome.cost_usd,
                    )

            answers = await self.backend.arun(requests, on_result=store)
            by_key = {misses[n][2]: outcome for n, outcome in zip(unique, answers)}
            for n, (i, task, key) in enumerate(misses):
                outcome = by_key[key]
                if isinstance(outcome, Result) and first[key] != n:
                    out[i].results.append(dataclasses.replace(outcome, item=items[i], cached=True))
                    continue
                if isinstance(outcome, Result):
                    out[i].results.append(outcome)
                else:
                    error = outcome if isinstance(outcome, MolmoRagError) else MolmoRagError(str(outcome))
                    out[i].failures.append(
                        Failure(source=items[i].source, error=error, media_id=items[i].media_id, task=task, item=items[i])
                    )
        return out

    def enrich(self, items: Sequence[MediaItem]) -> list[EnrichedItem]:
        return run_sync(self.aenrich(items))

    def stream(self, entries: Iterable[Any], chunk_size: int = 16) -> Iterator[EnrichedItem | Failure]:
        """Enrich a stream of items in chunks; reader errors pass through as Failures."""
        it = iter(entries)
        while chunk := list(islice(it, chunk_size)):
            items = [e for e in chunk if isinstance(e, MediaItem)]
            done = iter(self.enrich(items) if items else [])
            for entry in chunk:
                if isinstance(entry, MediaItem):
                    yield next(done)
                else:
                    yield Failure(source=getattr(entry, "source", None) or "?", error=entry)
