"""One Qdrant collection, both doors, both ways: a collection built by ``molmo-rag index``
answers LlamaIndex retrievers with MetadataFilters on the same keys, and documents indexed
through LlamaIndex are found by ``molmo-rag search --where`` (embedded Qdrant throughout)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageNode, MetadataMode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.readers.molmo import MolmoEmbedding, MolmoReader, open_index

from molmo_rag import pipeline
from molmo_rag.cli import main as cli

pytest.importorskip("qdrant_client")


def where(*conditions: tuple[str, str, object]) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key=k, operator=op, value=v) for k, op, v in conditions])


def retrieve(index: VectorStoreIndex, query: str, filters: MetadataFilters | None = None, top: int = 20):
    return index.as_retriever(filters=filters, similarity_top_k=top).retrieve(query)


@pytest.fixture(params=["edge", "local"])
def cli_collection(li_media, li_fake, tmp_path, request) -> Path:
    """The mixed folder indexed by the core (what ``molmo-rag index --count person`` does),
    in a Qdrant Edge folder (the default) and in a qdrant-client local-mode folder."""
    db = tmp_path / "cli-db"
    summary = pipeline.index([li_media], backend=li_fake, count=["person"], db=db, storage=request.param)
    assert summary.indexed == 9 and len(summary.failed) == 1
    return db


def test_a_collection_built_by_molmo_rag_answers_llama_index(cli_collection):
    store = pipeline.open_index(cli_collection)  # one client shared by both doors
    try:
        index = open_index(store)
        assert index.vector_store.client is store
        query = "a red photo"
        hits = retrieve(index, query, top=9)
        core = pipeline.search(query, db=store, top=9)
        # the same embedder: the same points in the same order with the same scores
        assert [h.node.node_id for h in hits] == [h.id for h in core]
        assert [round(h.score, 5) for h in hits] == [round(h.score, 5) for h in core]
        node = hits[0].node
        assert not {"page_content", "metadata", "record_hash", "source_prefixes"} & set(node.metadata)
        assert node.get_content(MetadataMode.EMBED) == node.get_content(MetadataMode.NONE)
        assert "thumbnail" in node.metadata and "data:image" not in node.get_content(MetadataMode.LLM)
        photos = [h.node for h in hits if h.node.metadata["kind"] == "image"]
        assert photos and all(isinstance(n, ImageNode) and n.image_path == n.metadata["source"] for n in photos)
        # get_nodes: the same nodes, with their vectors
        stored = index.vector_store.get_nodes(filters=where(("kind", FilterOperator.EQ, "image")))
        assert {n.node_id for n in stored} == {n.node_id for n in photos} and all(isinstance(n, ImageNode) for n in stored)
        assert all(len(n.embedding) == 256 for n in stored)

        # the filters of molmo-rag search, spelled as MetadataFilters
        crowd = retrieve(index, query, where(("counts.person", FilterOperator.GTE, 2)))
        assert {h.node.node_id for h in crowd} == {h.id for h in pipeline.search(query, db=store, where="count.person>=2", top=20)}
        assert crowd and all(h.node.metadata["counts"]["person"] >= 2 for h in crowd)
        slides = retrieve(index, query, where(("kind", FilterOperator.EQ, "slide")))
        assert len(slides) == 4 and {h.node.metadata["slide"] for h in slides} == {1, 2}
        second = retrieve(index, query, where(("kind", FilterOperator.EQ, "slide"), ("slide", FilterOperator.EQ, 2)))
        assert {Path(h.node.metadata["source"]).name for h in second} == {"review.pptx", "talk.pdf"}
        late = retrieve(index, query, where(("end", FilterOperator.GT, 5.0), ("start", FilterOperator.LT, 8.0)))
        assert [(h.node.metadata["start"], h.node.metadata["end"]) for h in late] == [(4.0, 8.0)]
        assert {h.node.node_id for h in late} == {h.id for h in pipeline.search(query, db=store, after=5, before=8)}

        answer = index.as_query_engine(llm=MockLLM(max_tokens=8), filters=where(("kind", FilterOperator.EQ, "video_segment"))).query(
            "what happens in the clip?"
        )
        assert len(answer.source_nodes) == 2 and all(n.metadata["kind"] == "video_segment" for n in answer.source_nodes)
    finally:
        store.close()


@pytest.mark.parametrize("storage", ["edge", "local"])
def test_documents_indexed_through_llama_index_are_found_by_the_cli(li_media, li_fake, tmp_path, capsys, storage):
    db = tmp_path / "li-db"
    docs = MolmoReader(backend=li_fake, count=["person"]).load_data(li_media)
    index = open_index(db=db, storage=storage)
    assert index.vector_store.client.storage_kind == f"qdrant-{storage}"
    index.insert_nodes(docs)
    index.vector_store.close()  # the embedded path is free for the CLI

    def search(*args: str) -> list[dict]:
        assert cli(["search", "a red photo", "--db", str(db), "--top", "20", "--json", *args]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    crowd = search("--where", "count.person>=2")
    expected = {d.id_ for d in docs if d.metadata["counts"]["person"] >= 2}
    assert {h["id"] for h in crowd} == expected and expected
    assert {h["id"] for h in search("--kind", "slide")} == {d.id_ for d in docs if d.metadata["kind"] == "slide"}
    decks = search("--source", str(li_media / "decks"))
    assert len(decks) == 4 and all(h["kind"] == "slide" for h in decks)
    segments = search("--kind", "video", "--after", "5")
    assert [(h["start"], h["end"]) for h in segments] == [(4.0, 8.0)]

    # the same vectors and payload as the core's: molmo-rag index finds every point current
    summary = pipeline.index([li_media], backend=li_fake, count=["person"], db=db)
    assert (summary.indexed, summary.unchanged, summary.pruned) == (0, 9, 0)
    # and LlamaIndex reads the points back as inserted, pictures included
    index = open_index(db=db)
    hits = retrieve(index, "a red photo", where(("kind", FilterOperator.EQ, "slide")))
    assert len(hits) == 4 and all(isinstance(h.node, ImageNode) and Path(h.node.image_path).is_file() for h in hits)
    index.vector_store.close()
    if storage == "local":  # and LlamaIndex's stock QdrantVectorStore reads what MolmoVectorStore wrote
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        client = QdrantClient(path=str(db))
        try:
            stock = VectorStoreIndex.from_vector_store(
                QdrantVectorStore(client=client, collection_name="molmo_rag", dense_vector_name="text-dense"),
                embed_model=MolmoEmbedding(),
            )
            theirs = retrieve(stock, "a red photo", where(("kind", FilterOperator.EQ, "slide")))
            assert [h.node.node_id for h in theirs] == [h.node.node_id for h in hits]
            assert all(h.node.metadata["kind"] == "slide" for h in theirs)
        finally:
            client.close()


def test_ingestion_pipeline_upserts_instead_of_duplicating(li_media, li_fake):
    reader = MolmoReader(backend=li_fake, count=["person"])
    store = pipeline.open_index(":memory:")
    index = open_index(store)

    def ingest() -> int:
        ingestion = IngestionPipeline(
            transformations=[MolmoEmbedding()], vector_store=index.vector_store, docstore=docstore
        )
        return len(ingestion.run(documents=reader.load_data(li_media / "photos")))

    docstore = SimpleDocumentStore()
    assert ingest() == 3 and store.count() == 3
    calls = li_fake.calls
    assert ingest() == 0 and store.count() == 3 and li_fake.calls == calls  # unchanged: skipped, no backend call
    docstore = SimpleDocumentStore()
    assert ingest() == 3 and store.count() == 3  # new docstore: same ids, overwritten in place
    hits = pipeline.search("a photo", db=store, kind="image", where="count.person>=0")
    assert len(hits) == 3


@pytest.mark.parametrize("storage", [":memory:", "edge"])
async def test_async_retrieval_over_an_embedded_store(li_media, li_fake, tmp_path, storage):
    store = pipeline.open_index(":memory:" if storage == ":memory:" else tmp_path / "edge-db")
    assert store.storage_kind == ("qdrant-local" if storage == ":memory:" else "qdrant-edge")
    try:
        index = open_index(store)
        docs = await MolmoReader(backend=li_fake).aload_data(li_media / "decks")
        await index.ainsert_nodes(docs)
        first = index.as_retriever(filters=where(("slide", FilterOperator.EQ, 1)), similarity_top_k=5)
        hits = await first.aretrieve("results")
        assert len(hits) == 2 and {h.node.metadata["title"] for h in hits} == {"Revenue by region", "Quarterly results"}
        # several retrievals at once share the store (one call at a time in a worker thread)
        queries = ["results", "team", "revenue", "outlook"]
        together = await asyncio.gather(*(index.as_retriever(similarity_top_k=4).aretrieve(q) for q in queries))
        alone = [index.as_retriever(similarity_top_k=4).retrieve(q) for q in queries]
        assert [[h.node.node_id for h in hits] for hits in together] == [[h.node.node_id for h in hits] for hits in alone]
        response = await index.as_query_engine(llm=MockLLM(max_tokens=8)).aquery("what is on the slides?")
        assert response.source_nodes
        await index.vector_store.adelete_nodes([docs[0].id_])
        assert store.count() == 3 and {n.node_id for n in await index.vector_store.aget_nodes()} == {d.id_ for d in docs[1:]}
    finally:
        store.close()
