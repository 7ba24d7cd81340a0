"""The filter tree search builds: the shapes of ``qdrant_client.models`` (same class and
field names), as plain frozen dataclasses, so a search over Qdrant Edge never imports
qdrant-client (about 0.9 s of a ``molmo-rag search``). Each storage translates the tree
into its engine's own filter; :func:`to_qdrant_filter` gives qdrant-client's, for a
server, local mode and the frameworks' stock ``QdrantVectorStore`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Filter", "FieldCondition", "MatchAny", "MatchValue", "MatchExcept", "Range", "to_qdrant_filter"]


@dataclass(frozen=True)
class MatchAny:
    any: list


@dataclass(frozen=True)
class MatchValue:
    value: str | int | bool


@dataclass(frozen=True)
class MatchExcept:
    except_: list


@dataclass(frozen=True)
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class FieldCondition:
    key: str
    match: MatchAny | MatchValue | MatchExcept | None = None
    range: Range | None = None


@dataclass(frozen=True)
class Filter:
    must: list[Condition] | None = None
    should: list[Condition] | None = None
    must_not: list[Condition] | None = None


Condition = Union[FieldCondition, Filter]


def to_qdrant_filter(flt: Any) -> Any:
    """``qdrant_client.models.Filter`` for a tree of this module (one of qdrant-client's
    own, or None, is returned as it is)."""
    if not isinstance(flt, Filter):
        return flt
    from qdrant_client import models

    def condition(c: Any) -> Any:
        if isinstance(c, Filter):
            return to_qdrant_filter(c)
        if not isinstance(c, FieldCondition):
            return c  # already qdrant-client's
        match = None
        if isinstance(c.match, MatchAny):
            match = models.MatchAny(any=list(c.match.any))
        elif isinstance(c.match, MatchValue):
            match = models.MatchValue(value=c.match.value)
        elif isinstance(c.match, MatchExcept):
            match = models.MatchExcept(**{"except": list(c.match.except_)})
        rng = models.Range(gt=c.range.gt, gte=c.range.gte, lt=c.range.lt, lte=c.range.lte) if c.range else None
        return models.FieldCondition(key=c.key, match=match, range=rng)

    def branch(conditions: list | None) -> list | None:
        return [condition(c) for c in conditions] if conditions else None

    return models.Filter(must=branch(flt.must), should=branch(flt.should), must_not=branch(flt.must_not))
