import pytest

from molmo_rag.errors import ConfigurationError, UsageError
from molmo_rag.index.filters import (
    Condition,
    SearchFilter,
    build_filter,
    label_key,
    normalize_kind,
    parse_where,
    source_prefixes,
)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("count.person>=2", [Condition("counts.person", ">=", 2)]),
        ("counts.person > 2", [Condition("counts.person", ">", 2)]),
        ("count.Traffic Lights<=1", [Condition("counts.traffic_lights", "<=", 1)]),
        ("count.car<3", [Condition("counts.car", "<", 3)]),
        ("count.car=0", [Condition("counts.car", "==", 0)]),
        ("count.car==0", [Condition("counts.car", "==", 0)]),
        ("count.dog!=1", [Condition("counts.dog", "!=", 1)]),
        ("start>=12.5", [Condition("start", ">=", 12.5)]),
        ("slide == 3", [Condition("slide", "==", 3)]),
        ("kind==video", [Condition("kind", "==", "video_segment")]),
        ("model != 'allenai/Molmo2-4B'", [Condition("model", "!=", "allenai/Molmo2-4B")]),
        (
            "count.person>=2, count.car<1 and slide>1",
            [Condition("counts.person", ">=", 2), Condition("counts.car", "<", 1), Condition("slide", ">", 1)],
        ),
    ],
)
def test_parse_where(expr, expected):
    assert parse_where(expr) == expected


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("", "empty"),
        ("count.person", "expected FIELD OP VALUE"),
        ("count.person>=two", "not a number"),
        ("colour==red", "unknown field"),
        ("kind>=image", "use == or !="),
        ("kind==sculpture", "unknown kind"),
        ("count.##>=1", "no letters or digits"),
        ("count.person>=2,", "expected FIELD OP VALUE"),
    ],
)
def test_bad_where_is_a_clear_configuration_error(expr, fragment):
    with pytest.raises(ConfigurationError) as info:
        parse_where(expr)
    assert fragment in str(info.value)


def test_label_key_and_kinds():
    assert label_key("  People ") == "people"
    assert label_key("traffic-light") == "traffic_light"
    assert normalize_kind("VIDEO") == "video_segment"
    assert normalize_kind("slides") == "slide"


def test_source_prefixes():
    assert source_prefixes("/data/photos/a.jpg") == ["/data", "/data/photos"]
    assert source_prefixes("photos/a.jpg") == ["photos"]
    assert source_prefixes("https://x.org/m/v.mp4") == ["https://x.org", "https://x.org/m"]
    assert source_prefixes("a.jpg") == []


# -- the built filter, run against real embedded Qdrant ------------------------------------

ITEMS = [
    {"id": 1, "kind": "image", "source": "/d/photos/a.jpg", "counts": {"person": 3, "car": 0}},
    {"id": 2, "kind": "image", "source": "/d/photos/b.jpg", "counts": {"person": 1}},
    {"id": 3, "kind": "image", "source": "/d/other/c.jpg", "counts": {}},
    {"id": 4, "kind": "slide", "source": "/d/deck.pptx", "slide": 2, "counts": {"person": 2}},
    {"id": 5, "kind": "video_segment", "source": "/d/v.mp4", "start": 0.0, "end": 10.0, "counts": {"person": 2}},
    {"id": 6, "kind": "video_segment", "source": "/d/v.mp4", "start": 10.0, "end": 20.0, "counts": {"person": 0}},
    {"id": 7, "kind": "video_segment", "source": "/d/v.mp4", "start": 20.0, "end": 25.0, "counts": {}},
]


@pytest.fixture(scope="module")
def client():
    from qdrant_client import QdrantClient, models

    c = QdrantClient(":memory:")
    c.create_collection("t", vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.COSINE)})
    c.upsert(
        "t",
        [
            models.PointStruct(
                id=p["id"], vector={"v": [1.0, 0.5]}, payload={**p, "source_prefixes": source_prefixes(p["source"])}
            )
            for p in ITEMS
        ],
    )
    yield c
    c.close()


