from __future__ import annotations

import base64
import hashlib
import io
import os
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
from molmo_rag.media import MediaItem, ReaderOptions, read, sniff
from molmo_rag.testing import samples


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
    results = list(read(tmp_path))
    assert [r.source for r in results] == [
        str(tmp_path / "dangling.png"),
        str(tmp_path / "sub" / "inner.jpg"),
        str(tmp_path / "top.png"),
    ]
    assert isinstance(results[0], SourceNotFoundError) and "broken symbolic link" in str(results[0])
    assert all(isinstance(r, MediaItem) for r in results[1:])
    found = list(read(str(tmp_path / "**" / "*.png")))
    assert [r.source for r in found] == [str(tmp_path / "dangling.png"), str(tmp_path / "top.png")]
    assert isinstance(found[0], SourceNotFoundError) and isinstance(found[1], MediaItem)

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
    assert item.source == f"{http_server}/photo.jpg"
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


# --- what a folder walk reports ----------------------------------------------------------------
def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_folder_reports_every_media_looking_file_it_cannot_read(tmp_path):
    (tmp_path / "photo.png").write_bytes(_png_bytes())
    _zip(tmp_path / "talk.key", {"Index/Document.iwa": b"\x00" * 10, "preview.jpg": _jpeg_bytes()})
    (tmp_path / "song.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 100)
    (tmp_path / "shot.cr2").write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\x00" * 100)
    (tmp_path / "layers.psd").write_bytes(b"8BPS\x00\x01" + b"\x00" * 100)
    # clearly not media, and hidden files: quiet
    for name in ("notes.txt", "README.md", "meta.json", "table.csv", "tool.py", "page.html", "feed.xml", "run.log"):
        (tmp_path / name).write_text("not media")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    results = list(read(tmp_path))
    by_name = {os.path.basename(r.source): r for r in results}
    assert sorted(by_name) == ["layers.psd", "photo.png", "shot.cr2", "song.mp3", "talk.key"]
    assert isinstance(by_name["photo.png"], MediaItem)
    assert isinstance(by_name["talk.key"], UnsupportedMediaError)
    assert "Keynote files cannot be read; export to PPTX or PDF" in str(by_name["talk.key"])
    assert isinstance(by_name["song.mp3"], UnsupportedMediaError) and "audio only" in str(by_name["song.mp3"])
    assert isinstance(by_name["shot.cr2"], UnsupportedMediaError) and "camera raw" in str(by_name["shot.cr2"])
    assert isinstance(by_name["layers.psd"], UnsupportedMediaError) and ".psd images" in str(by_name["layers.psd"])


def test_folder_reports_broken_links_and_named_pipes_without_opening_them(tmp_path):
    (tmp_path / "good.jpg").write_bytes(_jpeg_bytes())
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (tmp_path / "no-ending").symlink_to(tmp_path / "deleted")
    (tmp_path / "loop-a.png").symlink_to(tmp_path / "loop-b.png")
    (tmp_path / "loop-b.png").symlink_to(tmp_path / "loop-a.png")
    os.mkfifo(tmp_path / "camera.mp4")  # opened for reading, this would block forever
    (tmp_path / "old.txt").symlink_to(tmp_path / "deleted.txt")  # clearly not media: quiet
    os.mkfifo(tmp_path / "status.log")
    results = list(read(tmp_path))
    by_name = {os.path.basename(r.source): r for r in results}
    assert sorted(by_name) == ["camera.mp4", "gone.jpg", "good.jpg", "loop-a.png", "loop-b.png", "no-ending"]
    assert isinstance(by_name["good.jpg"], MediaItem)
    assert isinstance(by_name["gone.jpg"], SourceNotFoundError)
    assert "broken symbolic link" in str(by_name["gone.jpg"]) and "deleted.jpg" in str(by_name["gone.jpg"])
    assert isinstance(by_name["no-ending"], SourceNotFoundError)
    assert isinstance(by_name["loop-a.png"], SourceNotFoundError) and "cannot open" in str(by_name["loop-a.png"])
    assert isinstance(by_name["camera.mp4"], UnsupportedMediaError) and "named pipe" in str(by_name["camera.mp4"])
    # named one by one, they are reported the same way
    pipe, link = list(read([tmp_path / "camera.mp4", tmp_path / "gone.jpg"]))
    assert isinstance(pipe, UnsupportedMediaError) and "named pipe" in str(pipe)
    assert isinstance(link, SourceNotFoundError) and "broken symbolic link" in str(link)


def test_narrowed_extensions_keep_other_media_quiet(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg_bytes())
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "c.mp3").write_bytes(b"ID3\x04" + b"\x00" * 100)
    results = list(read(tmp_path, ReaderOptions(extensions=["jpg"])))
    assert [os.path.basename(r.source) for r in results] == ["a.jpg"]


