"""The workers' writer (a Qdrant server's path) in this process: the stage function that
Ray runs per batch when ``--qdrant-url`` is given, on a folder only it opens. The server
itself cannot run here (no Qdrant binary); the client code is the same for both."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from molmo_rag.documents import MediaDocument
from molmo_rag.index.embeddings import get_embedder
from molmo_rag.index.records import point_id
from molmo_rag.index.store import QdrantIndex
from molmo_rag.media.items import MediaItem
from molmo_rag.ray import outcome_of
from molmo_rag.ray.stages import RayOutcome, write_rows


def _outcome(colour: tuple[int, int, int], name: str, embedder) -> RayOutcome:
    from PIL import Image

    item = MediaItem.from_pil(Image.new("RGB", (32, 32), colour), source=f"/photos/{name}.png")
    metadata = {**item.describe(), "caption": f"a {name} square", "counts": {}, "points": [], "answers": []}
    document = MediaDocument(id=point_id(item.media_id, item.source), text=f"a {name} square", metadata=metadata, item=item, plan_key="k")
    return RayOutcome(source=item.source, document=document, vector=embedder.embed([document.text])[0])


def _batch(outcomes: list[RayOutcome]) -> dict:
    rows = [o.row() for o in outcomes]
    return {name: [row[name] for row in rows] for name in rows[0]}


def test_a_worker_writes_its_batch_and_says_which_points_changed(tmp_path):
    embedder = get_embedder()
    with QdrantIndex(tmp_path / "db") as store:
        store.ensure(embedder)
    spec = {"db": str(tmp_path / "db"), "collection": "molmo_rag"}
    batch = _batch([_outcome((200, 0, 0), "red", embedder), _outcome((0, 0, 200), "blue", embedder)])
    first = [outcome_of({"blob": b}) for b in write_rows(batch, store=spec, embedder=embedder.name)["blob"]]
    assert [o.written for o in first] == [True, True]
    again = [outcome_of({"blob": b}) for b in write_rows(batch, store=spec, embedder=embedder.name)["blob"]]
    assert [o.written for o in again] == [False, False]  # same fingerprint: nothing rewritten
    with QdrantIndex(tmp_path / "db") as store:
        points = {p.payload["source"]: p.payload for p in store.scroll()[0]}
    assert set(points) == {"/photos/red.png", "/photos/blue.png"}
    assert points["/photos/red.png"]["plan_key"] == "k" and points["/photos/red.png"]["caption"] == "a red square"
