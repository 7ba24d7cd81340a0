"""``caption``, ``ask``, ``count``, ``video`` and ``estimate``: run one task over sources."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UnsupportedMediaError
from ..vocabulary import Detail, VideoTaskName

if TYPE_CHECKING:  # pragma: no cover
    from ..cache import ResultCache
    from ..tasks import Task
from .app import app
from .common import (
    BackendOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    JsonOpt,
    ModelOpt,
    NoCacheOpt,
    RetryFailedOpt,
    SegmentOpt,
    SegmentSecondsOpt,
    calls_line,
    emit_json,
    exit_interrupted,
    for_terminal,
    kept_in_cache,
    make_backend,
    reader_options,
    where_label,
)

Sources = Annotated[list[str], typer.Argument(help="Files, folders, globs or http(s) URLs.", show_default=False)]


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
def _open_cache(cache_dir: Path | None, no_cache: bool, retry_failed: bool) -> Iterator[ResultCache | None]:
    """The result cache, or None with one warning when it cannot be opened: a cache costs
    the re-use, never the answers."""
    from ..cache import ResultCache
    from ..errors import ConfigurationError

    try:
        cache = ResultCache(cache_dir, read=not no_cache, retry_failed=retry_failed)
    except ConfigurationError as exc:
        print(f"molmo-rag: warning: {for_terminal(exc)}; answering without it", file=sys.stderr)
        yield None
        return
    with cache:
        yield cache


def run_task(
    sources: list[str], task: Task, backend: str | None, model: str | None, concurrency: int | None, as_json: bool,
    segment: str | None = None, segment_seconds: float | None = None, *,
    no_cache: bool = False, cache_dir: Path | None = None, retry_failed: bool = False,
) -> None:
    """Print one line per item (slide, segment) and exit 1 if any source failed. Answers
    come from the result cache first; a local model loads on the first miss only."""
    from ..analyze import Failure, analyze  # here, not at import: `molmo-rag search` starts faster
    from ..engine import was_sent

    options = reader_options(segment, segment_seconds)  # a bad flag fails before a model loads
    engine = make_backend(backend, model, concurrency)
    failed = lines = fresh = cached = failed_sent = failed_cached = 0
    total_cost = 0.0
    started = time.time()
    try:
        with _open_cache(cache_dir, no_cache, retry_failed) as cache:
            for outcome in analyze(sources, [task], engine, reader_options=options, cache=cache):
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
    except KeyboardInterrupt:
        exit_interrupted(f"printed {lines} line(s)" + kept_in_cache(cache_dir, started, engine.name), no_cache=no_cache)
    finally:
        engine.close()
    if not lines:  # every item was of a kind the task does not take (a photo for `video`)
        needs = " or ".join(sorted(task.inputs))
        raise UnsupportedMediaError(
            f"nothing to do: the {task.name} task needs a {needs}, and {', '.join(sources)} holds none",
            source=", ".join(sources),
        )
    cost = f"; total cost ${total_cost:.4f}" if total_cost else ""
    print(f"molmo-rag: {calls_line(engine.name, fresh, cached, failed_sent, failed_cached)}{cost}", file=sys.stderr)
    if failed:
        print(f"molmo-rag: {failed} item(s) failed", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def caption(
    sources: Sources,
    detail: Annotated[Detail, typer.Option("--detail", "-d", help="low | medium | high")] = "medium",
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    segment: SegmentOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
    retry_failed: RetryFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Caption images, slides and video segments."""
    from ..tasks import Caption

    run_task(sources, Caption(detail=detail), backend, model, concurrency, as_json, segment, segment_seconds,
             no_cache=no_cache, cache_dir=cache_dir, retry_failed=retry_failed)


@app.command()
def ask(
    source: Annotated[str, typer.Argument(help="A file, folder, glob or URL.")],
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    segment: SegmentOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
    retry_failed: RetryFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question about each item of SOURCE."""
    from ..tasks import Ask

    run_task([source], Ask(question=question), backend, model, concurrency, as_json, segment, segment_seconds,
             no_cache=no_cache, cache_dir=cache_dir, retry_failed=retry_failed)


@app.command()
def count(
    source: Annotated[str, typer.Argument(help="A file, folder, glob or URL.")],
    what: Annotated[str, typer.Argument(help="What to count, e.g. 'people'.")],
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    segment: SegmentOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
    retry_failed: RetryFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Count objects with Molmo2 pointing; prints the count and the points."""
    from ..tasks import Count

    run_task([source], Count(target=what), backend, model, concurrency, as_json, segment, segment_seconds,
             no_cache=no_cache, cache_dir=cache_dir, retry_failed=retry_failed)


@app.command()
def video(
    source: Annotated[str, typer.Argument(help="A video file, folder or URL.")],
    task: Annotated[VideoTaskName, typer.Option("--task", "-t", help="general | summary | analysis | counting | scene_description")] = "general",
    text: Annotated[str | None, typer.Option("--text", help="A question, a target to count, or extra instructions.")] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    segment: SegmentOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
    retry_failed: RetryFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a video-understanding task on each segment of a video."""
    from ..tasks import VideoTask

    run_task([source], VideoTask(task=task, text=text), backend, model, concurrency, as_json, segment, segment_seconds,
             no_cache=no_cache, cache_dir=cache_dir, retry_failed=retry_failed)


@app.command()
def estimate(
    sources: Sources,
    backend: BackendOpt = None,
    detail: Annotated[Detail, typer.Option("--detail", "-d", help="Caption detail of the default plan.")] = "medium",
    count_targets: Annotated[list[str] | None, typer.Option("--count", help="Also count these (comma-separated or repeated).")] = None,
    questions: Annotated[list[str] | None, typer.Option("--ask", help="Also ask this question (repeatable).")] = None,
    only: Annotated[str | None, typer.Option("--task", help="Estimate one task instead of the index plan: caption|scene|video.")] = None,
    segment: SegmentOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Calls and cost of running SOURCES through a backend, without calling anything."""
    from ..engine import read_entries
    from ..cost import estimate as estimate_cost
    from ..enrich import default_plan
    from ..errors import MolmoRagError
    from ..tasks import Ask, Caption, Count, Scene, VideoTask
    from .common import resolve_backend_class

    backend_cls = resolve_backend_class(backend)
    name = backend_cls.name
    targets = [t.strip() for value in count_targets or [] for t in value.split(",") if t.strip()]
    if only == "caption":
        tasks: list[Task] = [Caption(detail=detail)]
    elif only == "scene":
        tasks = [Scene()]
    elif only == "video":
        tasks = [VideoTask()]
    elif only is None:
        tasks = default_plan("image", detail)
    else:
        raise typer.BadParameter("choose caption, scene or video", param_hint="--task")
    tasks += [Count(target=t) for t in targets] + [Ask(question=q) for q in questions or []]

    items, failures = [], []
    for entry in read_entries(sources, reader_options(segment, segment_seconds)):
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
