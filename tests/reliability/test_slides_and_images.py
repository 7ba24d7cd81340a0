"""Slides and images of issue 17 (items 9, 12, 13 and 18): what a held-out corpus broke.

A password-protected deck says so (not "a legacy Office file"); a planar multi-page TIFF is
read, every page; an empty deck says it has no slides (it is not corrupt); a NaN does not
turn a float TIFF black; headers that claim far more pixels than their data holds are
refused before anything is decoded; a PDF content bomb and a deck's 13,000 px picture
(without LibreOffice) keep memory bounded; a deck is parsed once however many slides are
drawn; and one cache root (``--cache-dir``, ``MOLMO_RAG_CACHE_DIR``) holds the slide
renders too.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import _slides_and_images_media as media
from molmo_rag import errors
from molmo_rag.errors import CorruptMediaError, UnsupportedMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read
from molmo_rag.media import slides as slides_module

pytest.importorskip("pptx")
pytest.importorskip("pypdfium2")


def _one(source, options: ReaderOptions | None = None):
    results = list(read(source, options or ReaderOptions()))
    assert len(results) == 1, results
    return results[0]


def _names_path(error: Exception, path: Path) -> bool:
    return str(path) in str(error)


# --- item 12: messages that say what the thing is ------------------------------------------------
def test_password_protected_deck_says_to_remove_the_password(tmp_path):
    path = tmp_path / "locked.pptx"
    path.write_bytes(media.encrypted_deck())
    error = _one(path)
    assert type(error) is UnsupportedMediaError, error
    text = str(error)
    assert "password-protected (encrypted) deck" in text and "remove the password and save" in text
    assert "legacy Office" not in text and _names_path(error, path) and error.source == str(path)


def test_password_protected_office_file_of_no_deck_name_says_what_it_may_be(tmp_path):
    path = tmp_path / "locked.bin"
    path.write_bytes(media.encrypted_deck())
    error = _one(path)
    assert type(error) is UnsupportedMediaError and "password-protected" in str(error), error
    assert "remove the password" in str(error) and _names_path(error, path)


def test_empty_deck_says_it_has_no_slides_and_is_not_corrupt(tmp_path):
    path = tmp_path / "empty.pptx"
    path.write_bytes(media.deck([]))
    error = _one(path)
    assert type(error) is errors.EmptyMediaError and not isinstance(error, CorruptMediaError), repr(error)
    assert "no slides" in str(error) and "add slides" in str(error) and _names_path(error, path)


def test_planar_multi_page_tiff_is_read_every_page(tmp_path):
    path = media.planar_tiff(tmp_path / "planar.tif")
    items = list(read(path))
    assert all(isinstance(i, MediaItem) for i in items), items
    assert [(i.kind, i.slide) for i in items] == [("image", 1), ("image", 2), ("image", 3)]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [i.media_id for i in items] == [f"{sha}#page={n}" for n in (1, 2, 3)]
    assert all(i.extra["pages"] == 3 and i.extra["format"] == "TIFF" for i in items)
    media.check_planar_pages(items)
    data, mime = items[1].image_bytes()
    assert mime in ("image/png", "image/jpeg") and data


def test_pages_of_a_multi_page_tiff_are_reopened_by_their_number(tmp_path):
    from molmo_rag.media.sources import reopen

    path = media.planar_tiff(tmp_path / "planar.tif")
    item = reopen(str(path), kind="image", slide=3)
    assert item.slide == 3 and np.abs(np.asarray(item.image()).astype(int) - (200, 30, 30)).max() <= 1


# --- item 13: float images, headers that lie ------------------------------------------------------
def test_one_nan_does_not_turn_a_float_tiff_black(tmp_path):
    path = media.nan_float_tiff(tmp_path / "float.tif")
    item = _one(path)
    assert isinstance(item, MediaItem), item
    media.check_float_ramp([item])
    assert int(np.asarray(item.image())[20, 32, 0]) == pytest.approx(128, abs=6)


def test_jpeg_whose_header_claims_far_more_than_its_data_is_refused(tmp_path):
    path = tmp_path / "liar.jpg"
    path.write_bytes(media.lying_jpeg(65500, 2700))
    error = _one(path)
    assert type(error) is CorruptMediaError, error
    text = str(error)
    assert "65500x2700" in text and "too little" in text and _names_path(error, path)


def test_png_whose_header_claims_far_more_than_its_data_is_refused_before_decoding(tmp_path):
    path = tmp_path / "liar.png"
    path.write_bytes(media.lying_png(12_000, 12_000))
    error = _one(path)
    assert type(error) is CorruptMediaError, error
    assert "12000x12000" in str(error) and "too little" in str(error) and _names_path(error, path)


def test_small_and_uniform_images_are_not_mistaken_for_liars(tmp_path):
    from PIL import Image

    for name, size in (("flat.jpg", (4000, 3000)), ("tiny.jpg", (1, 1)), ("flat.png", (5000, 5000))):
        path = tmp_path / name
        Image.new("RGB", size, (250, 250, 250)).save(path, optimize=True)
        item = _one(path)
        assert isinstance(item, MediaItem), item
        assert item.extra["original_width"] == size[0]


# --- item 9: bounded memory, one parse per deck ------------------------------------------------------
def test_deck_is_parsed_once_however_many_slides_are_drawn_without_libreoffice(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    monkeypatch.setattr(slides_module, "_FALLBACK_WARNED", True)
    parses = []
    real = slides_module._open_presentation
    monkeypatch.setattr(slides_module, "_open_presentation", lambda f: parses.append(1) or real(f))
    picture = np.zeros((60, 80, 3), np.uint8)
    picture[:, :, 2] = 230
    buf = __import__("io").BytesIO()
    Image.fromarray(picture).save(buf, "PNG")
    path = tmp_path / "five.pptx"
    path.write_bytes(media.deck([f"Slide {n}" for n in range(1, 6)], picture=buf.getvalue(), picture_on=2))
    items = list(read(path, ReaderOptions(max_image_side=640)))
    images = [i.image() for i in items] + [items[2].image()]
    assert [i.slide for i in items] == [1, 2, 3, 4, 5]
    assert len(parses) == 1
    blue = np.asarray(images[2]).astype(int)
    assert ((blue[..., 2] > 200) & (blue[..., 0] < 40)).sum() > 1000  # slide 3's picture is drawn
    assert not ((np.asarray(images[0])[..., 2] > 200) & (np.asarray(images[0])[..., 0] < 40)).any()


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    from molmo_rag.media import ReaderOptions, read
    from molmo_rag.media import slides

    def peak_bytes():
        with open("/proc/self/status") as f:  # VmHWM: this process's own peak
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    warm, heavy, settings, no_libreoffice = json.loads(sys.argv[1])
    if no_libreoffice:
        slides.find_soffice = lambda: None
    warnings.simplefilter("ignore")
    options = ReaderOptions(**settings)
    for result in read(warm, options):  # every reader loaded once, pixels drawn
        assert not isinstance(result, Exception), result
        result.image()
    base = peak_bytes()
    out = []
    for result in read(heavy, options):
        if isinstance(result, Exception):
            out.append([result.source, type(result).__name__, str(result)])
        else:
            result.image()
            out.append([result.source, result.kind, result.slide])
    print(json.dumps({"base": base, "peak": peak_bytes(), "results": out}))
    """
)
MEMORY_HEADROOM = 40 * 1024**2
"""Growth of peak memory allowed over the warmed-up reader (a few MB in practice), far below
any of these inputs held whole: the PDF bomb's 300 MB content, the 13,000 px picture's
507 MB of pixels, the lying PNG's 432 MB."""