def test_keynote_package_folder_is_one_error_not_a_folder_of_previews(tmp_path):
    bundle = tmp_path / "talk.key"
    (bundle / "Data").mkdir(parents=True)
    (bundle / "Index.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (bundle / "Data" / "slide-1.jpg").write_bytes(_jpeg_bytes())
    (bundle / "preview.jpg").write_bytes(_jpeg_bytes())
    (tmp_path / "photo.jpg").write_bytes(_jpeg_bytes())
    results = list(read(tmp_path))
    assert [r.source for r in results] == [str(tmp_path / "photo.jpg"), str(bundle)]
    assert isinstance(results[1], UnsupportedMediaError) and "Keynote" in str(results[1])
    named = list(read(bundle))
    assert len(named) == 1 and "Keynote files cannot be read" in str(named[0])


def test_files_that_only_share_a_media_ending_stay_quiet(tmp_path, cuts_video):
    (tmp_path / "photo.jpg").write_bytes(_jpeg_bytes())
    (tmp_path / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n")
    (tmp_path / "app.ts").write_text("export const answer: number = 42;\n")
    av = pytest.importorskip("av")
    with av.open(str(cuts_video.path)) as src, av.open(str(tmp_path / "clip.ts"), "w", format="mpegts") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    names = [os.path.basename(r.source) for r in read(tmp_path) if isinstance(r, MediaItem)]
    assert set(names) == {"photo.jpg", "clip.ts"}
    assert all(isinstance(r, MediaItem) for r in read(tmp_path))


def test_unreadable_sub_folder_gets_an_error_line(tmp_path, monkeypatch):
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "a.png").write_bytes(_png_bytes())
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    results = list(read(tmp_path))
    assert [r.source for r in results] == [str(tmp_path / "locked"), str(tmp_path / "open" / "a.png")]
    assert isinstance(results[0], SourceNotFoundError) and "Permission denied" in str(results[0])


def test_folder_of_only_unreadable_entries_still_says_it_has_no_media(tmp_path):
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    results = list(read(tmp_path))
    assert [type(r) for r in results] == [SourceNotFoundError, SourceNotFoundError]
    assert "broken symbolic link" in str(results[0]) and "no media files in folder" in str(results[1])


def test_extension_lists_are_disjoint_and_cover_what_is_read():
    from molmo_rag.media import options

    assert not options.MEDIA_EXTENSIONS & options.NOT_MEDIA_EXTENSIONS
    assert not options.READABLE_EXTENSIONS & options.UNREADABLE_MEDIA_EXTENSIONS
    assert {".odp", ".ppt", ".pptm", ".ppsx", ".potx", ".fodp"} <= options.SLIDE_EXTENSIONS
    assert {".key", ".mp3", ".cr2", ".dng"} <= options.UNREADABLE_MEDIA_EXTENSIONS
    assert ReaderOptions().extensions == options.MEDIA_EXTENSIONS


# --- MPEG audio is told by real frame headers, not by two bytes ---------------------------------
def _encoded_audio(fmt: str, codec: str) -> bytes:
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=44100 if codec != "aac" else 22050, layout="mono")
        samples._write_tone(out, stream, 0.5)
    data = buf.getvalue()
    if data.startswith(b"ID3"):  # keep the bare frames
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        data = data[10 + size :]
    return data


