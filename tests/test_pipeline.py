import numpy as np
import pytest
from _pixel_backend import PixelBackend
from PIL import Image

from molmo_rag import pipeline
from molmo_rag.errors import ConfigurationError, InputError, UnsupportedTaskError, UsageError
from molmo_rag.index.store import QdrantIndex
from molmo_rag.media.items import MediaItem, VideoFrames

COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 160, 40), "yellow": (220, 210, 40), "white": (240, 240, 240)}


def photo(name, blobs, source=None):
    a = np.zeros((40, 90, 3), np.uint8)
    a[:] = COLOURS[name]
    for k in range(blobs):
        a[5:12, 4 + 12 * k : 9 + 12 * k] = 255
    return MediaItem.from_pil(Image.fromarray(a), source=source or f"/lib/photos/{name}.png")


def segment(name, start, blobs=1):
    frames = np.zeros((4, 32, 64, 3), np.uint8)
    frames[:] = COLOURS[name]
    for k in range(blobs):
        frames[:, 4:10, 4 + 12 * k : 9 + 12 * k] = 255
    vf = VideoFrames(frames, [0.0, 2.5, 5.0, 7.5], 0.4, 64, 32, 10.0, 4, [0, 1, 2, 3])
    return MediaItem.from_frames(vf, source="/lib/clips/street.mp4", start=start)


@pytest.fixture
def media():
    return [photo("red", 3), photo("blue", 1), photo("green", 0), segment("yellow", 0.0, 2), segment("blue", 10.0, 0)]


@pytest.fixture
def where(tmp_path):
    return {"db": tmp_path / "db", "cache": tmp_path / "cache"}


def test_index_then_search_with_filters(media, where):
    backend = PixelBackend()
    records = []
    summary = pipeline.index(media, backend=backend, count=["person"], on_record=lambda r, s: records.append((r, s)), **where)
    assert (summary.items, summary.indexed, summary.unchanged, summary.done, summary.cached) == (5, 5, 0, 15, 0)
    assert summary.failed == [] and summary.skipped == [] and summary.ok
    assert [s for _, s in records] == ["indexed"] * 5
    db = where["db"]

    hits = pipeline.search("a red picture", db=db, top=1)
    assert hits[0].source == "/lib/photos/red.png" and "red" in hits[0].caption and hits[0].counts == {"person": 3}
    assert {h.source for h in pipeline.search("anything", db=db, where="count.person>=2")} == {
        "/lib/photos/red.png",
        "/lib/clips/street.mp4",
    }
    assert [h.kind for h in pipeline.search("anything", db=db, where=["count.person>=2"], kind="video")] == ["video_segment"]
    assert {(h.start, h.end) for h in pipeline.search("x", db=db, kind="video", after=9.0)} == {(0.0, 10.0), (10.0, 20.0)}
    assert {(h.start, h.end) for h in pipeline.search("x", db=db, after=10.0)} == {(10.0, 20.0)}
    assert {h.source for h in pipeline.search("x", db=db, source="/lib/photos")} == {
        "/lib/photos/red.png", "/lib/photos/blue.png", "/lib/photos/green.png"}
    assert len(pipeline.search("x", db=db, top=2)) == 2
    assert {h.caption.split()[2] for h in pipeline.search("x", db=db, where="count.person==0")} == {"green", "blue"}


def test_rerun_calls_nothing_and_rewrites_nothing(media, where):
    pipeline.index(media, backend=PixelBackend(), **where)
    again = PixelBackend()
    summary = pipeline.index(media, backend=again, **where)
    assert again.calls == 0
    assert (summary.done, summary.cached, summary.indexed, summary.unchanged) == (0, 10, 0, 5)
    # --no-cache: everything asked again, points identical so nothing rewritten
    fresh = PixelBackend()
    summary = pipeline.index(media, backend=fresh, no_cache=True, **where)
    assert fresh.calls == 10 and summary.done == 10 and summary.unchanged == 5
    # a new question only asks the new task
    more = PixelBackend()
    summary = pipeline.index(media, backend=more, ask=["What colour?"], **where)
    assert more.calls == 5 and summary.indexed == 5 and summary.cached == 10


