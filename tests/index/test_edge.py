"""Qdrant Edge, the embedded default: the folder says how it is stored, every filter the
product builds gives the same hits as qdrant-client's local mode, payload indexes exist
for every filtered field, and points of the frameworks' stock layout are still found."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from molmo_rag.errors import ConfigurationError, IndexUnavailableError, UsageError
from molmo_rag.index.edge import MARKER, to_edge_filter
from molmo_rag.index.filters import SearchFilter, build_filter
from molmo_rag.index.records import MediaRecord
from molmo_rag.index.store import INDEXED_FIELDS, QdrantIndex, folder_storage
from molmo_rag.pipeline import _either_layout

DIM = 16


class SeededEmbedder:
    """A real (if plain) embedder: a seeded random vector per word, summed."""

    name = "test/seeded-16"
    dim = DIM

    def embed(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        v = np.zeros(DIM)
        for word in text.lower().split():
            v += np.random.default_rng(abs(hash(word)) % 2**32).normal(size=DIM)
        return (v / (np.linalg.norm(v) or 1)).tolist()


def records(n=60):
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        kind = ("image", "slide", "video_segment")[i % 3]
        payload = {
            "kind": kind,
            "source": f"/data/{('photos', 'decks', 'clips')[i % 3]}/{i // 3}.bin",
            "media_id": f"sha256:{i:064x}",
            "caption": f"item {i} with {('people', 'a chart', 'cars')[i % 3]}",
            "counts": {"person": int(rng.integers(0, 5)), **({"car": int(rng.integers(0, 3))} if i % 2 else {})},
            "backend": "local" if i % 4 else "wavespeed",
            "model": "allenai/Molmo2-4B",
        }
        if kind == "slide":
            payload.update(slide=i % 7 + 1, title=f"Slide {i % 7 + 1}")
        if kind == "video_segment":
            payload.update(start=float(i), end=float(i) + 10.0)
        out.append(MediaRecord(payload=payload, text=payload["caption"]))
    return out


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same 60 points in an Edge folder and a local-mode folder."""
    emb = SeededEmbedder()
    tmp = tmp_path_factory.mktemp("twins")
    recs = records()
    stores = {}
    for storage in ("edge", "local"):
        store = QdrantIndex(tmp / storage, storage=storage)
        store.upsert(recs, emb.embed([r.text for r in recs]), emb)
        store.settle()
        stores[storage] = store
    yield stores, emb
    for store in stores.values():
        store.close()


FILTERS = [
    SearchFilter(),
    SearchFilter(kind=["slide"]),
    SearchFilter(kind=["image,video"]),
    SearchFilter(where=["count.person>=2"]),
    SearchFilter(kind=["slide"], where=["count.person>=2"]),
    SearchFilter(where=["count.person==0"]),
    SearchFilter(where=["count.car!=1"]),
    SearchFilter(where=["count.car<1", "count.person>3"]),
    SearchFilter(where=["slide>=3 and slide<6"]),
    SearchFilter(where=["backend!=local"]),
    SearchFilter(where=["title=='Slide 2'"]),
    SearchFilter(source="/data/decks"),
    SearchFilter(source="/data/clips/4.bin"),
    SearchFilter(after=20, before=41),
    SearchFilter(kind=["video"], after=50),
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: json.dumps(f.model_dump(exclude_defaults=True)))
def test_every_filter_gives_the_hits_of_local_mode(twins, flt):
    stores, emb = twins
    query = emb.embed_query("people with a chart")
    got = {name: [h.id for h in store.search(query, build_filter(flt), top=60)] for name, store in stores.items()}
    assert got["edge"] == got["local"]
    if flt.is_empty():
        assert len(got["edge"]) == 60
    either = [h.id for h in stores["edge"].search(query, _either_layout(flt), top=60)]
    assert either == got["edge"]  # the one-layout filter loses nothing on molmo-rag's points


