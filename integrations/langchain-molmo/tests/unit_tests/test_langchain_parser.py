"""MolmoBlobParser: GenericLoader over a mixed folder (with a broken file), blobs of bytes
without a path (image, PDF, PPTX, video), numpy image blobs, one backend for every blob."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from langchain_core.document_loaders.blob_loaders import Blob

from langchain_molmo import MolmoBlobParser, MolmoLoader


@pytest.mark.filterwarnings("ignore:`langchain-community` is being sunset:DeprecationWarning")
def test_generic_loader_over_a_mixed_folder(lc_library, caplog):
    from langchain_community.document_loaders.generic import GenericLoader
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    parser = MolmoBlobParser(backend=backend, count=["person"])
    loader = GenericLoader.from_filesystem(lc_library, glob="**/*", parser=parser)
    with caplog.at_level(logging.WARNING, logger="langchain_molmo"):
        docs = loader.load()
    assert sorted((d.metadata["kind"], Path(d.metadata["source"]).name) for d in docs) == [
        ("image", "astronaut.png"),
        ("image", "chelsea.png"),
        ("image", "coffee.png"),
        ("slide", "talk.pdf"),
        ("slide", "talk.pdf"),
        ("video_segment", "street.mp4"),
        ("video_segment", "street.mp4"),
    ]
    assert any("broken.jpg" in r.getMessage() and "CorruptMediaError" in r.getMessage() for r in caplog.records)
    # the same Documents as MolmoLoader (read by path: same ids, same metadata)
    direct = {d.id: d for d in MolmoLoader(lc_library, backend=backend, count=["person"]).load()}
    assert {d.id: d.metadata for d in docs} == {i: d.metadata for i, d in direct.items()}
    # a deck's slides come in order
    slides = [d.metadata["slide"] for d in docs if d.metadata["kind"] == "slide"]
    assert slides == [1, 2]
    with pytest.raises(Exception, match="broken.jpg"):
        GenericLoader.from_filesystem(
            lc_library / "photos", glob="*", parser=MolmoBlobParser(backend=backend, on_failure="raise")
        ).load()


def test_bytes_blobs_without_a_path(lc_library, tmp_path):
    from molmo_rag.index.records import point_id
    from molmo_rag.testing import FakeBackend, samples

    deck = samples.make_deck(
        tmp_path / "deck.pptx",
        [samples.SlideSpec(title="Roadmap", bullets=["Ship it"], notes="Say hello"), samples.SlideSpec(title="Thanks")],
    )
    parser = MolmoBlobParser(backend=FakeBackend())
    photo = (lc_library / "photos" / "coffee.png").read_bytes()
    docs = list(parser.lazy_parse(Blob.from_data(photo)))
    assert len(docs) == 1 and docs[0].metadata["source"] == "<bytes>" and "red" in docs[0].metadata["caption"]
    named = list(
        parser.lazy_parse(Blob.from_data(photo, metadata={"source": "s3://bucket/coffee.png", "owner": "ann"}))
    )
    assert named[0].metadata["source"] == "s3://bucket/coffee.png" and named[0].metadata["owner"] == "ann"
    assert named[0].id == point_id(named[0].metadata["media_id"], "s3://bucket/coffee.png")
    pdf = list(
        parser.lazy_parse(
            Blob.from_data((lc_library / "decks" / "talk.pdf").read_bytes(), metadata={"source": "talk.pdf"})
        )
    )
    assert [(d.metadata["kind"], d.metadata["slide"], d.metadata["title"]) for d in pdf] == [
        ("slide", 1, "Quarterly results"),
        ("slide", 2, "Team"),
    ]
    pptx = list(parser.lazy_parse(Blob.from_data(deck.read_bytes(), mime_type="application/octet-stream")))
    assert [(d.metadata["slide"], d.metadata["title"]) for d in pptx] == [(1, "Roadmap"), (2, "Thanks")]
    assert pptx[0].metadata["notes"] == "Say hello" and "Speaker notes: Say hello" in pptx[0].page_content
    video = list(
        parser.lazy_parse(Blob.from_data((lc_library / "clips" / "street.mp4").read_bytes(), path="street.mp4"))
    )
    assert [d.metadata["kind"] for d in video] == ["video_segment", "video_segment"]
    assert all(d.metadata["source"] == "street.mp4" for d in video)
    assert list(parser.lazy_parse(Blob.from_data(b"just some text"))) == []
    assert [type(f.error).__name__ for f in parser.failures] == ["UnsupportedMediaError"]


def test_numpy_image_blobs_as_an_images_parser(lc_library):
    """langchain-community's PDF parsers hand their images_parser numpy arrays."""
    import numpy as np
    from molmo_rag.testing import FakeBackend
    from PIL import Image

    array = np.asarray(Image.open(lc_library / "photos" / "coffee.png").convert("RGB"))
    buffer = io.BytesIO()
    np.save(buffer, array)
    blob = Blob.from_data(buffer.getvalue(), mime_type="application/x-npy", metadata={"source": "report.pdf"})
    parser = MolmoBlobParser(backend=FakeBackend())
    (doc,) = parser.lazy_parse(blob)
    assert doc.metadata["kind"] == "image" and doc.metadata["source"] == "report.pdf" and "red" in doc.page_content
    assert list(parser.lazy_parse(Blob.from_data(b"not numpy", mime_type="application/x-npy"))) == []
    assert [type(f.error).__name__ for f in parser.failures] == ["CorruptMediaError"]


