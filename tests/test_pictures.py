"""Every document's picture on disk (``image_path``, ``image_url``, ``frame_paths``) and the
flat count keys beside ``counts``: in documents, in index payloads, in ``--where``."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from pathlib import Path

import pytest
from PIL import Image
from test_engine import photos

from molmo_rag import iter_documents, pipeline
from molmo_rag.documents import MediaDocument
from molmo_rag.index.filters import parse_where
from molmo_rag.index.store import QdrantIndex
from molmo_rag.testing import FakeBackend, samples


@pytest.fixture(scope="module")
def deck(tmp_path_factory) -> Path:
    return samples.make_pdf(tmp_path_factory.mktemp("deck") / "deck.pdf", [["One", "a"], ["Two", "b"]], size=(320.0, 180.0))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> samples.SyntheticVideo:
    shots = [samples.Shot("astronaut", 4.0, "static"), samples.Shot("coffee", 4.0, "static")]
    return samples.make_video(tmp_path_factory.mktemp("video") / "tour.mp4", shots, size=(96, 64), fps=10)


@pytest.fixture
def web(tmp_path):
    root = tmp_path / "www"
    photos(root, 1, size=(50, 30))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def docs(sources, **options) -> list[MediaDocument]:
    return [d for d in iter_documents(sources, backend=FakeBackend(), ordered=True, **options) if isinstance(d, MediaDocument)]


def test_every_document_names_a_full_resolution_picture(tmp_path, deck, video):
    [photo] = photos(tmp_path / "p", 1, size=(60, 40))
    out = docs([photo, str(deck), str(video.path)], cache=tmp_path / "cache")
    image, slide, segment = out[0], out[1], out[-1]
    assert image.metadata["image_path"] == photo  # a local photo is its own picture: no copy
    for doc in (slide, segment):
        path = Path(doc.metadata["image_path"])
        assert path.parent == tmp_path / "cache" / "pictures" and path.suffix == ".jpg"
        with Image.open(path) as picture:
            assert picture.size == doc.image().size  # the render / frame as read, not the thumbnail
    assert "image_url" not in image.metadata and "frame_paths" not in segment.metadata


def test_pictures_are_named_by_content_and_made_once(tmp_path, deck):
    first = docs([str(deck)], cache=tmp_path / "cache")
    path = Path(first[0].metadata["image_path"])
    made = path.stat().st_mtime_ns
    copy = tmp_path / "elsewhere" / "copy.pdf"
    copy.parent.mkdir()
    copy.write_bytes(deck.read_bytes())
    again = docs([str(copy)], cache=tmp_path / "cache")  # the same slide under another name
    assert again[0].id != first[0].id and again[0].metadata["image_path"] == str(path)
    assert path.stat().st_mtime_ns == made
    assert not list(path.parent.glob(".*.part"))


def test_a_photo_from_bytes_or_the_web_is_saved_and_keeps_its_url(tmp_path, web):
    url = f"{web}/p00.png"
    [from_web] = docs([url], cache=tmp_path / "cache")
    assert from_web.metadata["image_url"] == url
    saved = Path(from_web.metadata["image_path"])
    assert saved.parent == tmp_path / "cache" / "pictures" and saved.is_file()
    with Image.open(saved) as picture:
        assert picture.size == (50, 30)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(buffer, format="PNG")
    [from_bytes] = docs([buffer.getvalue()], cache=tmp_path / "cache")
    assert Path(from_bytes.metadata["image_path"]).read_bytes()[:4] == b"\x89PNG" and "image_url" not in from_bytes.metadata


def test_segment_frames_on_request_and_no_pictures_when_turned_off(tmp_path, video, deck):
    segments = docs([str(video.path)], cache=tmp_path / "cache", segment_frames=3)
    for doc in segments:
        frames = [Path(p) for p in doc.metadata["frame_paths"]]
        assert len(frames) == 3 and len(set(frames)) == 3 and all(p.is_file() for p in frames)
    assert segments[0].metadata["frame_paths"] != segments[-1].metadata["frame_paths"]
    slides = docs([str(deck)], cache=tmp_path / "cache", segment_frames=3)
    assert all("frame_paths" not in d.metadata for d in slides)
    off = docs([str(deck)], cache=tmp_path / "other", pictures=False)
    assert all("image_path" not in d.metadata for d in off) and not (tmp_path / "other" / "pictures").exists()
    assert off[0].image_path() is not None  # still made when asked for


def test_counts_also_come_as_flat_keys(tmp_path):
    [photo] = photos(tmp_path / "p", 1)
    [doc] = docs([photo], cache=False, count=["person", "traffic light"])
    counts = doc.metadata["counts"]
    assert doc.metadata["count_person"] == counts["person"] and doc.metadata["count_traffic_light"] == counts["traffic_light"]
    assert all(isinstance(doc.metadata[k], int) for k in ("count_person", "count_traffic_light"))
    payload = doc.point_payload("wordllama")
    assert payload["count_person"] == payload["metadata"]["count_person"] == counts["person"]


def test_where_reads_the_flat_keys(tmp_path):
    assert parse_where("count_person>=2") == parse_where("count.person>=2") == parse_where("counts.person >= 2")
    assert parse_where("count_Traffic_Light==1") == parse_where("count.traffic light==1")


def test_the_index_writes_pictures_and_flat_counts_and_a_rerun_changes_nothing(tmp_path, deck):
    media = tmp_path / "media"
    photos(media, 3)
    (media / "deck.pdf").write_bytes(deck.read_bytes())
    db, cache = tmp_path / "db", tmp_path / "cache"
    first = pipeline.index([str(media)], backend=FakeBackend(), db=db, cache=cache, count=["bright spots"])
    assert first.indexed == 5 and not first.failed
    with QdrantIndex(db, create=False) as store:
        points, _ = store.scroll(limit=10)
    for point in points:
        payload = point.payload
        assert Path(payload["image_path"]).is_file() and payload["metadata"]["image_path"] == payload["image_path"]
        assert payload["count_bright_spots"] == payload["counts"]["bright_spots"]
    again = pipeline.index([str(media)], backend=FakeBackend(), db=db, cache=cache, count=["bright spots"])
    assert again.indexed == 0 and again.unchanged == 5
    flat = pipeline.search("photo", db=db, where=["count_bright_spots>=1"], top=10)
    nested = pipeline.search("photo", db=db, where=["count.bright_spots>=1"], top=10)
    assert [h.id for h in flat] == [h.id for h in nested] and flat
    assert all(h.payload["count_bright_spots"] >= 1 for h in flat)
