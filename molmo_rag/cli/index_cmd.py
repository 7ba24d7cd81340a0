"""``index`` and ``search``: the main job from the command line.

``index`` exits 0 when the run completed, even if some items failed (they are listed on
stderr and in the JSON summary); it exits 1 when items failed and nothing at all was
indexed (a wrong key, a dead server), or, with ``--strict``, when anything failed.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import app
from .common import (
    BACKEND_FLAGS, TASK_FLAGS, JsonOpt, calls_line, emit_json, exit_interrupted, for_terminal, kept_in_cache, run_flags, where_label,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..run import RunOptions

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="Embedded Qdrant folder (env MOLMO_RAG_DB; default ./.molmo-rag/qdrant).", show_default=False),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--qdrant-url", help="Qdrant server or cluster URL (env MOLMO_RAG_QDRANT_URL; key from QDRANT_API_KEY).", show_default=False),
]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", help="Collection name (unset: the library's default, which index and search share).", show_default=False)
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="How a new --db folder is stored: edge (Qdrant Edge, the default: payload indexes, fast at a million points) "
        "or local (qdrant-client's local mode, which the frameworks' stock QdrantVectorStore opens; small sets). "
        "An existing folder always opens as it was written (env MOLMO_RAG_STORAGE).",
        show_default=False,
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        help="wordllama (offline default) or fastembed[:MODEL]; search uses the collection's own by default.",
        show_default=False,
    ),
]


def _given(**values: Any) -> dict[str, Any]:
    """The values a flag was given for: the library's own defaults stand for the rest."""
    return {name: value for name, value in values.items() if value is not None}


def _failure_line(obj: dict) -> str:
    what = " ".join(str(obj[k]) for k in ("task", "target", "question", "text") if obj.get(k))
    task = f" [{what}]" if what else ""
    earlier = " (remembered from an earlier run, not sent again)" if obj.get("cached") else ""
    return for_terminal(f"  {where_label(obj)}{task}: {obj['error_type']}: {obj['error']}{earlier}")


@app.command("index")
@run_flags("count", "ask", "detail", *TASK_FLAGS)
def index_command(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, globs or http(s) URLs.", show_default=False)],
    db: DbOpt = None,
    qdrant_url: UrlOpt = None,
    collection: CollectionOpt = None,
    *,
    options: RunOptions,
    storage: StorageOpt = None,
    embedder: EmbedderOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any item or task failed.")] = False,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no warnings.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on Ray Data (extra: ray): local (a Ray instance on this machine for the run), auto (the cluster "
            "this machine belongs to, or RAY_ADDRESS), ray://HOST:PORT or HOST:PORT. Same options, same collection.",
            show_default=False,
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option("--ray-actors", min=1, help="Model actors (unset: one per GPU with --ray-gpus, else up to one per two CPUs, "
                     "never more than --concurrency for a hosted backend, which they share).", show_default=False),
    ] = None,
    ray_gpus: Annotated[
        float | None, typer.Option("--ray-gpus", min=0, help="GPUs per model actor (a local Molmo2 per GPU: 1).", show_default=False)
    ] = None,
    ray_actor_cpus: Annotated[
        float | None, typer.Option("--ray-actor-cpus", min=0, help="CPUs each model actor reserves (unset: 1).", show_default=False)
    ] = None,
) -> None:
    """Caption, describe and count every image, slide and video segment, and index it in Qdrant."""
    from tqdm import tqdm

    from ..pipeline import index
    from ..run import Run

    if ray is None and any(v is not None for v in (ray_actors, ray_gpus, ray_actor_cpus)):
        from ..errors import UsageError

        raise UsageError("--ray-actors, --ray-gpus and --ray-actor-cpus shape a Ray run: give --ray ADDRESS too", option="ray")
    if ray is not None:
        from functools import partial

        from ..ray import PoolOptions
        from ..ray import index as ray_index

        pool = PoolOptions(**_given(actors=ray_actors, num_gpus=ray_gpus, actor_cpus=ray_actor_cpus))
        index = partial(ray_index, ray=ray, pool=pool)  # type: ignore[assignment]

    def warn(message: str) -> None:
        if not quiet:
            tqdm.write(f"molmo-rag: warning: {for_terminal(message)}", file=sys.stderr)

    points: set[str] = set()  # in the index now: what an interrupted run reports as kept

    def on_record(record, status: str) -> None:
        points.add(record.id)
        if as_json:
            emit_json({"status": status, "id": record.id, **record.payload, "text": record.text})

    def on_failure(failure) -> None:
        if as_json:
            emit_json(failure.to_json())

    run = Run(options, on_warning=warn)  # a task the backend cannot do is refused here, before it is made
    started = time.time()
    try:
        summary = index(
            sources,
            run,
            db=db,
            qdrant_url=qdrant_url,
            storage=storage,
            embedder=embedder,
            progress=False if quiet or as_json else None,
            on_record=on_record,
            on_failure=on_failure,
            **_given(collection=collection),
        )
    except KeyboardInterrupt:
        exit_interrupted(f"kept {len(points)} item(s) in the index" + kept_in_cache(run, started), options)
    finally:
        run.close()
    if as_json:
        emit_json({"summary": summary.to_json()})
    else:
        print(for_terminal(
            f"indexed {summary.items} item(s) into {summary.collection!r} at {summary.location}: "
            f"{summary.indexed} written, {summary.unchanged} unchanged, {summary.pruned} stale removed; "
            f"{calls_line(run.backend.name, summary.done, summary.cached, summary.failed_sent, summary.failed_cached)}; "
            f"cost ${summary.cost_usd:.4f}; {summary.elapsed_s:.1f} s"
        ))
    if summary.failed:
        print(f"molmo-rag: {len(summary.failed)} failure(s):", file=sys.stderr)
        for failure in summary.failed:
            print(_failure_line(failure.to_json()), file=sys.stderr)
    if (strict and summary.failed) or not summary.ok:
        raise typer.Exit(1)


