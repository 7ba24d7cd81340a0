"""Search filters: ``--where`` parsing and the Qdrant filter they build.

``--where`` takes conditions ``FIELD OP VALUE`` with OP one of ``>= > <= < == !=``;
several conditions are joined with ``,`` or ``and`` (and repeated ``--where`` options),
and all must hold. Fields:

* ``count.LABEL`` (or ``counts.LABEL``, or the flat metadata key ``count_LABEL``): the
  count from ``--count LABEL`` at index time; items never counted for LABEL do not match
  any condition on it;
* ``slide``, ``start``, ``end``: numbers;
* ``kind``, ``source``, ``backend``, ``model``, ``title``: text, with ``==`` or ``!=``
  (quotes optional).

Parsing is pure (:func:`parse_where`); :func:`filter_of` turns a :class:`SearchFilter` into
the filter tree every storage translates (:mod:`molmo_rag.index.conditions`), and
:func:`build_filter` into a ``qdrant_client.models.Filter`` for the frameworks' stock classes.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..errors import UsageError
from ..media.door import is_local_path
from ..options_base import Options

if TYPE_CHECKING:  # pragma: no cover
    from .conditions import Filter

__all__ = [
    "Condition",
    "SearchFilter",
    "parse_where",
    "label_key",
    "LABEL_RULE",
    "build_filter",
    "filter_of",
    "either_layout",
    "metadata_filter",
    "normalize_kind",
    "KINDS",
]

Op = Literal[">=", ">", "<=", "<", "==", "!="]
KINDS = ("image", "slide", "video_segment")
_KIND_ALIASES = {"video": "video_segment", "segment": "video_segment", "images": "image", "slides": "slide"}
_NUMERIC_FIELDS = {"slide", "start", "end"}
_TEXT_FIELDS = {"kind", "source", "backend", "model", "title"}
_CONDITION = re.compile(r"^\s*([A-Za-z_][^<>=!]*?)\s*(>=|<=|==|!=|=|>|<)\s*(.+?)\s*$")
_SEPARATOR = re.compile(r"\s*,\s*|\s+and\s+", re.IGNORECASE)
_NOT_ALNUM = re.compile(r"[\W_]+")
_HELP = "expected FIELD OP VALUE, e.g. 'count.person>=2' (ops: >= > <= < == !=; fields: count.LABEL (or count_LABEL), slide, start, end, kind, source, backend, model, title)"


LABEL_RULE = "a count label is a word or a few, in letters or digits of any script (e.g. 'person', 'traffic light', '人')"


def label_key(label: str) -> str:
    """The payload key of a count label: NFKC-normalised, lower case, runs of characters
    that are not letters or digits (of any script: ``str.isalnum``) -> ``_``.

    ``"Traffic lights"`` -> ``"traffic_lights"``, ``"人"`` -> ``"人"``; used when indexing
    and when filtering, so both sides agree (and Qdrant reads such a key unquoted).
    """
    key = _NOT_ALNUM.sub("_", unicodedata.normalize("NFKC", label).strip().lower()).strip("_")
    if not key:
        raise UsageError(f"count label {label!r} has no letters or digits: {LABEL_RULE}")
    return key


def normalize_kind(kind: str) -> str:
    value = _KIND_ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if value not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of: image, slide, video", option="kind")
    return value


@dataclass(frozen=True)
class Condition:
    """One parsed condition; ``field`` is the payload key (``counts.person``)."""

    field: str
    op: Op
    value: float | int | str


def _number(text: str, expr: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"bad condition {expr!r}: {text!r} is not a number; {_HELP}", option="where") from None
    return int(value) if value.is_integer() else value


def parse_where(expr: str) -> list[Condition]:
    """Parse one ``--where`` string into conditions (all must hold)."""
    if not expr or not expr.strip():
        raise UsageError(f"empty condition; {_HELP}", option="where")
    conditions: list[Condition] = []
    for part in _SEPARATOR.split(expr.strip()):
        match = _CONDITION.match(part)
        if not match:
            raise UsageError(f"bad condition {part!r}: {_HELP}", option="where")
        name, op, raw = match.groups()
        op = "==" if op == "=" else op
        lowered = name.lower()
        if lowered.startswith(("count.", "counts.", "count_")):
            try:
                key = label_key(lowered[6:] if lowered.startswith("count_") else lowered.split(".", 1)[1])
            except UsageError as exc:
                raise UsageError(f"bad condition {part!r}: {exc}", option="where") from None
            conditions.append(Condition(f"counts.{key}", op, _number(raw, part)))  # type: ignore[arg-type]
        elif lowered in _NUMERIC_FIELDS:
            conditions.append(Condition(lowered, op, _number(raw, part)))  # type: ignore[arg-type]
        elif lowered in _TEXT_FIELDS:
            if op not in ("==", "!="):
                raise UsageError(f"bad condition {part!r}: {lowered} is text, use == or !=", option="where")
            value = raw.strip().strip("'\"")
            if lowered == "kind":
                value = normalize_kind(value)
            conditions.append(Condition(lowered, op, value))  # type: ignore[arg-type]
        else:
            raise UsageError(f"bad condition {part!r}: unknown field {name!r}; {_HELP}", option="where")
    return conditions


class SearchFilter(Options):
    """What a search is restricted to; every field optional, all given ones must hold."""

    what: ClassVar[str] = "search filter"

    kind: list[str] | None = Field(
        None, description="Media kinds to keep: image, slide, video (video_segment); each entry may list several, comma-separated."
    )
    where: list[str] = Field(default_factory=list, description="Conditions such as 'count.person>=2'.")
    source: str | None = Field(
        None, description="A source path or URL: exact match, or a folder / URL prefix (whole path components)."
    )
    after: float | None = Field(None, description="Keep video segments that end after this time (seconds).")
    before: float | None = Field(None, description="Keep video segments that start before this time (seconds).")

    def conditions(self) -> list[Condition]:
        return [c for expr in self.where for c in parse_where(expr)]

    def is_empty(self) -> bool:
        return not (self.kind or self.where or self.source or self.after is not None or self.before is not None)


def source_prefixes(source: str) -> list[str]:
    """Every ancestor of a path or URL (whole components), for prefix matching.

    ``/data/photos/a.jpg`` -> ``["/data", "/data/photos"]``;
    ``https://x.org/m/v.mp4`` -> ``["https://x.org", "https://x.org/m"]``.
    """
    head, sep, rest = source.partition("://")
    if not sep:
        head, rest = "", source
    parts = rest.split("/")
    out: list[str] = []
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix in ("", "."):
            continue
        out.append(f"{head}://{prefix}" if sep else prefix)
    return out


def _source_candidates(source: str) -> list[str]:
    value = source.rstrip("/") or source
    candidates = [value]
    if is_local_path(value):
        # the index stores local paths absolute; a relative one is read from the working dir
        candidates.append(os.path.normpath(value))
        candidates.append(os.path.abspath(value))
    return list(dict.fromkeys(candidates))


def build_filter(search: SearchFilter, key_prefix: str = "") -> Any:
    """The ``qdrant_client.models.Filter`` for a :class:`SearchFilter` (None when empty): for
    qdrant-client and the frameworks' stock ``QdrantVectorStore`` classes. The same
    conditions as :func:`filter_of`, which the index's own search uses."""
    from .conditions import to_qdrant_filter

    return to_qdrant_filter(filter_of(search, key_prefix))


