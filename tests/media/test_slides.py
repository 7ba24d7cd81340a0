from __future__ import annotations

import hashlib
import io
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from molmo_rag.errors import CorruptMediaError, UnsupportedMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read
from molmo_rag.testing import samples
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


# --- decks LibreOffice reads: ODP, flat ODP, legacy PPT ---------------------------------------
@pytest.mark.parametrize("fmt", ["odp", "fodp", "ppt"])
def test_libreoffice_decks_are_rendered_slide_by_slide(office_decks, slide_options, fmt):
    path = office_decks[fmt]
    items = list(read(path, slide_options))
    assert all(isinstance(i, MediaItem) and i.kind == "slide" for i in items), items
    assert [i.slide for i in items] == [1, 2]
    assert [i.title for i in items] == ["Quarterly review", "Thanks"]
    assert "Revenue grew" in items[0].slide_text and "Costs fell" in items[0].slide_text
    assert items[0].extra["rendered_by"] == "libreoffice"
    image = items[0].image()
    assert image.size == (items[0].width, items[0].height)
    assert abs(image.width - 1920) <= 2 and abs(image.height - 1080) <= 2  # .ppt stores sizes rounded
    assert (np.asarray(image) < 100).any()


@pytest.mark.parametrize("fmt,name", [("odp", "deck.bin"), ("ppt", "deck"), ("fodp", "deck.xml")])
def test_libreoffice_decks_are_told_by_their_bytes(office_decks, slide_options, tmp_path, fmt, name):
    path = tmp_path / name
    path.write_bytes(office_decks[fmt].read_bytes())
    titles = [i.title for i in read(path, slide_options)]
    assert titles == ["Quarterly review", "Thanks"]


def test_libreoffice_decks_in_a_folder_are_read(office_decks, office_deck_pptx, slide_options, tmp_path):
    for fmt in ("odp", "ppt"):
        (tmp_path / f"deck.{fmt}").write_bytes(office_decks[fmt].read_bytes())
    results = list(read(tmp_path, slide_options))
    assert [(r.source.rsplit("/", 1)[1], r.slide) for r in results] == [
        ("deck.odp", 1), ("deck.odp", 2), ("deck.ppt", 1), ("deck.ppt", 2)
    ]


def test_without_libreoffice_odp_and_ppt_say_to_install_it(monkeypatch, tmp_path, make_odp, make_ole):
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    odp = make_odp(tmp_path / "talk.odp")
    ppt = make_ole(tmp_path / "old.ppt", ["Current User", "SummaryInformation", "Pictures", "PowerPoint Document"])
    good = samples.make_pdf(tmp_path / "fine.pdf", [["Still read"]])
    results = list(read(tmp_path))
    by_name = {r.source.rsplit("/", 1)[1]: r for r in results}
    assert sorted(by_name) == ["fine.pdf", "old.ppt", "talk.odp"]
    for name in ("talk.odp", "old.ppt"):
        error = by_name[name]
        assert isinstance(error, UnsupportedMediaError) and "LibreOffice" in str(error), error
    assert "OpenDocument presentation" in str(by_name["talk.odp"])
    assert "legacy PowerPoint" in str(by_name["old.ppt"])
    assert isinstance(by_name["fine.pdf"], MediaItem) and odp.exists() and ppt.exists() and good.exists()


def test_ole_directory_is_followed_across_sectors(tmp_path, make_ole):
    from molmo_rag.media.sources import Blob, classify

    # 4 directory entries a sector: the PowerPoint stream sits in the third sector
    deck = make_ole(tmp_path / "deck.bin", ["A", "B", "C", "D", "E", "F", "G", "H", "PowerPoint Document"])
    assert classify(Blob(source="deck", path=deck)) == "ppt"
    word = make_ole(tmp_path / "letter.doc", ["WordDocument", "1Table", "SummaryInformation"])
    with pytest.raises(UnsupportedMediaError, match="not a PowerPoint deck"):
        classify(Blob(source="letter", path=word))


def test_odf_that_is_not_a_presentation_is_not_a_deck(tmp_path):
    path = tmp_path / "letter.odp"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<x/>")
    result = list(read(path))
    assert isinstance(result[0], CorruptMediaError) and "not an OpenDocument presentation" in str(result[0])


# --- PowerPoint XML decks of every flavour -----------------------------------------------------
_MAIN = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"
_FLAVOURS = {
    ".pptm": "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
    ".ppsx": "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
    ".potx": "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
    ".ppsm": "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
    ".potm": "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
}


def _as_flavour(deck, target, suffix):
    """The deck re-saved as another PowerPoint flavour: only its main content type changes."""
    with zipfile.ZipFile(deck) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                assert _MAIN.encode() in data
                data = data.replace(_MAIN.encode(), _FLAVOURS[suffix].encode())
            dst.writestr(info, data)
    return target


