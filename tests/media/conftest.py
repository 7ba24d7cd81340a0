"""Media made on the fly, once per session (short, low-resolution videos; one deck render)."""

from __future__ import annotations

import functools
import http.server
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from molmo_rag.media import ReaderOptions, samples


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
