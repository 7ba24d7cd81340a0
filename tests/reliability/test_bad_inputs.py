"""A bad input corpus, generated here, read in one batch (issue 12, item 5).

Every kind of file or URL that breaks readers in the wild, made on the spot with the real
writers (Pillow, PyAV, python-pptx, hand-written PNG/GIF/PDF/ZIP bytes) or served by an
HTTP server on 127.0.0.1: truncated, empty, mis-named and polyglot images, decompression
bombs, a 30,000 px panorama, CMYK / 16-bit / palette / animated / transparent images, odd
file names, symbolic link loops, encrypted / broken / empty PDFs, broken and empty decks,
damaged, empty, audio-only, variable-frame-rate and 3-hour videos, and URLs that redirect
forever, never end, stall, answer HTML or use another scheme.

Each one gets its typed error (one, with ``.source`` set and a message that says what is
wrong) or a correct result, and the batch goes on: all of them go through one
``media.read`` call between two good photos, through ``analyze`` and through
``pipeline.index`` of the corpus folder; a subprocess checks that peak memory stays
bounded while the bombs, the panorama, the endless download and the 3-hour video are read.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from molmo_rag.errors import (
    CorruptMediaError,
    EmptyMediaError,
    InputError,
    MediaTooLargeError,
    SourceNotFoundError,
    UnreachableSourceError,
    UnsupportedMediaError,
)
from molmo_rag.media import MediaItem, ReaderOptions, read

av = pytest.importorskip("av")
pytest.importorskip("pptx")
pytest.importorskip("pypdfium2")

THREE_HOURS = 3 * 3600.0
LONG_VIDEO_FPS = Fraction(1, 2)
"""The 3-hour video has a frame every 2 s: 5,400 frames of 320x180 (930 MB as RGB, were
they all held at once), which PyAV encodes and decodes in seconds."""
MAX_DOWNLOAD = 256 * 1024
READ_OPTIONS = dict(
    max_download_bytes=MAX_DOWNLOAD,
    url_timeout=2.5,
    max_download_seconds=5.0,
    segment_mode="fixed",
    segment_seconds=120.0,
)
"""A small download cap, so the endless stream stops soon; a short timeout, so the stalled
one does too (long enough for a loaded machine to serve the good URL); a 5 s deadline on a
whole download, so the one trickling its headers is cut then; fixed 120 s
windows, so the 3-hour video is cut without a scene scan of all its frames here (the
memory check runs one)."""


# --- writers ---------------------------------------------------------------------------------
def _photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A colourful gradient with noise: something a JPEG encoder treats like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack(
        [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 255 - x * 255 // max(1, width - 1)], -1
    )
    return Image.fromarray((arr + rng.integers(0, 24, arr.shape)).clip(0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: Callable[[], object]) -> bytes:
    """A PNG written by hand: ``rows()`` yields each row's bytes (filter byte 0 is added);
    compressed as it goes, so a huge picture of one colour stays a small file."""
    compressor = zlib.compressobj(9)
    idat = bytearray()
    for row in rows():
        idat += compressor.compress(b"\x00" + row)
    idat += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", bytes(idat)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG header declaring width x height RGB pixels, followed by almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 256)) + _png_chunk(b"IEND", b"")
    )


def _gif_js_polyglot() -> bytes:
    """A GIF that is also JavaScript: its width bytes are ``/*`` (10799 px), a comment block
    closes the JS comment and runs code, the bytes after the GIF trailer close the rest."""
    image = Image.new("P", (0x2A2F, 12), 1)
    image.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    data = _encoded(image, "GIF", comment=b"*/=1;alert('molmo-rag');/*")
    assert data[6:8] == b"/*"
    return data + b"*/"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _deck_bomb(deck: bytes, inflated: int) -> bytes:
    """The deck with an XML comment of ``inflated`` spaces in its presentation.xml: a ZIP
    bomb (a few hundred KB that inflate to hundreds of MB), written chunk by chunk."""
    with zipfile.ZipFile(io.BytesIO(deck)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for name, data in members.items():
            if name != "ppt/presentation.xml":
                out.writestr(name, data)
                continue
            head, sep, rest = data.partition(b"?>")
            with out.open(name, "w", force_zip64=True) as part:
                part.write(head + sep + b"<!--")
                block = b" " * (1 << 20)
                for _ in range(inflated >> 20):
                    part.write(block)
                part.write(b"-->" + rest)
    return buf.getvalue()


def _deck(slides: int) -> bytes:
    from pptx import Presentation

    prs = Presentation()
    for n in range(slides):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = f"Slide {n + 1}"
        slide.placeholders[1].text_frame.text = "Some text " * 40
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def _write_video(
    path: Path,
    times: list[Fraction],
    *,
    size: tuple[int, int] = (64, 48),
    rate: Fraction = Fraction(25),
    change_every: int = 1,
    fmt: str = "mp4",
    options: dict | None = None,
) -> Path:
    """An H.264 video with a frame at each of ``times`` (seconds); a new picture every
    ``change_every`` frames (the same frame object is re-sent in between: cheap)."""
    time_base = Fraction(1, 1000) if any(t.denominator not in (1, rate.numerator) for t in times) else 1 / rate
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast", "crf": "32", "g": "60", "threads": "1"}
        frame = None
        for i, t in enumerate(times):
            if i % change_every == 0:
                picture = np.array(_photo(size[0], size[1], seed=i // change_every))
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = int(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _write_audio(path: Path, fmt: str, codec: str, rate: int = 22050) -> Path:
    """Two seconds of a tone and nothing else, in an MP4-family container."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame_size = stream.codec_context.frame_size or 1152
        samples_done = 0
        while samples_done < 2 * rate:
            t = (np.arange(samples_done, samples_done + frame_size) / rate).astype(np.float32)
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            fmt_name = stream.codec_context.format.name
            if fmt_name in ("s16p", "s32p"):
                bits = 16 if fmt_name == "s16p" else 32
                samples = (samples * (2 ** (bits - 1) - 1)).astype(np.int16 if bits == 16 else np.int32)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt_name, layout="mono")
            frame.sample_rate, frame.pts = rate, samples_done
            for packet in stream.encode(frame):
                out.mux(packet)
            samples_done += frame_size
        for packet in stream.encode():
            out.mux(packet)
    return path


def _empty_video(path: Path, fmt: str = "mp4", codec: str = "libx264") -> Path:
    """A video file whose header was written and no frame after it (the MP4 muxer then
    leaves the empty track out; AVI keeps the stream)."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return path


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """Top-level MP4 boxes between start and end: type -> (offset, size)."""
    end = len(data) if end is None else end
    found, at = {}, start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size < 8:
            break
        found.setdefault(kind, (at, size))
        at += size
    return found


def _damage_moov(path: Path, table: bytes, value: Callable[[int], int]) -> Path:
    """Overwrite every entry of one sample table of the video's index (the 'moov' box):
    ``stsz`` (frame sizes) or ``stco`` (where the frames are), entry n set to value(n)."""
    data = bytearray(path.read_bytes())
    offset, size = _boxes(bytes(data))[b"moov"]
    at = data.find(table, offset, offset + size)
    assert at > 0, table
    first = at + (12 if table == b"stsz" else 8)  # after version/flags (and stsz's uniform size)
    count = struct.unpack(">I", data[first : first + 4])[0]
    assert count > 0
    for n in range(count):
        struct.pack_into(">I", data, first + 4 + 4 * n, value(n))
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --- the HTTP server ---------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    photo = b""
    stop: threading.Event

    def log_message(self, *args):  # keep test output quiet
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self):
        if self.path == "/photo.jpg":
            self._head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(self.photo))})
            self.wfile.write(self.photo)
        elif self.path.startswith("/loop"):  # every answer redirects again, with a new URL
            n = int(self.path.rpartition("/")[2] or 0) if self.path.count("/") > 1 else 0
            self._head(302, {"Location": f"/loop/{n + 1}", "Content-Length": "0"})
        elif self.path == "/endless.mp4":  # a chunked body that never ends
            self._head(200, {"Content-Type": "video/mp4", "Transfer-Encoding": "chunked"})
            block = b"\x00\x00\x00\x18ftypisom" + bytes(64 * 1024 - 12)
            try:
                while not self.stop.is_set():
                    self._chunk(block)
            except OSError:  # the client stopped reading: what it must do
                pass
        elif self.path == "/stalled.jpg":  # sends a little, then nothing, never ending
            self._head(200, {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"})
            try:
                self._chunk(self.photo[:100])
            except OSError:
                return
            self.stop.wait()
        elif self.path == "/page.jpg":  # a name that promises a photo, an HTML answer
            body = b"<!doctype html><html><body><img src=photo.jpg></body></html>"
            self._head(200, {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body))})
            self.wfile.write(body)
        elif self.path == "/gzip-bomb.jpg":  # 64 KB on the wire, 64 MiB once inflated, whatever was asked for
            bomb = _gzip_bomb(64 << 20)
            self._head(200, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))})
            try:
                self.wfile.write(bomb)
            except OSError:
                pass
        elif self.path == "/slow-headers.jpg":  # headers a byte every 0.5 s (inside url_timeout), then the photo
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.photo)}\r\n"
                f"X-Padding: {'a' * 40}\r\n\r\n"
            ).encode()
            try:
                for i in range(len(head)):
                    self.wfile.write(head[i : i + 1])
                    self.wfile.flush()
                    if self.stop.wait(0.5):
                        return
                self.wfile.write(self.photo)
            except OSError:  # the client gave up: what it must do
                pass
            self.close_connection = True
        else:
            self._head(404, {"Content-Length": "0"})