def test_the_filtered_fields_are_indexed_with_the_collection(twins):
    stores, _ = twins
    indexed = stores["edge"].storage.indexed_fields(stores["edge"].collection)
    assert {key: indexed[key] for key in INDEXED_FIELDS} == INDEXED_FIELDS
    assert indexed["counts.person"] == indexed["counts.car"] == "integer"  # each label as it is first written


def test_a_folder_says_how_it_is_stored_and_opens_that_way(tmp_path, twins):
    stores, emb = twins
    assert stores["edge"].storage_kind == "qdrant-edge"
    new = QdrantIndex(tmp_path / "new")
    assert new.storage_kind == "qdrant-edge" and new.client is None and (tmp_path / "new" / MARKER).is_file()
    new.ensure(emb)
    new.record_run("local", "allenai/Molmo2-4B", ["person"])
    new.close()
    assert folder_storage(tmp_path / "new") == "edge"
    with QdrantIndex(tmp_path / "new", create=False) as again:  # metadata kept across opens
        assert again.embedder_info()["embedder"] == emb.name and again.embedder_info()["dim"] == DIM
        assert again.made_with() == {"backend": "local", "model": "allenai/Molmo2-4B"}
        assert again.asked_labels() == ["person"]
    with pytest.raises(ConfigurationError, match=r"stored with edge storage, not local.*molmo-rag migrate"):
        QdrantIndex(tmp_path / "new", storage="local")
    with QdrantIndex(tmp_path / "old", storage="local") as old:
        old.ensure(emb)
    with QdrantIndex(tmp_path / "old") as old:  # a local-mode folder stays local mode, whatever the default
        assert old.storage_kind == "qdrant-local" and old.client is not None
    with pytest.raises(UsageError, match="unknown storage 'lance'"):
        QdrantIndex(tmp_path / "z", storage="lance")


