"""Counts in words: deterministic parsing into --where conditions, and search that returns
exactly the pictures satisfying the count (FakeBackend counts bright column bands)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from molmo_rag import pipeline
from molmo_rag.cli import main
from molmo_rag.index.count_words import singular, split_counts
from molmo_rag.media.items import MediaItem
from molmo_rag.testing import FakeBackend

LABELS = ["person", "car", "traffic_lights", "dog", "bright_spots"]


@pytest.mark.parametrize(
    ("query", "text", "where"),
    [
        ("at least 3 people on a stage", "on a stage", ["count.person>=3"]),
        ("3 or more people", "", ["count.person>=3"]),
        ("4+ cars in a car park", "in a car park", ["count.car>=4"]),
        ("more than two dogs", "", ["count.dog>2"]),
        ("at most 1 car", "", ["count.car<=1"]),
        ("fewer than three people and no dogs", "", ["count.person<3", "count.dog==0"]),
        ("exactly two dogs in a park", "in a park", ["count.dog==2"]),
        ("a street with no cars", "a street", ["count.car==0"]),
        ("a single car at night", "at night", ["count.car==1"]),
        ("a dozen cars", "", ["count.car==12"]),
        ("3 traffic lights at a crossing", "at a crossing", ["count.traffic_lights==3"]),
        ("one person", "", ["count.person==1"]),
        ("Two People", "", ["count.person==2"]),
    ],
)
def test_count_phrases_become_conditions(query, text, where):
    read = split_counts(query, LABELS)
    assert (read.text, read.where) == (text, where)


@pytest.mark.parametrize(
    "query",
    [
        "two charts on a slide",  # 'chart' is not counted in the collection
        "at least a few people",  # no number
        "the 3 musketeers",  # not a counted label
        "people at a party",  # a label but no count phrase
        "1990s cars",  # not a number followed by a label
    ],
)
def test_what_cannot_be_mapped_stays_in_the_text(query):
    read = split_counts(query, LABELS)
    assert read.conditions == [] and read.text == query


def test_singular_forms():
    assert [singular(w) for w in ["people", "cars", "boxes", "puppies", "bus", "glasses", "traffic lights"]] == [
        "person", "car", "box", "puppy", "bus", "glass", "traffic light"
    ]


def _picture(bands: int, colour=(30, 60, 200)) -> Image.Image:
    a = np.zeros((40, 120, 3), np.uint8)
    a[:] = colour
    for k in range(bands):
        a[5:12, 4 + 12 * k : 9 + 12 * k] = 255
    return Image.fromarray(a)


@pytest.fixture
def world(tmp_path):
    """Pictures with 0..5 bright spots each, counted at index time."""
    items = [MediaItem.from_pil(_picture(n), source=f"/world/spots-{n}.png") for n in range(6)]
    db = tmp_path / "db"
    pipeline.index(items, backend=FakeBackend(), db=db, cache=False, count=["bright spots"])
    return db


def _spots(hits) -> list[int]:
    return sorted(int(h.source.rsplit("-", 1)[1].split(".")[0]) for h in hits)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("at least 3 bright spots", [3, 4, 5]),
        ("more than 3 bright spots", [4, 5]),
        ("exactly two bright spots", [2]),
        ("a single bright spot", [1]),
        ("no bright spots", [0]),
        ("fewer than 2 bright spots", [0, 1]),
    ],
)
def test_search_returns_exactly_the_pictures_that_satisfy_the_count(world, query, expected):
    hits = pipeline.search(query, db=world, top=20, count_words=True)
    assert _spots(hits) == expected and hits.count_query.conditions
    assert len(pipeline.search(query, db=world, top=20)) == 6  # off: words only


def test_labels_and_the_cli_say_what_they_read(world, capsys):
    assert pipeline.labels(db=world) == ["bright_spots"]
    assert main(["labels", "--db", str(world)]) == 0
    assert capsys.readouterr().out.split() == ["bright_spots"]
    assert main(["search", "a picture with at least 4 bright spots", "--db", str(world), "--top", "20"]) == 0
    out, err = capsys.readouterr()
    assert "read 'at least 4 bright spots' as count.bright_spots>=4; searching for 'a picture'" in err
    assert sorted(line.split()[2].rsplit("-", 1)[1] for line in out.splitlines()[1:]) == ["4.png", "5.png"]
    assert main(["search", "at least 4 bright spots", "--db", str(world), "--literal", "--top", "20"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 7  # header + all six
