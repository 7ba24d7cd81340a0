"""Grounded re-ranking on a world whose right answers are known: dark pictures with bright
spots (what the query names) and bright pictures without any, whose captions the text
search prefers. FakeBackend counts bright spots from the pixels."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from PIL import Image

import _pixel_backend
from molmo_rag import pipeline
from molmo_rag.cli import main
from molmo_rag.errors import UsageError
from molmo_rag.grounding import GroundedHits, Grounder, aground, draw, ground, grounding_target
from molmo_rag.index.count_words import split_counts
from molmo_rag.run import Run, RunOptions
from molmo_rag.testing import FakeBackend, samples


@pytest.fixture
def world(tmp_path):
    folder = tmp_path / "world"
    truth = samples.spots_world(folder)
    db = tmp_path / "db"
    pipeline.index([folder], backend=FakeBackend(), db=db, cache=tmp_path / "cache")
    return db, truth, tmp_path / "cache"


def test_grounding_moves_every_true_hit_above_every_miss(world):
    db, truth, cache = world
    hits = pipeline.search("bright spots", db=db, top=10)
    text_only = [truth[h.source] > 0 for h in hits[:5]]
    assert not all(text_only)  # the text score alone ranks some misses in the top 5
    backend = FakeBackend()
    grounded = ground(hits, "bright spots", backend=backend, top=10, cache=cache)
    flags = [truth[h.source] > 0 for h in grounded]
    assert flags == sorted(flags, reverse=True)  # every true hit above every miss
    for hit in grounded:
        assert hit.grounded == (1.0 if truth[hit.source] else 0.0)
        assert hit.evidence["count"] == truth[hit.source] and len(hit.evidence["points"]) == truth[hit.source]
        assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in hit.evidence["points"])
        assert hit.vector_score is not None and hit.to_json()["evidence"]["target"] == "bright spots"
    assert grounded.checked == 10 and grounded.cached == 0 and backend.calls == 10
    again = FakeBackend()
    rerun = ground(hits, "bright spots", backend=again, top=10, cache=cache)
    assert again.calls == 0 and rerun.cached == 10  # cached like every other result
    assert [h.source for h in rerun] == [h.source for h in grounded]


def test_only_the_top_k_are_checked_and_the_rest_follow(world):
    db, truth, cache = world
    hits = pipeline.search("bright spots", db=db, top=10)
    grounded = ground(hits, "bright spots", RunOptions(backend=FakeBackend(), cache=False), top=3)
    assert [h.grounded is not None for h in grounded] == [True] * 3 + [False] * 7
    assert [h.source for h in grounded[3:]] == [h.source for h in hits[3:]]


def test_counts_in_the_query_must_be_met(world):
    db, truth, cache = world
    read = split_counts("at least 3 bright spots", ["bright_spots"])
    assert grounding_target("at least 3 bright spots", read) == "spots"
    hits = pipeline.search("bright spots", db=db, top=10)
    grounded = ground(hits, read.text, count_query=read, backend=FakeBackend(), top=10, cache=False)
    assert sorted(truth[h.source] for h in grounded if h.grounded) == [3, 4]


def test_draw_marks_each_point(world, tmp_path):
    db, truth, cache = world
    hits = ground(pipeline.search("bright spots", db=db, top=10), "bright spots", backend=FakeBackend(), cache=False)
    best = hits[0]
    picture = np.asarray(draw(best, colour=(255, 0, 0)))
    original = np.asarray(Image.open(best.source).convert("RGB"))
    assert picture.shape == original.shape
    red = (picture[..., 0] == 255) & (picture[..., 1] == 0) & (picture[..., 2] == 0)
    for p in best.evidence["points"]:  # a red ring around every point, nothing red elsewhere in the source
        x, y = round(p["x"] * original.shape[1]), round(p["y"] * original.shape[0])
        assert red[max(0, y - 8) : y + 9, max(0, x - 8) : x + 9].any()
    assert not ((original[..., 0] == 255) & (original[..., 1] == 0)).any()


def test_slides_and_video_segments_are_reopened_and_grounded(tmp_path):
    from molmo_rag.testing import samples

    samples.make_pdf(tmp_path / "deck.pdf", [["Spots", "A slide"], ["Plain", "Another"]])
    samples.make_video(tmp_path / "clip.mp4", [samples.Shot("rocket", 3, "static"), samples.Shot("coffee", 3, "static")], size=(160, 96))
    db = tmp_path / "db"
    pipeline.index([tmp_path / "deck.pdf", tmp_path / "clip.mp4"], backend=FakeBackend(), db=db, cache=False)
    hits = pipeline.search("anything", db=db, top=10)
    grounded = ground(hits, "bright things", backend=FakeBackend(), top=10, cache=False)
    assert {h.kind for h in grounded} == {"slide", "video_segment"} and not grounded.failures
    assert all(h.evidence is not None and h.grounded is not None for h in grounded)
    for hit in grounded:
        if hit.kind == "video_segment":
            assert all(hit.start - 0.01 <= p["t"] <= hit.end + 0.01 for p in hit.evidence["points"])
            strip = draw(hit)
            assert strip.height > 0 and strip.width >= 1


def test_a_hit_whose_media_is_gone_is_a_failure_shown_as_unchecked(world):
    db, truth, cache = world
    hits = pipeline.search("bright spots", db=db, top=10)
    gone = next(h for h in hits if truth[h.source] > 0)
    import os

    os.unlink(gone.source)
    grounded = ground(hits, "bright spots", backend=FakeBackend(), top=10, cache=False)
    assert [f.source for f in grounded.failures] == [gone.source]
    failed = next(h for h in grounded if h.source == gone.source)
    assert failed.grounded is None and "SourceNotFoundError" in failed.evidence["error"]  # not a miss: said
    assert failed.score == failed.vector_score  # ranks by its vector score, with the misses


def test_cli_search_ground(world, capsys, monkeypatch):
    db, truth, cache = world
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(cache))
    _pixel_backend.register(monkeypatch)
    assert main(["search", "bright spots", "--db", str(db), "--ground", "--backend", "pixels", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    flags = [truth[line["source"]] > 0 for line in lines]
    assert flags == sorted(flags, reverse=True) and all("evidence" in line for line in lines)
    assert main(["search", "bright spots", "--db", str(db), "--ground", "--backend", "pixels", "--ground-top", "10"]) == 0
    out, err = capsys.readouterr()
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["score", "kind", "where", "found"]
    assert [row.split()[3] for row in rows[1:]] == ["yes"] * 4 + ["no"] * 6
    assert "looked for 'bright spots' in 10 hit(s) (10 from cache)" in err


# --- one Run: made once, reused, closed by whoever made it ---------------------------------------
@pytest.fixture
def pixels_world(tmp_path, monkeypatch):
    """The spots world indexed with the registered 'pixels' backend (so grounding can make
    it again by name), counting the spots; ``made`` lists every backend a Run makes."""
    from molmo_rag import run as run_module

    _pixel_backend.register(monkeypatch)
    made: list = []
    closed: list = []
    create = run_module.create_backend

    def counting(*args, **kwargs):
        backend = create(*args, **kwargs)
        made.append(backend)
        backend.close = lambda: closed.append(backend)  # type: ignore[method-assign]
        return backend

    monkeypatch.setattr(run_module, "create_backend", counting)
    folder = tmp_path / "world"
    truth = samples.spots_world(folder)
    db = tmp_path / "db"
    made_with = RunOptions(backend=_pixel_backend.PixelBackend(model="pixels-v2"), cache=False, count=["bright spots"])
    pipeline.index([folder], made_with, db=db)
    return db, truth, made, closed


def test_a_grounder_makes_one_backend_for_every_query_and_closes_it(pixels_world, tmp_path):
    db, truth, made, closed = pixels_world
    grounder = Grounder(cache=tmp_path / "cache", count_labels=["bright_spots"])  # no backend named: the collection's
    first = grounder.ground(pipeline.search("bright spots", db=db), "spots")
    second = asyncio.run(grounder.aground(pipeline.search("bright spots", db=db), "at least 3 bright spots"))
    assert len(made) == 1 and type(made[0]) is _pixel_backend.PixelBackend and made[0].model == "pixels-v2"
    assert made[0].calls == 10
    assert grounder.run is not None and grounder.run.backend is made[0]
    assert first.backend == second.backend == "pixels" and second.cached == 10  # the same target: one cache
    assert first.made_with == {"backend": "pixels", "model": "pixels-v2"}
    assert sorted(truth[h.source] for h in second if h.grounded) == [3, 4]  # the count phrase must hold
    assert second.target == "spots" and second.count_query is not None and second.count_query.where == ["count.bright_spots>=3"]
    assert closed == []
    grounder.close()
    assert closed == made and grounder.run is None
    grounder.ground(pipeline.search("bright spots", db=db), "bright spots")  # after close: a fresh run
    assert len(made) == 2
    grounder.close()


def test_a_grounder_makes_no_backend_without_hits(pixels_world):
    db, truth, made, closed = pixels_world
    grounder = Grounder(top=3)
    assert grounder.ground([], "bright spots") == [] and made == [] and grounder.run is None
    grounder.close()


def test_a_run_given_is_used_and_left_open(pixels_world, tmp_path):
    db, truth, made, closed = pixels_world
    hits = pipeline.search("bright spots", db=db)
    with Run(backend="pixels", cache=tmp_path / "cache") as run:
        first = ground(hits, "bright spots", run, top=4)
        grounder = Grounder(run, top=10)
        again = grounder.ground(hits, "bright spots")
        grounder.close()
        assert closed == [] and len(made) == 1 and run.backend is made[0]
        assert first.checked == 4 and again.cached == 4 and again.checked == 10  # the run's cache is still open
        with pytest.raises(UsageError, match="ready Run"):
            ground(hits, "bright spots", run, cache=False)
        with pytest.raises(UsageError, match="ready Run"):
            Grounder(run, window=2)
    assert closed == made  # closed by whoever made it


def test_a_backend_named_for_grounding_does_not_take_the_collections_model(pixels_world, monkeypatch):
    from molmo_rag.testing import fake_backend

    db, truth, made, closed = pixels_world
    fake_backend.register("fake", monkeypatch)
    grounded = ground(pipeline.search("bright spots", db=db), "bright spots", backend="fake", cache=False)
    assert grounded.backend == "fake" and grounded.model == "pixel-stats-1" and made[0].name == "fake"
    with pytest.raises(UsageError, match="backend=NAME"):
        ground(pipeline.search("bright spots", db=db), "bright spots", "pixels")  # type: ignore[arg-type]


def test_search_grounds_its_own_hits(pixels_world):
    db, truth, made, closed = pixels_world
    backend = FakeBackend()
    hits = pipeline.search(
        "at least 2 bright spots", db=db, count_words=True, ground=RunOptions(backend=backend, cache=False), ground_top=2
    )
    assert isinstance(hits, GroundedHits) and hits.backend == "fake" and backend.calls == 2 and made == []
    assert hits.count_query is not None and hits.count_query.where == ["count.bright_spots>=2"]
    assert hits.made_with == {"backend": "pixels", "model": "pixels-v2"} and hits.target == "spots"
    assert sorted(truth[h.source] for h in hits) == [2, 3, 4]  # the filter read from the words
    assert [h.grounded for h in hits] == [1.0, 1.0, None]  # ground_top=2: the third follows unchecked

    plain = pipeline.search("bright spots", db=db, ground=True)  # the backend that made the collection
    assert isinstance(plain, GroundedHits) and plain.backend == "pixels" and plain.model == "pixels-v2" and len(made) == 1 and closed == made
    flags = [truth[h.source] > 0 for h in plain]
    assert flags == sorted(flags, reverse=True) and plain.count_query is None
    assert type(pipeline.search("bright spots", db=db)) is pipeline.Hits  # no ground: no backend
    with pytest.raises(UsageError, match="at least 1"):
        pipeline.search("bright spots", db=db, ground=True, ground_top=0)


def test_ground_and_its_twin_share_one_signature():
    import inspect

    assert inspect.signature(ground).parameters == inspect.signature(aground).parameters
    assert ground.__name__ == "ground" and "run" in inspect.signature(ground).parameters


def test_a_hit_is_checked_on_its_own_picture_before_its_source(world, tmp_path):
    db, truth, cache = world
    spotted = next(s for s, n in truth.items() if n > 0)
    plain = next(s for s, n in truth.items() if n == 0)
    from molmo_rag.index.store import Hit

    elsewhere = str(tmp_path / "report.pdf")  # a source that is no picture, and not even there
    by_path = Hit.from_payload({"source": elsewhere, "kind": "image"}, score=0.1, id="a", picture=spotted)
    by_bytes = Hit.from_payload({"source": elsewhere}, score=0.2, id="b", picture=open(spotted, "rb").read())
    by_metadata = Hit.from_payload({"source": plain, "kind": "image", "image_path": spotted}, score=0.3, id="c")
    grounded = ground([by_path, by_bytes, by_metadata], "bright spots", backend=FakeBackend(), top=3, cache=False)
    assert not grounded.failures and grounded.checked == 3
    assert [h.grounded for h in grounded] == [1.0, 1.0, 1.0]  # the spotted picture, each time, not the plain source
    assert all(h.evidence["count"] == truth[spotted] for h in grounded)
    assert {h.source for h in grounded} == {elsewhere, plain}  # each hit still names its own source


def test_a_text_hit_is_passed_through_unchecked(world):
    from molmo_rag.grounding import NO_PICTURE
    from molmo_rag.index.store import Hit

    text = Hit.from_payload({"source": "notes.txt"}, score=0.9, id="t", text="a note about bright spots")
    backend = FakeBackend()
    grounded = ground([text], "bright spots", backend=backend, top=5, cache=False)
    assert backend.calls == 0 and grounded.checked == 0 and not grounded.failures
    assert grounded[0].grounded is None and grounded[0].evidence["skipped"] == NO_PICTURE
    assert grounded[0].score == 0.9
