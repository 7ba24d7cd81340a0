"""``caption``, ``ask``, ``count``, ``video`` and ``estimate``: run one task over sources."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..analyze import Failure, analyze
from ..tasks import Ask, Caption, Count, Detail, Task, VideoTask, VideoTaskName
from .app import app
from .common import BackendOpt, ConcurrencyOpt, JsonOpt, ModelOpt, emit_json, make_backend, where_label

Sources = Annotated[list[str], typer.Argument(help="Files, folders, globs or http(s) URLs.", show_default=False)]


def _human_line(obj: dict) -> str:
    where = where_label(obj)
    if "error" in obj:
        return f"{where}: ERROR {obj['error_type']}: {obj['error']}"
    if "caption" in obj:
        return f"{where}: {obj['caption']}"
    if "count" in obj and obj.get("target") is not None:
        n = "?" if obj["count"] is None else obj["count"]
        return f"{where}: {n} {obj['target']} ({len(obj.get('points') or [])} points)"
    return f"{where}: {obj.get('answer', '')}"


def run_task(sources: list[str], task: Task, backend: str | None, model: str | None, concurrency: int | None, as_json: bool) -> None:
    """Print one line per item (slide, segment) and exit 1 if any source failed."""
    engine = make_backend(backend, model, concurrency)
    failed = 0
    total_cost = 0.0
    try:
        for outcome in analyze(sources, [task], engine):
            obj = outcome.to_json()
            if isinstance(outcome, Failure):
                failed += 1
            else:
                total_cost += outcome.cost_usd
            if as_json:
                emit_json(obj)
            else:
                print(_human_line(obj), flush=True)
    finally:
        engine.close()
    if total_cost:
        print(f"molmo-rag: total cost ${total_cost:.4f}", file=sys.stderr)
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
    as_json: JsonOpt = False,
) -> None:
    """Caption images, slides and video segments."""
    run_task(sources, Caption(detail=detail), backend, model, concurrency, as_json)


@app.command()
def ask(
    source: Annotated[str, typer.Argument(help="A file, folder, glob or URL.")],
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question about each item of SOURCE."""
    run_task([source], Ask(question=question), backend, model, concurrency, as_json)


@app.command()
def count(
    source: Annotated[str, typer.Argument(help="A file, folder, glob or URL.")],
    what: Annotated[str, typer.Argument(help="What to count, e.g. 'people'.")],
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count objects with Molmo2 pointing; prints the count and the points."""
    run_task([source], Count(target=what), backend, model, concurrency, as_json)


@app.command()
def video(
    source: Annotated[str, typer.Argument(help="A video file, folder or URL.")],
    task: Annotated[VideoTaskName, typer.Option("--task", "-t", help="general | summary | analysis | counting | scene_description")] = "general",
    text: Annotated[str | None, typer.Option("--text", help="A question, a target to count, or extra instructions.")] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    concurrency: ConcurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a video-understanding task on each segment of a video."""
    run_task([source], VideoTask(task=task, text=text), backend, model, concurrency, as_json)
