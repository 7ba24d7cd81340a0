"""The real backends' code paths behind the LangChain classes: the WaveSpeed protocol
against its loopback server on 127.0.0.1, and the local transformers backend on a tiny
random-weight Molmo2 checkpoint (its captions are noise: only the plumbing is checked)."""

from __future__ import annotations

import pytest
from langchain_core.document_loaders.blob_loaders import Blob

from langchain_molmo import MolmoBlobParser, MolmoLoader

KEY = "ws-loop-key-0123456789"


async def test_wavespeed_loopback_through_loader_and_parser(lc_library, caplog):
    from molmo_rag import get_backend
    from molmo_rag.testing import WaveSpeedServer

    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        backend = get_backend(
            "wavespeed", base_url=server.base_url, api_key=KEY, poll_interval=0.02, poll_max_interval=0.05
        )
        photo, clip = lc_library / "photos" / "coffee.png", lc_library / "clips" / "street.mp4"
        loader = MolmoLoader([photo, clip], backend=backend, ordered=True)
        docs = [doc async for doc in loader.alazy_load()]
        assert [d.metadata["kind"] for d in docs] == ["image", "video_segment", "video_segment"]
        assert all(d.metadata["backend"] == "wavespeed" and d.metadata["caption"] for d in docs)
        assert "scene" not in docs[0].metadata and docs[1].metadata["scene"]  # images: captions only
        assert not loader.failures
        sent = server.stats.requests
        assert sent > 0
        # the same backend object serves a parser, one event loop per blob
        parser = MolmoBlobParser(backend=backend)
        again = [d for blob in (Blob.from_path(photo), Blob.from_path(clip)) for d in parser.lazy_parse(blob)]
        assert [d.id for d in again] == [d.id for d in docs]
        assert server.stats.requests == sent  # all from the result cache
        fresh = MolmoBlobParser(backend=backend, no_cache=True)
        assert len(list(fresh.lazy_parse(Blob.from_data(photo.read_bytes(), path="coffee.png")))) == 1
        assert server.stats.requests > sent
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged and all(KEY not in str(d.metadata) for d in docs)


def test_tiny_local_checkpoint(lc_library, tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from molmo_rag import Caption
    from molmo_rag.testing import build_tiny_molmo2

    model = str(build_tiny_molmo2(tmp_path_factory.mktemp("lc_models") / "tiny-molmo2"))
    loader = MolmoLoader(
        lc_library / "photos" / "coffee.png", backend="local", model=model, tasks=[Caption(detail="low")]
    )
    (doc,) = loader.load()
    assert not loader.failures
    assert doc.metadata["backend"] == "local" and doc.metadata["model"] == model
    assert (
        doc.metadata["kind"] == "image" and isinstance(doc.metadata["caption"], str) and doc.metadata["detail"] == "low"
    )