def matching(client, **kw) -> set[int]:
    flt = build_filter(SearchFilter(**kw))
    points, _ = client.scroll("t", scroll_filter=flt, limit=100)
    return {p.id for p in points}


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, {1, 2, 3, 4, 5, 6, 7}),
        ({"where": ["count.person>=2"]}, {1, 4, 5}),
        ({"where": ["count.person>2"]}, {1}),
        ({"where": ["count.person<2"]}, {2, 6}),
        ({"where": ["count.person<=1"]}, {2, 6}),
        ({"where": ["count.person==2"]}, {4, 5}),
        ({"where": ["count.person!=2"]}, {1, 2, 6}),  # never-counted items are not "!= 2"
        ({"where": ["count.car==0"]}, {1}),
        ({"where": ["count.person>=1", "count.person<3"]}, {2, 4, 5}),
        ({"where": ["count.person>=1,kind==image"]}, {1, 2}),
        ({"where": ["kind!=image"]}, {4, 5, 6, 7}),
        ({"where": ["slide==2"]}, {4}),
        ({"kind": ["video"]}, {5, 6, 7}),
        ({"kind": ["image", "slide"]}, {1, 2, 3, 4}),
        ({"kind": ["image,slide"]}, {1, 2, 3, 4}),  # comma-separated, like --count
        ({"kind": ["video_segment"]}, {5, 6, 7}),
        ({"where": ["source==/d/photos/a.jpg"]}, {1}),
        ({"source": "/d/photos"}, {1, 2}),
        ({"source": "/d/photos/"}, {1, 2}),
        ({"source": "/d/photos/a.jpg"}, {1}),
        ({"source": "/d/pho"}, set()),  # prefixes are whole path components
        ({"source": "/d"}, {1, 2, 3, 4, 5, 6, 7}),
        ({"after": 10.0}, {6, 7}),
        ({"before": 10.0}, {5}),
        ({"after": 5.0, "before": 12.0}, {5, 6}),
        ({"after": 12.0, "before": 22.0, "where": ["count.person>=0"]}, {6}),
    ],
)
def test_filter_returns_exactly_the_matching_items(client, kw, expected):
    assert matching(client, **kw) == expected


def test_empty_filter_is_none_and_reversed_range_is_refused():
    assert build_filter(SearchFilter()) is None
    with pytest.raises(ConfigurationError, match="later than"):
        build_filter(SearchFilter(after=10, before=5))


def test_a_relative_source_is_read_from_the_working_directory(client, monkeypatch):
    # the index stores local paths absolute; "d/photos" typed in / means /d/photos
    monkeypatch.chdir("/")
    assert matching(client, source="d/photos") == {1, 2}
    assert matching(client, where=["source==d/photos/a.jpg"]) == {1}
    assert matching(client, where=["source!=d/photos/a.jpg", "kind==image"]) == {2, 3}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"kind": "image"}, {1, 2, 3}),
        ({"counts.person": {"$gte": 2}}, {1, 4, 5}),
        ({"count.person": {"$gt": 1, "$lt": 3}}, {4, 5}),
        ({"kind": {"$in": ["slide", "video_segment"]}, "counts.person": {"$eq": 2}}, {4, 5}),
        ({"kind": {"$nin": ["image"]}}, {4, 5, 6, 7}),
        ({"kind": {"$ne": "image"}}, {4, 5, 6, 7}),
        ({"$or": [{"slide": 2}, {"start": {"$gte": 20}}]}, {4, 7}),
        ({"$and": [{"kind": "video_segment"}, {"end": {"$lte": 20}}]}, {5, 6}),
    ],
)
def test_a_langchain_style_dict_filter_returns_exactly_the_matching_items(client, spec, expected):
    from molmo_rag.index.conditions import to_qdrant_filter
    from molmo_rag.index.filters import metadata_filter

    points, _ = client.scroll("t", scroll_filter=to_qdrant_filter(metadata_filter(spec)), limit=100)
    assert {p.id for p in points} == expected


@pytest.mark.parametrize(
    "spec, fragment",
    [({"a": {"$near": 1}}, "unknown operator"), ({"$not": [{"a": 1}]}, "unknown operator"), ({"a": {"$in": []}}, "non-empty list"),
     ({"a": {"$gt": "x"}}, "not a number"), ({"a": [1, 2]}, "not a string"), ({"$or": {"a": 1}}, "non-empty list")],
)
def test_a_bad_dict_filter_says_what_is_wrong(spec, fragment):
    from molmo_rag.index.filters import metadata_filter

    with pytest.raises(UsageError, match=fragment):
        metadata_filter(spec)
