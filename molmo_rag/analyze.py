"""Run tasks over sources without indexing: what ``caption``, ``ask``, ``count`` and
``video`` do. A thin front over :mod:`molmo_rag.engine`: results stream out while the rest
is still being read, memory stays bounded, and a bad source or a failed request becomes a
:class:`Failure` in its place while everything else goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import aclosing
from typing import Any

from .backends.base import Backend
from .cache import ResultCache
from .engine import Engine, FixedPlan, Progress
from .enrich import check_runnable
from .results import Failure, Result
from .syncio import iterate_sync
from .tasks import Task

__all__ = ["Failure", "Result", "analyze", "aanalyze"]


async def aanalyze(
    sources: Iterable[Any],
    tasks: Sequence[Task],
    backend: Backend,
    *,
    reader_options: Any = None,
    ordered: bool = True,
    window: int | None = None,
    max_pending: int | None = None,
    progress: Progress | None = None,
    cache: ResultCache | None = None,
) -> AsyncIterator[Result | Failure]:
    """One Result or Failure per (item, task): in source order with ``ordered`` (the
    default), else as each item finishes. Tasks a backend can run on no input at all fail
    before anything is read. ``cache``: answer from it first and store fresh results (and
    permanent failures) in it; the backend is asked only on a miss (a local model loads on
    the first one). None: no cache."""
    from .documents import input_policy

    check_runnable(backend, tasks, adapt=False)
    plan = FixedPlan(tasks, backend, input_policy=input_policy(reader_options))
    engine = Engine(
        backend, plan, cache=cache, reader_options=reader_options, ordered=ordered, window=window,
        max_pending=max_pending, progress=progress,
    )
    async with aclosing(engine.run(sources)) as outcomes:  # an early exit cancels what is in flight
        async for outcome in outcomes:
            if isinstance(outcome, Failure):
                yield outcome
                continue
            by_task = {id(x.task): x for x in (*outcome.results, *outcome.failures)}
            for task in plan.plan(outcome.item):
                yield by_task[id(task)]


def analyze(
    sources: Iterable[Any],
    tasks: Sequence[Task],
    backend: Backend,
    *,
    reader_options: Any = None,
    ordered: bool = True,
    window: int | None = None,
    max_pending: int | None = None,
    progress: Progress | None = None,
    cache: ResultCache | None = None,
) -> Iterator[Result | Failure]:
    """:func:`aanalyze` for sync code (also inside a running event loop)."""
    return iterate_sync(
        aanalyze(
            sources, tasks, backend, reader_options=reader_options, ordered=ordered, window=window,
            max_pending=max_pending, progress=progress, cache=cache,
        )
    )
