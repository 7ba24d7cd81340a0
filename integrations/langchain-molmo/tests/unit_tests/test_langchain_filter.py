"""molmo_filter: the core's filter language, keys under LangChain's ``metadata.``."""

from __future__ import annotations

import pytest

from langchain_molmo import molmo_filter


def keys(condition) -> list[str]:
    from qdrant_client import models

    if condition is None:
        return []
    if isinstance(condition, list):
        return [k for c in condition for k in keys(c)]
    if isinstance(condition, models.Filter):
        return keys(condition.must) + keys(condition.should) + keys(condition.must_not)
    return [condition.key]


def test_keys_move_under_metadata():
    from molmo_rag.index.filters import SearchFilter, build_filter
    from qdrant_client import models

    options = {
        "kind": ["image", "video"],
        "where": ["count.person>=2", "title!=Intro"],
        "source": "/data/media",
        "after": 5,
        "before": 60,
    }
    flt = molmo_filter(**options)
    assert isinstance(flt, models.Filter)
    assert sorted(keys(flt)) == sorted(
        [
            "metadata.kind",
            "metadata.counts.person",
            "metadata.title",
            "metadata.source",
            "source_prefixes",
            "metadata.end",
            "metadata.start",
        ]
    )
    root = build_filter(SearchFilter(**options))
    assert molmo_filter(**options, key_prefix="") == root
    assert [k.removeprefix("metadata.") for k in keys(flt)] == keys(root)
    kind = flt.must[0]
    assert kind.key == "metadata.kind" and sorted(kind.match.any) == ["image", "video_segment"]


def test_single_values_and_nothing():
    assert molmo_filter() is None
    flt = molmo_filter(kind="slide", where="slide<=2, count.people == 0")
    assert keys(flt) == ["metadata.kind", "metadata.slide", "metadata.counts.people"]
    assert flt.must[1].range.lte == 2 and flt.must[2].range.gte == 0 and flt.must[2].range.lte == 0


def test_bad_conditions_fail_like_the_cli():
    from molmo_rag.errors import UsageError

    with pytest.raises(UsageError, match="unknown field"):
        molmo_filter(where="colour==red")
    with pytest.raises(UsageError, match="kind"):
        molmo_filter(kind="audio")
    with pytest.raises(UsageError, match="after"):
        molmo_filter(after=10, before=5)