def _peak_memory_reading(warm: list[str], heavy: list[str], tmp_path: Path, no_libreoffice: bool) -> dict:
    settings = {"cache_dir": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([warm, heavy, settings, no_libreoffice])],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_memory_stays_bounded_reading_a_pdf_content_bomb_and_lying_headers(tmp_path):
    from molmo_rag.testing import samples

    good = samples.make_pdf(tmp_path / "good.pdf", [["Good title", "a line"]])
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(media.pdf_content_bomb(300))
    assert bomb.stat().st_size < 400_000
    png, jpeg = tmp_path / "liar.png", tmp_path / "liar.jpg"
    png.write_bytes(media.lying_png())
    jpeg.write_bytes(media.lying_jpeg())
    report = _peak_memory_reading([str(good)], [str(bomb), str(png), str(jpeg)], tmp_path, no_libreoffice=False)
    kinds = {source: (kind, message) for source, kind, message in report["results"]}
    assert kinds[str(bomb)][0] == "MediaTooLargeError", kinds[str(bomb)]
    assert "PDF bomb" in kinds[str(bomb)][1] and "inflate" in kinds[str(bomb)][1] and str(bomb) in kinds[str(bomb)][1]
    assert kinds[str(png)][0] == kinds[str(jpeg)][0] == "CorruptMediaError"
    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"


