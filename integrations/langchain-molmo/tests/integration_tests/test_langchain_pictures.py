"""The picture travels with every Document, wired the way LangChain's own docs wire things:
MolmoLoader's Documents carry a full-resolution picture (``image_path``); a chain over a
stock ``QdrantVectorStore`` hands a chat model those pictures as image blocks; the flat
count keys filter on ``InMemoryVectorStore`` and survive ``filter_complex_metadata``; the
grounded compressor over ``QdrantVectorStore.as_retriever()`` returns copies of its inputs
and checks each document's own picture; ``index()`` with a record manager keeps our ids."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

from langchain_molmo import MolmoEmbeddings, MolmoGroundedCompressor, MolmoLoader, image_message

pytest.importorskip("langchain_qdrant")


def _size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _thumbnail_size(data_uri: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))) as image:
        return image.size


def _qdrant_store(docs: list[Document], folder: Path, collection: str = "media") -> Any:
    """``QdrantVectorStore.from_documents`` in qdrant-client's local mode, as langchain-qdrant's docs do."""
    from langchain_qdrant import QdrantVectorStore

    return QdrantVectorStore.from_documents(docs, MolmoEmbeddings(), path=str(folder), collection_name=collection)


# -- the picture of every document ---------------------------------------------------------
def test_every_document_carries_its_picture_at_full_resolution(lc_library, lc_documents):
    from molmo_rag.pictures import PICTURES

    kinds = sorted(d.metadata["kind"] for d in lc_documents)
    assert kinds == ["image"] * 3 + ["slide"] * 2 + ["video_segment"] * 2
    for doc in lc_documents:
        path = doc.metadata["image_path"]
        assert Path(path).is_file(), doc.metadata["source"]
        width, height = _size(path)
        thumb = _thumbnail_size(doc.metadata["thumbnail"])
        assert max(thumb) == 128 and max(width, height) > 128  # the picture, not the thumbnail
        kind = doc.metadata["kind"]
        if kind == "image":  # a local photo is its own picture
            assert path == doc.metadata["source"] and (width, height) == _size(doc.metadata["source"])
        else:  # saved once under the cache folder, by content hash
            assert Path(path).parent.name == PICTURES
        if kind == "slide":  # rendered from the 960x540 pt page, at least 1 px per point
            assert width >= 960 and abs(width / height - 960 / 540) < 0.01
        if kind == "video_segment":  # the frame as stored in the video
            assert (width, height) == (160, 96)
    slides = sorted((d for d in lc_documents if d.metadata["kind"] == "slide"), key=lambda d: d.metadata["slide"])
    assert slides[0].metadata["image_path"] != slides[1].metadata["image_path"]


def test_segment_frames_on_request_and_the_same_file_for_the_same_item(lc_library, lc_fake_backend):
    video = lc_library / "clips" / "street.mp4"
    docs = MolmoLoader(video, backend="fake", segment_frames=3).load()
    assert len(docs) == 2
    for doc in docs:
        frames = doc.metadata["frame_paths"]
        assert len(frames) == 3 and len(set(frames)) == 3
        assert all(Path(f).is_file() and _size(f) == (160, 96) for f in frames)
    again = MolmoLoader(video, backend="fake").load()  # another loader, no frames asked
    assert {d.id: d.metadata["image_path"] for d in again} == {d.id: d.metadata["image_path"] for d in docs}
    assert all("frame_paths" not in d.metadata for d in again)


# -- a chain over a stock QdrantVectorStore hands the model the pictures --------------------
def _recording_chat_model(answer: str) -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from pydantic import Field

    class RecordingChatModel(GenericFakeChatModel):
        """A fake multimodal chat model that keeps every message list it was sent."""

        received: list = Field(default_factory=list)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.received.append(list(messages))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    return RecordingChatModel(messages=iter([answer]))


def test_a_chain_over_qdrant_vector_store_sends_the_model_the_pictures(lc_documents, tmp_path):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    store = _qdrant_store(lc_documents, tmp_path / "qdrant")
    try:
        retriever = store.as_retriever(search_kwargs={"k": 3})
        retrieved = retriever.invoke("Quarterly results revenue")
        assert len(retrieved) == 3 and all(d.metadata.get("image_path") for d in retrieved)
        model = _recording_chat_model("Revenue grew 12%.")
        chain = (
            {"docs": retriever, "question": RunnablePassthrough()}
            | RunnableLambda(lambda x: [image_message(x["question"], x["docs"])])
            | model
            | StrOutputParser()
        )
        assert chain.invoke("Quarterly results revenue") == "Revenue grew 12%."
    finally:
        store.client.close()
    ((message,),) = model.received
    blocks = message.content_blocks
    assert blocks[0] == {**blocks[0], "type": "text", "text": "Quarterly results revenue"}
    images = [b for b in blocks if b["type"] == "image"]
    assert len(images) == 3
    sent = [base64.b64decode(b["base64"]) for b in images]
    assert sent == [Path(d.metadata["image_path"]).read_bytes() for d in retrieved]  # the files, full size
    assert all(max(_size(io.BytesIO(data))) > 128 for data in sent)
    assert [b["mime_type"] for b in images] == [
        "image/png" if d.metadata["image_path"].endswith(".png") else "image/jpeg" for d in retrieved
    ]


# -- flat count keys: any store's filters -------------------------------------------------
@pytest.fixture
def spots(tmp_path) -> tuple[dict[str, int], list[Document]]:
    """A picture world with known counts (FakeBackend counts the bright spots) and
    MolmoLoader's Documents of it, counting ``person``."""
    from molmo_rag.testing import FakeBackend, samples

    truth = samples.spots_world(tmp_path / "world")
    docs = MolmoLoader(tmp_path / "world", backend=FakeBackend(), count=["person"], cache=False).load()
    assert {d.metadata["source"] for d in docs} == set(truth)
    return truth, docs