def _evidence_cell(hit) -> str:
    """yes / no (with the count), ``error: <cause>`` for a check that failed, ``-`` for a
    hit not checked (past --ground-top, or the backend cannot check it)."""
    evidence = hit.evidence or {}
    if evidence.get("error"):
        cause = for_terminal(evidence["error"])
        return "error: " + (cause if len(cause) <= 60 else cause[:59] + "…")
    if hit.grounded is None:
        return "-"
    count = evidence.get("count")
    return f"yes ({count})" if hit.grounded else ("no" if count is None else f"no ({count})")


def _kept_line(read) -> str | None:
    """One line for the count phrases kept as text: which, and why (item by label)."""
    if read is None or not read.kept:
        return None
    why = []
    for kept in read.kept:
        if kept.reason == "never_counted":
            why.append(f"{kept.label!r} was never counted in this collection (index with --count {kept.label} to filter on it)")
        else:
            why.append(
                f"{kept.label!r} was counted at index time but no item has a count for it (its counts failed, "
                "or the backend could not count those items: see that run's warnings and failures)"
            )
    phrases = " and ".join(repr(k.phrase) for k in read.kept)
    return for_terminal(f"molmo-rag: kept {phrases} as text, not as count filters: {'; '.join(why)}")


def _ground_lines(hits, as_json: bool) -> list[str]:
    """What grounding did, for stderr: what it looked for, failures, hits it could not check."""
    lines = []
    if not as_json and hits.checked:
        lines.append(
            f"molmo-rag: looked for {for_terminal(repr(hits.target))} in {hits.checked} hit(s) ({hits.cached} from cache) "
            f"with {hits.backend}; cost ${hits.cost_usd:.4f}"
        )
    lines += [_failure_line(failure.to_json()) for failure in hits.failures]
    for reason in dict.fromkeys(hits.skipped):
        lines.append(f"molmo-rag: {hits.skipped.count(reason)} hit(s) not checked: {reason}")
    return lines


def _no_check_line(hits) -> str:
    cause = hits.skipped[0] if hits.skipped else (
        f"{hits.failures[0].to_json()['error_type']}: {hits.failures[0].to_json()['error']}" if hits.failures else "no answer"
    )
    return for_terminal(f"molmo-rag: error: --ground: no hit could be checked: {cause}")


def _table(hits: list) -> str:
    width = shutil.get_terminal_size((120, 24)).columns
    grounded = any(h.grounded is not None or h.evidence is not None for h in hits)
    rows = [
        (f"{h.score:.3f}", h.kind, where_label(h.to_json()), *((_evidence_cell(h),) if grounded else ()),
         for_terminal((h.caption or h.scene or "").replace("\n", " ")))
        for h in hits
    ]
    head = ("score", "kind", "where", *(("found",) if grounded else ()), "caption")
    fixed = len(head) - 1
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(fixed)]
    lines = []
    for row in [head, *rows]:
        left = "  ".join(cell.ljust(w) for cell, w in zip(row[:fixed], widths))
        room = max(20, width - len(left) - 2)
        caption = row[fixed] if len(row[fixed]) <= room else row[fixed][: room - 1] + "…"
        lines.append(f"{left}  {caption}".rstrip())
    return "\n".join(lines)


