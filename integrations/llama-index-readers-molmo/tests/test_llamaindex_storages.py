"""MolmoVectorStore on the embedded default (Qdrant Edge, which has no QdrantClient) and on
qdrant-client's local mode: MolmoReader documents written through LlamaIndex's own
``VectorStoreIndex`` / ``from_documents`` give, for the same ``MetadataFilters``, the hits
and ids of ``molmo_rag.search(..., where=...)`` on the same folder, the same on both
storages, and the same as LlamaIndex's stock ``QdrantVectorStore`` on the local-mode one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.vector_stores import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.readers.molmo import MolmoEmbedding, MolmoReader, MolmoVectorStore

from molmo_rag import ConfigurationError, pipeline

QUERY = "a red photo"


def all_of(*conditions: tuple[str, FilterOperator, object] | MetadataFilters, condition=FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(
        filters=[c if isinstance(c, MetadataFilters) else MetadataFilter(key=c[0], operator=c[1], value=c[2]) for c in conditions],
        condition=condition,
    )


def any_of(*conditions: tuple[str, FilterOperator, object] | MetadataFilters) -> MetadataFilters:
    return all_of(*conditions, condition=FilterCondition.OR)


def person(m: dict) -> int | None:
    return (m.get("counts") or {}).get("person")


def filter_cases(media: Path) -> list[tuple[str, MetadataFilters, dict | None, Callable[[dict], bool]]]:
    """(name, MetadataFilters, the same filter as molmo_rag.search options or None where the
    CLI has no such filter, the filter as a predicate on a document's metadata)."""
    talk = str(media / "decks" / "talk.pdf")
    GTE, GT, LT, LTE, EQ, NE = FilterOperator.GTE, FilterOperator.GT, FilterOperator.LT, FilterOperator.LTE, FilterOperator.EQ, FilterOperator.NE
    IN, NIN = FilterOperator.IN, FilterOperator.NIN
    return [
        ("counts GTE", all_of(("counts.person", GTE, 2)), {"where": "count.person>=2"}, lambda m: (person(m) or 0) >= 2),
        ("counts LT", all_of(("counts.person", LT, 2)), {"where": "count.person<2"}, lambda m: person(m) is not None and person(m) < 2),
        ("counts NE", all_of(("counts.person", NE, 1)), {"where": "count.person!=1"}, lambda m: person(m) not in (None, 1)),
        ("counts EQ", all_of(("counts.person", EQ, 1)), {"where": "count.person==1"}, lambda m: person(m) == 1),
        ("kind and slide", all_of(("kind", EQ, "slide"), ("slide", EQ, 2)), {"kind": ["slide"], "where": "slide==2"},
         lambda m: m["kind"] == "slide" and m.get("slide") == 2),
        ("slide LTE", all_of(("slide", LTE, 1)), {"where": "slide<=1"}, lambda m: m.get("slide") is not None and m["slide"] <= 1),
        ("kind IN", all_of(("kind", IN, ["image", "video_segment"])), {"kind": ["image,video"]}, lambda m: m["kind"] != "slide"),
        ("kind NIN", all_of(("kind", NIN, ["slide"])), {"where": "kind!=slide"}, lambda m: m["kind"] != "slide"),
        ("time range", all_of(("end", GT, 5.0), ("start", LT, 8.0)), {"after": 5, "before": 8},
         lambda m: m.get("end") is not None and m["end"] > 5 and m["start"] < 8),
        ("source", all_of(("source", EQ, talk)), {"source": talk}, lambda m: m["source"] == talk),
        ("OR", any_of(("kind", EQ, "image"), ("counts.person", GTE, 2)), None, lambda m: m["kind"] == "image" or (person(m) or 0) >= 2),
        ("nested", all_of(("kind", EQ, "slide"), any_of(("slide", EQ, 1), ("title", EQ, "Team"))), None,
         lambda m: m["kind"] == "slide" and (m.get("slide") == 1 or m.get("title") == "Team")),
        ("NOT", all_of(("kind", EQ, "slide"), condition=FilterCondition.NOT), None, lambda m: m["kind"] != "slide"),
    ]


def ids(index: VectorStoreIndex, filters: MetadataFilters | None = None) -> list[str]:
    return [h.node.node_id for h in index.as_retriever(filters=filters, similarity_top_k=20).retrieve(QUERY)]


@pytest.fixture
def documents(li_media, li_fake):
    return MolmoReader(backend=li_fake, count=["person"]).load_data(li_media)


def test_the_same_filters_give_the_same_hits_on_edge_local_mode_and_the_core(documents, li_media, tmp_path):
    cases = filter_cases(li_media)
    found: dict[str, dict[str, list[str]]] = {}
    for storage in ("edge", "local"):
        db = tmp_path / storage
        store = pipeline.open_index(db, storage=storage)
        assert store.storage_kind == f"qdrant-{storage}" and (store.client is None) == (storage == "edge")
        try:
            index = VectorStoreIndex(
                documents,
                storage_context=StorageContext.from_defaults(vector_store=MolmoVectorStore(store)),
                embed_model=MolmoEmbedding(),
            )
            assert store.count() == 9 and store.one_layout()
            assert ids(index) == [h.id for h in pipeline.search(QUERY, db=store, top=20)]  # node ids are point ids
            found[storage] = {}
            for name, filters, core, holds in cases:
                got = ids(index, filters)
                expected = {d.id_ for d in documents if holds(d.metadata)}
                assert set(got) == expected, name
                if core is not None:  # the CLI's filter: the same hits, in the same order
                    assert got == [h.id for h in pipeline.search(QUERY, db=store, top=20, **core)], name
                found[storage][name] = got
        finally:
            store.close()
    assert {name: set(got) for name, got in found["edge"].items()} == {name: set(got) for name, got in found["local"].items()}
    assert all(found["edge"][name] for name in ("counts GTE", "counts LT", "counts NE", "kind and slide", "time range", "nested"))

    # LlamaIndex's stock QdrantVectorStore opens the local-mode folder and reads the same hits
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "local"))
    try:
        stock = VectorStoreIndex.from_vector_store(
            QdrantVectorStore(client=client, collection_name="molmo_rag", dense_vector_name="text-dense"), embed_model=MolmoEmbedding()
        )
        for name, filters, _, _ in cases:
            assert set(ids(stock, filters)) == set(found["local"][name]), name
    finally:
        client.close()