def test_changed_media_replaces_its_stale_point(where):
    pipeline.index([photo("red", 1, source="/x/a.png"), photo("blue", 1, source="/x/b.png")], backend=PixelBackend(), **where)
    summary = pipeline.index([photo("green", 1, source="/x/a.png")], backend=PixelBackend(), **where)
    assert summary.pruned == 1
    with QdrantIndex(where["db"]) as store:
        assert store.count() == 2
    assert {h.caption.split()[2] for h in pipeline.search("x", db=where["db"])} == {"green", "blue"}


def test_media_handed_over_in_memory_never_prune_each_other(where):
    """Every bytes object shares the label ``<bytes>``: indexing a second one, or one that
    cannot be read, must keep the points of the first (they are not the same media)."""
    import io

    from PIL import Image

    def png(colour) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (32, 32), colour).save(out, "PNG")
        return out.getvalue()

    pipeline.index(png((255, 0, 0)), backend=PixelBackend(), **where)
    second = pipeline.index(png((0, 0, 255)), backend=PixelBackend(), **where)
    broken = pipeline.index(b"\xff\xd8 not a jpeg", backend=PixelBackend(), **where)
    assert second.pruned == 0 and broken.pruned == 0 and broken.failed
    with QdrantIndex(where["db"]) as store:
        assert store.count() == 2


def test_failures_are_collected_and_a_rerun_completes(media, where):
    media.append(InputError("not an image", source="/lib/photos/broken.jpg"))
    seen = []
    summary = pipeline.index(media, backend=PixelBackend(fail_on="blue", batch_size=1), on_failure=seen.append, **where)
    assert summary.indexed == 4 and summary.ok  # all but the blue photo
    reasons = {(f.source, f.task.name if f.task else None) for f in summary.failed}
    assert reasons == {("/lib/photos/blue.png", "caption"), ("/lib/photos/blue.png", "scene"), ("/lib/photos/broken.jpg", None)}
    assert seen == summary.failed
    assert summary.to_json()["failed"][0]["error"]
    summary = pipeline.index(media, backend=PixelBackend(), **where)
    assert (summary.indexed, summary.unchanged, summary.cached, summary.done) == (1, 4, 8, 2)


def test_nothing_indexed_is_not_ok(where):
    summary = pipeline.index([photo("red", 1)], backend=PixelBackend(fail_on="red"), **where)
    assert summary.indexed == 0 and not summary.ok


def test_setup_errors_are_raised_before_any_work(media, where):
    class CaptionOnly(PixelBackend):
        capabilities = {"image": frozenset({"caption"}), "video": frozenset({"caption"})}

    with pytest.raises(ConfigurationError, match="no index at"):
        pipeline.search("x", db=where["db"])  # and searching makes no empty index
    assert not where["db"].exists()
    backend = CaptionOnly()
    with pytest.raises(UnsupportedTaskError):
        pipeline.index(media, backend=backend, count=["person"], **where)
    assert backend.calls == 0
    with QdrantIndex(where["db"]) as store:
        assert not store.exists()
    with pytest.raises(ConfigurationError, match="bad condition"):
        pipeline.search("x", db=where["db"], where="person>=2")
    with pytest.raises(ConfigurationError, match="index something first"):
        pipeline.search("x", db=where["db"])


def test_embedder_is_taken_from_the_collection_and_mixing_is_refused(media, where):
    import hashlib

    class Hashing:
        name, dim = "test/hashing-8", 8

        def embed(self, texts):
            out = []
            for t in texts:
                v = np.zeros(8)
                for w in t.lower().split():
                    v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 8] += 1
                out.append(v.tolist())
            return out

        def embed_query(self, text):
            return self.embed([text])[0]

    pipeline.index(media[:1], backend=PixelBackend(), embedder=Hashing(), **where)
    with pytest.raises(ConfigurationError, match="cannot be mixed"):
        pipeline.index(media[1:2], backend=PixelBackend(), embedder="wordllama", **where)
    with pytest.raises(ConfigurationError, match="hashing-8"):
        pipeline.search("x", db=where["db"])  # the recorded embedder is not a known spec
    assert pipeline.search("red", db=where["db"], embedder=Hashing())[0].source == "/lib/photos/red.png"