@functools.lru_cache(maxsize=None)
def _gzip_bomb(inflated: int) -> bytes:
    """Gzip of ``inflated`` zero bytes (about 1,000:1), written a MiB at a time."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as z:
        for _ in range(inflated >> 20):
            z.write(bytes(1 << 20))
    return out.getvalue()


@pytest.fixture(scope="module")
def server():
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"photo": _encoded(_photo(80, 60, seed=5), "JPEG"), "stop": stop})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


# --- the corpus ------------------------------------------------------------------------------
@dataclass
class Case:
    """One kind of input: its source, and the typed error or the result it must give."""

    kind: str
    source: str
    error: type[InputError] | None = None
    says: tuple[str, ...] = ()
    """Words the error message must contain (case-insensitive)."""
    check: Callable[[list[MediaItem]], None] | None = None
    """For a good input: checks its items."""
    then_error: bool = False
    """Items first, then the error (a truncated video: the part that decodes is read)."""
    in_folder: bool = True
    """A file of the corpus folder (what ``index`` reads); URLs are not."""
    produces: str | None = None
    """The source its items carry, when not ``source`` (a folder's file)."""

    @property
    def good(self) -> bool:
        return self.error is None

    @property
    def result_source(self) -> str:
        return self.produces or self.source


def _rgb(items: list[MediaItem]) -> np.ndarray:
    assert len(items) == 1 and items[0].kind == "image"
    image = items[0].image()
    assert image.mode == "RGB"
    assert (image.width, image.height) == (items[0].width, items[0].height)
    return np.asarray(image).astype(int)


def _size(width: int, height: int) -> Callable[[list[MediaItem]], None]:
    def check(items: list[MediaItem]) -> None:
        assert _rgb(items).shape[:2] == (height, width)

    return check


def _colour_at(x: int, y: int, rgb: tuple[int, int, int], tolerance: int = 40):
    def check(items: list[MediaItem]) -> None:
        pixel = _rgb(items)[y, x]
        assert np.abs(pixel - np.array(rgb)).max() <= tolerance, (pixel, rgb)

    return check


def _transparent_left_is_white(items: list[MediaItem]) -> None:
    arr = _rgb(items)
    assert (arr[:, : arr.shape[1] // 2 - 2] >= 250).all()  # no alpha: left half composited on white
    assert arr[:, arr.shape[1] // 2 + 2 :].mean() < 200  # the opaque half keeps its colour


def _like(original: Image.Image, tolerance: float = 24.0):
    """The picture read matches the original's colours (mean absolute difference)."""

    def check(items: list[MediaItem]) -> None:
        arr = _rgb(items)
        ref = np.asarray(original.convert("RGB").resize((arr.shape[1], arr.shape[0]))).astype(int)
        assert np.abs(arr - ref).mean() <= tolerance

    return check


def _grey_ramp(items: list[MediaItem]) -> None:
    """A 16-bit ramp from black to white comes out a full 8-bit ramp, not clipped white."""
    arr = _rgb(items)
    assert arr[:, :4].max() <= 10 and arr[:, -4:].min() >= 245
    assert (np.diff(arr[0, :, 0]) >= 0).all()


def _segments_cover(duration: float, min_count: int = 1):
    def check(items: list[MediaItem]) -> None:
        assert len(items) >= min_count
        assert all(i.kind == "video_segment" for i in items)
        assert items[0].start == 0.0 and items[-1].end == pytest.approx(duration, abs=0.05)
        assert all(a.end == b.start for a, b in zip(items, items[1:]))
        assert all(0 < i.end - i.start <= 120.0 for i in items)

    return check


def _vfr_check(items: list[MediaItem]) -> None:
    _segments_cover(VFR_END)(items)
    sampled = items[0].frames(16, 2.0)
    assert sampled.frames.shape[0] >= 2 and sampled.timestamps == sorted(sampled.timestamps)


def _readable_part_of_ten_seconds(items: list[MediaItem]) -> None:
    """A 10 s video cut in half: segments cover the part that decodes, from 0, and no more."""
    _segments_cover(items[-1].end)(items)
    assert 2.0 < items[-1].end < 10.0
    assert items[-1].frames(4, 2.0).frames.shape[0] >= 1


def _long_video_check(items: list[MediaItem]) -> None:
    _segments_cover(THREE_HOURS, min_count=90)(items)
    last = items[-1].frames(4, 1.0)  # the last window decodes without the rest of the file
    assert len(last) >= 1 and last.frames.shape[1:] == (180, 320, 3)


def _pages(n: int):
    def check(items: list[MediaItem]) -> None:
        assert [i.kind for i in items] == ["slide"] * n and [i.slide for i in items] == list(range(1, n + 1))
        assert items[0].image().size == (items[0].width, items[0].height)

    return check


def _one_image_of_format(fmt: str, frames: int = 1):
    def check(items: list[MediaItem]) -> None:
        _rgb(items)
        assert items[0].extra["format"] == fmt and items[0].extra.get("frames", 1) == frames

    return check


VFR_TIMES = [Fraction(t, 1000) for t in (0, 40, 80, 500, 520, 540, 1900, 2000, 3300, 3310, 3320, 5000, 7960)]
VFR_END = 8.0


def _build_corpus(root: Path, server: str) -> list[Case]:
    """Writes every file of the corpus under ``root`` and returns the cases, in order."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def file(name: str, data: bytes | None = None) -> str:
        path = root / name
        if data is not None:
            path.write_bytes(data)
        return str(path)

    def add(kind: str, source: str, **kw) -> None:
        cases.append(Case(kind, source, **kw))

    photo = _photo(320, 240, seed=1)
    jpeg = _encoded(photo, "JPEG", quality=90)
    png = _encoded(_photo(120, 80, seed=2), "PNG")

    # --- images: damaged, empty, mis-named, polyglots ---------------------------------------
    add("truncated JPEG", file("truncated.jpg", jpeg[: len(jpeg) // 2]), error=CorruptMediaError, says=("truncated",))
    add("truncated PNG", file("truncated.png", png[: len(png) * 2 // 3]), error=CorruptMediaError, says=("truncated",))
    add("zero-byte image", file("empty.png", b""), error=CorruptMediaError, says=("empty", "0 bytes"))
    add("PNG named .jpg (wrong extension)", file("really-a-png.jpg", png), check=_one_image_of_format("PNG"))
    add("JPEG named .mp4 (wrong extension)", file("really-a-jpeg.mp4", jpeg), check=_one_image_of_format("JPEG"))
    add("text named .png", file("not-a-picture.png", b"just some words\n" * 20), error=CorruptMediaError,
        says=("named .png", "not an image"))
    polyglot = jpeg + _zip({"ppt/presentation.xml": b"<p:presentation/>", "readme.txt": b"also a ZIP"})
    assert zipfile.is_zipfile(io.BytesIO(polyglot))
    add("JPEG+ZIP polyglot", file("polyglot-zip.jpg", polyglot), check=_like(photo))
    add("GIF+JavaScript polyglot (10799 px wide)", file("polyglot-js.gif", _gif_js_polyglot()),
        check=_size(2048, 2))

    # --- images: bombs and huge -----------------------------------------------------------
    add("PNG declaring 50,000 x 50,000", file("bomb-declared.png", _png_declaring(50_000, 50_000)),
        error=MediaTooLargeError, says=("decompression bomb",))
    side = 15_000  # 225 Mpx, over max_image_pixels; all black, 1 bit a pixel: 27 KB
    bomb = _png(side, side, 1, 0, lambda: (bytes((side + 7) // 8) for _ in range(side)))
    assert len(bomb) < 100_000
    add("tiny PNG that decodes to 15,000 x 15,000", file("bomb-small-file.png", bomb), error=MediaTooLargeError,
        says=("225000000 pixels", "decompression bomb"))
    panorama = _photo(30_000, 200, seed=3)
    add("30,000 x 200 panorama (downscaled)", file("panorama.jpg", _encoded(panorama, "JPEG", quality=80)),
        check=_size(2048, 14))
    del panorama

    # --- images: modes that must come out RGB ------------------------------------------------
    add("CMYK JPEG", file("cmyk.jpg", _encoded(photo.convert("CMYK"), "JPEG", quality=95)), check=_like(photo))
    ramp16 = np.tile(np.linspace(0, 65535, 256).astype(">u2"), (16, 1))
    add("16-bit greyscale PNG", file("grey16.png", _png(256, 16, 16, 0, lambda: (r.tobytes() for r in ramp16))),
        check=_grey_ramp)
    rgb48 = np.array(photo, dtype=">u2") * 257
    add("16-bit RGB PNG (48 bpp)", file("rgb48.png", _png(320, 240, 16, 2, lambda: (r.tobytes() for r in rgb48))),
        check=_like(photo, tolerance=2))
    add("palette PNG", file("palette.png", _encoded(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
        check=_like(photo, tolerance=12))
    red, blue = Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (40, 30), (20, 20, 220))
    gif = io.BytesIO()
    red.save(gif, "GIF", save_all=True, append_images=[blue, red], duration=100, loop=0)
    add("animated GIF (first frame)", file("animated.gif", gif.getvalue()),
        check=lambda items: (_one_image_of_format("GIF", 3)(items), _colour_at(20, 15, (220, 20, 20))(items)))
    webp = io.BytesIO()
    blue.save(webp, "WEBP", save_all=True, append_images=[red], duration=100, loop=0, lossless=True)
    add("animated WebP (first frame)", file("animated.webp", webp.getvalue()),
        check=lambda items: (_one_image_of_format("WEBP", 2)(items), _colour_at(20, 15, (20, 20, 220))(items)))
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, 20:] = 255  # left half fully transparent
    dark = Image.new("RGB", (40, 30), (30, 60, 90))
    la = Image.merge("LA", (dark.convert("L"), Image.fromarray(alpha)))
    add("greyscale + alpha (LA) PNG", file("alpha-la.png", _encoded(la, "PNG")), check=_transparent_left_is_white)
    rgba = Image.merge("RGBA", (*dark.split(), Image.fromarray(alpha)))
    add("RGBA PNG", file("alpha-rgba.png", _encoded(rgba, "PNG")), check=_transparent_left_is_white)
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    pal.paste(0, (0, 0, 20, 30))
    add("palette PNG with a transparent colour", file("alpha-palette.png", _encoded(pal, "PNG", transparency=0)),
        check=_transparent_left_is_white)

    # --- odd names and links -------------------------------------------------------------------
    small = _encoded(_photo(64, 48, seed=4), "JPEG")
    for kind, name in [
        ("file name with spaces", "holiday  photo (1) .jpg"),
        ("unicode file name", "фото-ünïcødé-写真.jpg"),
        ("newline in the file name", "line\nbreak.jpg"),
        ("file name with a leading dash", "-rf --help.jpg"),
    ]:
        add(kind, file(name, small), check=_size(64, 48))
    (root / "loop-a.jpg").symlink_to(root / "loop-b.jpg")
    (root / "loop-b.jpg").symlink_to(root / "loop-a.jpg")
    add("symlink loop (a -> b -> a)", str(root / "loop-a.jpg"), error=SourceNotFoundError,
        says=("symbolic links",))
    add("symlink loop, second link", str(root / "loop-b.jpg"), error=SourceNotFoundError, says=("symbolic links",))
    (root / "self.png").symlink_to(root / "self.png")
    add("symlink to itself", str(root / "self.png"), error=SourceNotFoundError, says=("symbolic links",))
    looped = root / "looped-folder"
    looped.mkdir()
    (looped / "inside.jpg").write_bytes(small)
    (looped / "again").symlink_to(looped, target_is_directory=True)
    add("folder with a symlink back to itself (walked once)", str(looped), check=_size(64, 48),
        produces=str(looped / "inside.jpg"))

    # --- PDFs ---------------------------------------------------------------------------------
    from molmo_rag.testing import samples

    samples.make_pdf(root / "good.pdf", [["Good title", "a line"], ["Second page"]])
    add("PDF (good, 2 pages)", str(root / "good.pdf"), check=_pages(2))
    samples.make_pdf(root / "encrypted.pdf", [["Secret", "plans"]], password="s3cret")
    assert b"/Encrypt" in (root / "encrypted.pdf").read_bytes()
    add("encrypted PDF (user password)", str(root / "encrypted.pdf"), error=CorruptMediaError,
        says=("encrypted", "password"))
    add("broken PDF (garbage after the header)",
        file("broken.pdf", b"%PDF-1.7\n" + np.random.default_rng(1).bytes(4000)),
        error=CorruptMediaError, says=("not a readable PDF",))
    whole = samples.make_pdf(root / "whole.pdf", [["Page one"], ["Page two"], ["Page three"]]).read_bytes()
    (root / "whole.pdf").unlink()
    add("truncated PDF (no xref, no trailer)", file("truncated.pdf", whole[: len(whole) // 3]),
        error=CorruptMediaError, says=("PDF",))
    samples.make_pdf(root / "zero-pages.pdf", [])
    add("zero-page PDF (hand-written)", str(root / "zero-pages.pdf"), error=CorruptMediaError, says=("no pages",))
    import pypdfium2

    pypdfium2.PdfDocument.new().save(root / "zero-pages-pdfium.pdf")
    add("zero-page PDF (written by PDFium)", str(root / "zero-pages-pdfium.pdf"), error=CorruptMediaError,
        says=("no pages",))

    # --- decks ---------------------------------------------------------------------------------
    deck = _deck(3)
    add("truncated PPTX (cut ZIP)", file("truncated.pptx", deck[: len(deck) // 2]), error=CorruptMediaError,
        says=("truncated",))
    word = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    add("ZIP without presentation.xml named .pptx", file("not-a-deck.pptx", word), error=CorruptMediaError,
        says=("ZIP", "not a PowerPoint deck"))
    bad_xml = zipfile.ZipFile(io.BytesIO(deck))
    members = {name: bad_xml.read(name) for name in bad_xml.namelist()}
    members["ppt/presentation.xml"] = b"<p:presentation xmlns:p='broken"
    add("PPTX with malformed presentation.xml", file("bad-xml.pptx", _zip(members)), error=CorruptMediaError,
        says=("not a readable PowerPoint deck",))
    add("deck with zero slides", file("no-slides.pptx", _deck(0)), error=EmptyMediaError, says=("no slides", "add slides"))
    bomb_deck = _deck_bomb(deck, 128 << 20)
    assert len(bomb_deck) < 1 << 20
    add("PPTX ZIP bomb (under 1 MB, inflates to 128 MB)", file("zip-bomb.pptx", bomb_deck), error=MediaTooLargeError,
        says=("ZIP bomb",))

    # --- videos --------------------------------------------------------------------------------
    four_seconds = [Fraction(i, 25) for i in range(100)]
    _damage_moov(_write_video(root / "huge-frames.mp4", four_seconds), b"stsz", lambda n: 0x3FFFFFFF)
    add("MP4 whose index (moov) says every frame is 1 GiB", str(root / "huge-frames.mp4"), error=CorruptMediaError,
        says=("more memory than FFmpeg could allocate", "damaged"))
    _damage_moov(_write_video(root / "offsets-past-end.mp4", four_seconds), b"stco", lambda n: 0x7FFF0000 + n)
    add("MP4 whose index (moov) points past the end", str(root / "offsets-past-end.mp4"), error=CorruptMediaError,
        says=("no decodable frame",))
    _write_video(root / "truncated.mp4", [Fraction(i, 25) for i in range(250)], options={"movflags": "+faststart"})
    _truncate(root / "truncated.mp4", 0.5)
    add("MP4 cut in half (index first)", str(root / "truncated.mp4"), error=CorruptMediaError,
        says=("truncated after",), check=_readable_part_of_ten_seconds, then_error=True)
    add("MP4 with zero frames (no track left)", str(_empty_video(root / "zero-frames.mp4")),
        error=CorruptMediaError, says=("no readable video or audio stream",))
    add("AVI with a video stream and zero frames", str(_empty_video(root / "zero-frames.avi", "avi", "mpeg4")),
        error=CorruptMediaError, says=("no decodable frame",))
    add("audio-only M4A (AAC)", str(_write_audio(root / "voice.m4a", "ipod", "aac")), error=UnsupportedMediaError,
        says=("audio only",))
    add("MP3 in an .mp4", str(_write_audio(root / "song-in.mp4", "mp4", "libmp3lame")), error=UnsupportedMediaError,
        says=("audio only",))
    add("variable frame rate video", str(_write_video(root / "vfr.mp4", VFR_TIMES)), check=_vfr_check)
    step = 1 / LONG_VIDEO_FPS
    long_times = [i * step for i in range(int(THREE_HOURS / step))]
    add("3-hour video", str(_write_video(root / "three-hours.mp4", long_times, size=(320, 180),
                                          rate=LONG_VIDEO_FPS, change_every=300)),
        check=_long_video_check)
    os.mkfifo(root / "camera.mp4")
    add("named pipe named .mp4", str(root / "camera.mp4"), error=UnsupportedMediaError, says=("named pipe",))

    # --- URLs and other schemes ---------------------------------------------------------------------
    add("URL (good photo)", f"{server}/photo.jpg", check=_size(80, 60), in_folder=False)
    upper = "HTTP://" + server.removeprefix("http://") + "/photo.jpg"
    add("URL with an upper-case scheme (HTTP://)", upper, check=_size(80, 60), in_folder=False)
    add("URL that redirects forever", f"{server}/loop", error=UnreachableSourceError, says=("redirect",),
        in_folder=False)
    add("URL streaming without end (chunked)", f"{server}/endless.mp4", error=MediaTooLargeError,
        says=("max_download_bytes",), in_folder=False)
    add("URL that stalls mid-body", f"{server}/stalled.jpg", error=UnreachableSourceError, says=("timeout",),
        in_folder=False)
    add("URL answering HTML", f"{server}/page.jpg", error=UnsupportedMediaError, says=("text/html",),
        in_folder=False)
    add("ftp:// URL", "ftp://127.0.0.1:21/photo.jpg", error=UnsupportedMediaError, says=("ftp",),
        in_folder=False)
    add("file:// URL", (root / "really-a-png.jpg").as_uri(), error=UnsupportedMediaError, says=("file://",),
        in_folder=False)
    add("javascript: URL", "javascript:alert(document.cookie)", error=UnsupportedMediaError, says=("javascript",),
        in_folder=False)

    # --- issue 17: sources (file names, downloads) ----------------------------------------------
    not_utf8 = os.fsdecode(b"caf\xe9-latin1.jpg")  # a name of bytes that are not UTF-8
    add("file name that is not valid UTF-8", file(not_utf8, small), check=_size(64, 48),
        produces=f"{root}/caf\\xe9-latin1.jpg")
    file(os.fsdecode(b"bad-\xfe.png"), b"not a picture\n" * 5)
    add("unreadable file whose name is not valid UTF-8 (given as it is printed)", f"{root}/bad-\\xfe.png",
        error=CorruptMediaError, says=("bad-\\xfe.png", "not an image"))
    add("escape sequences in the file name (clear screen, OSC title, CR, RTL override)",
        file("esc\x1b[2J\x1b]0;title\x07\r\u202egpj.jpg", small), check=_size(64, 48))
    add("URL of a gzip bomb (Content-Encoding: gzip, 64 KB inflating to 64 MiB)", f"{server}/gzip-bomb.jpg",
        error=MediaTooLargeError, says=("max_download_bytes", "gzip"), in_folder=False)
    add("URL sending its headers a byte at a time", f"{server}/slow-headers.jpg", error=UnreachableSourceError,
        says=("still sending", "max_download_seconds"), in_folder=False)

    # --- issue 17: slides and images ------------------------------------------------------------
    import _slides_and_images_media as hostile

    add("password-protected PPTX (OLE container, EncryptedPackage)", file("locked.pptx", hostile.encrypted_deck()),
        error=UnsupportedMediaError, says=("password-protected (encrypted) deck", "remove the password"))
    planar = hostile.planar_tiff(root / "planar-pages.tif")
    add("planar multi-page TIFF (grey+alpha, 16-bit RGB, RGB)", str(planar), check=hostile.check_planar_pages)
    add("float TIFF with one NaN pixel", str(hostile.nan_float_tiff(root / "float-nan.tif")), check=hostile.check_float_ramp)
    add("JPEG whose header claims 65500x2700 with almost no data", file("liar.jpg", hostile.lying_jpeg()),
        error=CorruptMediaError, says=("65500x2700", "too little"))
    add("PNG whose header claims 12000x12000 with one row of data", file("liar.png", hostile.lying_png()),
        error=CorruptMediaError, says=("12000x12000", "too little"))
    pdf_bomb = hostile.pdf_content_bomb(300)
    assert len(pdf_bomb) < 400_000
    add("PDF content bomb (300 KB, a content stream inflating to 300 MB)", file("content-bomb.pdf", pdf_bomb),
        error=MediaTooLargeError, says=("PDF bomb", "inflate"))
    add("deck with a 13,000 px picture", file("huge-picture.pptx", hostile.huge_picture_deck(13_000)),
        check=_pages(3))
    add("multi-page TIFF: an RGB page, then a float64 page Pillow cannot set up",
        str(hostile.rgb_then_float64_tiff(root / "rgb-then-float64.tif")), check=hostile.check_two_pages_40x30_and_60x50)
    add("complex-valued (FFT) TIFF", str(hostile.complex_tiff(root / "fft.tif")), check=hostile.check_float_ramp)


    # --- issue 17: video -------------------------------------------------------------------------
    ten_days = Fraction(10 * 86400)

    def two_segments_one_per_frame(items: list[MediaItem]) -> None:  # none over the ten days between
        assert [i.extra["boundary"] for i in items] == ["start", "gap"]
        assert items[0].start == 0.0 and items[1].start == pytest.approx(float(ten_days), abs=1e-3)
        assert all(0 < i.end - i.start <= 1.0 for i in items)
        assert all(len(i.frames(4, 2.0)) == 1 for i in items)

    add("MKV with two frames ten days apart (2 KB)",
        str(_write_video(root / "motion-camera.mkv", [Fraction(0), ten_days], fmt="matroska")),
        check=two_segments_one_per_frame)
    _write_video(root / "cut-before-index.mp4", [Fraction(i, 25) for i in range(250)])  # index (moov) last
    _truncate(root / "cut-before-index.mp4", 0.5)
    add("MP4 cut in half before its index (AVERROR_INVALIDDATA)", str(root / "cut-before-index.mp4"),
        error=CorruptMediaError, says=("truncated or damaged video", "before its index (moov)", "re-download it"))
    garbage_mp4 = b"\x00\x00\x00\x20ftypisom" + bytes(12) + bytes(range(256)) * 20
    add("MP4 header followed by garbage (AVERROR_INVALIDDATA)", file("garbage.mp4", garbage_mp4),
        error=CorruptMediaError, says=("truncated or damaged video (FFmpeg: invalid data found", "re-download it"))

    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, server) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("bad-inputs") / "corpus"
    return root, _build_corpus(root, server)


@pytest.fixture(scope="module")
def good_photos(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("good")
    first, last = folder / "first.jpg", folder / "last.png"
    first.write_bytes(_encoded(_photo(160, 120, seed=10), "JPEG"))
    last.write_bytes(_encoded(_photo(100, 100, seed=11), "PNG"))
    return str(first), str(last)


@pytest.fixture(scope="module")
def options(tmp_path_factory) -> ReaderOptions:
    return ReaderOptions(cache_dir=tmp_path_factory.mktemp("slide-cache"), **READ_OPTIONS)


def _says(error: Exception, words: tuple[str, ...]) -> bool:
    text = str(error).lower()
    return all(w.lower() in text for w in words)


def _names_source(error: InputError) -> bool:
    text = str(error)
    return error.source in text or repr(error.source) in text


# --- the tests ---------------------------------------------------------------------------------
def test_corpus_has_at_least_25_kinds(corpus):
    _, cases = corpus
    assert len({c.kind for c in cases}) >= 25
    assert sum(not c.good for c in cases) >= 25


def test_one_read_call_gives_each_bad_input_its_typed_error_and_the_rest_goes_on(corpus, good_photos, options):
    _, cases = corpus
    first, last = good_photos
    sources = [first, *(c.source for c in cases), last]
    results = list(read(sources, options))

    # In source order: group the results by the source they carry.
    groups: list[tuple[str, list]] = []
    for result in results:
        source = result.source
        if not groups or groups[-1][0] != source:
            groups.append((source, []))
        groups[-1][1].append(result)
    expected = [first, *(c.result_source for c in cases), last]
    assert [g[0] for g in groups] == expected

    for (source, got), case in zip(groups[1:-1], cases):
        errors = [r for r in got if isinstance(r, Exception)]
        items = [r for r in got if isinstance(r, MediaItem)]
        where = f"{case.kind} ({source!r})"
        if case.good:
            assert not errors, f"{where}: {errors}"
            case.check(items)
            continue
        assert len(errors) == 1, f"{where}: {got}"
        error = errors[0]
        assert type(error) is case.error, f"{where}: {type(error).__name__}: {error}"
        assert error.source == case.source, where
        assert _names_source(error), f"{where}: {error}"
        assert _says(error, case.says), f"{where}: {error}"
        if case.then_error:
            assert got[-1] is error and items, where
            case.check(items)
        else:
            assert not items, f"{where}: {items}"
    for source, got in (groups[0], groups[-1]):
        assert len(got) == 1 and isinstance(got[0], MediaItem) and got[0].image().mode == "RGB"


def test_analyze_gives_one_failure_per_bad_input_and_results_for_the_rest(corpus, good_photos, options):
    from molmo_rag.analyze import analyze
    from molmo_rag.results import Failure, Result
    from molmo_rag.tasks import Caption
    from molmo_rag.testing import FakeBackend

    _, cases = corpus
    first, last = good_photos
    sources = [first, *(c.source for c in cases), last]
    outcomes = list(analyze(sources, [Caption()], FakeBackend(), reader_options=options))
    by_source: dict[str, list] = {}
    for outcome in outcomes:
        source = outcome.item.source if isinstance(outcome, Result) else outcome.source
        by_source.setdefault(source, []).append(outcome)
    assert set(by_source) == {first, last, *(c.result_source for c in cases)}
    for case in cases:
        got = by_source[case.result_source]
        failures = [o for o in got if isinstance(o, Failure)]
        results = [o for o in got if isinstance(o, Result)]
        where = f"{case.kind} ({case.source!r})"
        if case.good:
            assert not failures, f"{where}: {[str(f.error) for f in failures]}"
            assert results and all(r.text for r in results), where
            continue
        assert len(failures) == 1, f"{where}: {[str(f.error) for f in failures]}"
        failure = failures[0]
        assert failure.task is None and type(failure.error) is case.error, f"{where}: {failure.error!r}"
        assert failure.error.source == case.source and _says(failure.error, case.says), where
        assert bool(results) == case.then_error, where
    for source in (first, last):
        assert [type(o) for o in by_source[source]] == [Result]


def test_index_of_the_corpus_folder_fails_each_bad_file_once_and_indexes_the_rest(corpus, options, tmp_path):
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    root, cases = corpus
    files = [c for c in cases if c.in_folder]
    indexed: list = []
    summary = pipeline.index(
        root, backend=FakeBackend(), db=tmp_path / "db", cache=False, reader_options=options,
        on_record=lambda record, status: indexed.append(record),
    )
    failed: dict[str, list] = {}
    for failure in summary.failed:
        failed.setdefault(failure.source, []).append(failure)
    bad = {c.source: c for c in files if not c.good}
    assert set(failed) == set(bad)
    for source, failures in failed.items():
        case = bad[source]
        assert len(failures) == 1, f"{case.kind}: {[str(f.error) for f in failures]}"
        assert failures[0].task is None and type(failures[0].error) is case.error, f"{case.kind}: {failures[0].error!r}"
    points: dict[str, int] = {}
    for record in indexed:
        points[record.item.source] = points.get(record.item.source, 0) + 1
    # One point per picture (the looped folder's file once), per PDF page, per 120 s window
    # of the 3-hour video; the readable part of the truncated video is one short window.
    several = {str(root / "three-hours.mp4"): 90, str(root / "good.pdf"): 2, str(root / "planar-pages.tif"): 3,
               str(root / "huge-picture.pptx"): 3, str(root / "motion-camera.mkv"): 2,
               str(root / "rgb-then-float64.tif"): 2}
    expected = {c.result_source: several.get(c.result_source, 1) for c in files if c.good or c.then_error}
    assert points == expected
    assert summary.indexed == len(indexed) == sum(points.values())


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from molmo_rag.media import ReaderOptions, read

    def peak_bytes():
        # VmHWM: this process's own peak. ru_maxrss would start at the parent's (pytest's)
        # peak, which Linux carries over fork and exec, and hide any growth below it.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    warm, heavy, settings = json.loads(sys.argv[1])
    options = ReaderOptions(**settings)
    for result in read(warm, options):  # every reader and codec loaded once, pixels decoded
        assert not isinstance(result, Exception), result
        result.frames(8, 2.0) if result.kind == "video_segment" else result.image()
    base = peak_bytes()
    out = []
    for result in read(heavy, options):
        if isinstance(result, Exception):
            out.append([result.source, type(result).__name__, None, None])
        else:
            out.append([result.source, result.kind, result.start, result.end])
            if result.kind == "image":
                result.image()
    last = result.frames(4, 1.0)
    print(json.dumps({"base": base, "peak": peak_bytes(), "results": out, "last_frames": len(last)}))
    """
)
MEMORY_HEADROOM = 40 * 1024**2
"""How much peak memory may grow over the warmed-up reader while the heavy inputs are read
(a few MB in practice): below any of them held whole (the 15,000 px bomb: 675 MB as RGB;
the 3-hour video: 930 MB of frames; the ZIP bomb: 128 MB; the endless download: 48 MB
were it kept in memory rather than spooled, which grows the peak by about 54 MB)."""


def test_memory_stays_bounded_reading_bombs_panorama_endless_download_and_3_hour_video(corpus, server, tmp_path):
    root, cases = corpus
    by_kind = {c.kind: c for c in cases}
    warm = [str(root / "really-a-png.jpg"), str(root / "good.pdf"), str(root / "vfr.mp4"), f"{server}/photo.jpg"]
    heavy_kinds = [
        "PNG declaring 50,000 x 50,000",
        "tiny PNG that decodes to 15,000 x 15,000",
        "30,000 x 200 panorama (downscaled)",
        "MP4 whose index (moov) says every frame is 1 GiB",
        "URL streaming without end (chunked)",
        "PPTX ZIP bomb (under 1 MB, inflates to 128 MB)",
        "3-hour video",
    ]
    heavy = [by_kind[k].source for k in heavy_kinds]
    settings = {
        "max_download_bytes": 48 * 1024**2,  # the endless body is read up to here ...
        "download_in_memory_bytes": 4 * 1024**2,  # ... spooled to disk past this
        "url_timeout": 5.0,
        "cache_dir": str(tmp_path / "cache"),
        # the default segment mode: shot detection scans every frame of the 3-hour video
    }
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([warm, heavy, settings])],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["results"]
    kinds = {source: kind for source, kind, _, _ in results}
    assert kinds[heavy[0]] == kinds[heavy[1]] == "MediaTooLargeError"
    assert kinds[heavy[2]] == "image"
    assert kinds[heavy[3]] == "CorruptMediaError"
    assert kinds[heavy[4]] == kinds[heavy[5]] == "MediaTooLargeError"
    segments = [(start, end) for source, kind, start, end in results if source == heavy[6]]
    assert segments[0][0] == 0.0 and segments[-1][1] == pytest.approx(THREE_HOURS, abs=0.05)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    assert len(segments) >= THREE_HOURS / 60 and report["last_frames"] >= 1  # scenes of at most 60 s
    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"
