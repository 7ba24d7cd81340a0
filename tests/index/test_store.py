import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from molmo_rag.backends.base import Result
from molmo_rag.errors import ConfigurationError
from molmo_rag.index.embeddings import get_embedder
from molmo_rag.index.records import build_record
from molmo_rag.index.store import VECTOR_NAME, QdrantIndex, default_db_path
from molmo_rag.media.items import MediaItem
from molmo_rag.tasks import Caption, Count


class HashingEmbedder:
    """A small real embedder: hashed bag of words, 16-d."""

    name = "test/hashing-16"
    dim = 16

    def embed(self, texts):
        out = []
        for text in texts:
            v = np.zeros(self.dim)
            for word in text.lower().split():
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
            out.append((v / (np.linalg.norm(v) or 1)).tolist())
        return out

    def embed_query(self, text):
        return self.embed([text])[0]


def record(colour, caption, source, persons=None):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:] = colour
    item = MediaItem.from_pil(Image.fromarray(a), source=source)
    results = [Result(item, Caption(), caption, Caption().parse(caption), "local", "m")]
    if persons is not None:
        text = f"There are {persons} people."
        results.append(Result(item, Count(target="person"), text, Count(target="person").parse(text), "local", "m"))
    return build_record(item, results)


def test_collection_records_its_embedder_and_refuses_another(tmp_path):
    emb = HashingEmbedder()
    with QdrantIndex(tmp_path / "db", collection="c") as store:
        assert store.embedder_info() is None and store.count() == 0
        store.ensure(emb)
        assert store.embedder_info() == {"embedder": "test/hashing-16", "dim": 16}
    with QdrantIndex(tmp_path / "db", collection="c") as store:  # persisted on disk
        assert store.embedder_info() == {"embedder": "test/hashing-16", "dim": 16}
        with pytest.raises(ConfigurationError, match=r"16-d vectors from test/hashing-16.*wordllama/l2_supercat-256 \(256-d\)"):
            store.ensure(get_embedder("wordllama"))

        class SameDimOtherModel(HashingEmbedder):
            name = "test/other-16"

        with pytest.raises(ConfigurationError, match="cannot be mixed"):
            store.ensure(SameDimOtherModel())


def test_foreign_collection_without_our_vector_is_refused():
    from qdrant_client import models

    store = QdrantIndex(":memory:", collection="foreign")
    store.client.create_collection("foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with pytest.raises(ConfigurationError, match="no dense vector named 'text-dense'"):
        store.ensure(HashingEmbedder())


def test_upsert_overwrites_by_media_id_and_searches(tmp_path):
    emb = HashingEmbedder()
    store = QdrantIndex(":memory:", collection="c")
    red = record((200, 0, 0), "red wall with people", "/d/a.png", persons=3)
    blue = record((0, 0, 200), "blue sky", "/d/b.png", persons=0)
    store.upsert([red, blue], emb.embed([red.text, blue.text]), emb)
    store.upsert([red], emb.embed([red.text]), emb)  # same media -> same point
    assert store.count() == 2
    fps = store.stored_fingerprints([red.id, blue.id, "00000000-0000-0000-0000-000000000000"])
    assert fps == {red.id: red.fingerprint(emb.name), blue.id: blue.fingerprint(emb.name)}
    hits = store.search(emb.embed_query("blue sky"), top=2)
    assert hits[0].source == "/d/b.png" and hits[0].caption == "blue sky" and hits[0].score > hits[1].score
    assert hits[1].counts == {"person": 3} and hits[1].kind == "image"
    assert set(hits[0].to_json()) >= {"score", "id", "kind", "source", "media_id", "caption", "counts"}
    assert "page_content" not in hits[0].payload and "record_hash" not in hits[0].payload
    assert store.points_of(["/d/a.png", "/d/nothing.png"]) == {"/d/a.png": {red.id: red.media_id}}
    store.delete([red.id])
    assert store.count() == 1
    point = store.client.retrieve("c", [blue.id], with_vectors=True)[0]
    assert list(point.vector) == [VECTOR_NAME]


def test_search_of_a_missing_collection_says_what_to_do():
    store = QdrantIndex(":memory:", collection="nothing")
    with pytest.raises(ConfigurationError, match="index something first") as info:
        store.search([0.0] * 16)
    assert "collections there" not in str(info.value)
    store.client.create_collection("photos")
    with pytest.raises(ConfigurationError, match="collections there: photos; choose one of them") as info:
        store.search([0.0] * 16)
    assert info.value.option == "collection"  # the CLI names its --collection flag


def test_db_and_url_together_are_refused():
    with pytest.raises(ConfigurationError, match="not both"):
        QdrantIndex("/tmp/x", url="http://127.0.0.1:6333")


def test_embedded_path_in_use_by_another_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from qdrant_client import QdrantClient
            c = QdrantClient(path={str(tmp_path)!r})
            print("open", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigurationError, match="in use by another process"):
            QdrantIndex(tmp_path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.delenv("MOLMO_RAG_DB", raising=False)
    assert str(default_db_path()) == ".molmo-rag/qdrant"
    monkeypatch.setenv("MOLMO_RAG_DB", str(tmp_path))
    assert default_db_path() == tmp_path