def test_backend_by_name_and_unknown_name(where, monkeypatch):
    import _pixel_backend

    _pixel_backend.register(monkeypatch)
    summary = pipeline.index([photo("red", 1)], backend="pixels", model="pixel-stats-9", **where)
    assert summary.indexed == 1
    assert pipeline.search("red", db=where["db"])[0].payload["model"] == "pixel-stats-9"
    with pytest.raises(ConfigurationError, match="unknown backend"):
        pipeline.index([photo("red", 1)], backend="nope", **where)


def test_copies_of_one_file_are_each_searchable_by_their_own_path(where):
    red = photo("red", 2, source="/lib/a/red.png")
    copy = photo("red", 2, source="/lib/b/red-copy.png")
    assert red.media_id == copy.media_id  # same bytes, same content hash
    backend = PixelBackend()
    summary = pipeline.index([red, copy], backend=backend, **where)
    assert summary.indexed == 2 and backend.calls == 2  # the copy's results come from the cache
    assert {h.source for h in pipeline.search("red", db=where["db"])} == {"/lib/a/red.png", "/lib/b/red-copy.png"}
    assert [h.source for h in pipeline.search("red", db=where["db"], source="/lib/b")] == ["/lib/b/red-copy.png"]


def test_local_paths_are_stored_absolute_and_vanished_files_pruned(where, tmp_path, monkeypatch):
    folder = tmp_path / "media" / "photos"
    (folder / "sub").mkdir(parents=True)
    for name, blobs, path in [("red", 1, folder / "red.png"), ("blue", 2, folder / "sub" / "blue.png"), ("green", 0, folder / "green.png")]:
        photo(name, blobs).image().save(path)
    monkeypatch.chdir(tmp_path)
    summary = pipeline.index("media", backend=PixelBackend(), **where)
    assert summary.indexed == 3
    hits = pipeline.search("x", db=where["db"])
    assert {h.source for h in hits} == {str(folder / "red.png"), str(folder / "sub" / "blue.png"), str(folder / "green.png")}
    # a relative --source / source== is read from the working directory
    assert [h.caption.split()[2] for h in pipeline.search("x", db=where["db"], source="media/photos/sub")] == ["blue"]
    assert len(pipeline.search("x", db=where["db"], where="source==media/photos/red.png")) == 1
    # the same folder given from elsewhere, absolute: the same points, nothing new
    monkeypatch.chdir(folder)
    summary = pipeline.index(str(tmp_path / "media"), backend=PixelBackend(), **where)
    assert (summary.indexed, summary.unchanged, summary.pruned) == (0, 3, 0)
    # a file deleted from the folder loses its point; so does one whose bytes became
    # unreadable (its content is gone), and the failure is reported
    (folder / "green.png").unlink()
    (folder / "red.png").write_bytes(b"not a png any more")
    summary = pipeline.index(tmp_path / "media", backend=PixelBackend(), **where)
    assert summary.pruned == 2 and [f.source for f in summary.failed] == [str(folder / "red.png")]
    assert {h.caption.split()[2] for h in pipeline.search("x", db=where["db"])} == {"blue"}


def test_in_memory_index_is_passed_open_and_a_memory_path_is_refused(media, where):
    with pytest.raises(ConfigurationError, match="would be lost"):
        pipeline.index(media, backend=PixelBackend(), db=":memory:", cache=where["cache"])
    with pytest.raises(ConfigurationError, match="would be lost"):
        pipeline.search("x", db=":memory:")
    with pipeline.open_index(":memory:") as store:
        summary = pipeline.index(media, backend=PixelBackend(), db=store, cache=where["cache"])
        assert summary.indexed == 5 and summary.location == ":memory:"
        assert store.count() == 5  # still open after index()
        assert pipeline.search("a red picture", db=store, top=1)[0].source == "/lib/photos/red.png"


def _folder_of_photos(root, names=("red", "blue", "green")):
    root.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        photo(name, n).image().save(root / f"{name}.png")
    return root


def _sources(db):
    return sorted(h.source for h in pipeline.search("x", db=db, top=50))


def test_a_folder_emptied_of_media_loses_its_points_and_says_so(where, tmp_path):
    folder = _folder_of_photos(tmp_path / "album")
    keep = _folder_of_photos(tmp_path / "other", ["yellow"])
    assert pipeline.index([folder, keep], backend=PixelBackend(), **where).indexed == 4
    for file in folder.iterdir():
        file.unlink()
    (folder / "notes.txt").write_text("not media")
    summary = pipeline.index([folder, keep], backend=PixelBackend(), **where)
    assert summary.pruned == 3 and summary.unchanged == 1
    assert [(f.source, type(f.error).__name__) for f in summary.failed] == [(str(folder), "SourceNotFoundError")]
    assert _sources(where["db"]) == [str(keep / "yellow.png")]


