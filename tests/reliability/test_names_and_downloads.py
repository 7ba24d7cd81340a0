"""File names that are not text, names and captions that talk to the terminal, and downloads
that hold the line (issue 17, items 3, 8, 9 and 11).

* A file name that is not valid UTF-8 (``x\\xff.jpg``: POSIX names are bytes) is read and
  indexed beside the good files, printed and stored with the byte written ``\\xff``, its point
  id the same in every run, and found again (search, remove, re-open) by its real name.
* Escape sequences in file names and captions (clear screen, OSC window titles, CR, bidi
  overrides) reach the terminal escaped in the human lines; ``--json`` stays exact.
* A server sending its headers a byte at a time is cut at ``max_download_seconds``: the
  deadline covers the whole exchange, connect to last byte.
* A gzip-encoded bomb is decoded a bounded piece at a time, counted as it inflates and
  refused at ``max_download_bytes``, peak memory flat (read from ``VmHWM`` in a subprocess).

The CLI runs in real processes (stdout is UTF-8 and strict, as on a user's terminal),
against the pixel-statistics backend or the loopback OpenAI-compatible server.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import pytest

from molmo_rag.errors import MediaTooLargeError, UnreachableSourceError, UnsupportedMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read

pytest.importorskip("qdrant_client")

TESTS = str(Path(__file__).resolve().parents[1])
CLI = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import _pixel_backend; _pixel_backend.register(); "
    "from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))"
)
TIMEOUT = 300
RAW_NAME = os.fsdecode(b"x\xff.jpg")
"""What ``os.listdir`` gives for the bytes ``x\\xff.jpg``: a str with a lone surrogate."""
TEXT_NAME = "x\\xff.jpg"
"""How molmo-rag writes that name wherever text must be UTF-8: the byte as ``\\xff``."""


def _photo_bytes(name: str = "coffee", fmt: str = "JPEG") -> bytes:
    from molmo_rag.testing import samples

    image = samples.photo(name)
    image.thumbnail((96, 96))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _cli(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``molmo-rag ARGS`` in a fresh process; stdout and stderr as the bytes written."""
    return subprocess.run(
        [sys.executable, "-c", CLI, TESTS, *(os.fspath(a) if isinstance(a, Path) else str(a) for a in args)],
        env=env, cwd=cwd, capture_output=True, timeout=TIMEOUT,
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    out = {**os.environ, "MOLMO_RAG_CACHE_DIR": str(tmp_path / "cache"), "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"}
    for name in ("MOLMO_RAG_BACKEND", "MOLMO_RAG_MODEL", "PYTHONIOENCODING"):
        out.pop(name, None)
    return out


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert b"Traceback" not in proc.stderr and b"Traceback" not in proc.stdout, proc.stderr.decode(errors="replace")


# --- item 3: a file name that is not valid UTF-8 ------------------------------------------------
def test_a_non_utf8_file_name_is_indexed_beside_the_good_file_with_the_same_point_every_run(tmp_path, env):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(_photo_bytes("coffee"))
    with open(os.path.join(os.fsencode(folder), b"x\xff.jpg"), "wb") as f:
        f.write(_photo_bytes("rocket"))
    with open(os.path.join(os.fsencode(folder), b"broken\xfe.png"), "wb") as f:
        f.write(b"not a picture at all\n" * 10)
    db = tmp_path / "db"
    text_source = f"{folder}/{TEXT_NAME}"
    broken_source = f"{folder}/broken\\xfe.png"

    first = _cli("index", "d", "--backend", "pixels", "--db", db, "--json", env=env, cwd=tmp_path)
    _no_traceback(first)
    assert first.returncode == 0, first.stderr.decode(errors="replace")
    lines = _jsonl(first.stdout)
    records = {r["source"]: r for r in lines if "status" in r}
    assert set(records) == {f"{folder}/good.jpg", text_source}
    failures = [r for r in lines if "error" in r]
    assert [(f["source"], f["error_type"]) for f in failures] == [(broken_source, "CorruptMediaError")]
    assert "broken\\xfe.png" in failures[0]["error"]
    assert f"  {broken_source}: CorruptMediaError: ".encode() in first.stderr  # its own line, escaped

    again = _cli("index", "d", "--backend", "pixels", "--db", db, "--json", env=env, cwd=tmp_path)
    _no_traceback(again)
    assert again.returncode == 0
    second = _jsonl(again.stdout)
    assert {r["source"]: (r["id"], r["status"]) for r in second if "status" in r} == {
        s: (r["id"], "unchanged") for s, r in records.items()
    }
    summary = second[-1]["summary"]
    assert (summary["done"], summary["pruned"]) == (0, 0) and summary["cached"] > 0  # nothing asked twice

    # The human lines print the name escaped; search finds it by the name the shell passes.
    shown = _cli("search", "x", "--db", db, "--source", os.path.join(folder, RAW_NAME), env=env)
    _no_traceback(shown)
    assert shown.returncode == 0 and TEXT_NAME.encode() in shown.stdout
    assert len(shown.stdout.decode().splitlines()) == 2  # the header and this one hit

    # Still on disk: not "missing"; once deleted, it is.
    kept = _cli("remove", "--missing", "--db", db, "--dry-run", "--json", env=env)
    assert kept.returncode == 0 and _jsonl(kept.stdout)[-1]["summary"]["removed"] == 0, kept.stderr
    os.unlink(os.path.join(os.fsencode(folder), b"x\xff.jpg"))
    gone = _cli("remove", "--missing", "--db", db, "--json", env=env)
    assert gone.returncode == 0 and [r["source"] for r in _jsonl(gone.stdout)[:-1]] == [text_source]


def test_a_non_utf8_source_is_reopened_by_its_text_form(tmp_path):
    from molmo_rag.media.sources import reopen

    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(raw, "wb") as f:
        f.write(_photo_bytes("coffee", "PNG"))
    (item,) = list(read(os.fsdecode(raw)))
    assert isinstance(item, MediaItem) and item.source == f"{tmp_path}/caf\\xe9.png"
    item.source.encode("utf-8")  # what JSON, SQLite, Qdrant and uuid5 need
    again = reopen(item.source, kind="image")
    assert again.media_id == item.media_id and again.source == item.source


# --- item 11: escape sequences on the terminal --------------------------------------------------
HOSTILE_NAMES = ["clear\x1b[2J.jpg", "title\x1b]0;pwned\x07.jpg", "cr\rok.jpg", "rtl\u202egpj.exe.jpg"]
HOSTILE_CAPTION = "A cup\x1b[2J\x1b]0;pwned\x07 of coffee\rFAKE \u202eelbat\u200f\x9b31m"
SURVIVING = "\u202eelbat\u200f\x9b31m"
"""What the answer boundary (backends/answers.py) keeps of the caption: it drops C0 controls
(ESC, BEL, CR), not C1 ones (CSI, U+009B) nor bidi overrides; the terminal escapes those."""
RAW_CONTROLS = [b"\x1b", b"\x07", b"\r", "\u202e".encode(), "\u200f".encode(), "\x9b".encode()]


def _raw_controls(data: bytes) -> list[bytes]:
    return [c for c in RAW_CONTROLS if c in data]


def test_escape_sequences_in_names_and_captions_are_escaped_for_humans_and_exact_in_json(tmp_path, env):
    from molmo_rag.testing.loopback import OpenAIServer

    folder = tmp_path / "media"
    folder.mkdir()
    for name in HOSTILE_NAMES:
        (folder / name).write_bytes(_photo_bytes("coffee"))
    (folder / "bad\x1b[31m.png").write_bytes(b"not a picture")
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": HOSTILE_CAPTION}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    with OpenAIServer(api_key="loopback-key") as server:
        server.inject("reply", route="chat", times=-1, body=completion)
        env = {**env, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "loopback-key"}

        human = _cli("caption", folder, "--backend", "openai", env=env)
        _no_traceback(human)
        assert human.returncode == 1  # the broken file failed
        assert not _raw_controls(human.stdout + human.stderr), (human.stdout, human.stderr)
        out = human.stdout.decode()
        assert "clear\\x1b[2J.jpg" in out and "title\\x1b]0;pwned\\x07.jpg" in out and "cr\\rok.jpg" in out
        assert "rtl\\u202egpj.exe.jpg" in out and "\\u202eelbat\\u200f\\x9b31m" in out
        assert len(out.splitlines()) == len(HOSTILE_NAMES) + 1  # one line per item, the error line too
        assert "bad\\x1b[31m.png: ERROR CorruptMediaError" in out

        exact = _cli("caption", folder, "--backend", "openai", "--json", env=env)
        _no_traceback(exact)
        lines = _jsonl(exact.stdout)
        assert sorted(Path(r["source"]).name for r in lines) == sorted([*HOSTILE_NAMES, "bad\x1b[31m.png"])
        (caption,) = {r["caption"] for r in lines if "caption" in r}
        assert SURVIVING in caption  # exact: not escaped

        db = tmp_path / "db"
        indexed = _cli("index", folder, "--backend", "openai", "--db", db, env=env)
        _no_traceback(indexed)
        assert indexed.returncode == 0 and not _raw_controls(indexed.stdout + indexed.stderr)
        assert b"bad\\x1b[31m.png: CorruptMediaError" in indexed.stderr

    table = _cli("search", "coffee", "--db", db, env={**env, "COLUMNS": "400"})  # room for the captions
    _no_traceback(table)
    assert table.returncode == 0 and not _raw_controls(table.stdout + table.stderr), table.stdout
    assert b"clear\\x1b[2J.jpg" in table.stdout and b"\\u202eelbat\\u200f\\x9b31m" in table.stdout
    hits = _jsonl(_cli("search", "coffee", "--db", db, "--json", env=env).stdout)
    assert sorted(Path(h["source"]).name for h in hits) == sorted(HOSTILE_NAMES)
    assert {h["caption"] for h in hits} == {caption}


def test_the_terminal_form_escapes_controls_and_bidi_and_keeps_the_rest():
    from molmo_rag.cli.common import for_terminal

    assert for_terminal("a\x1b[2Jb\x1b]0;t\x07c\rd\ne\tf\x7f\x9b") == "a\\x1b[2Jb\\x1b]0;t\\x07c\\rd\\ne\\tf\\x7f\\x9b"
    assert for_terminal("\u202eabc\u202c \u2066x\u2069 \u200e\u200f\u061c \u2028") == (
        "\\u202eabc\\u202c \\u2066x\\u2069 \\u200e\\u200f\\u061c \\u2028"
    )
    assert for_terminal("фото 写真 ünï 👩‍👩‍👧 x\\xff.jpg") == "фото 写真 ünï 👩‍👩‍👧 x\\xff.jpg"
    assert for_terminal(os.fsdecode(b"x\xff.jpg")) == "x\\xff.jpg"


# --- item 8: headers sent a byte at a time ------------------------------------------------------
class _SlowHeaders(http.server.BaseHTTPRequestHandler):
    """Sends its status line and headers one byte every ``pause`` s (each well inside
    url_timeout), padded to ``padding`` header bytes, then a good JPEG: only a deadline on
    the whole exchange stops a client before the end."""

    protocol_version = "HTTP/1.1"
    photo = b""
    pause = 0.1
    padding = 400
    outcome: dict

    def log_message(self, *args):
        pass

    def do_GET(self):
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.photo)}\r\n"
            f"X-Padding: {'a' * self.padding}\r\n\r\n"
        ).encode()
        try:
            for i in range(len(head)):
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
                if self.outcome["stop"].wait(self.pause):
                    break
            self.wfile.write(self.photo)
            self.wfile.flush()
            self.outcome["finished"] = True
        except OSError:
            self.outcome["cut"] = True
        finally:
            self.outcome["done"].set()
        self.close_connection = True


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_download_deadline():
    outcome = {"stop": threading.Event(), "done": threading.Event()}
    handler = type("Handler", (_SlowHeaders,), {"photo": _photo_bytes(), "outcome": outcome})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow-headers.jpg"
        options = ReaderOptions(url_timeout=5.0, max_download_seconds=1.0)
        (result,) = list(read(url, options))
        assert isinstance(result, UnreachableSourceError), result  # was: the photo, 40 s later
        assert result.source == url and "still sending after 1 s" in str(result)
        assert "max_download_seconds" in str(result)
        assert outcome["done"].wait(30)
        assert outcome.get("cut") and not outcome.get("finished")  # the connection was closed
    finally:
        outcome["stop"].set()
        server.shutdown()
        server.server_close()


