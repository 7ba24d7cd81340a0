"""Fixtures of langchain-molmo's tests: a small mixed media library (photos, a PDF deck, a
two-shot video, a broken file), made once per session, and a molmo-rag index of it built
with the pixel-statistics FakeBackend."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _lc_molmo_environment(monkeypatch, tmp_path):
    """Hermetic runs: the result cache (and saved pictures) in this test's folder, no
    backend, index or embedder chosen by the environment, no shared backend left over."""
    from molmo_rag import close_shared_backends

    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "molmo-cache"))
    for name in ("MOLMO_RAG_BACKEND", "MOLMO_RAG_MODEL", "MOLMO_RAG_DB", "MOLMO_RAG_QDRANT_URL", "MOLMO_RAG_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    close_shared_backends()  # the process's shared backends (share_backend): none from another test
    yield
    close_shared_backends()


@pytest.fixture
def lc_fake_backend(monkeypatch):
    """``backend="fake"`` resolves to molmo-rag's FakeBackend (answers from pixel statistics)."""
    from molmo_rag.testing import register_fake_backend

    register_fake_backend("fake", monkeypatch)
    return "fake"


@pytest.fixture
def lc_made_backends(monkeypatch, lc_fake_backend) -> list:
    """Every backend a ``molmo_rag.Run`` makes from a name in this test (``backend="fake"``:
    a FakeBackend), in order, each with ``closed`` set once its run released it."""
    import molmo_rag.run

    made: list = []
    create = molmo_rag.run.create_backend

    def counting(*args, **kwargs):
        backend = create(*args, **kwargs)
        close = backend.close

        def closing() -> None:
            backend.closed = True
            close()

        backend.closed, backend.close = False, closing
        made.append(backend)
        return backend

    monkeypatch.setattr(molmo_rag.run, "create_backend", counting)
    return made


@pytest.fixture(scope="session")
def lc_library(tmp_path_factory) -> Path:
    """photos/{astronaut,coffee,chelsea}.png + photos/broken.jpg, decks/talk.pdf (2 pages),
    clips/street.mp4 (two 4 s shots: two segments)."""
    pytest.importorskip("av")
    pytest.importorskip("pypdfium2")
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("lc_library")
    for sub in ("photos", "decks", "clips"):
        (root / sub).mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        image = samples.photo(name)
        image.thumbnail((160, 160))
        image.save(root / "photos" / f"{name}.png")
    samples.make_pdf(root / "decks" / "talk.pdf", [["Quarterly results", "Revenue grew 12%"], ["Team", "Hiring plans"]])
    samples.make_video(
        root / "clips" / "street.mp4",
        [samples.Shot("rocket", 4, "static"), samples.Shot("coffee", 4, "static")],
        size=(160, 96),
    )
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def lc_index(lc_library, tmp_path_factory) -> Path:
    """The library indexed by molmo-rag (``pipeline.index``, what ``molmo-rag index`` runs)
    into an embedded Qdrant folder, collection ``molmo_rag``, counting ``person``."""
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    tmp = tmp_path_factory.mktemp("lc_index")
    summary = pipeline.index([lc_library], backend=FakeBackend(), db=tmp / "db", cache=tmp / "cache", count=["person"])
    assert summary.indexed == 7 and len(summary.failed) == 1
    return tmp / "db"


@pytest.fixture(scope="session")
def lc_local_index(lc_library, tmp_path_factory) -> Path:
    """The same library indexed into a qdrant-client local-mode folder (``storage="local"``):
    what LangChain's stock ``QdrantVectorStore`` opens by path."""
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    tmp = tmp_path_factory.mktemp("lc_local_index")
    summary = pipeline.index(
        [lc_library], backend=FakeBackend(), db=tmp / "db", storage="local", cache=tmp / "cache", count=["person"]
    )
    assert summary.indexed == 7
    return tmp / "db"


def _stored_points(db: Path) -> dict:
    from molmo_rag import QdrantIndex

    with QdrantIndex(db, create=False) as store:
        points, _ = store.scroll(limit=100)
    return {str(p.id): p.payload for p in points}


@pytest.fixture(scope="session")
def stored_points():
    """Every point of an index folder, either storage: ``stored_points(db)`` -> {id: payload}."""
    return _stored_points


@pytest.fixture(scope="session")
def lc_points(lc_index) -> dict:
    """Every point of the index: id -> payload (read once, the folder closed again)."""
    return _stored_points(lc_index)


@pytest.fixture(scope="session")
def lc_documents(lc_library, tmp_path_factory) -> list:
    """MolmoLoader's Documents of the library (FakeBackend, counting ``person``): read once,
    shared by the tests that only need them as input (do not mutate). Their pictures are
    saved under a session folder (``MOLMO_RAG_CACHE_DIR`` while loading), not the user's."""
    from molmo_rag.testing import FakeBackend

    from langchain_molmo import MolmoLoader

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path_factory.mktemp("lc_documents_cache")))
        return MolmoLoader(
            lc_library, backend=FakeBackend(), count=["person"], cache=False, on_failure=lambda f: None
        ).load()