def test_the_default_for_new_folders_can_be_set(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_STORAGE", "local")
    with QdrantIndex(tmp_path / "db") as store:
        assert store.storage_kind == "qdrant-local"


def test_points_of_the_stock_layout_are_still_filtered(tmp_path, twins):
    """A point LangChain's stock QdrantVectorStore wrote (metadata only under ``metadata``)
    turns the search to the filter of both layouts, so it is neither lost nor let through."""
    from molmo_rag import pipeline

    _, emb = twins
    with QdrantIndex(tmp_path / "db") as store:
        recs = records(6)
        store.upsert(recs, emb.embed([r.text for r in recs]), emb)
        assert store.one_layout()
        stock = {"kind": "image", "source": "/lc/a.png", "media_id": "m", "counts": {"person": 4}}
        store.upsert_points([("00000000-0000-4000-8000-000000000001", emb.embed_query("people"), {"page_content": "people", "metadata": stock})])
        assert not store.one_layout()
        hits = pipeline.search("people", db=store, where="count.person>=4", embedder=emb, top=10)
        expected = {r.id for r in recs if r.payload["counts"]["person"] >= 4} | {"00000000-0000-4000-8000-000000000001"}
        assert {h.id for h in hits} == expected


def test_an_index_in_use_by_another_process_is_refused(tmp_path):
    QdrantIndex(tmp_path / "db").close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from molmo_rag.index.store import QdrantIndex
            store = QdrantIndex({str(tmp_path / 'db')!r})
            print("open", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigurationError, match="in use by another process"):
            QdrantIndex(tmp_path / "db")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    QdrantIndex(tmp_path / "db").close()  # free again once the other process is gone


def test_a_damaged_marker_is_one_line(tmp_path):
    QdrantIndex(tmp_path / "db").close()
    (tmp_path / "db" / MARKER).write_text("{not json")
    with pytest.raises(IndexUnavailableError, match=f"its {MARKER} is damaged"):
        QdrantIndex(tmp_path / "db")
    # the refused open let go of the folder: once the marker is mended it opens
    (tmp_path / "db" / MARKER).write_text(json.dumps({"storage": "qdrant-edge", "format": 1, "collections": {}}))
    QdrantIndex(tmp_path / "db").close()


def test_a_filter_edge_cannot_run_is_refused_not_widened():
    from qdrant_client import models

    with pytest.raises(TypeError, match="cannot filter with HasVectorCondition"):
        to_edge_filter(models.Filter(must=[models.HasVectorCondition(has_vector="text-dense")]))
    with pytest.raises(TypeError, match="cannot match with MatchPhrase"):
        to_edge_filter(models.Filter(should=[models.FieldCondition(key="caption", match=models.MatchPhrase(phrase="a dog"))]))
    assert to_edge_filter(None) is None


def test_raw_points_round_trip(tmp_path):
    with QdrantIndex(tmp_path / "db") as store:
        store.ensure(("test/raw-4", 4))
        payload = {"kind": "image", "source": "/a.png", "media_id": "m1", "counts": {"dog": 1}, "text": "a dog"}
        pid = "6f1b4c4e-5f5e-4c0b-9a5a-1a2b3c4d5e6f"
        store.upsert_points([(pid, [1.0, 0.0, 0.0, 0.0], payload)])
        [point] = store.retrieve([pid], with_vectors=True)
        assert point.id == pid and point.payload == payload and point.vector["text-dense"] == [1.0, 0.0, 0.0, 0.0]
        [hit] = store.query_points([1.0, 0.0, 0.0, 0.0], top=3)
        assert hit.id == pid and hit.payload == payload and hit.score == pytest.approx(1.0)
        assert store.count_labels() == ["dog"]
        page, after = store.scroll(limit=10)
        assert [p.id for p in page] == [pid] and after is None
        store.delete_where(build_filter(SearchFilter(kind=["image"])))
        assert store.count() == 0


def test_a_search_over_edge_never_loads_qdrant_client(tmp_path):
    """qdrant-client's import is about 0.9 s of a command-line search: the Edge path (filter
    tree, storage, hits) must not need it."""
    emb = SeededEmbedder()
    with QdrantIndex(tmp_path / "db") as store:
        recs = records(9)
        store.upsert(recs, emb.embed([r.text for r in recs]), emb)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_edge import SeededEmbedder
        from molmo_rag import pipeline
        hits = pipeline.search("people", db={str(tmp_path / 'db')!r}, where="count.person>=1", kind="slide", embedder=SeededEmbedder())
        assert hits and all(h.kind == "slide" and h.counts["person"] >= 1 for h in hits), hits
        print(sorted(m for m in sys.modules if m.split(".")[0] == "qdrant_client"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_filters_a_framework_builds_give_the_hits_of_local_mode(twins):
    """LlamaIndex's own translation builds qdrant-client filters (NIN is MatchExcept, node
    ids are HasIdCondition, text is MatchText): Edge must run them as local mode does."""
    from qdrant_client import models

    from molmo_rag.index import conditions as ours

    stores, emb = twins
    query = emb.embed_query("people with a chart")
    first_ids = [h.id for h in stores["local"].search(query, None, 5)]
    cases = [
        models.Filter(must=[models.FieldCondition(key="backend", match=models.MatchExcept(**{"except": ["local"]}))]),
        ours.Filter(must=[ours.FieldCondition(key="backend", match=ours.MatchExcept(except_=["local"]))]),
        models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value="slide"))]),
        models.Filter(must=[models.HasIdCondition(has_id=first_ids)]),
        models.Filter(must_not=[models.FieldCondition(key="counts.person", range=models.Range(gte=2))]),
        models.Filter(should=[models.IsEmptyCondition(is_empty=models.PayloadField(key="slide"))]),
    ]
    for flt in cases:
        got = {name: [h.id for h in store.search(query, flt, 60)] for name, store in stores.items()}
        assert got["edge"] == got["local"] and got["edge"], flt
