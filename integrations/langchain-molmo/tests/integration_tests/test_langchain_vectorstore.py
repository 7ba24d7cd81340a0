"""MolmoVectorStore: LangChain's standard vector store suite on every storage molmo-rag
opens, and the same collection read by molmo-rag search, MolmoRetriever and the filters."""

from __future__ import annotations

import pickle

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_molmo import MolmoEmbeddings, MolmoLoader, MolmoRetriever, MolmoVectorStore
from molmo_rag import UsageError, pipeline
from molmo_rag.testing import FakeBackend, samples


class TestMolmoVectorStoreOnEdge(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = MolmoVectorStore(self.get_embeddings(), db=tmp_path / "edge-index")
        yield store
        store.close()


class TestMolmoVectorStoreOnLocalMode(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = MolmoVectorStore(self.get_embeddings(), db=tmp_path / "local-index", storage="local")
        yield store
        store.close()


@pytest.fixture
def spots(tmp_path):
    folder = tmp_path / "world"
    truth = samples.spots_world(folder)
    docs = MolmoLoader(str(folder), backend=FakeBackend(), count=["bright spots"], cache=tmp_path / "cache").load()
    return docs, truth


def test_molmo_documents_in_the_store_answer_every_door(tmp_path, spots):
    docs, truth = spots
    db = tmp_path / "index"
    with MolmoVectorStore(db=db) as store:
        ids = store.add_documents(docs)
        assert ids == [d.id for d in docs]
        spotted = store.similarity_search("bright spots", k=len(docs), filter={"count_bright_spots": {"$gte": 1}})
        assert {d.metadata["source"] for d in spotted} == {s for s, n in truth.items() if n >= 1}
        same = store.similarity_search("bright spots", k=len(docs), filter="count.bright_spots>=1")  # --where
        assert [d.id for d in same] == [d.id for d in spotted]
        got = store.get_by_ids([docs[0].id])[0]
        assert got.metadata == docs[0].metadata and got.page_content == docs[0].page_content
    hits = pipeline.search("bright spots", db=db, where=["count_bright_spots>=1"], top=len(docs))
    assert {h.id for h in hits} == {d.id for d in spotted}  # molmo-rag search reads what LangChain wrote
    retrieved = MolmoRetriever(db=str(db), k=len(docs), where="count.bright_spots>=2").invoke("bright spots")
    assert {d.metadata["source"] for d in retrieved} == {s for s, n in truth.items() if n >= 2}


def test_the_vectors_are_the_ones_molmo_rag_index_writes(tmp_path, spots):
    docs, _ = spots
    with MolmoVectorStore(db=tmp_path / "lc") as store:
        store.add_documents(docs)
    summary = pipeline.index([docs[0].metadata["source"]], backend=FakeBackend(), db=tmp_path / "lc",
                             count=["bright spots"], cache=tmp_path / "cache")
    assert summary.unchanged == 1 and summary.indexed == 0  # same point, same record hash: nothing rewritten


def test_filters_are_checked_and_a_copy_reopens(tmp_path):
    store = MolmoVectorStore(db=tmp_path / "index")
    store.add_documents([Document("a note", metadata={"page": 3}, id="n1")])
    assert [d.id for d in store.similarity_search("note", filter={"page": {"$lt": 4}})] == ["n1"]
    assert store.similarity_search("note", filter={"page": {"$gt": 4}}) == []
    with pytest.raises(UsageError, match=r"\$near"):
        store.similarity_search("note", filter={"page": {"$near": 4}})
    with pytest.raises(UsageError):
        store.similarity_search("note", filter="count.person>>2")
    store.close()
    copy = pickle.loads(pickle.dumps(store))
    assert [d.metadata for d in copy.similarity_search("note")] == [{"page": 3}]
    copy.close()
