"""MolmoGroundedCompressor in ContextualCompressionRetriever, and MolmoRetriever's counts in
words, on a world whose answers are known: dark pictures with bright spots (what the query
names) and bright pictures without any, which the text search prefers. FakeBackend counts
bright spots from the pixels."""

from __future__ import annotations

import asyncio

import pytest

from langchain_molmo import MolmoGroundedCompressor, MolmoRetriever


@pytest.fixture
def lc_world(tmp_path):
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    from molmo_rag.testing import samples

    folder = tmp_path / "world"
    truth = samples.spots_world(folder)
    db = tmp_path / "db"
    pipeline.index([folder], backend=FakeBackend(), db=db, cache=False, count=["bright spots"])
    return db, truth


def test_contextual_compression_puts_every_grounded_document_first(lc_world):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from molmo_rag.testing import FakeBackend

    db, truth = lc_world
    base = MolmoRetriever(db=db, k=10)
    assert len(base.invoke("bright spots")) == 10
    backend = FakeBackend()
    retriever = ContextualCompressionRetriever(
        base_compressor=MolmoGroundedCompressor(backend=backend, top_n=10), base_retriever=base
    )
    docs = retriever.invoke("bright spots")
    flags = [truth[d.metadata["source"]] > 0 for d in docs]
    assert flags == sorted(flags, reverse=True) and sum(flags) == 4
    for doc in docs:
        assert doc.metadata["evidence"]["count"] == truth[doc.metadata["source"]]
        assert doc.metadata["grounded"] == (1.0 if truth[doc.metadata["source"]] else 0.0)
        assert doc.page_content and doc.id
    assert backend.calls == 10
    # async, native: answers now come from the cache
    again = asyncio.run(retriever.ainvoke("bright spots"))
    assert [d.id for d in again] == [d.id for d in docs] and backend.calls == 10


def test_drop_misses_and_counts_in_the_query(lc_world):
    from molmo_rag.testing import FakeBackend

    db, truth = lc_world
    docs = MolmoRetriever(db=db, k=10).invoke("bright spots")
    compressor = MolmoGroundedCompressor(
        backend=FakeBackend(), top_n=10, drop_misses=True, count_labels=["bright_spots"], cache=False
    )
    kept = compressor.compress_documents(docs, "at least 3 bright spots")
    assert sorted(truth[d.metadata["source"]] for d in kept) == [3, 4]


def test_retriever_reads_counts_in_words(lc_world):
    db, truth = lc_world
    found = MolmoRetriever(db=db, k=10, count_words=True).invoke("a picture with exactly two bright spots")
    assert [truth[d.metadata["source"]] for d in found] == [2]
    assert len(MolmoRetriever(db=db, k=10).invoke("a picture with exactly two bright spots")) == 10
    assert [truth[d.metadata["source"]] for d in MolmoRetriever(db=db, k=10).invoke("no bright spots", count_words=True)] == [0] * 6


def test_the_compressor_shares_a_run_and_leaves_it_open(lc_world, lc_made_backends):
    from molmo_rag import Run, RunOptions

    db, truth = lc_world
    docs = MolmoRetriever(db=db, k=10).invoke("bright spots")
    with Run(backend="fake", cache=False) as run:
        compressor = MolmoGroundedCompressor(run, top_n=10, drop_misses=True)
        kept = compressor.compress_documents(docs, "bright spots")
        assert sorted(truth[d.metadata["source"]] for d in kept) == [1, 2, 3, 4]
        compressor.close()
        (backend,) = lc_made_backends
        assert not backend.closed and backend.calls == 10  # the run's backend, left open
        assert len(compressor.compress_documents(docs, "bright spots")) == 4 and backend.calls == 20
    assert backend.closed
    # RunOptions given whole, keywords on top: one backend made for every query, the
    # process's shared one (left open by close()) unless share_backend=False
    options = RunOptions(backend="fake")
    compressor = MolmoGroundedCompressor(options, top_n=3, cache=False)
    assert compressor.options.backend == "fake" and compressor.options.cache is False
    for _ in range(2):
        assert len(compressor.compress_documents(docs, "bright spots")) == 10
    assert len(lc_made_backends) == 2 and lc_made_backends[1].calls == 6
    compressor.close()
    assert not lc_made_backends[1].closed
    own = MolmoGroundedCompressor(options, top_n=3, cache=False, share_backend=False)
    assert len(own.compress_documents(docs, "bright spots")) == 10
    assert len(lc_made_backends) == 3 and lc_made_backends[2].calls == 3
    own.close()
    assert lc_made_backends[2].closed and not lc_made_backends[1].closed