def test_a_file_that_cannot_be_listed_or_a_mistyped_path_deletes_nothing(where, tmp_path):
    folder = _folder_of_photos(tmp_path / "album")
    pipeline.index(folder, backend=PixelBackend(), **where)
    summary = pipeline.index([tmp_path / "albun", folder / "red.pgn"], backend=PixelBackend(), **where)
    assert summary.pruned == 0 and len(summary.failed) == 2
    assert len(_sources(where["db"])) == 3


def test_remove_sources_folders_and_missing_files(where, tmp_path):
    album = _folder_of_photos(tmp_path / "album")
    trip = _folder_of_photos(tmp_path / "trip", ["yellow", "white"])
    pipeline.index([album, trip], backend=PixelBackend(), **where)
    db = where["db"]
    # a mistyped path matches nothing and removes nothing
    assert pipeline.remove([tmp_path / "albun"], db=db) == {}
    # a dry run says what would go
    assert pipeline.remove([album / "red.png"], db=db, dry_run=True) == {str(album / "red.png"): 1}
    assert len(_sources(db)) == 5
    # a deleted folder: only the points of files that are gone, when asked for missing ones
    (trip / "yellow.png").unlink()
    assert pipeline.remove(missing=True, db=db) == {str(trip / "yellow.png"): 1}
    assert pipeline.remove([album], db=db) == {str(album / f"{c}.png"): 1 for c in ("blue", "green", "red")}
    assert _sources(db) == [str(trip / "white.png")]
    with pytest.raises(UsageError):
        pipeline.remove(db=db)


def test_a_point_answered_in_full_carries_its_plan_key_and_one_with_a_failed_task_none(where):
    """The collection is the record of what is done: a point holds the digest of the plan
    whose every answer it holds (what a Ray re-run skips), and a different plan (one more
    label to count) is another key."""
    from molmo_rag.run import Run

    media = [photo("red", 2), photo("blue", 1)]
    pipeline.index(media, backend=PixelBackend(fail_on="blue", batch_size=1), count=["spot"], **where)
    store = QdrantIndex(where["db"])
    try:
        keys = store.plan_keys_of(["/lib/photos/red.png", "/lib/photos/blue.png"])
        payloads = {p.payload["source"]: p.payload for p in store.scroll()[0]}
    finally:
        store.close()
    assert "blue.png" not in " ".join(payloads)  # every task of blue failed: no point at all
    red = payloads["/lib/photos/red.png"]
    with Run(backend=PixelBackend(), count=["spot"], cache=False) as run:
        assert red["plan_key"] == run.planner.plan_key(media[0])
        assert list(keys.values()) == [red["plan_key"]]
    with Run(backend=PixelBackend(), count=["spot", "car"], cache=False) as run:
        assert run.planner.plan_key(media[0]) != red["plan_key"]


def test_a_partly_failed_item_has_no_plan_key_and_gets_it_once_every_task_answered(where):
    from molmo_rag.errors import BackendError
    from molmo_rag.tasks import Count

    class CountFails(PixelBackend):
        def generate_batch(self, requests):
            if any(isinstance(r.task, Count) for r in requests):
                raise BackendError("counting is down", backend=self.name)
            return super().generate_batch(requests)

    item = photo("green", 1)
    first = pipeline.index([item], backend=CountFails(batch_size=1), count=["spot"], **where)
    assert first.indexed == 1 and [f.task.name for f in first.failed] == ["count"]
    store = QdrantIndex(where["db"])
    try:
        assert store.plan_keys_of(["/lib/photos/green.png"]) == {}
    finally:
        store.close()
    second = pipeline.index([item], backend=PixelBackend(batch_size=1), count=["spot"], **where)
    assert second.indexed == 1 and not second.failed and second.cached == 2 and second.done == 1
    store = QdrantIndex(where["db"])
    try:
        assert len(store.plan_keys_of(["/lib/photos/green.png"])) == 1
    finally:
        store.close()
