"""MolmoLoader over real files (photos, a PDF deck, a video, a broken file) with the
pixel-statistics FakeBackend: one Document per photo, slide and video segment; failures
reported, never dropped; a native alazy_load that streams on the caller's loop."""

from __future__ import annotations

import asyncio
import functools
import http.server
import logging
import threading
from pathlib import Path

import pytest
from langchain_core.documents import Document

from langchain_molmo import MolmoLoader


def kinds(docs: list[Document]) -> list[tuple[str, str]]:
    return sorted((d.metadata["kind"], Path(d.metadata["source"]).name) for d in docs)


EXPECTED = [
    ("image", "astronaut.png"),
    ("image", "chelsea.png"),
    ("image", "coffee.png"),
    ("slide", "talk.pdf"),
    ("slide", "talk.pdf"),
    ("video_segment", "street.mp4"),
    ("video_segment", "street.mp4"),
]


def test_one_document_per_photo_slide_and_segment(lc_library, caplog):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    loader = MolmoLoader([lc_library], backend=backend, count=["person"])
    with caplog.at_level(logging.WARNING, logger="langchain_molmo"):
        docs = loader.load()
    assert kinds(docs) == EXPECTED
    assert backend.calls == 7 * 3  # caption, scene, count per item
    for doc in docs:
        meta = doc.metadata
        assert doc.page_content and meta["caption"] in doc.page_content and meta["scene"] in doc.page_content
        assert Path(meta["source"]).is_absolute() and meta["media_id"] and doc.id
        assert meta["backend"] == "fake" and meta["model"] == "pixel-stats-1"
        assert isinstance(meta["counts"]["person"], int) and meta["thumbnail"].startswith("data:image/jpeg;base64,")
        assert len(meta["points"]) == meta["counts"]["person"]
    slides = sorted((d for d in docs if d.metadata["kind"] == "slide"), key=lambda d: d.metadata["slide"])
    assert [(s.metadata["slide"], s.metadata["title"]) for s in slides] == [(1, "Quarterly results"), (2, "Team")]
    assert "Slide title: Quarterly results" in slides[0].page_content
    segments = sorted((d for d in docs if d.metadata["kind"] == "video_segment"), key=lambda d: d.metadata["start"])
    assert segments[0].metadata["start"] == 0 and segments[0].metadata["end"] == pytest.approx(
        segments[1].metadata["start"]
    )
    # the broken file: reported with its cause, not dropped silently
    assert [Path(f.source).name for f in loader.failures] == ["broken.jpg"]
    warned = [r.getMessage() for r in caplog.records if r.name == "langchain_molmo"]
    assert any("broken.jpg" in m and "CorruptMediaError" in m for m in warned), warned


def test_ids_are_the_point_ids_and_stable(lc_library):
    from molmo_rag.index.records import point_id
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    first = MolmoLoader(str(lc_library / "photos" / "*.png"), backend=backend).load()
    assert len(first) == 3 and backend.calls == 6
    for doc in first:
        assert doc.id == point_id(doc.metadata["media_id"], doc.metadata["source"])
    again = MolmoLoader(str(lc_library / "photos" / "coffee.png"), backend=backend).load()
    assert backend.calls == 6  # served from the result cache
    assert (
        again[0].id in {d.id for d in first}
        and again[0].metadata == next(d for d in first if d.id == again[0].id).metadata
    )


def test_on_failure_raise_and_callback(lc_library):
    from molmo_rag.errors import CorruptMediaError, SourceNotFoundError
    from molmo_rag.testing import FakeBackend

    sources = [lc_library / "photos" / "coffee.png", lc_library / "photos" / "broken.jpg"]
    with pytest.raises(CorruptMediaError, match="broken.jpg"):
        MolmoLoader(sources, backend=FakeBackend(), on_failure="raise", ordered=True).load()
    seen = []
    docs = MolmoLoader([*sources, lc_library / "missing.png"], backend=FakeBackend(), on_failure=seen.append).load()
    assert len(docs) == 1
    assert sorted(type(f.error).__name__ for f in seen) == ["CorruptMediaError", "SourceNotFoundError"]
    assert any(isinstance(f.error, SourceNotFoundError) for f in seen)
    with pytest.raises(ValueError, match="on_failure"):
        MolmoLoader(sources, on_failure="ignore")  # type: ignore[arg-type]


