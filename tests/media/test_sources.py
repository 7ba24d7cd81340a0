from __future__ import annotations

import base64
import hashlib
import io
import socket
import zipfile

import pytest
from PIL import Image

from molmo_rag.errors import (
    CorruptMediaError,
    InputError,
    MediaTooLargeError,
    SourceNotFoundError,
    UnreachableSourceError,
    UnsupportedMediaError,
)
from molmo_rag.media import MediaItem, ReaderOptions, read, samples, sniff


def _png_bytes(name="coffee", size=(60, 40)) -> bytes:
    buf = io.BytesIO()
    samples.photo(name).resize(size).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(name="rocket", size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    samples.photo(name).resize(size).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "head,kind",
    [
        (b"\xff\xd8\xff\xe0", "image"),
        (b"\x89PNG\r\n\x1a\n", "image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio"),
        (b"%PDF-1.7\n", "pdf"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2", "video"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isom", "audio"),
        (b"\x1a\x45\xdf\xa3\x9f", "video"),
        (b"ID3\x04\x00", "audio"),
        (b"PK\x03\x04\x14\x00", "zip"),
        (b"hello world", "unknown"),
    ],
)
def test_sniff_by_magic_bytes(head, kind):
    assert sniff(head) == kind


def test_folder_recursive_sorted_with_extension_filter(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden").mkdir()
    files = {
        "z.png": _png_bytes(),
        "a/2.jpg": _jpeg_bytes(),
        "a/10.png": _png_bytes("astronaut"),
        "b/1.png": _png_bytes("chelsea"),
        "notes.txt": b"not media",
        ".hidden/x.png": _png_bytes(),
        ".dot.png": _png_bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    sources = [item.source for item in read(tmp_path)]
    assert sources == [str(tmp_path / n) for n in ("a/10.png", "a/2.jpg", "b/1.png", "z.png")]
    flat = [item.source for item in read(tmp_path, ReaderOptions(recursive=False))]
    assert flat == [str(tmp_path / "z.png")]
    only_jpg = [item.source for item in read(tmp_path, ReaderOptions(extensions=["JPG"]))]
    assert only_jpg == [str(tmp_path / "a/2.jpg")]



def test_folder_with_a_symlink_loop_is_walked_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.png").write_bytes(_png_bytes())
    (tmp_path / "sub" / "inner.jpg").write_bytes(_jpeg_bytes())
    (tmp_path / "sub" / "back-up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    sources = [item.source for item in read(tmp_path)]
    assert sources == [str(tmp_path / "sub" / "inner.jpg"), str(tmp_path / "top.png")]
    found = [item.source for item in read(str(tmp_path / "**" / "*.png"))]
    assert found == [str(tmp_path / "top.png")]

def test_glob_source(tmp_path):
    for name in ("one.png", "two.png", "three.jpg"):
        (tmp_path / name).write_bytes(_png_bytes())
    found = [item.source for item in read(str(tmp_path / "*.png"))]
    assert found == [str(tmp_path / "one.png"), str(tmp_path / "two.png")]
    missing = list(read(str(tmp_path / "*.webp")))
    assert isinstance(missing[0], SourceNotFoundError)


def test_bad_sources_are_reported_and_the_rest_goes_on(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png_bytes())
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("just words")
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "x")
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"this is not a png at all")
    sources = [tmp_path / "missing.png", empty, text, archive, fake_png, good]
    results = list(read(sources))
    kinds = [type(r) for r in results]
    assert kinds == [
        SourceNotFoundError,
        CorruptMediaError,
        UnsupportedMediaError,
        UnsupportedMediaError,
        CorruptMediaError,
        MediaItem,
    ]
    for source, result in zip(sources[:-1], results[:-1]):
        assert isinstance(result, InputError) and result.source == str(source)


def test_bytes_and_data_uri_sources():
    data = _png_bytes()
    item = next(read(data))
    assert item.source == "<bytes>" and item.media_id == hashlib.sha256(data).hexdigest()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    item = next(read(uri))
    assert item.media_id == hashlib.sha256(data).hexdigest()
    assert item.source.startswith("data:image/png")
    assert item.image().size == (60, 40)
    assert isinstance(next(read(io.BytesIO(data))), MediaItem)
    assert isinstance(next(read(b"x" * 100, ReaderOptions(max_download_bytes=10))), MediaTooLargeError)


def test_mixed_iterable_of_sources(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes())
    items = list(read([path, _png_bytes(), Image.new("RGB", (8, 8), "green")]))
    assert [i.kind for i in items] == ["image", "image", "image"]


# --- URLs ------------------------------------------------------------------------------------
def test_url_source_streamed_from_local_server(http_server, http_root):
    data = _jpeg_bytes()
    (http_root / "photo.jpg").write_bytes(data)
    (http_root / "photo-without-extension").write_bytes(data)
    item = next(read(f"{http_server}/photo.jpg"))
    assert item.remote_url == f"{http_server}/photo.jpg" == item.source
    assert item.media_id == hashlib.sha256(data).hexdigest()
    assert item.image().size == (64, 48)
    # The kind comes from the bytes even when the name says nothing.
    item = next(read(f"{http_server}/photo-without-extension"))
    assert item.kind == "image"


def test_url_errors(http_server):
    not_found = next(read(f"{http_server}/nothing-here.jpg"))
    assert isinstance(not_found, SourceNotFoundError)
    html = next(read(f"{http_server}/page.html"))
    assert isinstance(html, UnsupportedMediaError) and "text/html" in str(html)
    capped = next(read(f"{http_server}/stream.bin", ReaderOptions(max_download_bytes=100_000)))
    assert isinstance(capped, MediaTooLargeError)


def test_large_download_spools_to_a_temporary_file(http_server, http_root):
    data = _png_bytes(size=(300, 200))
    (http_root / "big.png").write_bytes(data)
    item = next(read(f"{http_server}/big.png", ReaderOptions(download_in_memory_bytes=1000)))
    blob = item.loader.blob
    assert blob.data is None and blob.path.exists()
    assert item.image().size == (300, 200)
    spooled = blob.path
    del item, blob
    import gc

    gc.collect()
    assert not spooled.exists()


def test_unreachable_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = next(read(f"http://127.0.0.1:{port}/x.jpg", ReaderOptions(url_timeout=5)))
    assert isinstance(result, UnreachableSourceError)
    assert result.source == f"http://127.0.0.1:{port}/x.jpg"


def test_url_credentials_are_not_shown(http_server):
    host = http_server.removeprefix("http://")
    result = next(read(f"http://user:s3cret-token@{host}/nothing.jpg"))
    assert isinstance(result, InputError)
    assert "s3cret-token" not in str(result) and "s3cret-token" not in result.source



def test_url_with_credentials_is_fetched_but_not_handed_on(http_server, http_root):
    (http_root / "private.jpg").write_bytes(_jpeg_bytes())
    host = http_server.removeprefix("http://")
    item = next(read(f"http://user:s3cret-token@{host}/private.jpg"))
    assert item.source == f"{http_server}/private.jpg"
    # REST backends pass remote_url to a hosted API: the password must not travel with it.
    assert item.remote_url is None
    assert "s3cret-token" not in repr(item) + repr(item.loader.blob)
    assert item.image().size == (64, 48)


@pytest.mark.parametrize("url", ["http://[::1/x.jpg", "http://user:pw@:80/x.jpg", "http://host:99999999/x.jpg"])
def test_malformed_urls_are_reported_and_the_rest_goes_on(url):
    results = list(read([url, _png_bytes()]))
    assert isinstance(results[0], UnreachableSourceError) and results[0].source
    assert isinstance(results[1], MediaItem)


def test_a_lone_object_of_no_source_type_is_reported():
    for thing in (12345, None, 3.5):
        results = list(read(thing))
        assert len(results) == 1 and isinstance(results[0], UnsupportedMediaError)


def test_importing_media_loads_no_heavy_dependency():
    import subprocess
    import sys

    code = (
        "import sys, molmo_rag.media, molmo_rag.media.sources, molmo_rag.media.video, "
        "molmo_rag.media.slides, molmo_rag.media.images;"
        "heavy = [m for m in ('av', 'pptx', 'pypdfium2', 'scenedetect', 'cv2', 'torch') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_folder_without_media_is_reported(tmp_path):
    (tmp_path / "readme.txt").write_text("no pictures here")
    result = list(read(tmp_path))
    assert len(result) == 1 and isinstance(result[0], SourceNotFoundError)
