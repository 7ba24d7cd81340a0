"""Retrieved Documents as a multimodal chat model reads them: LangChain's standard content
blocks, the picture read from ``metadata["image_path"]`` (else ``image_url``, else the
thumbnail), frames on request, text blocks saying where each came from."""

from __future__ import annotations

import base64

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage

from langchain_molmo import document_image_block, image_blocks, image_message


def _png(path, size=(40, 30), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return path.read_bytes()


def test_the_picture_comes_from_image_path_as_base64(tmp_path):
    data = _png(tmp_path / "slide.png")
    doc = Document(
        "Quarterly results",
        metadata={"image_path": str(tmp_path / "slide.png"), "image_url": "https://example.com/x.png",
                  "thumbnail": "data:image/jpeg;base64,AAAA", "source": "/decks/talk.pdf", "slide": 2},
    )
    (block,) = document_image_block(doc)
    assert block["type"] == "image" and block["mime_type"] == "image/png"
    assert base64.b64decode(block["base64"]) == data  # the file itself, not the thumbnail


def test_fallbacks_url_then_thumbnail_then_nothing(tmp_path):
    missing = str(tmp_path / "gone.jpg")
    linked = Document("x", metadata={"image_path": missing, "image_url": "https://example.com/a.jpg"})
    (url,) = document_image_block(linked)
    assert url["type"] == "image" and url["url"] == "https://example.com/a.jpg" and "base64" not in url
    (thumb,) = document_image_block(Document("x", metadata={"thumbnail": "data:image/jpeg;base64,/9j/AAAA"}))
    assert thumb["base64"] == "/9j/AAAA" and thumb["mime_type"] == "image/jpeg"
    assert document_image_block(Document("text only", metadata={"source": "notes.txt"})) == []


def test_frames_on_request(tmp_path):
    main = _png(tmp_path / "frame.png")
    frames = [_png(tmp_path / f"f{i}.png", colour=(10 * i, 0, 0)) for i in range(3)]
    doc = Document(
        "segment",
        metadata={
            "image_path": str(tmp_path / "frame.png"),
            "frame_paths": [str(tmp_path / f"f{i}.png") for i in range(3)],
        },
    )
    assert len(document_image_block(doc)) == 1
    blocks = document_image_block(doc, frames=True)
    assert [base64.b64decode(b["base64"]) for b in blocks] == [main, *frames]


def test_image_message_has_the_question_then_text_and_picture_per_document(tmp_path):
    first, second = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", colour=(0, 0, 200))
    docs = [
        Document("A red square", metadata={"image_path": str(tmp_path / "a.png"), "source": "/m/a.png"}),
        Document("Notes only", metadata={"source": "/m/notes.txt"}),
        Document(
            "A video segment",
            metadata={"image_path": str(tmp_path / "b.png"), "source": "/m/v.mp4", "start": 4.0, "end": 8.0},
        ),
    ]
    message = image_message("What colours?", docs)
    assert isinstance(message, HumanMessage)
    kinds = [b["type"] for b in message.content_blocks]
    assert kinds == ["text", "text", "image", "text", "text", "image"]
    texts = [b["text"] for b in message.content_blocks if b["type"] == "text"]
    assert texts[0] == "What colours?"
    assert texts[1].startswith("[1] /m/a.png") and "A red square" in texts[1]
    assert texts[3].startswith("[3] /m/v.mp4, 4.0-8.0 s")
    pictures = [base64.b64decode(b["base64"]) for b in message.content_blocks if b["type"] == "image"]
    assert pictures == [first, second]
    assert [b["type"] for b in image_blocks(docs, text=False)] == ["image", "image"]
