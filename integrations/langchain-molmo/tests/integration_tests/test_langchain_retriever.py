"""MolmoRetriever over a collection molmo-rag wrote: every filter returns exactly the
points whose payload passes it; Documents carry the embedded text, payload and point id."""

from __future__ import annotations

import pytest

from langchain_molmo import MolmoRetriever

QUERY = "a bright picture"


def expected(points: dict, test) -> set[str]:
    return {pid for pid, payload in points.items() if test(payload)}


def person(payload: dict) -> int | None:
    return payload["counts"].get("person")


CASES = {
    "kind image": ({"kind": "image"}, lambda p: p["kind"] == "image"),
    "kinds slide+video": ({"kind": ["slide", "video"]}, lambda p: p["kind"] in ("slide", "video_segment")),
    "count>=2": ({"where": "count.person>=2"}, lambda p: person(p) >= 2),
    "count==1": ({"where": "count.person==1"}, lambda p: person(p) == 1),
    "count!=1 and kind": (
        {"where": ["count.person!=1"], "kind": "image"},
        lambda p: p["kind"] == "image" and person(p) != 1,
    ),
    "count<2, slide<=1": ({"where": "count.person<2, slide<=1"}, lambda p: person(p) < 2 and p.get("slide", 99) <= 1),
    "title": ({"where": "title==Team"}, lambda p: p.get("title") == "Team"),
    "folder": ({"source": "PHOTOS"}, lambda p: "/photos/" in p["source"]),
    "file": ({"source": "DECK"}, lambda p: p["source"].endswith("talk.pdf")),
    "after": ({"after": 4.5}, lambda p: p.get("end") is not None and p["end"] > 4.5),
    "before": ({"before": 3}, lambda p: p.get("start") is not None and p["start"] < 3),
    "video with people": (
        {"kind": "video", "where": "count.person>=2"},
        lambda p: p["kind"] == "video_segment" and person(p) >= 2,
    ),
}


def resolve(options: dict, library) -> dict:
    paths = {"PHOTOS": str(library / "photos"), "DECK": str(library / "decks" / "talk.pdf")}
    return {k: paths.get(v, v) if isinstance(v, str) else v for k, v in options.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_filters_are_exact(case, lc_index, lc_points, lc_library):
    options, test = CASES[case]
    want = expected(lc_points, test)
    assert 0 < len(want) < len(lc_points), f"{case}: the fixture does not tell this filter apart"
    docs = MolmoRetriever(db=lc_index, k=100, **resolve(options, lc_library)).invoke(QUERY)
    assert {d.id for d in docs} == want


def test_documents_carry_text_payload_and_score(lc_index, lc_points):
    from molmo_rag.index.records import public_keys

    docs = MolmoRetriever(db=str(lc_index), k=3).invoke("Quarterly results revenue")
    assert len(docs) == 3
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert docs[0].metadata["title"] == "Quarterly results"
    for doc in docs:
        stored = lc_points[doc.id]
        assert doc.page_content == stored["text"]
        assert {k: v for k, v in doc.metadata.items() if k != "score"} == {k: stored[k] for k in public_keys(stored)}
        assert doc.metadata["count_person"] == doc.metadata["counts"]["person"]  # the flat key beside the nested one


async def test_async_and_per_call_overrides(lc_index, lc_points):
    retriever = MolmoRetriever(db=lc_index, k=100, kind="image")
    images = expected(lc_points, lambda p: p["kind"] == "image")
    assert {d.id for d in await retriever.ainvoke(QUERY)} == images
    slides = await retriever.ainvoke(QUERY, kind="slide", k=1)
    assert len(slides) == 1 and slides[0].metadata["kind"] == "slide"
    counted = retriever.invoke(QUERY, where="count.person>=2")
    assert {d.id for d in counted} == expected(lc_points, lambda p: p["kind"] == "image" and person(p) >= 2)
    with pytest.raises(TypeError, match="colour"):
        retriever.invoke(QUERY, colour="red")


def test_an_open_index_and_errors(lc_index, tmp_path):
    from molmo_rag import pipeline
    from molmo_rag.errors import ConfigurationError, UsageError

    with pipeline.open_index(lc_index) as store:
        retriever = MolmoRetriever(db=store, k=2, kind="video")
        assert [d.metadata["kind"] for d in retriever.invoke("a rocket")] == ["video_segment"] * 2
        assert [d.metadata["kind"] for d in retriever.invoke("a rocket")] == ["video_segment"] * 2  # still open
    with pytest.raises(UsageError, match="unknown field"):
        MolmoRetriever(db=lc_index, where="colour==red")
    with pytest.raises(ValueError, match="not both"):
        MolmoRetriever(db=lc_index, url="http://localhost:6333")
    with pytest.raises(ConfigurationError, match="no index"):
        MolmoRetriever(db=tmp_path / "nothing").invoke(QUERY)
