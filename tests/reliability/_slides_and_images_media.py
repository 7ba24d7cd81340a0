"""Writers of the slide and image inputs of issue 17 that broke readers: a password-protected
deck, a planar multi-page TIFF, an empty deck, a float TIFF with a NaN, image headers that
claim far more pixels than their data holds, a PDF content bomb and a deck with a
13,000 px picture. Each is made with the real writers (python-pptx, msoffcrypto-tool,
tifffile, Pillow) or by hand where the point is bytes no writer makes."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def deck(titles: list[str], picture: bytes | None = None, picture_on: int = 0) -> bytes:
    """A PPTX with one titled slide per entry; ``picture`` is placed on slide ``picture_on``."""
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    for n, title in enumerate(titles):
        slide = prs.slides.add_slide(prs.slide_layouts[5])
        slide.shapes.title.text = title
        if picture is not None and n == picture_on:
            with warnings.catch_warnings():  # python-pptx reads the picture's size with Pillow
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                slide.shapes.add_picture(io.BytesIO(picture), Inches(1), Inches(1.5), Inches(5), Inches(5))
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def encrypted_deck(password: str = "s3cret") -> bytes:
    """A PPTX saved with a password, as PowerPoint does it: an OLE container holding the
    ``EncryptionInfo`` and ``EncryptedPackage`` streams (ECMA-376 agile encryption)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(deck(["Secret plans"]))).encrypt(password, out)
    return out.getvalue()


PLANAR_PAGE_COLOURS = [(255, 255, 255), (20, 200, 40), (200, 30, 30)]
"""What each page of :func:`planar_tiff` shows (the first page's left half transparent)."""


def planar_tiff(path: Path) -> Path:
    """A valid three-page TIFF, every page stored planar (one plane per sample): grey +
    alpha (the left half transparent, so white on a white background), 16-bit RGB green,
    8-bit RGB red."""
    import tifffile

    h, w = 40, 60
    grey = np.full((h, w), 90, np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2 :] = 255
    # the opaque right half of page 1 is grey 90; the transparent left half white
    green16 = np.stack([np.full((h, w), c * 257, np.uint16) for c in PLANAR_PAGE_COLOURS[1]])
    red8 = np.stack([np.full((h, w), c, np.uint8) for c in PLANAR_PAGE_COLOURS[2]])
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.stack([grey, alpha]), photometric="minisblack", planarconfig="separate", extrasamples=["unassalpha"])
        tif.write(green16, photometric="rgb", planarconfig="separate")
        tif.write(red8, photometric="rgb", planarconfig="separate", compression="zlib")
    return path


def nan_float_tiff(path: Path) -> Path:
    """A 32-bit float greyscale TIFF: a ramp from 0 (left) to 1 (right) with one NaN pixel."""
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (32, 1))
    ramp[5, 7] = np.nan
    Image.fromarray(ramp, mode="F").save(path, format="TIFF")
    return path


def rgb_then_float64_tiff(path: Path) -> Path:
    """Two pages: 8-bit RGB (40x30), then float64 grey (60x50), which Pillow cannot set up
    (it raised while counting the first page's frames)."""
    import tifffile

    rng = np.random.default_rng(3)
    with tifffile.TiffWriter(path) as tif:
        tif.write((rng.random((30, 40, 3)) * 255).astype(np.uint8))
        tif.write(rng.random((50, 60)))
    return path


def check_two_pages_40x30_and_60x50(items: list) -> None:
    assert [i.kind for i in items] == ["image", "image"], items
    assert [i.image().size for i in items] == [(40, 30), (60, 50)]


def complex_tiff(path: Path) -> Path:
    """A complex64 TIFF (FFT data): the ramp of :func:`nan_float_tiff` as imaginary parts,
    so only its magnitude shows it."""
    import tifffile

    ramp = np.tile(np.linspace(0.0, 1.0, 64), (32, 1))
    tifffile.imwrite(path, (ramp * 1j).astype(np.complex64))
    return path


def lying_jpeg(width: int = 65500, height: int = 2700) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to claim width x height:
    a few hundred bytes that say they are a 177 Mpx picture."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 80, 40)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rows: Iterable[bytes], colour_type: int = 2) -> bytes:
    """An 8-bit PNG written by hand from its rows (compressed as they come, so a huge picture
    of one colour is a small file and is never held whole)."""
    compressor = zlib.compressobj(6)
    idat = bytearray()
    for row in rows:
        idat += compressor.compress(b"\x00" + row)
    idat += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", bytes(idat)) + _png_chunk(b"IEND", b"")


def lying_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A PNG header claiming width x height RGB pixels (432 MB decoded, under the pixel cap)
    followed by one short row of data."""
    return png(width, height, [bytes(3 * width)][:1])


def huge_picture_deck(side: int = 13_000) -> bytes:
    """A three-slide deck; slide 2 holds a side x side RGB PNG picture (a 500 MB decode)."""
    row = bytes((200, 30, 30)) * side
    picture = png(side, side, (row for _ in range(side)))
    return deck(["Opening", "The big picture", "Closing"], picture=picture, picture_on=1)


def pdf_content_bomb(inflated_mb: int = 300) -> bytes:
    """A one-page PDF whose page content stream is a Flate stream of about 300 KB that
    inflates to ``inflated_mb`` MB (a title, then spaces), written chunk by chunk."""
    compressor = zlib.compressobj(9)
    stream = bytearray(compressor.compress(b"BT /F1 24 Tf 72 720 Td (Bomb title) Tj ET\n"))
    block = b" " * (1 << 20)
    for _ in range(inflated_mb):
        stream += compressor.compress(block)
    stream += compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + bytes(stream) + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# --- checks of what the good ones give (items of molmo_rag.media.read) -----------------------------
def _pixels(item) -> np.ndarray:
    image = item.image()
    assert image.mode == "RGB" and image.size == (item.width, item.height)
    return np.asarray(image).astype(int)


def check_planar_pages(items: list) -> None:
    """The three pages of :func:`planar_tiff`, each its own image, in their colours (the
    first one's transparent half on white)."""
    assert [(i.kind, i.slide) for i in items] == [("image", 1), ("image", 2), ("image", 3)]
    first, green, red = (_pixels(i) for i in items)
    assert (first[:, :28] == 255).all() and np.abs(first[:, 32:] - 90).max() <= 1
    assert np.abs(green - PLANAR_PAGE_COLOURS[1]).max() <= 1 and np.abs(red - PLANAR_PAGE_COLOURS[2]).max() <= 1


def check_float_ramp(items: list) -> None:
    """:func:`nan_float_tiff` comes out a ramp from black to white, not black."""
    assert len(items) == 1 and items[0].kind == "image"
    grey = _pixels(items[0])[..., 0]
    assert grey[:, :2].max() <= 8 and grey[:, -2:].min() >= 247 and (np.diff(grey[20]) >= 0).all()