def filter_of(search: SearchFilter, key_prefix: str = "") -> "Filter | None":
    """The filter tree (:mod:`molmo_rag.index.conditions`) of a :class:`SearchFilter`, None
    when it is empty; a bad condition is a :class:`UsageError`.

    ``key_prefix``: where the metadata sits in the payload: ``""`` for molmo-rag's own
    points (keys at the root, the layout the payload indexes serve), ``"metadata."`` for
    points LangChain's QdrantVectorStore wrote. ``source_prefixes`` (folder matching) stays
    at the root under any prefix: only molmo-rag writes it, so on points written elsewhere
    ``source`` matches whole files and URLs.
    """
    from .conditions import FieldCondition, Filter, MatchAny, Range

    def key(name: str) -> str:
        return key_prefix + name

    must: list[Any] = []
    must_not: list[Any] = []
    if search.kind:
        kinds = sorted({normalize_kind(k) for value in search.kind for k in value.split(",") if k.strip()})
        must.append(FieldCondition(key=key("kind"), match=MatchAny(any=kinds)))
    for cond in search.conditions():
        if isinstance(cond.value, str):
            target = must if cond.op == "==" else must_not
            values = _source_candidates(cond.value) if cond.field == "source" else [cond.value]
            target.append(FieldCondition(key=key(cond.field), match=MatchAny(any=values)))
            continue
        v = cond.value
        if cond.op == "!=":
            # "!= v" also requires the field to exist: an item never counted is not "not 2".
            must.append(
                Filter(should=[FieldCondition(key=key(cond.field), range=Range(lt=v)), FieldCondition(key=key(cond.field), range=Range(gt=v))])
            )
            continue
        rng = {
            ">=": Range(gte=v),
            ">": Range(gt=v),
            "<=": Range(lte=v),
            "<": Range(lt=v),
            "==": Range(gte=v, lte=v),
        }[cond.op]
        must.append(FieldCondition(key=key(cond.field), range=rng))
    if search.source:
        candidates = _source_candidates(search.source)
        must.append(
            Filter(
                should=[
                    FieldCondition(key=key("source"), match=MatchAny(any=candidates)),
                    FieldCondition(key="source_prefixes", match=MatchAny(any=candidates)),
                ]
            )
        )
    if search.after is not None:
        must.append(FieldCondition(key=key("end"), range=Range(gt=search.after)))
    if search.before is not None:
        must.append(FieldCondition(key=key("start"), range=Range(lt=search.before)))
    if search.after is not None and search.before is not None and search.after > search.before:
        raise UsageError(f"after={search.after} is later than before={search.before}: no segment can match", option="after")
    if not must and not must_not:
        return None
    return Filter(must=must or None, must_not=must_not or None)


