"""MolmoGroundedReranker as a node postprocessor, on a world whose answers are known: dark
pictures with bright spots (what the query names) and bright pictures without any. The
FakeBackend counts bright spots from the pixels."""

from __future__ import annotations

import asyncio

import pytest

from llama_index.readers.molmo import MolmoGroundedReranker, open_index


@pytest.fixture
def li_world(tmp_path):
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    from molmo_rag.testing import samples

    folder = tmp_path / "world"
    truth = samples.spots_world(folder)
    db = tmp_path / "db"
    pipeline.index([folder], backend=FakeBackend(), db=db, cache=False)
    return db, truth


def test_reranker_in_a_retriever_pipeline_puts_grounded_nodes_first(li_world):
    from molmo_rag.testing import FakeBackend

    db, truth = li_world
    index = open_index(db=db)
    nodes = index.as_retriever(similarity_top_k=10).retrieve("bright spots")
    assert len(nodes) == 10
    backend = FakeBackend()
    reranker = MolmoGroundedReranker(backend=backend, top_n=10)
    ranked = reranker.postprocess_nodes(nodes, query_str="bright spots")
    flags = [truth[n.node.metadata["source"]] > 0 for n in ranked]
    assert flags == sorted(flags, reverse=True) and sum(flags) == 4
    for n in ranked:
        meta = n.node.metadata
        assert meta["evidence"]["count"] == truth[meta["source"]] and meta["grounded"] in (0.0, 1.0)
        assert "evidence" in n.node.excluded_llm_metadata_keys and "evidence" in n.node.excluded_embed_metadata_keys
    assert ranked[0].score > ranked[-1].score and backend.calls == 10
    again = asyncio.run(reranker.apostprocess_nodes(nodes, query_str="bright spots"))  # native async, cached
    assert [n.node.node_id for n in again] == [n.node.node_id for n in ranked] and backend.calls == 10


def test_query_engine_with_the_reranker_and_counts_in_the_query(li_world):
    from llama_index.core.llms import MockLLM
    from molmo_rag.testing import FakeBackend

    db, truth = li_world
    reranker = MolmoGroundedReranker(
        backend=FakeBackend(), top_n=10, drop_misses=True, count_labels=["bright_spots"], cache=False
    )
    engine = open_index(db=db).as_query_engine(similarity_top_k=10, node_postprocessors=[reranker], llm=MockLLM())
    response = engine.query("at least 3 bright spots")
    assert sorted(truth[n.node.metadata["source"]] for n in response.source_nodes) == [3, 4]
