"""Grounded re-ranking on a world whose right answers are known: dark pictures with bright
spots (what the query names) and bright pictures without any, whose captions the text
search prefers. FakeBackend counts bright spots from the pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import _pixel_backend
from molmo_rag import pipeline
from molmo_rag.cli import main
from molmo_rag.grounding import draw, ground, grounding_target
from molmo_rag.index.count_words import split_counts
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
    grounded = ground(hits, "bright spots", backend=FakeBackend(), top=3, cache=False)
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


def test_a_hit_whose_media_is_gone_is_a_failure_and_ranks_with_the_misses(world):
    db, truth, cache = world
    hits = pipeline.search("bright spots", db=db, top=10)
    gone = next(h for h in hits if truth[h.source] > 0)
    import os

    os.unlink(gone.source)
    grounded = ground(hits, "bright spots", backend=FakeBackend(), top=10, cache=False)
    assert [f.source for f in grounded.failures] == [gone.source]
    assert next(h for h in grounded if h.source == gone.source).grounded == 0.0


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