@app.command("search")
@run_flags(*BACKEND_FLAGS, "cache")
def search_command(
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    db: DbOpt = None,
    qdrant_url: UrlOpt = None,
    collection: CollectionOpt = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", "-k", help="image | slide | video (video segments), comma-separated or repeated.", show_default=False)
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help="Condition like 'count.person>=2' (ops >= > <= < == !=; repeatable, all must hold).", show_default=False),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this file or URL, or everything under this folder / URL prefix.", show_default=False)
    ] = None,
    after: Annotated[
        float | None, typer.Option("--after", help="Only video segments that end after this second.", show_default=False)
    ] = None,
    before: Annotated[
        float | None, typer.Option("--before", help="Only video segments that start before this second.", show_default=False)
    ] = None,
    top: Annotated[int | None, typer.Option("--top", "-n", min=1, help="How many hits (unset: the library's default).", show_default=False)] = None,
    embedder: EmbedderOpt = None,
    count_words: Annotated[
        bool,
        typer.Option(
            "--count-words/--literal",
            help="Read count phrases ('at least 3 people', 'no cars') as --where conditions on the labels counted "
            "in the collection (see `molmo-rag labels`); --literal searches the words as they are.",
        ),
    ] = True,
    ground: Annotated[
        bool,
        typer.Option(
            "--ground",
            help="Ask the backend to point at what the query names in the top hits; hits where it is found "
            "move up and carry the points (evidence).",
        ),
    ] = False,
    ground_top: Annotated[
        int | None,
        typer.Option("--ground-top", min=1, help="How many of the top hits to check with --ground (unset: the library's default).", show_default=False),
    ] = None,
    *,
    options: RunOptions,
    as_json: JsonOpt = False,
) -> None:
    """Search the index: a table of hits (score, kind, where, caption), or JSON Lines with --json."""
    from ..pipeline import search

    # grounding checks with the backend and model that made the collection, unless --backend / --model say otherwise
    ground_with = options if ground else False
    hits = search(
        query,
        db=db,
        qdrant_url=qdrant_url,
        kind=kind,
        where=where or [],
        source=source,
        after=after,
        before=before,
        embedder=embedder,
        count_words=count_words,
        ground=ground_with,
        **_given(collection=collection, top=top, ground_top=ground_top),
    )
    read = hits.count_query
    kept = _kept_line(read)
    if kept:
        print(kept, file=sys.stderr)
    unchecked = False
    if ground and hits:
        for line in _ground_lines(hits, as_json):
            print(line, file=sys.stderr)
        unchecked = hits.checked == 0
    if read is not None and read.conditions and not as_json:
        print(for_terminal(
            f"molmo-rag: read {', '.join(repr(p) for p in dict.fromkeys(read.phrases))} as {' '.join(dict.fromkeys(read.where))}; "
            f"searching for {read.text or query!r}"),
            file=sys.stderr,
        )
    if as_json:
        for hit in hits:
            emit_json(hit.to_json())
    elif hits:
        print(_table(hits))
    else:
        print("no hits", file=sys.stderr)
    if unchecked:
        sys.stdout.flush()
        print(_no_check_line(hits), file=sys.stderr)
        raise typer.Exit(1)


@app.command("remove")
def remove_command(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Files, folders (with everything under them) or URLs whose points to remove.", show_default=False),
    ] = None,
    missing: Annotated[
        bool, typer.Option("--missing", help="Only the points of local files that no longer exist (under SOURCES, or anywhere).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    db: DbOpt = None,
    qdrant_url: UrlOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove points from the index: of named sources (e.g. a deleted folder), or of files gone from disk."""
    from ..pipeline import remove

    removed = remove(sources or [], missing=missing, db=db, qdrant_url=qdrant_url, dry_run=dry_run, **_given(collection=collection))
    total = sum(removed.values())
    if as_json:
        for source, n in removed.items():
            emit_json({"source": source, "removed": n, "dry_run": dry_run})
        emit_json({"summary": {"removed": total, "sources": len(removed), "dry_run": dry_run}})
    else:
        verb = "would remove" if dry_run else "removed"
        for source, n in removed.items():
            print(f"{for_terminal(source)}: {verb} {n} point(s)")
        print(f"{verb} {total} point(s) of {len(removed)} source(s)")
    if sources and not removed:
        print(f"molmo-rag: nothing in the index matches {for_terminal(', '.join(sources))}", file=sys.stderr)
        raise typer.Exit(1)


@app.command("labels")
def labels_command(
    db: DbOpt = None,
    qdrant_url: UrlOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The labels counted in the index (--count at index time): what count.LABEL and counts in words use."""
    from ..pipeline import count_labels

    found = count_labels(db=db, qdrant_url=qdrant_url, **_given(collection=collection))
    if as_json:
        emit_json({"labels": found.counted, "without_counts": found.without_counts})
        return
    if found.counted:
        print("\n".join(for_terminal(label) for label in found.counted))
    if found.without_counts:
        them = "it" if len(found.without_counts) == 1 else "them"
        print(
            for_terminal(
                f"molmo-rag: {', '.join(found.without_counts)}: counted at index time (--count) but no item has a count "
                f"for {them}: the counts failed, or the backend could not count those items (see that run's warnings "
                "and failures; index again to retry)"
            ),
            file=sys.stderr,
        )
    elif not found.counted:
        print("no counted labels: index with --count LABEL,... to count things", file=sys.stderr)
