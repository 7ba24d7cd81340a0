"""``caption``, ``ask``, ``count``, ``video`` and ``estimate``: run one task over sources."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UnsupportedMediaError
from ..vocabulary import VideoTaskName

if TYPE_CHECKING:  # pragma: no cover
    from ..cache import ResultCache
    from ..run import Run, RunOptions
    from ..tasks import Task
from .app import app
from .common import (
    TASK_FLAGS, VIDEO_FLAGS, JsonOpt, calls_line, emit_json, exit_interrupted, for_terminal, kept_in_cache, run_flags, where_label,
)

Sources = Annotated[list[str], typer.Argument(help="Files, folders, globs or http(s) URLs.", show_default=False)]
Source = Annotated[str, typer.Argument(help="A file, folder, glob or URL.")]
Question = Annotated[str, typer.Argument(help="The question to answer.")]
What = Annotated[str, typer.Argument(help="What to count, e.g. 'people'.")]


def _one_line(text: object) -> str:
    """Long captions come in paragraphs; a human line stays one line per item."""
    return " ".join(str(text or "").split())


def _human_line(obj: dict) -> str:
    where = where_label(obj)
    if "error" in obj:
        earlier = " (remembered from an earlier run, not sent again)" if obj.get("cached") else ""
        return f"{where}: ERROR {obj['error_type']}: {_one_line(obj['error'])}{earlier}"
    if "caption" in obj:
        return f"{where}: {_one_line(obj['caption'])}"
    if "count" in obj and obj.get("target") is not None:
        n = "?" if obj["count"] is None else obj["count"]
        return f"{where}: {n} {obj['target']} ({len(obj.get('points') or [])} points)"
    return f"{where}: {_one_line(obj.get('answer'))}"


@contextlib.contextmanager
def _open_cache(options: RunOptions) -> Iterator[ResultCache | bool]:
    """The result cache the options name, or False (none) with one warning when it cannot
    be opened: a cache costs the re-use, never the answers."""
    from ..cache import ResultCache
    from ..errors import ConfigurationError

    folder = options.cache
    if folder is False or isinstance(folder, ResultCache):
        yield folder
        return
    try:
        cache = ResultCache(None if folder in (None, True) else folder, read=not options.no_cache, retry_failed=options.retry_failed)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        print(f"molmo-rag: warning: {for_terminal(exc)}; answering without it", file=sys.stderr)
        yield False
        return
    with cache:
        yield cache


def run_task(sources: list[str], task: Task, options: RunOptions, as_json: bool) -> None:
    """Print one line per item (slide, segment), in source order, and exit 1 if any source
    failed. Answers come from the result cache first; a local model loads on the first miss
    only."""
    from ..analyze import Failure, analyze  # here, not at import: `molmo-rag search` starts faster
    from ..engine import was_sent
    from ..run import Run

    failed = lines = fresh = cached = failed_sent = failed_cached = 0
    total_cost = 0.0
    started = time.time()
    run: Run | None = None
    try:
        with _open_cache(options) as cache:
            # the task in the run's plan too: one the backend can run on no input is refused before it is made
            run = Run(options, cache=cache, ordered=True, tasks=[task])
            backend = run.backend.name
            try:
                for outcome in analyze(sources, [task], run):
                    lines += 1
                    obj = outcome.to_json()
                    if isinstance(outcome, Failure):
                        failed += 1
                        failed_cached += outcome.cached
                        failed_sent += was_sent(outcome)
                        if not outcome.cached:  # an answer that did not validate was still paid for
                            total_cost += float(getattr(outcome.error, "cost_usd", 0.0) or 0.0)
                    elif outcome.cached:
                        cached += 1
                    else:
                        fresh += 1
                        total_cost += outcome.cost_usd
                    if as_json:
                        emit_json(obj)
                    else:
                        print(for_terminal(_human_line(obj)), flush=True)
            finally:
                run.close()
    except KeyboardInterrupt:
        kept = kept_in_cache(run, started) if run is not None else ""
        exit_interrupted(f"printed {lines} line(s)" + kept, options)
    if not lines:  # every item was of a kind the task does not take (a photo for `video`)
        needs = " or ".join(sorted(task.inputs))
        raise UnsupportedMediaError(
            f"nothing to do: the {task.name} task needs a {needs}, and {', '.join(sources)} holds none",
            source=", ".join(sources),
        )
    cost = f"; total cost ${total_cost:.4f}" if total_cost else ""
    print(f"molmo-rag: {calls_line(backend, fresh, cached, failed_sent, failed_cached)}{cost}", file=sys.stderr)
    if failed:
        print(f"molmo-rag: {failed} item(s) failed", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
@run_flags("detail", *TASK_FLAGS)
def caption(sources: Sources, options: RunOptions, as_json: JsonOpt = False) -> None:
    """Caption images, slides and video segments."""
    from ..tasks import Caption

    run_task(sources, Caption(detail=options.detail), options, as_json)


@app.command()
@run_flags(*TASK_FLAGS)
def ask(source: Source, question: Question, options: RunOptions, as_json: JsonOpt = False) -> None:
    """Answer a question about each item of SOURCE."""
    from ..tasks import Ask

    run_task([source], Ask(question=question), options, as_json)


@app.command()
@run_flags(*TASK_FLAGS)
def count(source: Source, what: What, options: RunOptions, as_json: JsonOpt = False) -> None:
    """Count objects with Molmo2 pointing; prints the count and the points."""
    from ..tasks import Count

    run_task([source], Count(target=what), options, as_json)


@app.command()
@run_flags(*TASK_FLAGS)
def video(
    source: Annotated[str, typer.Argument(help="A video file, folder or URL.")],
    task: Annotated[
        VideoTaskName | None,
        typer.Option("--task", "-t", help="general | summary | analysis | counting | scene_description (unset: the library's default).", show_default=False),
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="A question, a target to count, or extra instructions.")] = None,
    *,
    options: RunOptions,
    as_json: JsonOpt = False,
) -> None:
    """Run a video-understanding task on each segment of a video."""
    from ..tasks import VideoTask

    run_task([source], VideoTask(**({"task": task} if task else {}), text=text), options, as_json)


@app.command()
@run_flags("backend", "detail", "count", "ask", *VIDEO_FLAGS)
def estimate(
    sources: Sources,
    only: Annotated[str | None, typer.Option("--task", help="Estimate one task instead of the index plan: caption|scene|video.")] = None,
    *,
    options: RunOptions,
    as_json: JsonOpt = False,
) -> None:
    """Calls and cost of running SOURCES through a backend, without calling anything."""
    from ..engine import read_entries
    from ..cost import estimate as estimate_cost
    from ..enrich import default_plan
    from ..errors import MolmoRagError
    from ..tasks import Caption, Scene, VideoTask

    if only not in (None, "caption", "scene", "video"):
        raise typer.BadParameter("choose caption, scene or video", param_hint="--task")
    backend_cls = options.backend_class()  # its declared capabilities and price: nothing is made, no key read
    name = backend_cls.name
    one = {"caption": Caption(detail=options.detail), "scene": Scene(), "video": VideoTask()}
    tasks = ([one[only]] if only else default_plan("image", options.detail)) + options.explicit_tasks()

    items, failures = [], []
    for entry in read_entries(sources, options.reader_options):
        (failures if isinstance(entry, MolmoRagError) else items).append(entry)
    result = estimate_cost(backend_cls, items, tasks)
    estimated = sum(item.refusal is None for item in result.items)
    refusals_shown: set[int] = set()  # a refused video file is one line, where its first segment was

    def first_of_refused(item) -> MolmoRagError | None:
        if item.refusal is None or item.refusal in refusals_shown:
            return None
        refusals_shown.add(item.refusal)
        return result.refused[item.refusal]

    if as_json:
        for item in result.items:
            if item.refusal is None:
                emit_json({"backend": name, **{k: v for k, v in item.__dict__.items() if k != "refusal"}})
            elif (exc := first_of_refused(item)) is not None:
                emit_json({"backend": name, "source": exc.source, "error": str(exc), "error_type": type(exc).__name__})
        for exc in failures:
            emit_json({"source": getattr(exc, "source", None), "error": str(exc), "error_type": type(exc).__name__})
        emit_json({"backend": name, "total_calls": result.calls, "total_cost_usd": result.cost_usd, "items": estimated})
    else:
        for media, item in zip(items, result.items):
            if item.refusal is not None:
                if (exc := first_of_refused(item)) is not None:
                    print(for_terminal(f"{exc.source}: ERROR {type(exc).__name__}: {exc}"))
                continue
            where = where_label(media.describe())
            note = f"  ERROR {item.error}" if item.error else ""
            skipped = f"  (skipped: {', '.join(item.skipped_tasks)})" if item.skipped_tasks else ""
            print(for_terminal(f"{where} [{item.kind}]: {item.calls} call(s), ${item.cost_usd:.4f}{skipped}{note}"))
        for exc in failures:
            print(for_terminal(f"{getattr(exc, 'source', '?')}: ERROR {type(exc).__name__}: {exc}"))
        print(f"total: {estimated} item(s), {result.calls} call(s), ${result.cost_usd:.4f} on {name}")
    if failures or result.refused:
        raise typer.Exit(1)