def test_from_documents_on_edge_is_found_by_the_core_and_deleted_by_document(documents, tmp_path):
    store = pipeline.open_index(tmp_path / "edge-db")
    try:
        vector_store = MolmoVectorStore(store)
        assert vector_store.embedder_name is None  # a new folder: the default embedder is recorded at the first write
        index = VectorStoreIndex.from_documents(
            documents, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=MolmoEmbedding()
        )
        assert store.storage_kind == "qdrant-edge" and store.embedder_info()["embedder"] == MolmoEmbedding().model_name
        crowd = all_of(("counts.person", FilterOperator.GTE, 2))
        hits = index.as_retriever(filters=crowd, similarity_top_k=20).retrieve(QUERY)
        assert hits and [h.node.node_id for h in hits] == [h.id for h in pipeline.search(QUERY, db=store, top=20, where="count.person>=2")]
        by_document = {h.node.ref_doc_id for h in hits}
        assert by_document == {d.id_ for d in documents if d.metadata["counts"]["person"] >= 2}

        gone = next(iter(by_document))
        index.delete_ref_doc(gone)
        assert gone not in {n.ref_doc_id for n in vector_store.get_nodes()} and store.count() == len(documents) - 1
        assert {h.node.ref_doc_id for h in index.as_retriever(filters=crowd, similarity_top_k=20).retrieve(QUERY)} == by_document - {gone}

        slides = vector_store.get_nodes(filters=all_of(("kind", FilterOperator.EQ, "slide")))
        assert len(slides) == 4 and all(n.metadata["kind"] == "slide" and n.embedding for n in slides)
        vector_store.delete_nodes(filters=all_of(("kind", FilterOperator.EQ, "slide")))
        assert {n.metadata["kind"] for n in vector_store.get_nodes()} == {"image", "video_segment"}
        vector_store.delete_nodes()  # nothing selected: nothing deleted
        assert store.count() == len(documents) - 5
        vector_store.clear()
        assert store.count() == 0 and store.exists() and store.embedder_info()["dim"] == 256
    finally:
        store.close()


def test_a_new_collection_refuses_vectors_of_an_unnamed_embedder(tmp_path):
    from llama_index.core.schema import TextNode

    store = pipeline.open_index(tmp_path / "edge-db")
    try:
        with pytest.raises(ConfigurationError, match="embedder_name"):
            MolmoVectorStore(store).add([TextNode(text="x", embedding=[0.1] * 8)])
        assert not store.exists()
        named = MolmoVectorStore(store, embedder_name="my-model")
        named.add([TextNode(text="x", embedding=[0.1] * 8)])
        assert store.embedder_info() == {"embedder": "my-model", "dim": 8}
        with pytest.raises(ConfigurationError, match="cannot be mixed"):
            MolmoVectorStore(store).add([TextNode(text="y", embedding=[0.1] * 9)])
    finally:
        store.close()
    with pytest.raises(TypeError, match="QdrantIndex"):
        MolmoVectorStore(object())  # type: ignore[arg-type]