def test_in_memory_vector_store_filters_on_flat_counts(spots):
    from langchain_core.vectorstores import InMemoryVectorStore

    truth, docs = spots
    store = InMemoryVectorStore.from_documents(docs, MolmoEmbeddings())
    found = store.similarity_search(
        "a picture", k=len(docs), filter=lambda doc: doc.metadata.get("count_person", 0) >= 2
    )
    assert sorted(d.metadata["source"] for d in found) == sorted(s for s, n in truth.items() if n >= 2)
    assert {d.metadata["count_person"] for d in found} == {2, 3, 4}
    none = store.similarity_search("a picture", k=len(docs), filter=lambda doc: doc.metadata.get("count_person") == 0)
    assert len(none) == sum(1 for n in truth.values() if n == 0)


def test_filter_complex_metadata_keeps_the_counts(spots):
    from langchain_community.vectorstores.utils import filter_complex_metadata
    from langchain_core.vectorstores import InMemoryVectorStore

    truth, docs = spots
    flat = filter_complex_metadata(docs)
    for doc in flat:
        assert doc.metadata["count_person"] == truth[doc.metadata["source"]]
        assert all(isinstance(v, (str, int, float, bool)) for v in doc.metadata.values())
        assert Path(doc.metadata["image_path"]).is_file()  # the picture survives it too
    store = InMemoryVectorStore.from_documents(flat, MolmoEmbeddings())
    found = store.similarity_search("a picture", k=len(flat), filter=lambda doc: doc.metadata["count_person"] >= 3)
    assert sorted(d.metadata["source"] for d in found) == sorted(s for s, n in truth.items() if n >= 3)


# -- the grounded compressor over QdrantVectorStore.as_retriever() -----------------------
def test_grounded_compressor_returns_copies_and_checks_each_documents_own_picture(spots, tmp_path, lc_fake_backend):
    truth, docs = spots
    three = next(s for s, n in truth.items() if n == 3)
    figure = Document(  # a picture another loader extracted from a report: its source is elsewhere
        "Figure 3 of the annual report",
        metadata={
            "image_path": three, "source": str(tmp_path / "elsewhere" / "report.pdf"), "page": 3, "author": "Ann"
        },
    )
    text = Document(
        "Annual report, page 4: the text of the bright spots section",
        metadata={"source": "report.pdf", "page": 4, "author": "Bo"},
    )
    store = _qdrant_store(docs, tmp_path / "qdrant")
    try:
        store.add_documents([figure, text])  # no ids: langchain-qdrant makes them
        retrieved = store.as_retriever(search_kwargs={"k": len(docs) + 2}).invoke("bright spots")
        stored = {str(p.id) for p in store.client.scroll(store.collection_name, limit=100)[0]}
    finally:
        store.client.close()
    assert len(retrieved) == len(docs) + 2 and all(not d.id for d in retrieved)  # langchain-qdrant leaves id empty
    compressor = MolmoGroundedCompressor(backend="fake", top_n=len(retrieved), cache=False)
    out = compressor.compress_documents(retrieved, "bright spots")
    assert len(out) == len(retrieved)
    by_id = {str(d.metadata["_id"]): d for d in retrieved}
    assert {d.id for d in out} == set(by_id) == stored  # the point ids, not ''
    for doc in out:
        given = by_id[doc.id]
        assert doc is not given and doc.page_content == given.page_content
        assert {k: doc.metadata[k] for k in given.metadata} == given.metadata  # every key kept
        added = set(doc.metadata) - set(given.metadata)
        if given.page_content == text.page_content:
            assert doc.metadata == given.metadata  # text only: unchecked, unchanged
            continue
        assert added == {"grounded", "evidence", "vector_score"}
        assert doc.metadata["vector_score"] is None  # as_retriever() gave no score
        expected = truth[given.metadata["image_path"]]
        assert doc.metadata["evidence"]["count"] == expected
        assert doc.metadata["grounded"] == (1.0 if expected else 0.0)
    checked_figure = next(d for d in out if d.page_content == figure.page_content)
    assert checked_figure.metadata["page"] == 3 and checked_figure.metadata["author"] == "Ann"
    assert checked_figure.metadata["grounded"] == 1.0 and checked_figure.metadata["evidence"]["count"] == 3
    grounded = [d.metadata.get("grounded") for d in out]
    assert grounded[: sum(1 for n in truth.values() if n) + 1] == [1.0] * 5  # the figure among the hits, first