@pytest.mark.parametrize("fmt,codec", [("mp3", "mp3"), ("mp2", "mp2"), ("adts", "aac")])
def test_sniff_knows_bare_mpeg_audio_frames(fmt, codec):
    data = _encoded_audio(fmt, codec)
    assert data[0] == 0xFF and sniff(data[:8192]) == "audio"


@pytest.mark.parametrize(
    "head",
    [b"\xff" * 8192, b"\xff\xfb" + b"\xff" * 100, b"\xff\xe0\x00\x00" * 16, b"\xff\xfb\x90\x00" + b"\x00" * 1000],
)
def test_sniff_does_not_take_0xff_runs_for_audio(head):
    # all 0xFF: reserved bitrate; \xff\xe0\x00\x00: reserved version; the last: a valid MP3
    # header with no second frame where the first one ends
    assert sniff(head) == "unknown"


def test_0xff_bytes_served_as_jpeg_say_what_they_are(http_server, http_root):
    (http_root / "huge.jpg").write_bytes(b"\xff" * 200_000)
    result = next(read(f"{http_server}/huge.jpg"))
    assert isinstance(result, CorruptMediaError)
    assert "served as image/jpeg but its bytes are not an image, deck or video" in str(result)
    assert "audio" not in str(result)


def test_0xff_bytes_named_jpg_say_what_they_are(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff" * 5000)
    result = next(read(path))
    assert isinstance(result, CorruptMediaError)
    assert "named .jpg but its bytes are not an image, deck or video" in str(result)
    declared = next(read("data:image/jpeg;base64," + base64.b64encode(b"\xff" * 100).decode()))
    assert "declared as image/jpeg but its bytes are not" in str(declared)


# --- URLs a hosted service cannot reach are not handed on ----------------------------------------
def test_url_on_this_machine_is_sent_as_bytes_not_as_a_url(http_server, http_root):
    (http_root / "local.jpg").write_bytes(_jpeg_bytes())
    item = next(read(f"{http_server}/local.jpg"))
    assert item.remote_url is None  # a hosted API cannot fetch 127.0.0.1
    assert item.image().size == (64, 48)
    port = http_server.rsplit(":", 1)[1]
    by_name = next(read(f"http://localhost:{port}/local.jpg"))
    assert by_name.remote_url is None and isinstance(by_name, MediaItem)


def test_private_urls_are_passed_on_when_asked(http_server, http_root):
    (http_root / "shared.jpg").write_bytes(_jpeg_bytes())
    item = next(read(f"{http_server}/shared.jpg", ReaderOptions(pass_private_urls=True)))
    assert item.remote_url == f"{http_server}/shared.jpg"
    host = http_server.removeprefix("http://")
    with_password = next(read(f"http://user:pw@{host}/shared.jpg", ReaderOptions(pass_private_urls=True)))
    assert with_password.remote_url is None  # credentials never travel, whatever the option


def _resolver(table: dict[str, list[str]]):
    def resolve(host: str) -> list[str]:
        return table.get(host, [])

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/a.jpg",
        "http://[2606:4700:4700::1111]/a.jpg",
        "https://[::ffff:8.8.8.8]/a.jpg",
        "https://media.example.com/a.jpg",
        "https://MEDIA.example.com./a.jpg",
    ],
)
def test_public_urls(url):
    from molmo_rag.media.netaddr import is_public_url

    assert is_public_url(url, resolve=_resolver({"media.example.com": ["93.184.215.14", "2606:2800:21f:cb07::1"]}))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/a.jpg",
        "http://localhost/a.jpg",
        "http://app.localhost/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://172.16.0.9/a.jpg",
        "http://172.31.255.255/a.jpg",
        "http://192.168.1.20/a.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://224.0.0.251/a.jpg",
        "http://[::1]/a.jpg",
        "http://[fd12:3456::1]/a.jpg",
        "http://[fe80::1%25eth0]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://[::ffff:192.168.0.1]/a.jpg",
        "http://[2002:c0a8:0101::1]/a.jpg",  # 6to4 around 192.168.1.1
        "http://[64:ff9b::a00:1]/a.jpg",  # NAT64 around 10.0.0.1
        "http://2130706433/a.jpg",  # 127.0.0.1 as one number
        "http://0x7f.1/a.jpg",
        "http://nas/a.jpg",  # single label
        "http://printer.local/a.jpg",
        "http://db.internal/a.jpg",
        "http://router.home.arpa/a.jpg",
        "http://intranet.corp.example.com/a.jpg",  # resolves to a private address
        "http://split.example.com/a.jpg",  # one public, one private address
        "http://unresolvable.example.com/a.jpg",
        "ftp://8.8.8.8/a.jpg",
        "http:///a.jpg",
    ],
)
def test_private_or_unreachable_urls(url):
    from molmo_rag.media.netaddr import is_public_url

    table = {
        "intranet.corp.example.com": ["10.20.30.40"],
        "split.example.com": ["93.184.215.14", "192.168.0.10"],
    }
    assert not is_public_url(url, resolve=_resolver(table))


