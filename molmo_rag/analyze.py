"""Run tasks over sources without indexing: what ``caption``, ``ask``, ``count`` and
``video`` do. A thin front over :mod:`molmo_rag.engine`: results stream out while the rest
is still being read, memory stays bounded, and a bad source or a failed request becomes a
:class:`Failure` in its place while everything else goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Unpack

from .backends.base import Backend
from .engine import Progress
from .results import Failure, Result
from .syncio import iterate_twin
from .tasks import Task

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run, RunChoices, RunOptions

__all__ = ["Failure", "Result", "analyze", "aanalyze"]


async def aanalyze(
    sources: Iterable[Any],
    tasks: Sequence[Task],
    run: Run | RunOptions | Backend | None = None,
    /,
    *,
    progress: Progress | None = None,
    **choices: Unpack[RunChoices],
) -> AsyncIterator[Result | Failure]:
    """One Result or Failure per (item, task), exactly ``tasks`` on every item they apply to
    (a video task skips photos): as each item finishes, or in source order with
    ``ordered=True``. Tasks the backend can run on no input at all fail before anything is
    read. ``run``: a :class:`~molmo_rag.run.Run` (left open), :class:`~molmo_rag.run.RunOptions`,
    or a ready Backend (short for ``RunOptions(backend=it)``); or the options' fields as
    keywords (``backend="openai"``, ``cache=False``, ``reader_options=...``). Answers come
    from the result cache first; the backend is asked only on a miss (a local model loads on
    the first one)."""
    from .run import Run, RunOptions, run_options

    if isinstance(run, Backend):
        run = RunOptions(backend=run)
    if not isinstance(run, Run):  # these tasks are refused before the backend is made, as a plan's are
        run_options(run, choices).backend_class().check_plan(tasks, adapt=False)
    live, owned = Run.of(run, choices)
    try:
        engine = live.engine(tasks=tasks, progress=progress)
        async with aclosing(engine.run(sources)) as outcomes:  # an early exit cancels what is in flight
            async for outcome in outcomes:
                if isinstance(outcome, Failure):
                    yield outcome
                    continue
                by_task = {id(x.task): x for x in (*outcome.results, *outcome.failures)}
                for task in engine.planner.plan(outcome.item):
                    yield by_task[id(task)]
    finally:
        if owned:
            live.close()


analyze = iterate_twin(aanalyze)
