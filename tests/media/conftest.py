"""Media made on the fly, once per session (short, low-resolution videos; one deck render)."""

from __future__ import annotations

import functools
import http.server
import struct
import subprocess
import threading
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest

from molmo_rag.media import ReaderOptions
from molmo_rag.testing import samples


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cuts_video(media_dir) -> samples.SyntheticVideo:
    """12 s, 25 fps, hard cuts at 4 s and 7 s, with an audio track."""
    shots = [
        samples.Shot("astronaut", 4.0, "pan"),
        samples.Shot("coffee", 3.0, "zoom_in"),
        samples.Shot("hubble_deep_field", 5.0, "static"),
    ]
    return samples.make_video(media_dir / "cuts.mp4", shots, size=(192, 108), fps=25, audio=True)


@pytest.fixture(scope="session")
def ntsc_video(media_dir) -> samples.SyntheticVideo:
    shots = [samples.Shot("rocket", 3.0, "pan"), samples.Shot("chelsea", 3.0, "zoom_out")]
    return samples.make_video(media_dir / "ntsc.mp4", shots, size=(160, 90), fps=Fraction(30000, 1001))


@pytest.fixture(scope="session")
def pal_half_video(media_dir) -> samples.SyntheticVideo:
    shots = [samples.Shot("coins", 3.0, "static"), samples.Shot("retina", 4.0, "pan")]
    return samples.make_video(media_dir / "half.mp4", shots, size=(160, 90), fps=12.5)


@pytest.fixture(scope="session")
def rotated_video(media_dir) -> samples.SyntheticVideo:
    """Stored landscape 160x96, displayed portrait (rotation metadata only)."""
    shots = [samples.Shot("astronaut", 2.0, "static")]
    return samples.make_video(media_dir / "rotated.mp4", shots, size=(160, 96), fps=24, rotation=90)


@pytest.fixture(scope="session")
def deck_slides() -> list[samples.SlideSpec]:
    return [
        samples.SlideSpec("Quarterly review", ["Revenue grew", "Costs fell"], notes="Open with the headline.", picture="coffee"),
        samples.SlideSpec("Sales by quarter", ["Q4 was the best"], notes="Point at Q4.", chart=True),
        samples.SlideSpec("Backup slide", ["Not shown"], hidden=True),
        samples.SlideSpec("Thanks", [], notes=""),
    ]


@pytest.fixture(scope="session")
def deck(media_dir, deck_slides) -> Path:
    return samples.make_deck(media_dir / "review.pptx", deck_slides)


@pytest.fixture(scope="session")
def slide_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slide-cache")


@pytest.fixture(scope="session")
def slide_options(slide_cache) -> ReaderOptions:
    return ReaderOptions(cache_dir=slide_cache)


@pytest.fixture(scope="session")
def rendered_deck(deck, slide_options):
    """The deck read once with LibreOffice (rendered and cached for the session)."""
    from molmo_rag.media import read
    from molmo_rag.media.slides import find_soffice

    if find_soffice() is None:
        pytest.skip("LibreOffice is not installed")
    return list(read(deck, slide_options))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path == "/page.html":
            body = b"<html><body>not media</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/stream.bin":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\xff\xd8\xff" + b"\x00" * 16381)
            return
        super().do_GET()


@pytest.fixture(scope="session")
def http_root(media_dir) -> Path:
    root = media_dir / "www"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def http_server(http_root):
    """A real HTTP server on 127.0.0.1 serving ``http_root``."""
    handler = functools.partial(_Handler, directory=str(http_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- office files ------------------------------------------------------------------------------
def _ole_header(directory_sectors: int) -> bytes:
    free, end = 0xFFFFFFFF, 0xFFFFFFFE
    header = bytearray(512)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 0x18, 0x3E, 3, 0xFFFE, 9, 6)  # v3, 512-byte sectors
    struct.pack_into("<IIIIIIII", header, 0x2C, 1, 1, 0, 4096, end, 0, end, 0)  # 1 FAT sector; directory at 1
    difat = [0] + [free] * 108  # the FAT is sector 0
    struct.pack_into("<109I", header, 0x4C, *difat)
    return bytes(header)


def _ole_entry(name: str, entry_type: int) -> bytes:
    encoded = name.encode("utf-16-le") + b"\x00\x00"
    entry = bytearray(128)
    entry[: len(encoded)] = encoded
    struct.pack_into("<HBB", entry, 64, len(encoded), entry_type, 1)
    struct.pack_into("<III", entry, 68, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)  # no siblings, no child
    struct.pack_into("<II", entry, 116, 0xFFFFFFFE, 0)  # no data
    return bytes(entry)


def write_ole(path: Path, streams: list[str]) -> Path:
    """A minimal OLE2 compound file whose directory lists ``streams`` (empty streams), spread
    over as many 512-byte directory sectors as needed (4 entries a sector), chained in the FAT."""
    entries = [_ole_entry("Root Entry", 5)] + [_ole_entry(name, 2) for name in streams]
    while len(entries) % 4:
        entries.append(bytes(128))
    sectors = len(entries) // 4
    fat = [0xFFFFFFFD] + [n + 1 for n in range(1, sectors)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))
    path.write_bytes(_ole_header(sectors) + struct.pack("<128I", *fat) + b"".join(entries))
    return path


_ODP_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.2">
<office:body><office:presentation><draw:page draw:name="page1">
<draw:frame presentation:class="title" svg:x="1cm" svg:y="1cm" svg:width="20cm" svg:height="3cm">
<draw:text-box><text:p>Hand made</text:p></draw:text-box></draw:frame>
</draw:page></office:presentation></office:body></office:document-content>"""
_ODP_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.presentation"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""


def write_minimal_odp(path: Path) -> Path:
    """A small OpenDocument presentation written by hand (mimetype first, stored)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.presentation")
        z.writestr("META-INF/manifest.xml", _ODP_MANIFEST, zipfile.ZIP_DEFLATED)
        z.writestr("content.xml", _ODP_CONTENT, zipfile.ZIP_DEFLATED)
    return path


@pytest.fixture(scope="session")
def office_deck_pptx(media_dir) -> Path:
    """A two-slide deck with no hidden slide, the source of the LibreOffice conversions."""
    return samples.make_deck(
        media_dir / "plain.pptx",
        [
            samples.SlideSpec("Quarterly review", ["Revenue grew", "Costs fell"], notes="Open with the headline."),
            samples.SlideSpec("Thanks", ["Questions"]),
        ],
    )


@pytest.fixture(scope="session")
def office_decks(media_dir, office_deck_pptx) -> dict[str, Path]:
    """The plain deck saved by LibreOffice as ODP, flat ODP and legacy PPT."""
    from molmo_rag.media.slides import find_soffice

    soffice = find_soffice()
    if soffice is None:
        pytest.skip("LibreOffice is not installed")
    out = media_dir / "office"
    profile = (media_dir / "lo-profile").as_uri()
    decks = {}
    for fmt in ("odp", "fodp", "ppt"):
        subprocess.run(
            [soffice, f"-env:UserInstallation={profile}", "--headless", "--convert-to", fmt, "--outdir", str(out), str(office_deck_pptx)],
            check=True,
            capture_output=True,
            timeout=180,
        )
        decks[fmt] = out / f"plain.{fmt}"
        assert decks[fmt].is_file()
    return decks


@pytest.fixture
def make_ole():
    """``make_ole(path, streams)``: a minimal OLE2 file listing those streams."""
    return write_ole


@pytest.fixture
def make_odp():
    """``make_odp(path)``: a small hand-written OpenDocument presentation."""
    return write_minimal_odp
