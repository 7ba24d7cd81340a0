"""Run tasks over sources without indexing: the engine behind ``caption``, ``ask``,
``count`` and ``video``.

Sources are read lazily and sent to the backend in chunks, so results stream out while
the rest is still being read, memory stays bounded, and a bad source or a failed request
becomes a :class:`Failure` in its place while everything else goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from .backends.base import Backend, Request, Result, run_sync
from .errors import MolmoRagError, UnsupportedTaskError
from .media.items import MediaItem
from .tasks import Task

__all__ = ["Failure", "analyze", "check_runnable"]


@dataclass
class Failure:
    """A source, or one task on one item, that could not be done, and why."""

    source: str
    error: MolmoRagError
    media_id: str | None = None
    task: Task | None = None
    item: MediaItem | None = None
    backend: str | None = None
    model: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"source": self.source}
        if self.item is not None:
            out["kind"] = self.item.kind
        for key in ("backend", "model"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.item is not None:
            for key in ("slide", "start", "end"):
                if getattr(self.item, key) is not None:
                    out[key] = getattr(self.item, key)
        if self.media_id:
            out["media_id"] = self.media_id
        if self.task is not None:
            out["task"] = self.task.name
        out["error"] = str(self.error)
        out["error_type"] = type(self.error).__name__
        for key in ("code", "status"):  # the vendor's error code and HTTP status, when known
            value = getattr(self.error, key, None)
            if value is not None:
                out[f"error_{key}"] = value
        return out


def check_runnable(backend: Backend, tasks: Sequence[Task]) -> None:
    """Fail before reading anything when the backend can run a task on no input at all."""
    from .backends.base import capable_backends

    for task in tasks:
        if not any(backend.supports(task, media) for media in task.inputs):
            capable = sorted({b for media in task.inputs for b in capable_backends(task, media)})
            raise UnsupportedTaskError(task.name, backend.name, capable)


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    it = iter(iterable)
    while chunk := list(islice(it, size)):
        yield chunk


def _read(sources: Iterable[Any], reader_options: Any) -> Iterator[MediaItem | MolmoRagError]:
    from .media import read

    for source in sources:
        if isinstance(source, MediaItem):
            yield source
        else:
            yield from read([source], reader_options)


def analyze(
    sources: Iterable[Any],
    tasks: Sequence[Task],
    backend: Backend,
    *,
    reader_options: Any = None,
    chunk_size: int = 32,
) -> Iterator[Result | Failure]:
    """Yield, in source order, one Result or Failure per (item, task).

    ``sources`` are anything :func:`molmo_rag.media.read` accepts (paths, folders, globs,
    URLs, bytes, PIL images) or ready :class:`MediaItem` objects.
    """
    check_runnable(backend, tasks)
    who = {"backend": backend.name, "model": backend.model}
    stream = _read(sources, reader_options)
    for chunk in _chunks(stream, chunk_size):
        requests: list[Request] = []
        slots: list[Request | Failure] = []
        for entry in chunk:
            if isinstance(entry, MolmoRagError):
                slots.append(Failure(source=getattr(entry, "source", None) or "?", error=entry, **who))
                continue
            for task in tasks:
                if entry.model_input not in task.inputs:
                    continue  # e.g. a video-only task on a photo in a mixed folder
                request = Request(entry, task)
                requests.append(request)
                slots.append(request)
        outcomes = iter(run_sync(backend.arun(requests)) if requests else [])
        for slot in slots:
            if isinstance(slot, Failure):
                yield slot
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Result):
                yield outcome
            else:
                yield Failure(
                    source=slot.item.source,
                    error=outcome,
                    media_id=slot.item.media_id,
                    task=slot.task,
                    item=slot.item,
                    **who,
                )
