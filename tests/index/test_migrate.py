"""The one way up: a local-mode folder written before Qdrant Edge became the default opens,
searches and takes new points as it is; ``migrate`` copies it (or any collection) to Edge,
to local mode, to a qdrant-client store standing in for a server, exactly and resumably."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from molmo_rag import pipeline
from molmo_rag.cli import main as cli
from molmo_rag.errors import ConfigurationError, UsageError
from molmo_rag.index.migrate import migrate
from molmo_rag.index.store import QdrantIndex, folder_storage

LEGACY = Path(__file__).parent.parent / "data" / "legacy-local-index"
"""Six photos indexed by molmo-rag 8d54880 (before Edge) with FakeBackend, counting
"bright spots": qdrant-client local mode, as every folder of that release is."""
QUERIES = ["a dark blue image", "purple", "bright spots on red"]


@pytest.fixture
def legacy(tmp_path) -> Path:
    db = tmp_path / "legacy"
    shutil.copytree(LEGACY, db)  # never opened in place: opening writes a lock file
    return db


def everything(db: Path, collection: str = "molmo_rag") -> dict:
    """id -> (payload, unit vector) of every point (cosine stores compare normalised)."""
    with QdrantIndex(db, collection=collection, create=False) as store:
        points, _ = store.scroll(limit=10_000, with_vectors=True)
    out = {}
    for p in points:
        v = np.asarray(p.vector["text-dense"], dtype=np.float64)
        out[str(p.id)] = (p.payload, v / np.linalg.norm(v))
    return out


def same_points(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for pid, (payload, vector) in a.items():
        assert b[pid][0] == payload
        np.testing.assert_allclose(b[pid][1], vector, atol=1e-6)


def test_a_legacy_folder_opens_searches_and_grows_as_it_is(legacy):
    assert folder_storage(legacy) == "local"
    with QdrantIndex(legacy, create=False) as store:
        assert store.storage_kind == "qdrant-local" and store.count() == 6
        assert store.count_labels() == ["bright_spots"] and store.made_with() == {"backend": "fake", "model": "pixel-stats-1"}
    hits = pipeline.search("bright spots", db=legacy, where="count.bright_spots>=1")
    assert {Path(h.source).name for h in hits} == {"p1.png", "p2.png", "p3.png", "p5.png"}
    # a new point goes into the same local-mode folder, never a silent conversion
    from molmo_rag.index.records import MediaRecord

    with QdrantIndex(legacy) as store:
        record = MediaRecord(payload={"kind": "image", "source": "/legacy/new.png", "media_id": "sha256:new", "counts": {"bright_spots": 3}}, text="new")
        store.upsert([record], [[1.0] + [0.0] * 255], type("E", (), {"name": "wordllama/l2_supercat-256", "dim": 256})())
        assert store.count() == 7
    assert folder_storage(legacy) == "local" and not (legacy / "molmo-rag-edge.json").exists()


@pytest.mark.parametrize("to_storage", ["edge", "local"])
def test_migrate_copies_points_vectors_metadata_and_hits(legacy, tmp_path, to_storage):
    target = tmp_path / "new"
    summary = migrate(db=legacy, to_db=target, to_storage=to_storage, batch=4)
    assert (summary.total, summary.copied, summary.already, summary.verified) == (6, 6, 0, True)
    assert summary.to_storage == f"qdrant-{to_storage}" and folder_storage(target) == to_storage
    same_points(everything(legacy), everything(target))
    with QdrantIndex(legacy, create=False) as old, QdrantIndex(target, create=False) as new:
        assert new.meta() == old.meta()  # embedder, labels, made_with, asked_labels
        if to_storage == "edge":
            assert new.storage.indexed_fields(new.collection)["counts.bright_spots"] == "integer"
    for query in QUERIES:
        for where in ((), "count.bright_spots>=1", "count.bright_spots==0"):
            # the same hits with the same scores (points with the same caption tie: any order among them)
            before = sorted((-round(h.score, 5), h.id) for h in pipeline.search(query, db=legacy, where=where))
            after = sorted((-round(h.score, 5), h.id) for h in pipeline.search(query, db=target, where=where))
            assert after == before and before
    again = migrate(db=legacy, to_db=target)
    assert (again.copied, again.already, again.verified) == (0, 6, True)


def test_a_stopped_migration_resumes_with_nothing_lost_or_doubled(legacy, tmp_path, monkeypatch):
    target = tmp_path / "new"
    writes = []
    real = QdrantIndex.upsert_points

    def failing_after_two(self, points):
        if self.location == str(target) and points:
            if len(writes) == 2:
                raise ConfigurationError("the target went away")
            writes.append(len(points))
        return real(self, points)

    monkeypatch.setattr(QdrantIndex, "upsert_points", failing_after_two)
    with pytest.raises(ConfigurationError, match="went away"):
        migrate(db=legacy, to_db=target, batch=2)
    monkeypatch.undo()
    with QdrantIndex(target, create=False) as partial:
        assert partial.count() == 4  # two batches written: the target is partial, and says so by its count
    summary = migrate(db=legacy, to_db=target, batch=2)
    assert (summary.copied, summary.already, summary.verified) == (2, 4, True)
    same_points(everything(legacy), everything(target))


def test_through_qdrant_client_and_back_under_another_name(legacy, tmp_path):
    """A Qdrant server is reached through qdrant-client, as local mode is (no server binary
    installs here): a copy into local mode and back to Edge runs the same ClientStorage
    calls a server's copy makes, only the transport differs."""
    summary = migrate(db=legacy, to_db=tmp_path / "client", to_storage="local", to_collection="archive")
    assert summary.verified and summary.to_collection == "archive"
    back = migrate(db=tmp_path / "client", collection="archive", to_db=tmp_path / "edge")
    assert back.verified and back.to_storage == "qdrant-edge"
    same_points(everything(legacy), everything(tmp_path / "edge", "archive"))


def test_refusals(legacy, tmp_path):
    with pytest.raises(UsageError, match="same collection"):
        migrate(db=legacy, to_db=legacy)
    with pytest.raises(UsageError, match="say where to copy to"):
        migrate(db=legacy)
    with pytest.raises(ConfigurationError, match="nothing to copy"):
        migrate(db=legacy, collection="other", to_db=tmp_path / "x")
    with QdrantIndex(tmp_path / "taken") as taken:
        taken.ensure(("another/embedder-8", 8))
    with pytest.raises(ConfigurationError, match="cannot be mixed"):
        migrate(db=legacy, to_db=tmp_path / "taken")


def test_the_command(legacy, tmp_path, capsys):
    assert cli(["migrate", "--db", str(legacy), "--to-db", str(tmp_path / "new"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert (summary["copied"], summary["total"], summary["verified"], summary["to_storage"]) == (6, 6, True, "qdrant-edge")
    assert cli(["migrate", "--db", str(legacy), "--to-db", str(tmp_path / "new")]) == 0
    assert "copied 0 point(s), 6 already there, of 6" in capsys.readouterr().out
    assert cli(["search", "bright spots", "--db", str(tmp_path / "new"), "--where", "count.bright_spots>=1", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert {Path(h["source"]).name for h in hits} == {"p1.png", "p2.png", "p3.png", "p5.png"}
    assert cli(["migrate", "--db", str(legacy), "--to-db", str(legacy)]) == 2
    assert "molmo-rag: error: --to-db: the source and the target are the same collection" in capsys.readouterr().err
