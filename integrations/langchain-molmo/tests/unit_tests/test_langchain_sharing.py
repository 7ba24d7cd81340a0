"""One backend per process per configuration, however many objects ask for it (a loader
per file from ``DirectoryLoader``, loads repeated, copies unpickled); every class pickles
and works after unpickling; ``backend_options`` reach the backend."""

from __future__ import annotations

import pickle

import pytest
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document

from langchain_molmo import (
    MolmoBlobParser,
    MolmoDocumentTransformer,
    MolmoEmbeddings,
    MolmoGroundedCompressor,
    MolmoLoader,
    MolmoRetriever,
)
from molmo_rag.testing import FakeBackend

MADE: list[FakeBackend] = []


class CountingBackend(FakeBackend):
    """A FakeBackend that remembers every construction (``MADE``) and its options."""

    def __init__(self, **options):
        super().__init__(**options)
        self.options_given = dict(options)
        MADE.append(self)


@pytest.fixture
def counting(monkeypatch) -> list[FakeBackend]:
    """``backend="counting"`` names :class:`CountingBackend` in molmo-rag's registry."""
    from molmo_rag.backends import base

    monkeypatch.setitem(base.BACKENDS, "counting", f"{__name__}:CountingBackend")
    MADE.clear()
    yield MADE
    MADE.clear()


def ignore(failure) -> None:  # a module-level callable: a failure policy that pickles
    pass


def test_directory_loader_builds_one_backend_for_every_file(lc_library, counting):
    from langchain_community.document_loaders import DirectoryLoader

    loader = DirectoryLoader(
        str(lc_library),
        loader_cls=MolmoLoader,
        loader_kwargs={"backend": "counting", "count": ["person"], "on_failure": ignore},
    )
    docs = loader.load()
    assert len(counting) == 1  # six files, six MolmoLoaders, one backend
    assert len(docs) == 7 and all(d.metadata["backend"] == "fake" for d in docs)
    # threads too, and a second DirectoryLoader: still the same one
    threaded = DirectoryLoader(
        str(lc_library), loader_cls=MolmoLoader, use_multithreading=True, max_concurrency=4,
        loader_kwargs={"backend": "counting", "count": ["person"], "on_failure": ignore},
    ).load()
    assert len(counting) == 1
    assert sorted(d.id for d in threaded) == sorted(d.id for d in docs)
    # the same Documents as one MolmoLoader over the folder
    whole = MolmoLoader(lc_library, backend="counting", count=["person"], on_failure=ignore)
    first = whole.load()
    second = whole.load()  # load() twice: no second backend
    assert len(counting) == 1
    assert sorted(d.id for d in first) == sorted(d.id for d in second) == sorted(d.id for d in docs)


def test_another_configuration_is_another_backend_and_backend_options_reach_it(lc_library, counting):
    coffee = lc_library / "photos" / "coffee.png"
    MolmoLoader(coffee, backend="counting", cache=False).load()
    MolmoLoader(coffee, backend="counting", backend_options={"batch_size": 2, "delay": 0.0}, cache=False).load()
    assert len(counting) == 2 and counting[1].options_given == {"batch_size": 2, "delay": 0.0}
    assert counting[1].batch_size == 2
    # the same options again, from every class that runs a backend: that same backend
    same = {"backend": "counting", "backend_options": {"batch_size": 2, "delay": 0.0}, "cache": False}
    assert len(list(MolmoBlobParser(**same).lazy_parse(Blob.from_path(coffee)))) == 1
    (out,) = MolmoDocumentTransformer(**same).transform_documents([Document("", metadata={"image_path": str(coffee)})])
    assert out.metadata["caption"]
    (checked,) = MolmoGroundedCompressor(**same).compress_documents([out], "cup")
    assert checked.metadata["grounded"] in (0.0, 1.0)
    assert len(counting) == 2
    assert MolmoGroundedCompressor(**same).options.backend_options == {"batch_size": 2, "delay": 0.0}
    own = MolmoLoader(coffee, backend="counting", share_backend=False, cache=False)
    own.load()
    assert len(counting) == 3  # share_backend=False: its own
    own.close()


