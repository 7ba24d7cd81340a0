"""``molmo-rag migrate``: copy a collection to another storage or to a Qdrant server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .common import JsonOpt, emit_json, for_terminal
from .index_cmd import CollectionOpt, DbOpt, UrlOpt, _given


@app.command("migrate")
def migrate_command(
    db: DbOpt = None,
    qdrant_url: UrlOpt = None,
    collection: CollectionOpt = None,
    to_db: Annotated[
        Path | None, typer.Option("--to-db", help="The folder to copy into (made if new).", show_default=False)
    ] = None,
    to_qdrant_url: Annotated[
        str | None,
        typer.Option("--to-qdrant-url", help="The Qdrant server or cluster to copy into (key from QDRANT_TO_API_KEY, else QDRANT_API_KEY).", show_default=False),
    ] = None,
    to_collection: Annotated[
        str | None, typer.Option("--to-collection", help="The target collection (default: the same name).", show_default=False)
    ] = None,
    to_storage: Annotated[
        str | None,
        typer.Option("--to-storage", help="How a new --to-db folder is stored: edge (default) or local.", show_default=False),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Points read and written at a time.")] = 512,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Copy a collection between storages (a local-mode folder to Qdrant Edge) or to a Qdrant
    server: batched, resumable (a re-run copies only what is missing), checked at the end."""
    import os

    from tqdm import tqdm

    from ..errors import register_secret
    from ..index.migrate import migrate

    to_key = os.environ.get("QDRANT_TO_API_KEY")
    register_secret(to_key)
    bar = tqdm(total=None, unit="point", disable=quiet or as_json or not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = migrate(
            db=db,
            qdrant_url=qdrant_url,
            to_db=to_db,
            to_qdrant_url=to_qdrant_url,
            to_api_key=to_key,
            to_collection=to_collection,
            to_storage=to_storage,
            batch=batch,
            on_progress=progress,
            **_given(collection=collection),
        )
    finally:
        bar.close()
    if as_json:
        emit_json({"summary": summary.to_json()})
    else:
        checked = "every point checked in the target" if summary.verified else "NOT every point is in the target: run it again"
        print(
            f"copied {summary.copied} point(s), {summary.already} already there, of {summary.total}, "
            f"from {for_terminal(summary.source)} {summary.collection!r} to {for_terminal(summary.target)} "
            f"{summary.to_collection!r} ({summary.to_storage}); {checked}"
        )
    if not summary.verified:
        raise typer.Exit(1)