def test_a_backend_by_name_is_made_once(lc_library, lc_made_backends):
    from molmo_rag import close_shared_backends

    with MolmoBlobParser(backend="fake") as parser:
        for name in ("coffee.png", "astronaut.png"):
            assert len(list(parser.lazy_parse(Blob.from_path(lc_library / "photos" / name)))) == 1
        (backend,) = lc_made_backends
        assert backend.calls == 4 and not backend.closed
    assert not backend.closed  # the process's shared backend: a second parser gets it too
    coffee = Blob.from_path(lc_library / "photos" / "coffee.png")
    assert len(list(MolmoBlobParser(backend="fake").lazy_parse(coffee))) == 1
    assert lc_made_backends == [backend]
    close_shared_backends()
    assert backend.closed
    with MolmoBlobParser(backend="fake", share_backend=False) as own:  # its own, closed with it
        assert len(list(own.lazy_parse(Blob.from_path(lc_library / "photos" / "coffee.png")))) == 1
    assert len(lc_made_backends) == 2 and lc_made_backends[1].closed


def test_slides_of_a_blob_come_in_order_on_a_shared_unordered_run(lc_library):
    """A given Run hands out as items finish (not ordered): slide 1, slower, finishes after
    slide 2, and the parser still yields the blob's slides in order."""
    import time

    from molmo_rag import Run
    from molmo_rag.testing import FakeBackend

    class SlowFirstSlide(FakeBackend):
        prepare_threads = 4  # every request of both slides prepared at once

        def prepare(self, request):
            if request.item.slide == 1:
                time.sleep(0.3)
            return super().prepare(request)

    deck = Blob.from_path(lc_library / "decks" / "talk.pdf")
    with Run(backend=SlowFirstSlide(batch_size=1), cache=False, window=4) as run:
        assert not run.options.ordered
        finished = [d.metadata["slide"] for d in MolmoLoader(lc_library / "decks", run).load()]
        assert finished == [2, 1]  # the engine's order: as they finish
        assert [d.metadata["slide"] for d in MolmoBlobParser(run).lazy_parse(deck)] == [1, 2]
    own = MolmoBlobParser(backend=SlowFirstSlide(batch_size=1), cache=False, window=4)
    assert own.options.ordered  # the parser's own run streams in order
    assert [d.metadata["slide"] for d in own.lazy_parse(deck)] == [1, 2]
