from __future__ import annotations

import hashlib
import io
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from molmo_rag.errors import CorruptMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read, samples
from molmo_rag.media import slides as slides_module


def test_deck_rendered_whole_slide_by_slide(rendered_deck, deck):
    items = rendered_deck
    assert all(isinstance(i, MediaItem) and i.kind == "slide" for i in items)
    # The hidden third slide is skipped; numbers stay the deck's own.
    assert [i.slide for i in items] == [1, 2, 4]
    assert [i.title for i in items] == ["Quarterly review", "Sales by quarter", "Thanks"]
    assert items[0].slide_text == "Revenue grew\nCosts fell"
    assert items[0].notes == "Open with the headline."
    assert items[1].notes == "Point at Q4."
    assert items[2].notes is None and items[2].slide_text is None
    sha = hashlib.sha256(deck.read_bytes()).hexdigest()
    assert [i.media_id for i in items] == [f"{sha}#slide={n}" for n in (1, 2, 4)]
    assert all(i.extra["rendered_by"] == "libreoffice" for i in items)
    assert items[0].describe()["slide_text"] == "Revenue grew\nCosts fell"


def test_rendered_slide_shows_text_and_picture(rendered_deck):
    image = rendered_deck[0].image()
    assert image.size == (1920, 1080) == (rendered_deck[0].width, rendered_deck[0].height)
    pixels = np.asarray(image).astype(int)
    right = pixels[300:900, 1150:1800]  # where the coffee photo sits
    left = pixels[300:900, 100:900]  # bullet text on white
    assert right.std() > 30 and (right[..., 0] - right[..., 2]).mean() > 20  # a warm photo
    assert (left < 100).any() and np.median(left) > 240  # dark glyphs on a white page
    data, mime = rendered_deck[0].image_bytes()
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (1920, 1080)


def test_chart_slide_is_drawn(rendered_deck):
    pixels = np.asarray(rendered_deck[1].image()).astype(int)
    chart_area = pixels[300:1000, 1100:1850]
    assert (chart_area.std(axis=2) > 40).mean() > 0.02  # coloured columns, not a blank page


def test_rendered_pdf_cached_by_content_hash(rendered_deck, deck, slide_options, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("LibreOffice must not run again for a cached deck")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    again = list(read(deck, slide_options))
    assert [i.media_id for i in again] == [i.media_id for i in rendered_deck]
    assert again[0].image().size == (1920, 1080)


def test_hidden_slides_on_request(rendered_deck, deck, slide_options):
    options = slide_options.model_copy(update={"include_hidden_slides": True})
    items = list(read(deck, options))
    assert [i.slide for i in items] == [1, 2, 3, 4]
    assert items[2].title == "Backup slide" and items[2].extra["hidden"] is True
    assert items[2].image().size == (1920, 1080)


def test_without_libreoffice_falls_back_with_one_warning(deck, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    monkeypatch.setattr(slides_module, "_FALLBACK_WARNED", False)
    options = ReaderOptions(cache_dir=tmp_path, max_image_side=960)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = list(read(deck, options))
        second = list(read(deck, options))
    ours = [w for w in caught if "LibreOffice" in str(w.message)]
    assert len(ours) == 1
    assert [i.slide for i in first] == [1, 2, 4] and [i.title for i in second][0] == "Quarterly review"
    assert first[0].extra["rendered_by"] == "pictures+text"
    assert first[0].notes == "Open with the headline."
    image = first[0].image()
    assert image.size == (960, 540)
    pixels = np.asarray(image).astype(int)
    assert pixels[200:450, 560:880].std() > 30  # the embedded photo is there
    assert (pixels[80:300, 30:400] < 100).any()  # and the text


def test_pdf_pages_are_slides_with_text(tmp_path):
    path = samples.make_pdf(tmp_path / "talk.pdf", [["Intro", "Why this matters"], ["Results", "It works", "Twice"]])
    items = list(read(path))
    assert [i.slide for i in items] == [1, 2]
    assert [i.title for i in items] == ["Intro", "Results"]
    assert items[1].slide_text == "Results\nIt works\nTwice"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert items[1].media_id == f"{sha}#slide=2"
    image = items[0].image()
    assert image.size == (1920, 1080)
    assert (np.asarray(image) < 100).any()
    pdf_bytes_item = list(read(path.read_bytes()))
    assert [i.title for i in pdf_bytes_item] == ["Intro", "Results"]


def test_encrypted_pdf_is_refused(tmp_path):
    path = samples.make_pdf(tmp_path / "secret.pdf", [["Secret"]], password="hunter2")
    import pypdfium2

    assert len(pypdfium2.PdfDocument(str(path), password="hunter2")) == 1  # a real, valid file
    result = list(read(path))
    assert len(result) == 1 and isinstance(result[0], CorruptMediaError)
    assert "encrypted" in str(result[0])


def test_corrupt_pdf(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog" + b"\x00" * 50)
    result = list(read(path))
    assert isinstance(result[0], CorruptMediaError)


def test_garbage_zip_named_pptx(tmp_path):
    path = tmp_path / "deck.pptx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", "<nope/>")
    result = list(read(path))
    assert isinstance(result[0], CorruptMediaError) and "not a PowerPoint deck" in str(result[0])


def test_not_a_zip_named_pptx(tmp_path):
    path = tmp_path / "deck.pptx"
    path.write_bytes(b"plain text pretending to be a deck")
    assert isinstance(list(read(path))[0], CorruptMediaError)


def test_damaged_pptx_inside_a_zip(tmp_path, deck):
    path = tmp_path / "damaged.pptx"
    with zipfile.ZipFile(deck) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "ppt/presentation.xml":
                data = data[: len(data) // 2]
            dst.writestr(info, data)
    assert isinstance(list(read(path))[0], CorruptMediaError)


def test_rotated_pdf_pages_report_their_rendered_size(tmp_path):
    import pypdfium2

    flat = samples.make_pdf(tmp_path / "flat.pdf", [["One"], ["Two"], ["Three"]])
    doc = pypdfium2.PdfDocument(str(flat))
    for index, degrees in enumerate((90, 180, 270)):
        doc[index].set_rotation(degrees)
    rotated = tmp_path / "rotated.pdf"
    doc.save(str(rotated))
    doc.close()
    items = list(read(rotated))
    # A page turned a quarter is shown portrait; the size an item announces is the picture's.
    assert [(i.width, i.height) for i in items] == [(1080, 1920), (1920, 1080), (1080, 1920)]
    assert all(i.image().size == (i.width, i.height) for i in items)
