"""The reader on real backends: the tiny random-weight Molmo2 checkpoint through the local
transformers code path, and the WaveSpeed REST protocol against its loopback server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from llama_index.readers.molmo import MolmoExtractor, MolmoReader


@pytest.fixture(scope="module")
def li_tiny_molmo2(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from molmo_rag.testing import build_tiny_molmo2

    return build_tiny_molmo2(tmp_path_factory.mktemp("li-models") / "tiny-molmo2")


def test_tiny_local_checkpoint(li_media, li_tiny_molmo2):
    reader = MolmoReader(
        backend="local", model=str(li_tiny_molmo2), scene=False, count=["cups"],
        backend_options={"device": "cpu", "max_new_tokens": 8},
    )
    try:
        docs = reader.load_data([li_media / "photos" / "coffee.png", li_media / "decks" / "talk.pdf"])
        assert sorted(d.metadata["kind"] for d in docs) == ["image", "slide", "slide"]
        for doc in docs:  # the random model's captions are noise, but every field is there
            assert doc.metadata["backend"] == "local" and doc.metadata["model"] == str(li_tiny_molmo2)
            assert isinstance(doc.metadata["caption"], str) and isinstance(doc.metadata["points"], list)
            assert set(doc.metadata["counts"]) <= {"cups"}  # a count only when the answer states one
        backend = reader.get_backend()
        assert reader.get_backend() is backend  # the model loads once per reader
        again = reader.load_data(li_media / "photos" / "coffee.png")
        assert again[0].metadata == next(d for d in docs if d.metadata["kind"] == "image").metadata
        assert reader.failures == []
    finally:
        reader.close()


def test_wavespeed_loopback(li_media, caplog):
    from molmo_rag import get_backend
    from molmo_rag.testing import WaveSpeedServer

    with WaveSpeedServer(api_key="li-key", latency=0.05) as server:
        backend = get_backend("wavespeed", base_url=server.base_url, api_key="li-key", poll_interval=0.05, adaptive_polling=False)
        reader = MolmoReader(backend=backend, count=["person"])
        with caplog.at_level(logging.WARNING, logger="llama_index.readers.molmo"):
            docs = reader.load_data([li_media / "photos" / "coffee.png", li_media / "clips" / "street.mp4"])
        extractor = MolmoExtractor(backend=backend)
        from llama_index.core.schema import ImageNode

        (metadata,) = extractor.extract([ImageNode(image_path=str(li_media / "photos" / "astronaut.png"))])
        stats = server.stats
    by_kind = {d.metadata["kind"]: d for d in docs}
    assert set(by_kind) == {"image", "video_segment"} and len(docs) == 3
    photo = by_kind["image"]
    # WaveSpeed captions photos only: scene and counting on photos are skipped, with one warning each
    assert photo.metadata["caption"] and "scene" not in photo.metadata and photo.metadata["counts"] == {}
    assert "cannot run scene on images or slides" in caplog.text and "cannot run count" in caplog.text
    for segment in (d for d in docs if d.metadata["kind"] == "video_segment"):
        meta = segment.metadata  # on video: caption, scene and counting through video-understanding
        assert meta["backend"] == "wavespeed" and meta["caption"] and meta["scene"]
        assert isinstance(meta["counts"]["person"], int)
        assert all(meta["start"] <= p["t"] <= meta["end"] for p in meta["points"])
    assert metadata["caption"] and metadata["backend"] == "wavespeed"
    assert reader.failures == [] and extractor.failures == []
    assert "li-key" not in caplog.text and stats.requests > 0
