"""Fixtures of the LlamaIndex integration's tests: a mixed media folder made once per session
(photos, a PPTX deck, a PDF, an H.264 video, a broken file), an isolated environment per
test (result cache, backend, index), and the pixel-statistics FakeBackend as ``fake``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("av")
pytest.importorskip("pypdfium2")
pytest.importorskip("pptx")


@pytest.fixture(scope="session")
def li_render_home(tmp_path_factory) -> Path:
    """XDG cache home shared by the session: LibreOffice renders each deck once."""
    return tmp_path_factory.mktemp("li-xdg-cache")


@pytest.fixture(scope="session")
def li_media(tmp_path_factory) -> Path:
    """photos/ (astronaut, coffee, chelsea + a broken JPEG), decks/ (a 2-slide PPTX and a
    2-page PDF), clips/ (an 8 s video with a cut at 4 s)."""
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("li-media")
    for sub in ("photos", "decks", "clips"):
        (root / sub).mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        image = samples.photo(name)
        image.thumbnail((160, 160))
        image.save(root / "photos" / f"{name}.png")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    samples.make_deck(
        root / "decks" / "review.pptx",
        [
            samples.SlideSpec("Revenue by region", ["North grew", "South flat"], notes="Mention the chart", chart=True),
            samples.SlideSpec("Team", ["Hiring plans"], picture="astronaut"),
        ],
    )
    samples.make_pdf(root / "decks" / "talk.pdf", [["Quarterly results", "Revenue grew 12%"], ["Outlook", "Next year"]])
    samples.make_video(
        root / "clips" / "street.mp4",
        [samples.Shot("rocket", 4, "static"), samples.Shot("coffee", 4, "static")],
        size=(160, 96),
    )
    return root


@pytest.fixture(autouse=True)
def li_env(monkeypatch, tmp_path, li_render_home):
    """A fresh result cache per test, no backend or index from the environment, the fake
    backend registered as ``fake``, the session's render cache, and no shared backend left
    from another test (the package shares one backend per configuration per process)."""
    from molmo_rag import close_shared_backends
    from molmo_rag.testing import register_fake_backend

    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "molmo-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(li_render_home))
    for name in ("MOLMO_RAG_BACKEND", "MOLMO_RAG_MODEL", "MOLMO_RAG_DB", "MOLMO_RAG_QDRANT_URL", "MOLMO_RAG_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    register_fake_backend("fake", monkeypatch)
    close_shared_backends()
    yield
    close_shared_backends()


@pytest.fixture
def li_fake():
    from molmo_rag.testing import FakeBackend

    return FakeBackend()


@pytest.fixture(scope="session")
def li_expected_items() -> list[tuple[str, str]]:
    """(kind, file name) of every item ``li_media`` holds, sorted."""
    return sorted(
        [("image", "astronaut.png"), ("image", "chelsea.png"), ("image", "coffee.png")]
        + [("slide", "review.pptx")] * 2
        + [("slide", "talk.pdf")] * 2
        + [("video_segment", "street.mp4")] * 2
    )