def test_every_class_pickles_and_works_after_unpickling(lc_library, lc_index, counting):
    photos = lc_library / "photos"
    coffee = photos / "coffee.png"
    options = {"backend": "counting", "count": ["person"], "backend_options": {"batch_size": 3}}

    loader = MolmoLoader(photos, on_failure=ignore, **options)
    docs = loader.load()  # pickled after use: a live run, locks, a finalizer
    copy = pickle.loads(pickle.dumps(loader))
    assert copy.options.backend_options == {"batch_size": 3} and copy.options.count == ["person"]
    again = copy.load()
    assert [(d.id, d.metadata) for d in again] == [(d.id, d.metadata) for d in docs]
    assert [f.source for f in copy.failures] == [str(photos / "broken.jpg")]  # its own, from its load

    parser = MolmoBlobParser(on_failure=ignore, **options)
    (parsed,) = parser.lazy_parse(Blob.from_path(coffee))
    (reparsed,) = pickle.loads(pickle.dumps(parser)).lazy_parse(Blob.from_path(coffee))
    assert reparsed.id == parsed.id and reparsed.metadata == parsed.metadata

    transformer = MolmoDocumentTransformer(content="replace", **options)
    picture = [Document("", metadata={"image_path": str(coffee)})]
    (enriched,) = transformer.transform_documents(picture)
    (copied,) = pickle.loads(pickle.dumps(transformer)).transform_documents(picture)
    assert copied.page_content == enriched.page_content and copied.metadata == enriched.metadata

    compressor = MolmoGroundedCompressor(top_n=2, **options)
    checked = compressor.compress_documents(docs[:2], "person")
    copy_compressor = pickle.loads(pickle.dumps(compressor))
    assert copy_compressor.top_n == 2 and copy_compressor.options.backend_options == {"batch_size": 3}
    assert [d.metadata["evidence"] for d in copy_compressor.compress_documents(docs[:2], "person")] == [
        d.metadata["evidence"] for d in checked
    ]
    assert len(counting) == 1  # every copy landed on this process's one backend of that configuration

    retriever = MolmoRetriever(db=str(lc_index), k=3, kind="image")
    found = retriever.invoke("a bright picture")
    assert [d.id for d in pickle.loads(pickle.dumps(retriever)).invoke("a bright picture")] == [d.id for d in found]

    embeddings = MolmoEmbeddings()
    vector = embeddings.embed_query("a cup of coffee")
    assert pickle.loads(pickle.dumps(embeddings)).embed_query("a cup of coffee") == vector


def test_a_shared_run_pickles_as_its_options(lc_library, counting):
    from molmo_rag import Run

    coffee = lc_library / "photos" / "coffee.png"
    with Run(backend="counting", share_backend=True, count=["person"], cache=False) as run:
        loader = MolmoLoader(coffee, run)
        compressor = MolmoGroundedCompressor(run, top_n=1)
        (doc,) = loader.load()
        loader_copy, compressor_copy = pickle.loads(pickle.dumps((loader, compressor)))
        assert loader_copy.options.count == ["person"] and compressor_copy.options.count == ["person"]
        (again,) = loader_copy.load()
        assert again.id == doc.id and again.metadata["counts"] == doc.metadata["counts"]
        assert compressor_copy.compress_documents([doc], "person")[0].metadata["grounded"] is not None
        assert len(counting) == 1


def test_a_failure_policy_that_cannot_travel_says_so(lc_library):
    loader = MolmoLoader(lc_library, backend="local", on_failure=lambda f: None)
    with pytest.raises(Exception, match="lambda|pickle"):
        pickle.dumps(loader)