def test_a_check_that_fails_is_none_with_its_cause_never_zero(tmp_path, lc_fake_backend, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    docs = [Document("A chart", metadata={"image_path": str(broken), "source": "report.pdf", "page": 2})]
    with caplog.at_level("WARNING"):
        (out,) = MolmoGroundedCompressor(backend="fake", cache=False).compress_documents(docs, "bright spots")
    assert out.metadata["grounded"] is None and out.metadata["evidence"]["error"]
    assert out.metadata["page"] == 2 and out.page_content == "A chart"
    assert any("broken.png" in r.getMessage() for r in caplog.records)


# -- LangChain's indexing API ---------------------------------------------------------------
def test_index_with_a_record_manager_keeps_our_ids_and_skips_what_is_there(lc_library, lc_fake_backend, tmp_path):
    from langchain_core.indexing import InMemoryRecordManager, index
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    embeddings = MolmoEmbeddings()
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        client.create_collection(
            "media",
            vectors_config={
                "text-dense": models.VectorParams(size=embeddings.dimensions, distance=models.Distance.COSINE)
            },
        )
        store = QdrantVectorStore(
            client=client, collection_name="media", embedding=embeddings, vector_name="text-dense"
        )
        record_manager = InMemoryRecordManager(namespace="qdrant/media")
        record_manager.create_schema()
        loader = MolmoLoader(lc_library, backend="fake", count=["person"], on_failure=lambda f: None)
        options = {"cleanup": "incremental", "source_id_key": "source", "key_encoder": lambda doc: doc.id}

        first = index(loader, record_manager, store, **options)
        assert first == {"num_added": 7, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
        points, _ = client.scroll("media", limit=100, with_payload=True)
        reread = MolmoLoader(lc_library, backend="fake", count=["person"], on_failure=lambda f: None).load()
        expected = {d.id: d for d in reread}
        assert {str(p.id) for p in points} == set(expected)  # Document.id is the point id
        for point in points:
            assert point.payload["metadata"]["image_path"] == expected[str(point.id)].metadata["image_path"]

        again = index(loader, record_manager, store, **options)
        assert again == {"num_added": 0, "num_updated": 0, "num_skipped": 7, "num_deleted": 0}  # nothing written
        assert client.count("media").count == 7

        # a deck re-read with one slide gone: the incremental cleanup deletes that slide's point
        kept = [d for d in expected.values() if not (d.metadata["kind"] == "slide" and d.metadata["slide"] == 2)]
        cleaned = index(kept, record_manager, store, **options)
        assert cleaned == {"num_added": 0, "num_updated": 0, "num_skipped": 6, "num_deleted": 1}
        assert client.count("media").count == 6
    finally:
        client.close()


def test_index_default_key_encoder_gives_hash_ids_not_point_ids(lc_documents):
    from langchain_core.indexing import InMemoryRecordManager, index
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(MolmoEmbeddings())
    record_manager = InMemoryRecordManager(namespace="memory/media")
    record_manager.create_schema()
    result = index(lc_documents, record_manager, store, key_encoder="sha256")
    assert result["num_added"] == 7
    assert set(store.store).isdisjoint(d.id for d in lc_documents)  # what the README warns about
    assert index(lc_documents, record_manager, store, key_encoder="sha256")["num_skipped"] == 7