def either_layout(search: SearchFilter) -> "Filter | None":
    """A filter that holds on molmo-rag's points (metadata at the payload root) and on points
    written by LangChain's QdrantVectorStore (metadata under ``metadata``): each branch also
    asserts its layout, so a condition can never pass because its keys are absent. Slower
    than :func:`filter_of` (the indexes serve one branch only): search uses it only when
    some point of the collection has no root metadata."""
    from .conditions import FieldCondition, Filter, MatchAny

    branches = []
    for prefix in ("", "metadata."):
        own = filter_of(search, key_prefix=prefix)
        if own is None:
            return None
        branches.append(Filter(must=[FieldCondition(key=f"{prefix}kind", match=MatchAny(any=list(KINDS))), own]))
    return Filter(should=branches)


_DICT_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"}


def metadata_filter(spec: dict, key_prefix: str = "") -> "Filter | None":
    """The filter tree of a metadata filter in the dict form LangChain's vector stores take
    (Chroma's and PGVector's operators): ``{"kind": "slide", "count_person": {"$gte": 2},
    "source": {"$in": [...]}}``; keys joined by ``$and`` (also given explicitly), ``$or``
    of several such dicts; operators ``$eq $ne $gt $gte $lt $lte $in $nin``. Keys are the
    documents' metadata keys (``count.person`` is read as ``counts.person``); an
    unknown operator or a malformed value is a :class:`UsageError`."""
    from .conditions import FieldCondition, Filter, MatchAny, MatchExcept, MatchValue, Range

    if not spec:
        return None
    if not isinstance(spec, dict):
        raise UsageError(f"a metadata filter is a dict such as {{'count_person': {{'$gte': 2}}}}, not {type(spec).__name__}", option="filter")

    def key_of(name: str) -> str:
        if name.lower().startswith(("count.", "counts.")):
            name = f"counts.{label_key(name.split('.', 1)[1])}"
        return key_prefix + name

    def scalar(value: Any, where: str) -> Any:
        if isinstance(value, bool) or isinstance(value, (str, int)):
            return value
        raise UsageError(f"metadata filter {where}: {value!r} is not a string, an integer or a boolean", option="filter")

    def number(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"metadata filter {where}: {value!r} is not a number", option="filter")
        return value

    def field(name: str, value: Any) -> list[Any]:
        key = key_of(name)
        if not isinstance(value, dict):
            return [FieldCondition(key=key, match=MatchValue(value=scalar(value, name)))]
        out: list[Any] = []
        for op, operand in value.items():
            where = f"{name} {op}"
            if op not in _DICT_OPS:
                raise UsageError(f"metadata filter {where}: unknown operator (use one of {', '.join(sorted(_DICT_OPS))})", option="filter")
            if op == "$eq":
                out.append(FieldCondition(key=key, match=MatchValue(value=scalar(operand, where))))
            elif op == "$ne":
                out.append(Filter(must_not=[FieldCondition(key=key, match=MatchValue(value=scalar(operand, where)))]))
            elif op in ("$in", "$nin"):
                if not isinstance(operand, (list, tuple)) or not operand:
                    raise UsageError(f"metadata filter {where}: give a non-empty list", option="filter")
                values = [scalar(v, where) for v in operand]
                out.append(FieldCondition(key=key, match=MatchAny(any=values) if op == "$in" else MatchExcept(except_=values)))
            else:
                out.append(FieldCondition(key=key, range=Range(**{op[1:]: number(operand, where)})))
        return out

    def clause(part: dict) -> Filter:
        if not isinstance(part, dict) or not part:
            raise UsageError(f"metadata filter: {part!r} is not a non-empty dict", option="filter")
        must: list[Any] = []
        for name, value in part.items():
            if name in ("$and", "$or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise UsageError(f"metadata filter {name}: give a non-empty list of dicts", option="filter")
                branches = [clause(v) for v in value]
                if name == "$and":
                    must.extend(branches)
                else:
                    must.append(Filter(should=branches))
            elif name.startswith("$"):
                raise UsageError(f"metadata filter: unknown operator {name!r} (use $and or $or)", option="filter")
            else:
                must.extend(field(name, value))
        return Filter(must=must)

    return clause(spec)