def test_memory_stays_bounded_drawing_a_deck_with_a_13000_px_picture_without_libreoffice(tmp_path):
    small, huge = tmp_path / "small.pptx", tmp_path / "huge-picture.pptx"
    small.write_bytes(media.deck(["Warm up"], picture=media.png(40, 30, [bytes(120)] * 30), picture_on=0))
    huge.write_bytes(media.huge_picture_deck(13_000))
    report = _peak_memory_reading([str(small)], [str(huge)], tmp_path, no_libreoffice=True)
    assert [r[1:] for r in report["results"]] == [["slide", 1], ["slide", 2], ["slide", 3]], report["results"]
    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"


def test_a_picture_over_the_cap_is_left_out_of_its_slide_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(slides_module, "find_soffice", lambda: None)
    monkeypatch.setattr(slides_module, "_FALLBACK_WARNED", True)
    row = bytes((200, 30, 30)) * 400
    path = tmp_path / "capped.pptx"
    path.write_bytes(media.deck(["Capped"], picture=media.png(400, 300, [row] * 300), picture_on=0))
    options = ReaderOptions(max_slide_picture_pixels=100_000)
    (item,) = read(path, options)
    with caplog.at_level("WARNING", logger="molmo_rag.media.slides"):
        pixels = np.asarray(item.image()).astype(int)
    assert not ((pixels[..., 0] > 180) & (pixels[..., 1] < 60)).any()  # the red picture is left out
    assert any("120000" in r.getMessage() and "max_slide_picture_pixels" in r.getMessage() for r in caplog.records)
    (item,) = read(path, ReaderOptions())
    pixels = np.asarray(item.image()).astype(int)
    assert ((pixels[..., 0] > 180) & (pixels[..., 1] < 60)).sum() > 1000  # under the default cap: drawn


# --- item 18: one cache root ---------------------------------------------------------------------------
needs_libreoffice = pytest.mark.skipif(slides_module.find_soffice() is None, reason="LibreOffice is not installed")


@pytest.fixture
def no_user_cache(tmp_path, monkeypatch) -> Path:
    """HOME and XDG_CACHE_HOME pointed at an empty folder, to see whether anything lands there."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("MOLMO_RAG_CACHE_DIR", raising=False)
    return home


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@needs_libreoffice
def test_slide_renders_go_under_molmo_rag_cache_dir(tmp_path, monkeypatch, no_user_cache):
    root = tmp_path / "one-root"
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(root))
    path = tmp_path / "talk.pptx"
    path.write_bytes(media.deck(["Cached where asked"]))
    (item,) = read(path)
    assert item.extra["rendered_by"] == "libreoffice"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (root / "slides" / f"{sha}.pdf").is_file()
    assert _files(no_user_cache) == []


@needs_libreoffice
def test_cache_dir_flag_holds_results_and_slide_renders(tmp_path, monkeypatch, capsys, no_user_cache):
    import _pixel_backend
    from molmo_rag.cli import main

    _pixel_backend.register(monkeypatch)
    monkeypatch.delenv("MOLMO_RAG_BACKEND", raising=False)
    path = tmp_path / "decks" / "talk.pptx"
    path.parent.mkdir()
    path.write_bytes(media.deck(["First", "Second"]))
    root = tmp_path / "flag-root"
    code = main(["index", str(path.parent), "--backend", "pixels", "--db", str(tmp_path / "db"), "--cache-dir", str(root), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (root / "slides" / f"{sha}.pdf").is_file() and (root / "results.sqlite3").is_file()
    assert _files(no_user_cache) == []


def test_a_page_pillow_cannot_set_up_does_not_lose_the_other_pages_of_a_tiff(tmp_path, caplog):
    """Pillow counts a TIFF's frames by setting up every page; a float64 page after an RGB
    one raised SyntaxError there and lost the whole file (with a traceback)."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "rgb-then-float64.tif"
    rng = np.random.default_rng(3)
    with tifffile.TiffWriter(path) as writer:
        writer.write((rng.random((30, 40, 3)) * 255).astype(np.uint8))
        writer.write(rng.random((50, 60)))
    with caplog.at_level("ERROR"):
        got = list(read([str(path)], ReaderOptions()))
    assert [type(r) for r in got] == [MediaItem, MediaItem], got
    assert [r.image().size for r in got] == [(40, 30), (60, 50)]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_complex_tiff_is_read_as_its_magnitude_without_warnings(tmp_path):
    import warnings

    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "fft.tif"
    ramp = np.tile(np.linspace(0, 1, 32), (16, 1))
    tifffile.imwrite(path, (ramp * 1j).astype(np.complex64))  # all of it imaginary: real part 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (item,) = list(read([str(path)], ReaderOptions()))
        grey = np.asarray(item.image().convert("L"))
    assert grey[:, -1].mean() > 200 and grey[:, 0].mean() < 30  # the magnitude's ramp, not black