def test_a_failed_task_is_reported_and_the_rest_kept(lc_library, caplog):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend(fail_on="chelsea")
    with caplog.at_level(logging.WARNING, logger="langchain_molmo"):
        loader = MolmoLoader(lc_library / "photos", backend=backend)
        docs = loader.load()
    assert sorted(Path(d.metadata["source"]).name for d in docs) == ["astronaut.png", "coffee.png"]
    assert {Path(f.source).name for f in loader.failures} == {"chelsea.png", "broken.jpg"}
    assert any("chelsea.png" in r.getMessage() and "BackendError" in r.getMessage() for r in caplog.records)


def test_tasks_thumbnails_and_reader_options(lc_library):
    from molmo_rag import Ask, Caption
    from molmo_rag.testing import FakeBackend

    docs = MolmoLoader(
        [lc_library / "photos" / "coffee.png", lc_library / "clips"],
        backend=FakeBackend(),
        tasks=[Caption(detail="high"), Ask(question="What colour?")],
        thumbnail_size=0,
        reader_options={"segment_mode": "fixed", "segment_seconds": 8},
        ordered=True,
    ).load()
    assert [d.metadata["kind"] for d in docs] == ["image", "video_segment"]  # one 8 s segment
    for doc in docs:
        assert "thumbnail" not in doc.metadata and "scene" not in doc.metadata
        assert doc.metadata["detail"] == "high" and doc.metadata["answers"][0]["question"] == "What colour?"


def test_url_sources(lc_library):
    from molmo_rag.testing import FakeBackend

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(lc_library / "photos"))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/coffee.png"
        loader = MolmoLoader([url, url.replace("coffee", "gone")], backend=FakeBackend())
        docs = loader.load()
    finally:
        server.shutdown()
        server.server_close()
    assert [d.metadata["source"] for d in docs] == [url]
    assert "red" in docs[0].metadata["caption"]
    assert [type(f.error).__name__ for f in loader.failures] == ["SourceNotFoundError"]


async def test_alazy_load_streams_on_the_running_loop(lc_library):
    """Native async: documents arrive as they finish (the first before the backend did all
    the work) and the caller's loop keeps running meanwhile."""
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend(batch_size=1, delay=0.05)
    loader = MolmoLoader(lc_library / "photos", backend=backend, window=2)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    calls_at_arrival = []
    docs = []
    async for doc in loader.alazy_load():
        calls_at_arrival.append(backend.calls)
        docs.append(doc)
    stop.set()
    await ticking
    assert len(docs) == 3 and backend.calls == 6
    assert calls_at_arrival[0] < 6  # the first document came while others were still to be asked
    assert ticks >= 10  # the loop was never blocked by the run
    assert [Path(f.source).name for f in loader.failures] == ["broken.jpg"]
    # aload, and the sync load() called from inside this running loop, give the same documents
    assert sorted(d.id for d in await loader.aload()) == sorted(d.id for d in docs)
    assert sorted(d.id for d in loader.load()) == sorted(d.id for d in docs)


async def test_alazy_load_raise_stops_the_run(lc_library):
    from molmo_rag.errors import CorruptMediaError
    from molmo_rag.testing import FakeBackend

    loader = MolmoLoader(
        [lc_library / "photos" / "broken.jpg", lc_library / "photos"], backend=FakeBackend(), on_failure="raise"
    )
    with pytest.raises(CorruptMediaError):
        async for _ in loader.alazy_load():
            pass


def test_backend_by_name(lc_library, lc_fake_backend):
    docs = MolmoLoader(lc_library / "decks", backend=lc_fake_backend, count="person").load()
    assert [d.metadata["backend"] for d in docs] == ["fake", "fake"] and all(
        "person" in d.metadata["counts"] for d in docs
    )
