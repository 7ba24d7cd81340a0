"""MolmoExtractor inside an IngestionPipeline: image nodes from any reader (a path, base64,
a URL) get Molmo2 metadata, a node that fails is reported and the pipeline goes on, and a
re-run makes no backend call (docstore, then the core's cache)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.schema import ImageDocument, ImageNode, MetadataMode, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.readers.molmo import MolmoEmbedding, MolmoExtractor, MolmoLoadError

DUPLICATES = DocstoreStrategy.DUPLICATES_ONLY  # no vector store here


def make_nodes(media: Path) -> list:
    photos = media / "photos"
    return [
        ImageDocument(id_="doc-astronaut", image_path=str(photos / "astronaut.png"), metadata={"album": "space"}),
        ImageNode(id_="node-coffee-b64", image=base64.b64encode((photos / "coffee.png").read_bytes()).decode()),
        ImageNode(id_="node-broken", image_path=str(photos / "broken.jpg")),
        ImageNode(id_="node-deck", image_path=str(media / "decks" / "talk.pdf")),
        TextNode(id_="text-only", text="A paragraph with no picture."),
    ]


def test_pipeline_enriches_image_nodes_and_reruns_without_calls(li_media, li_fake, caplog):
    extractor = MolmoExtractor(backend=li_fake, count=["person"], questions=["What colour dominates?"])
    docstore = SimpleDocumentStore()
    pipeline = IngestionPipeline(transformations=[extractor, MolmoEmbedding()], docstore=docstore, docstore_strategy=DUPLICATES, disable_cache=True)
    with caplog.at_level(logging.WARNING, logger="llama_index.readers.molmo"):
        nodes = {n.id_: n for n in pipeline.run(documents=make_nodes(li_media))}
    assert set(nodes) == {"doc-astronaut", "node-coffee-b64", "node-broken", "node-deck", "text-only"}
    assert li_fake.calls == 2 * 4  # two images x (caption, scene, count, question)

    astronaut, coffee = nodes["doc-astronaut"], nodes["node-coffee-b64"]
    for node in (astronaut, coffee):
        meta = node.metadata
        assert meta["caption"] and meta["scene"] and meta["backend"] == "fake" and meta["kind"] == "image"
        assert isinstance(meta["counts"]["person"], int) and len(meta["points"]) == meta["counts"]["person"]
        assert meta["answers"][0]["question"] == "What colour dominates?"
        assert meta["caption"] in node.get_content()  # a node with no text gets the record text
        embed = node.get_content(MetadataMode.EMBED)
        assert "points" not in embed and "media_id" not in embed and embed.count(meta["caption"]) == 1
        assert node.embedding and len(node.embedding) == 256
    assert astronaut.metadata["album"] == "space" and astronaut.metadata["source"].endswith("astronaut.png")
    assert "source" not in coffee.metadata  # base64: no file to point at
    # failures per node: logged with the cause, nothing added, the pipeline went on
    assert "caption" not in nodes["node-broken"].metadata and "caption" not in nodes["node-deck"].metadata
    assert nodes["text-only"].metadata == {} and nodes["text-only"].text == "A paragraph with no picture."
    failed = sorted((Path(f.source).name, type(f.error).__name__) for f in extractor.failures)
    assert failed == [("broken.jpg", "CorruptMediaError"), ("talk.pdf", "UnsupportedMediaError")]
    assert "broken.jpg" in caplog.text and "not one image" in caplog.text

    # re-run with the same docstore: unchanged nodes are skipped before any transformation
    again = IngestionPipeline(transformations=[extractor, MolmoEmbedding()], docstore=docstore, docstore_strategy=DUPLICATES, disable_cache=True)
    assert again.run(documents=make_nodes(li_media)) == [] and li_fake.calls == 8
    # a fresh docstore: the core's cache answers, still no backend call, same metadata
    fresh = IngestionPipeline(transformations=[extractor], docstore=SimpleDocumentStore(), docstore_strategy=DUPLICATES, disable_cache=True)
    rerun = {n.id_: n for n in fresh.run(documents=make_nodes(li_media))}
    assert li_fake.calls == 8 and rerun["doc-astronaut"].metadata["counts"] == astronaut.metadata["counts"]


async def test_extractor_async_in_a_running_loop(li_media):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend(batch_size=2)
    extractor = MolmoExtractor(backend=backend, scene=False, fill_text=False)
    nodes = [ImageNode(id_=f"n{i}", image_path=str(li_media / "photos" / name), text="OCR text")
             for i, name in enumerate(["astronaut.png", "coffee.png", "chelsea.png", "coffee.png"])]
    out = await IngestionPipeline(transformations=[extractor]).arun(nodes=nodes)
    assert [n.id_ for n in out] == ["n0", "n1", "n2", "n3"]  # node order kept (the engine runs in order)
    assert out[1].metadata["caption"] == out[3].metadata["caption"] and backend.calls == 3  # one copy asked once
    assert all(n.text == "OCR text" for n in out)  # fill_text=False: the node's own text stays
    assert out[0].metadata["caption"] in out[0].get_content(MetadataMode.EMBED)  # then the caption is embedded
    # the sync entry point from inside the loop
    assert extractor.extract(nodes[:1])[0]["caption"] == out[0].metadata["caption"]


def test_image_urls_and_data_uris(li_media, li_fake):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(li_media / "photos"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/chelsea.png"
        data_uri = "data:image/png;base64," + base64.b64encode((li_media / "photos" / "coffee.png").read_bytes()).decode()
        nodes = [ImageNode(id_="by-url", image_url=url), ImageNode(id_="by-data-uri", image_url=data_uri)]
        by_url, by_data = MolmoExtractor(backend=li_fake, scene=False).extract(nodes)
    finally:
        server.shutdown()
        server.server_close()
    assert by_url["source"] == url and by_url["caption"] and by_url["kind"] == "image"
    assert by_data["caption"] and "source" not in by_data  # no file or URL to point back at


def test_extractor_errors_that_raise(li_media, li_fake):
    from molmo_rag.errors import UsageError

    broken = [ImageNode(image_path=str(li_media / "photos" / "broken.jpg"))]
    with pytest.raises(MolmoLoadError, match="broken.jpg"):
        MolmoExtractor(backend=li_fake, raise_on_error=True).extract(broken)
    assert MolmoExtractor(backend=li_fake).extract(broken) == [{}]  # reported, not raised
    # a setup error is never turned into empty metadata
    photo = [ImageNode(image_path=str(li_media / "photos" / "coffee.png"))]
    with pytest.raises(UsageError, match="unknown backend"):
        IngestionPipeline(transformations=[MolmoExtractor(backend="no-such-backend")]).run(nodes=photo)


def test_reader_documents_keep_their_identity_through_the_extractor(li_media, li_fake):
    """A slide from MolmoReader is a rendered frame to the extractor: enriching it again must
    not turn its media id (``<hash>#slide=N``, part of its point id) into the frame's hash."""
    from llama_index.readers.molmo import MolmoReader

    docs = MolmoReader(backend=li_fake).load_data(li_media / "decks" / "talk.pdf")
    before = [(d.id_, d.metadata["media_id"]) for d in docs]
    assert all("#slide=" in media_id for _, media_id in before)
    metadata = MolmoExtractor(backend=li_fake).extract(docs)
    for doc, extra in zip(docs, metadata):
        assert "caption" in extra and extra.get("media_id", doc.metadata["media_id"]) == doc.metadata["media_id"]
