"""The document seam (molmo_rag.documents): iter_documents / aiter_documents yield one
MediaDocument per photo, slide and video segment (id = the Qdrant point id the index
writes, text, payload metadata, the media behind it) or a Failure, on the streaming engine."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import os
import shutil
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image
from test_engine import GateBackend, counted, photos, settled, threads, wait_for

from molmo_rag import pipeline
from molmo_rag.documents import FILTER_KEYS, MediaDocument, aiter_documents, iter_documents
from molmo_rag.engine import Progress
from molmo_rag.errors import BackendError, InputError
from molmo_rag.index.records import point_id
from molmo_rag.tasks import Scene
from molmo_rag.testing import FakeBackend, samples


@pytest.fixture(scope="module")
def deck(tmp_path_factory) -> Path:
    return samples.make_pdf(
        tmp_path_factory.mktemp("deck") / "deck.pdf",
        [["Revenue by region", "North up"], ["Costs", "Flat"], ["Outlook", "Bright"]],
        size=(320.0, 180.0),
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> samples.SyntheticVideo:
    shots = [samples.Shot("astronaut", 4.0, "static"), samples.Shot("coffee", 4.0, "static")]
    return samples.make_video(tmp_path_factory.mktemp("video") / "tour.mp4", shots, size=(96, 64), fps=10)


def docs_of(outcomes) -> list[MediaDocument]:
    return [o for o in outcomes if isinstance(o, MediaDocument)]


# -- ids, text, metadata ----------------------------------------------------------------------


def test_ids_are_the_point_ids_the_index_writes(tmp_path, monkeypatch, deck):
    media = tmp_path / "media"
    photos(media, 3)
    shutil.copy(deck, media / "deck.pdf")
    monkeypatch.chdir(tmp_path)  # relative sources: both must store the absolute path

    summary = pipeline.index(["media"], backend=FakeBackend(), db=tmp_path / "db", cache=tmp_path / "c1")
    assert summary.indexed == 6 and not summary.failed
    with pipeline.open_index(tmp_path / "db", create=False) as store:
        written = {pid: (source, media_id) for source, points in store.all_points().items() for pid, media_id in points.items()}

    documents = list(iter_documents(["media"], backend=FakeBackend(), cache=tmp_path / "c2"))
    assert len(documents) == 6 and all(isinstance(d, MediaDocument) for d in documents)
    assert {d.id: (d.source, d.media_id) for d in documents} == written
    for d in documents:
        assert os.path.isabs(d.source) and d.source.startswith(str(media))
        assert d.id == point_id(d.media_id, d.source)


def test_metadata_holds_the_payload_keys(tmp_path, deck, video):
    [photo] = photos(tmp_path, 1)
    documents = list(
        iter_documents([photo, str(deck), str(video.path)], backend=FakeBackend(), cache=False, count=["bright"], ask=["What colour?"], ordered=True)
    )
    kinds = [d.kind for d in documents]
    assert kinds == ["image", "slide", "slide", "slide", "video_segment", "video_segment"]
    for d in documents:
        m = d.metadata
        assert {"kind", "source", "media_id", "caption", "scene", "counts", "points", "answers", "backend", "model", "thumbnail"} <= set(m)
        assert m["backend"] == "fake" and m["model"] == "pixel-stats-1"
        assert "bright" in m["counts"] and m["answers"][0]["question"] == "What colour?"
        assert m["caption"] in d.text and m["scene"] in d.text
        assert all(isinstance(m[k], (str, int, float)) for k in FILTER_KEYS if k in m)  # scalars, filterable
        assert d.to_json()["id"] == d.id and d.record.id == d.id and d.record.text == d.text
        assert len(d.results) == 4 and not d.failures
    image, first_slide, video_first = documents[0], documents[1], documents[4]
    assert "slide" not in image.metadata and "start" not in image.metadata
    assert first_slide.metadata["slide"] == 1 and first_slide.metadata["title"] == "Revenue by region"
    assert "Revenue by region" in first_slide.text
    assert video_first.metadata["start"] == 0.0 and video_first.metadata["end"] == pytest.approx(4.0, abs=0.2)
    assert documents[5].metadata["end"] == pytest.approx(8.0, abs=0.2)


@pytest.mark.parametrize("size", [0, 64])
def test_thumbnail_on_and_off(tmp_path, size):
    paths = photos(tmp_path, 1, size=(300, 200))
    [doc] = iter_documents(paths, backend=FakeBackend(), cache=False, thumbnail_size=size)
    if not size:
        assert "thumbnail" not in doc.metadata
        return
    uri = doc.metadata["thumbnail"]
    assert uri.startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.format == "JPEG" and max(thumb.size) == 64 and thumb.size == (64, 43)


def test_image_and_image_path(tmp_path, monkeypatch, deck, video):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache-home"))
    [photo] = photos(tmp_path / "p", 1, size=(60, 40))
    documents = list(iter_documents([photo, str(deck), str(video.path)], backend=FakeBackend(), cache=False, ordered=True))
    image_doc, slide_doc, segment_doc = documents[0], documents[1], documents[4]

    assert image_doc.image_path() == Path(photo)  # the photo itself, no copy
    assert image_doc.image().size == (60, 40)

    default = slide_doc.image_path()  # a rendered page, saved once under the cache dir, by content
    assert default.parent == tmp_path / "cache-home" / "pictures" and default.suffix == ".jpg"
    assert slide_doc.metadata["image_path"] == str(default)  # in the metadata every framework reads
    with Image.open(default) as page:
        assert page.format == "JPEG" and page.size == slide_doc.image().size
    written = default.stat().st_mtime_ns
    assert slide_doc.image_path() == default and default.stat().st_mtime_ns == written  # not made twice

    frame = segment_doc.image_path(tmp_path / "frames")
    assert frame.parent == tmp_path / "frames" and frame.name == Path(segment_doc.metadata["image_path"]).name
    with Image.open(frame) as img:
        assert img.format == "JPEG" and img.size == segment_doc.image().size
    assert not list((tmp_path / "frames").glob("*.part"))


# -- failures --------------------------------------------------------------------------------------


def test_unreadable_sources_and_failed_items_are_failures_in_place(tmp_path):
    paths = photos(tmp_path, 3)
    missing = str(tmp_path / "gone.png")
    outcomes = list(
        iter_documents([paths[0], missing, paths[1], paths[2]], backend=FakeBackend(fail_on="p01"), cache=False, ordered=True)
    )
    assert [type(o).__name__ for o in outcomes] == ["MediaDocument", "Failure", "Failure", "Failure", "MediaDocument"]
    read_failure = outcomes[1]
    assert read_failure.source == missing and read_failure.task is None and isinstance(read_failure.error, InputError)
    # every task of p01 failed: one Failure per task, nothing to index
    assert {o.task.name for o in outcomes[2:4]} == {"caption", "scene"}
    assert all(o.source == paths[1] and isinstance(o.error, BackendError) for o in outcomes[2:4])


def test_a_document_keeps_the_tasks_that_failed(tmp_path):
    class NoScenes(FakeBackend):
        name: ClassVar[str] = "no-scenes"

        def generate_batch(self, requests):
            if any(isinstance(r.task, Scene) for r in requests):
                raise BackendError("scene service down", backend=self.name)
            return super().generate_batch(requests)

    paths = photos(tmp_path, 2)
    documents = list(iter_documents(paths, backend=NoScenes(batch_size=1), cache=False, ordered=True))
    assert all(isinstance(d, MediaDocument) for d in documents)
    for d in documents:
        assert [r.task.name for r in d.results] == ["caption"] and d.metadata["caption"]
        assert [f.task.name for f in d.failures] == ["scene"] and "scene" not in d.metadata


# -- cache, copies, order --------------------------------------------------------------------------


def test_a_rerun_is_served_from_the_cache(tmp_path, deck):
    paths = photos(tmp_path / "p", 3)
    first_backend, second_backend = FakeBackend(), FakeBackend()
    first = list(iter_documents([*paths, str(deck)], backend=first_backend, cache=tmp_path / "cache", ordered=True))
    second = list(iter_documents([*paths, str(deck)], backend=second_backend, cache=tmp_path / "cache", ordered=True))
    assert first_backend.calls == 12 and second_backend.calls == 0
    assert [d.cached for d in first] == [0] * 6 and [d.cached for d in second] == [2] * 6
    assert [(d.id, d.text) for d in first] == [(d.id, d.text) for d in second]


def test_copies_are_separate_documents_asked_once(tmp_path):
    [original] = photos(tmp_path / "a", 1)
    copy = str(shutil.copy(original, tmp_path / "copy.png"))
    backend = FakeBackend()
    documents = list(iter_documents([original, copy], backend=backend, cache=tmp_path / "cache", ordered=True))
    assert backend.calls == 2  # caption and scene, once for both files
    assert [d.source for d in documents] == [original, copy]
    assert documents[0].media_id == documents[1].media_id and documents[0].id != documents[1].id
    assert documents[0].text == documents[1].text


def test_ordered_and_as_they_finish(tmp_path):
    paths = photos(tmp_path, 6)

    async def hold(request, backend):
        if request.item.source == paths[0]:
            await wait_for(lambda: len(backend.finished) >= 2 * (len(paths) - 1), backend)

    for ordered in (True, False):
        backend = GateBackend(window=4, hold=hold)
        sources = [d.source for d in iter_documents(paths, backend=backend, cache=False, ordered=ordered)]
        assert not backend.gave_up
        assert sources == paths if ordered else (sources[-1] == paths[0] and sorted(sources) == paths)


# -- async, early exits, bounded reading, the running loop -------------------------------------------


def test_aiter_documents_is_an_async_generator(tmp_path):
    assert inspect.isasyncgenfunction(aiter_documents)
    paths = photos(tmp_path, 3)

    async def main():
        return [d async for d in aiter_documents(paths, backend=FakeBackend(), cache=False, ordered=True)]

    assert [d.source for d in asyncio.run(main())] == paths


def test_closing_aiter_documents_early_stops_its_requests_first(tmp_path):
    paths = photos(tmp_path, 10)
    before = threads()

    async def hold(request, backend):
        if request.item.source != paths[0]:
            await asyncio.sleep(30)

    async def main():
        backend = GateBackend(window=3, hold=hold)
        documents = aiter_documents(paths, backend=backend, cache=tmp_path / "cache")
        async for first in documents:
            break
        await wait_for(lambda: backend.in_flight == 3, backend)
        started = time.monotonic()
        await documents.aclose()
        # closed before aclose returned (not left for the loop to finalize after the cache
        # it writes to was closed), and without waiting for the stuck requests
        return first, backend.in_flight, time.monotonic() - started

    first, in_flight, took = asyncio.run(main())
    assert first.source == paths[0] and in_flight == 0 and took < 10
    assert settled(before)


def test_breaking_out_of_iter_documents_leaves_nothing_running(tmp_path):
    paths = photos(tmp_path, 12)
    before = threads()
    backend = FakeBackend(batch_size=1, delay=0.05)
    outcome: list = []

    def consume():
        for document in iter_documents(paths, backend=backend, cache=tmp_path / "cache"):
            outcome.append(document)
            break

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "breaking out of iter_documents hung"
    assert len(outcome) == 1 and isinstance(outcome[0], MediaDocument)
    calls = backend.calls
    assert settled(before)
    time.sleep(0.2)
    assert backend.calls == calls < 24  # nothing asked after the break


def test_the_backend_keeps_working_while_the_caller_handles_a_document(tmp_path):
    paths = photos(tmp_path, 8)
    backend = FakeBackend(batch_size=1)
    documents = iter_documents(paths, backend=backend, cache=False)
    next(documents)
    at_first = backend.calls
    time.sleep(0.5)  # e.g. embedding the first document
    during = backend.calls
    rest = list(documents)
    assert len(rest) == 7
    assert during > at_first  # requests went on in the background (about all 16 by now)


def test_reading_stays_within_max_pending_of_the_consumer(tmp_path):
    paths = photos(tmp_path, 15)
    pulled: list[str] = []
    handed = 0
    ahead = []
    for _ in iter_documents(counted(paths, pulled), backend=FakeBackend(batch_size=1), cache=False, window=1, max_pending=3):
        handed += 1
        if handed == 1:
            time.sleep(0.5)  # the reader goes on meanwhile, up to max_pending
        ahead.append(len(pulled) - handed)
    assert handed == 15 and len(pulled) == 15
    assert ahead[0] == 3 and max(ahead) <= 3


def test_iter_documents_inside_a_running_loop(tmp_path):
    paths = photos(tmp_path, 3)

    async def cell():  # a notebook cell: sync API called with the notebook's loop running
        documents = list(iter_documents(paths, backend=FakeBackend(), cache=False, ordered=True))
        await asyncio.sleep(0)  # the loop still works afterwards
        return documents

    documents = asyncio.run(cell())
    assert [d.source for d in documents] == paths and all(d.metadata["caption"] for d in documents)


# -- progress --------------------------------------------------------------------------------------


def test_progress_counts_documents_against_a_total_known_up_front(tmp_path, deck):
    folder = tmp_path / "folder"
    photos(folder, 3)
    totals: list[tuple[int | None, int]] = []
    progress = Progress(on_change=lambda p: totals.append((p.total, p.done)))
    list(iter_documents([str(folder)], backend=FakeBackend(), cache=False, progress=progress))
    assert totals[0] == (3, 0) and progress.total == 3 == progress.done

    totals.clear()
    progress = Progress(on_change=lambda p: totals.append((p.total, p.done)))
    list(iter_documents([str(deck), str(folder)], backend=FakeBackend(), cache=False, progress=progress, ordered=True))
    assert progress.files_total == 4
    assert totals[0] == (6, 0)  # refined by the deck's first page: 3 slides + 3 photos
    assert progress.total == 6 == progress.done and progress.failed == 0


def test_frames_go_to_the_runs_cache_and_the_point_payload_is_the_index_layout(tmp_path, deck):
    docs = [d for d in iter_documents([deck], backend=FakeBackend(), cache=tmp_path / "cache") if isinstance(d, MediaDocument)]
    path = docs[0].image_path()
    assert path is not None and path.parent == tmp_path / "cache" / "pictures" and path.exists()
    payload = docs[0].point_payload("wordllama/l2_supercat-256")
    assert payload["text"] == payload["page_content"] == docs[0].text
    assert payload["metadata"]["media_id"] == docs[0].media_id and payload["record_hash"]
    assert docs[0].source in payload["source"] and payload["source_prefixes"]