def test_default_resolver_reads_this_machine_only():
    from molmo_rag.media.netaddr import is_public_url, resolve_host

    assert any(a.startswith(("127.", "::1")) for a in resolve_host("localhost"))
    assert not is_public_url("http://localhost./x.jpg")


def test_a_url_that_trickles_forever_is_cut_off_by_the_download_deadline():
    """Bytes just often enough to beat url_timeout, never ending: max_download_seconds ends it."""
    import http.server
    import threading
    import time as clock

    from molmo_rag.errors import UnreachableSourceError

    stop = threading.Event()

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xe0")
            while not stop.is_set():
                try:
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
                except OSError:
                    return
                clock.sleep(0.05)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
        options = ReaderOptions(url_timeout=5.0, max_download_seconds=0.5)
        (error,) = list(read(url, options))
        assert isinstance(error, UnreachableSourceError) and "still sending after 0.5 s" in str(error)
        assert error.source == url
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_every_file_hands_a_folders_other_files_to_the_reader(tmp_path):
    """LangChain's loaders walk every file: so does ``every_file``, and each is read by its
    bytes or reported, never passed over; hidden files still stay out."""
    (tmp_path / "photo.jpg").write_bytes(_png_bytes())
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "renamed.dat").write_bytes(_png_bytes())
    (tmp_path / "server.key").write_text("-----BEGIN PRIVATE KEY-----")
    (tmp_path / ".hidden.png").write_bytes(_png_bytes())
    (tmp_path / "gone.txt").symlink_to(tmp_path / "deleted.txt")
    quiet = list(read(tmp_path))
    assert [r.source for r in quiet] == [str(tmp_path / "photo.jpg")]
    every = {os.path.basename(r.source): r for r in read(tmp_path, ReaderOptions(every_file=True))}
    assert set(every) == {"photo.jpg", "notes.txt", "renamed.dat", "server.key", "gone.txt"}
    assert isinstance(every["photo.jpg"], MediaItem) and isinstance(every["renamed.dat"], MediaItem)
    assert isinstance(every["notes.txt"], UnsupportedMediaError) and isinstance(every["server.key"], UnsupportedMediaError)
    assert isinstance(every["gone.txt"], SourceNotFoundError) and "broken symbolic link" in str(every["gone.txt"])


def test_every_file_in_an_empty_folder_says_it_has_no_files(tmp_path):
    (tmp_path / ".only-hidden.txt").write_text("x")
    (results,) = list(read(tmp_path, ReaderOptions(every_file=True)))
    assert isinstance(results, SourceNotFoundError) and "no files in folder" in str(results)
