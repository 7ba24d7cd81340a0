"""Both doors, both ways: a collection written by ``molmo-rag index`` answers MolmoRetriever
and LangChain's own QdrantVectorStore (with molmo_filter) alike; Documents MolmoLoader makes
are the CLI's points (same ids, same metadata); Documents written through LangChain
(QdrantVectorStore + MolmoEmbeddings) are found by ``molmo-rag search``."""

from __future__ import annotations

import json

import pytest

from langchain_molmo import MolmoEmbeddings, MolmoRetriever, molmo_filter

pytest.importorskip("langchain_qdrant")

QUERY = "a bright picture"


def cli(capsys, *args) -> tuple[int, str]:
    from molmo_rag.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return code, out


def test_loader_documents_are_the_cli_points(lc_library, lc_fake_backend, stored_points, tmp_path, capsys):
    from langchain_molmo import MolmoLoader

    db = tmp_path / "db"
    cli(capsys, "index", lc_library, "--backend", "fake", "--db", db, "--count", "person", "--quiet")
    stored = stored_points(db)
    # the same cache root as the CLI's (MOLMO_RAG_CACHE_DIR): the same saved pictures
    docs = MolmoLoader(lc_library, backend="fake", count=["person"], on_failure=lambda f: None).load()
    assert len(docs) == len(stored) == 7
    for doc in docs:
        payload = stored[doc.id]
        assert doc.page_content == payload["text"] == payload["page_content"]
        assert doc.metadata == payload["metadata"]  # every key, the thumbnail and image_path included
        assert doc.metadata == {k: v for k, v in payload.items() if k in doc.metadata}


SHARED_CASES = [
    {"kind": "image"},
    {"kind": "video", "where": "count.person>=2"},
    {"where": "count.person!=1"},
    {"where": ["slide>=2"]},
    {"source": "PHOTOS"},
    {"source": "DECK"},
    {"after": 4.5, "kind": "video"},
    {"kind": "slide", "where": "title==Team"},
]


def test_qdrant_vector_store_and_molmo_retriever_agree_on_a_cli_collection(lc_local_index, lc_index, lc_points, lc_library):
    """The stock QdrantVectorStore on a local-mode folder (what it opens by path) and
    MolmoRetriever give the same documents in the same order, and MolmoRetriever gives them
    on the Edge folder of the same media too."""
    from langchain_qdrant import QdrantVectorStore
    from molmo_rag import pipeline

    paths = {"PHOTOS": str(lc_library / "photos"), "DECK": str(lc_library / "decks" / "talk.pdf")}
    on_edge = MolmoRetriever(db=lc_index, k=100)
    with pipeline.open_index(lc_local_index) as index:  # one client for both doors: embedded Qdrant allows one
        assert index.storage_kind == "qdrant-local"
        store = QdrantVectorStore(
            client=index.client, collection_name="molmo_rag", embedding=MolmoEmbeddings(), vector_name="text-dense"
        )
        ours = MolmoRetriever(db=index, k=100)
        for case in SHARED_CASES:
            options = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in case.items()}
            theirs = store.similarity_search(QUERY, k=100, filter=molmo_filter(**options))
            mine = ours.invoke(QUERY, **options)
            assert 0 < len(mine) < len(lc_points), case
            # QdrantVectorStore hands the point id back as metadata["_id"]
            assert [d.metadata["_id"] for d in theirs] == [d.id for d in mine], case
            assert [d.id for d in on_edge.invoke(QUERY, **options)] == [d.id for d in mine], case
            for a, b in zip(theirs, mine):
                assert a.page_content == b.page_content
                own = {k: v for k, v in a.metadata.items() if k not in ("_id", "_collection_name")}
                assert own == {k: v for k, v in b.metadata.items() if k != "score"}
        retriever = store.as_retriever(search_kwargs={"k": 2, "filter": molmo_filter(kind="slide")})
        assert [d.metadata["kind"] for d in retriever.invoke("quarterly results")] == ["slide", "slide"]


def test_documents_written_through_langchain_are_found_by_molmo_rag_search(lc_documents, tmp_path, capsys):
    from langchain_qdrant import QdrantVectorStore

    docs = lc_documents
    db = tmp_path / "langchain-db"
    store = QdrantVectorStore.from_documents(
        docs, MolmoEmbeddings(), path=str(db), collection_name="molmo_rag", vector_name="text-dense"
    )
    try:
        points, _ = store.client.scroll("molmo_rag", limit=100, with_payload=True)
        assert sorted(str(p.id) for p in points) == sorted(d.id for d in docs)  # the same point ids
        assert set(points[0].payload) == {"page_content", "metadata"}  # what QdrantVectorStore writes
    finally:
        store.client.close()
    by_id = {d.id: d for d in docs}
    _, out = cli(capsys, "search", "Slide title: Quarterly results", "--db", db, "--json", "--top", "3")
    hits = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(hits) == 3 and {h["id"] for h in hits} <= set(by_id)
    assert by_id[hits[0]["id"]].metadata["title"] == "Quarterly results"
    # MolmoRetriever reads such a collection too, metadata included (no filters: see below)
    found = MolmoRetriever(db=db, k=2).invoke("Slide title: Quarterly results")
    assert found[0].id == hits[0]["id"] and found[0].metadata["title"] == "Quarterly results"
    assert found[0].page_content == by_id[found[0].id].page_content


def test_molmo_rag_search_filters_documents_written_through_langchain(lc_documents, tmp_path):
    from langchain_qdrant import QdrantVectorStore
    from molmo_rag import pipeline

    docs = [d for d in lc_documents if d.metadata["kind"] == "slide"]
    db = tmp_path / "langchain-db"
    store = QdrantVectorStore.from_documents(
        docs, MolmoEmbeddings(), path=str(db), collection_name="molmo_rag", vector_name="text-dense"
    )
    store.client.close()
    hits = pipeline.search("results", db=db, kind="slide", where="slide==2")
    assert [(h.kind, h.slide) for h in hits] == [("slide", 2)] and hits[0].text and hits[0].source
    assert pipeline.search("results", db=db, kind="image") == []  # the layout is checked, not assumed
    assert len(pipeline.search("results", db=db, where="kind!=image")) == len(docs)
