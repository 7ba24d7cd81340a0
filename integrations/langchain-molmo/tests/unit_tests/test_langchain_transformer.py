"""MolmoDocumentTransformer: Documents that point at a picture get Molmo2's metadata and
text; the others come back as they were; failures are reported and their documents kept."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document

from langchain_molmo import MolmoDocumentTransformer


@pytest.fixture
def documents(lc_library, tmp_path) -> list[Document]:
    photos = lc_library / "photos"
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes")
    return [
        Document("Figure 1", metadata={"source": str(photos / "coffee.png"), "page": 3}),
        Document("", metadata={"source": str(photos / "coffee.png")}, id="mine"),  # the same picture again
        Document("plain text", metadata={"source": str(notes)}),  # a text file: left alone
        Document("a deck", metadata={"source": str(lc_library / "decks" / "talk.pdf")}),  # not a picture
        Document("web page", metadata={"source": "https://example.invalid/about"}),  # not fetched
        Document(
            "extracted picture",
            metadata={
                "source": "report.pdf",
                "category": "Image",
                "image_base64": base64.b64encode((photos / "astronaut.png").read_bytes()).decode(),
            },
        ),
        Document("gone", metadata={"image_path": str(photos / "missing.png")}),
    ]


def test_enriches_the_pictures_and_keeps_the_rest(documents, caplog):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    transformer = MolmoDocumentTransformer(backend=backend, count=["person"])
    with caplog.at_level(logging.WARNING, logger="langchain_molmo"):
        out = transformer.transform_documents(documents)
    assert len(out) == len(documents)
    assert backend.calls == 2 * 3  # two pictures (coffee once for both documents), three tasks each
    figure, again, text, deck, page, extracted, gone = out
    assert figure.page_content.startswith("Figure 1\n\n") and figure.metadata["caption"] in figure.page_content
    assert figure.metadata["page"] == 3 and figure.metadata["kind"] == "image" and "person" in figure.metadata["counts"]
    assert figure.metadata["source"] == documents[0].metadata["source"]
    from molmo_rag.index.records import point_id

    assert figure.id == point_id(figure.metadata["media_id"], figure.metadata["source"])  # the point id
    assert again.page_content == figure.page_content.split("\n\n", 1)[1] and again.id == "mine"
    assert again.metadata["media_id"] == figure.metadata["media_id"]
    for before, after in ((documents[2], text), (documents[3], deck), (documents[4], page), (documents[6], gone)):
        assert after is before
    assert extracted.metadata["source"] == "report.pdf" and extracted.metadata["category"] == "Image"
    assert extracted.metadata["kind"] == "image" and "grey" in extracted.metadata["caption"]
    assert [Path(f.source).name for f in transformer.failures] == ["missing.png"]
    assert any("missing.png" in r.getMessage() and "SourceNotFoundError" in r.getMessage() for r in caplog.records)


async def test_atransform_is_native_and_matches(documents):
    from molmo_rag.testing import FakeBackend

    transformer = MolmoDocumentTransformer(backend=FakeBackend(), content="replace", on_failure=lambda f: None)
    out = await transformer.atransform_documents(documents)
    sync = transformer.transform_documents(documents)
    assert [d.metadata for d in out] == [d.metadata for d in sync]
    assert out[0].page_content == out[0].metadata["caption"] + "\n" + out[0].metadata["scene"]
    assert [f.source for f in transformer.failures] == [documents[6].metadata["image_path"]] * 2  # both calls', kept


def test_blobs_pil_images_bytes_and_raise(lc_library):
    from molmo_rag.errors import CorruptMediaError
    from molmo_rag.testing import FakeBackend
    from PIL import Image

    photos = lc_library / "photos"
    docs = [
        Document("", metadata={"image": Blob.from_path(photos / "chelsea.png")}),
        Document("", metadata={"image": Image.open(photos / "coffee.png").convert("RGB"), "source": "deck.pptx"}),
        Document("", metadata={"image": (photos / "astronaut.png").read_bytes()}),
    ]
    transformer = MolmoDocumentTransformer(
        backend=FakeBackend(), image_keys=["image"], content="keep", thumbnail_size=0
    )
    out = transformer.transform_documents(docs)
    assert [d.page_content for d in out] == ["", "", ""]
    assert [d.metadata["kind"] for d in out] == ["image"] * 3 and not transformer.failures
    assert out[0].metadata["source"] == str(photos / "chelsea.png") and out[1].metadata["source"] == "deck.pptx"
    assert out[2].metadata["source"] == "<bytes>" and "thumbnail" not in out[2].metadata
    missing = Document("", metadata={"image": "photos/nowhere.png"})  # a path, not base64 text
    seen = []
    assert MolmoDocumentTransformer(backend=FakeBackend(), on_failure=seen.append).transform_documents([missing]) == [
        missing
    ]
    assert [type(f.error).__name__ for f in seen] == ["SourceNotFoundError"]
    broken = Document("", metadata={"image_path": str(photos / "broken.jpg")})
    with pytest.raises(CorruptMediaError):
        MolmoDocumentTransformer(backend=FakeBackend(), on_failure="raise").transform_documents([broken])


def test_a_named_picture_that_is_a_deck_is_a_failure(lc_library):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    transformer = MolmoDocumentTransformer(backend=backend, on_failure=lambda f: None)
    doc = Document("x", metadata={"image_path": str(lc_library / "decks" / "talk.pdf")})
    assert transformer.transform_documents([doc]) == [doc]
    assert [type(f.error).__name__ for f in transformer.failures] == ["UnsupportedMediaError"] and backend.calls == 0
    assert transformer.transform_documents([]) == []