@pytest.mark.parametrize("suffix", sorted(_FLAVOURS))
def test_every_powerpoint_xml_flavour_is_read(deck, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)  # python-pptx alone
    path = _as_flavour(deck, tmp_path / f"deck{suffix}", suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = list(read(path, ReaderOptions(cache_dir=tmp_path)))
    assert [i.title for i in items] == ["Quarterly review", "Sales by quarter", "Thanks"], items
    assert items[0].notes == "Open with the headline."


def test_slideshow_deck_rendered_by_libreoffice(rendered_deck, deck, slide_options, tmp_path):
    path = _as_flavour(deck, tmp_path / "show.ppsx", ".ppsx")
    items = list(read(path, slide_options))
    assert [i.slide for i in items] == [1, 2, 4]
    assert all(i.extra["rendered_by"] == "libreoffice" for i in items)
    assert items[0].image().size == (1920, 1080)


def test_powerpoint_xml_deck_in_a_folder_whatever_its_ending(deck, tmp_path, monkeypatch):
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    _as_flavour(deck, tmp_path / "a.ppsx", ".ppsx")
    _as_flavour(deck, tmp_path / "b.pptm", ".pptm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = list(read(tmp_path, ReaderOptions(cache_dir=tmp_path / "cache")))
    assert {r.source.rsplit("/", 1)[1] for r in results} == {"a.ppsx", "b.pptm"}
    assert all(isinstance(r, MediaItem) for r in results)


# --- text clean-up ------------------------------------------------------------------------------
def test_titles_text_and_notes_lose_powerpoints_vertical_tabs(tmp_path, monkeypatch):
    from pptx import Presentation

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Lorem\vIpsum"  # a soft line break (<a:br/>) in the title
    slide.placeholders[1].text_frame.text = "first\vsecond"
    slide.placeholders[1].text_frame.add_paragraph().text = "third\u2028fourth"
    slide.notes_slide.notes_text_frame.text = "say\vthis\r\nthen\u2029that\x0cend\x07"
    path = tmp_path / "breaks.pptx"
    prs.save(str(path))
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = next(read(path, ReaderOptions(cache_dir=tmp_path)))
    assert item.title == "Lorem Ipsum"
    assert item.slide_text == "first\nsecond\nthird\nfourth"
    assert item.notes == "say\nthis\nthen\nthat\nend"


@pytest.mark.parametrize(
    "raw,title,text",
    [
        ("Lorem\x0bIpsum", "Lorem Ipsum", "Lorem\nIpsum"),
        ("a\r\nb\rc\nd", "a b c d", "a\nb\nc\nd"),
        ("a\u2028b\u2029c\x0cd\x85e", "a b c d e", "a\nb\nc\nd\ne"),
        ("  spaced \t out\x00\x1b  ", "spaced out", "  spaced   out"),
        ("\x0b\r\n", None, ""),
    ],
)
def test_clean_title_and_text(raw, title, text):
    assert slides_module.clean_title(raw) == title
    assert slides_module.clean_text(raw) == text


# --- PDF page titles ------------------------------------------------------------------------------
def _pdf(pages, outline=(), size=(960, 540)) -> bytes:
    """A PDF written by hand. ``pages``: lists of (font size, text, matrix scale) lines drawn
    top-down in Helvetica; ``outline``: (title, page index, as a GoTo action) bookmarks."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog, pages_obj = add(b""), add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for lines in pages:
        ops, y = [b"BT"], size[1] - 20
        for font_size, text, scale in lines:
            y -= int(font_size * scale * 1.4) + 4  # room for this line's own height
            ops.append(b"/F1 %g Tf %g 0 0 %g 60 %d Tm (%s) Tj" % (font_size, scale, scale, y, text.encode("latin-1")))
        ops.append(b"ET")
        data = b"\n".join(ops)
        content = add(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (pages_obj, size[0], size[1], font, content)
            )
        )
    outlines = None
    if outline:
        outlines = add(b"")
        entries = []
        for title, page, as_action in outline:
            dest = b"[%d 0 R /Fit]" % kids[page]
            link = b"/A << /S /GoTo /D %s >>" % dest if as_action else b"/Dest %s" % dest
            entries.append(add(b"<< /Title (%s) /Parent %d 0 R %s" % (title.encode("latin-1"), outlines, link)))
        for i, num in enumerate(entries):
            links = b" /Prev %d 0 R" % entries[i - 1] if i else b""
            links += b" /Next %d 0 R" % entries[i + 1] if i < len(entries) - 1 else b""
            objects[num - 1] += links + b" >>"
        objects[outlines - 1] = b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (
            entries[0], entries[-1], len(entries)
        )
    outline_ref = b" /Outlines %d 0 R" % outlines if outlines else b""
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R%s >>" % (pages_obj, outline_ref)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids)
    )
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


def _titles(data: bytes) -> list[str | None]:
    return [item.title for item in read(data)]


def test_pdf_title_comes_from_the_outline():
    pages = [[(10, "1", 1), (12, "Body text", 1)], [(10, "ii", 1), (12, "More body", 1)], [(12, "Third", 1)]]
    outline = [("Introduction", 0, False), ("Methods and data", 1, True), ("7", 2, False)]
    # a bookmark that is a bare number is no title: the page's own text is used
    assert _titles(_pdf(pages, outline)) == ["Introduction", "Methods and data", "Third"]


def test_pdf_title_is_the_largest_text_not_the_page_number():
    pages = [
        [(10, "1", 1), (28, "Revenue by region", 1), (12, "North grew", 1), (12, "South fell", 1)],
        [(10, "iv", 1), (1, "Scaled up title", 30), (12, "Body", 1), (12, "More body", 1)],
        [(30, "3", 1), (12, "Body in one size", 1), (12, "Another line", 1)],
        [(12, "Page 5 of 9", 1), (12, "Just body text here", 1), (12, "And more of it", 1)],
        [(10, "xii", 1)],
        [(24, "Two line", 1), (24, "title", 1), (12, "body", 1)],
    ]
    assert _titles(_pdf(pages)) == ["Revenue by region", "Scaled up title", None, None, None, "Two line title"]


def test_pdf_page_with_one_line_takes_it_as_title():
    assert _titles(_pdf([[(12, "Thanks", 1)], [(12, "42", 1)]])) == ["Thanks", None]