# --- item 9: a gzip bomb --------------------------------------------------------------------------
def _gzip_bomb(inflated: int) -> bytes:
    """Gzip of ``inflated`` zero bytes (about 1,000:1), written a MiB at a time."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as z:
        block = bytes(1 << 20)
        for _ in range(inflated >> 20):
            z.write(block)
    return out.getvalue()


def _deflate(data: bytes, raw: bool) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15 if raw else 15)
    return c.compress(data) + c.flush()


class _Encoded(http.server.BaseHTTPRequestHandler):
    """Answers with a body and the Content-Encoding of the route, whatever was asked for."""

    protocol_version = "HTTP/1.1"
    bodies: dict  # path -> (encoding, bytes)

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path not in self.bodies:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        encoding, body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


def _big_png() -> bytes:
    """A 1,024 x 1,024 PNG of noise and stripes (about 2 MB): many decoded pieces."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    pixels[::4] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def encoded_server():
    photo = _photo_bytes("rocket")
    big = _big_png()
    half = len(big) // 2
    bodies = {
        "/big-two-members.png": ("gzip", gzip.compress(big[:half]) + gzip.compress(big[half:])),
        "/big-deflate.png": ("deflate", _deflate(big, raw=False)),
        "/photo-gzip.jpg": ("gzip", gzip.compress(photo)),
        "/photo-deflate.jpg": ("deflate", _deflate(photo, raw=False)),
        "/photo-raw-deflate.jpg": ("deflate", _deflate(photo, raw=True)),
        "/photo-twice.jpg": ("gzip, gzip", gzip.compress(gzip.compress(photo))),
        "/photo-compress.jpg": ("compress", photo),
        "/bomb.jpg": ("gzip", _gzip_bomb(1 << 30)),
    }
    assert len(bodies["/bomb.jpg"][1]) < 2 << 20
    handler = type("Handler", (_Encoded,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", {"photo": photo, "big": big}
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "route",
    ["/photo-gzip.jpg", "/photo-deflate.jpg", "/photo-raw-deflate.jpg", "/photo-twice.jpg", "/big-two-members.png",
     "/big-deflate.png"],
)
def test_a_compressed_answer_is_decoded(encoded_server, route):
    base, files = encoded_server
    (item,) = list(read(base + route))
    assert isinstance(item, MediaItem), item
    original = files["big" if route.startswith("/big") else "photo"]
    assert item.media_id == list(read(original))[0].media_id  # the same bytes as the file


def test_an_encoding_it_does_not_decode_is_refused_by_name(encoded_server):
    base, _ = encoded_server
    (error,) = list(read(base + "/photo-compress.jpg"))
    assert isinstance(error, UnsupportedMediaError) and "Content-Encoding: compress" in str(error)


def test_a_gzip_bomb_is_refused_at_max_download_bytes(encoded_server):
    base, _ = encoded_server
    (error,) = list(read(base + "/bomb.jpg", ReaderOptions(max_download_bytes=8 << 20)))
    assert isinstance(error, MediaTooLargeError), error
    assert "max_download_bytes" in str(error) and "gzip" in str(error)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from molmo_rag.media import ReaderOptions, read

    def peak():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    warm, bomb = sys.argv[1:3]
    options = ReaderOptions(max_download_bytes=64 << 20, download_in_memory_bytes=4 << 20)
    for result in read(warm, options):
        assert not isinstance(result, Exception), result
        result.image()
    base = peak()
    (error,) = list(read(bomb, options))
    print(json.dumps({"base": base, "peak": peak(), "error": type(error).__name__, "message": str(error)}))
    """
)
MEMORY_HEADROOM = 24 << 20
"""What peak memory may grow by while the bomb is fetched: the 4 MiB kept in memory before
spooling (and its copy) and a few 64 KiB pieces; httpx's own decoder inflated each 64 KiB
read whole (64 MiB at once for this bomb)."""


def test_a_gzip_bomb_is_inflated_a_bounded_piece_at_a_time(encoded_server):
    base, _ = encoded_server
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, base + "/photo-gzip.jpg", base + "/bomb.jpg"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["error"] == "MediaTooLargeError", report
    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"
