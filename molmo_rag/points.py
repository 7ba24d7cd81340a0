"""Parse the points and counts Molmo2 writes into its answers.

Forms handled (see AI2's Molmo2 sources):

* ``<points coords="1 1 460 588 2 504 740">cups</points>``: a single image; groups are
  ``PREFIX ID X Y ID X Y ...`` separated by ``;`` (older outputs: tab).
* several images: PREFIX is the 1-based image index (an integer).
* video: PREFIX is the timestamp in seconds printed with a decimal point (``3.0``).
* ``<tracks coords="...">`` for tracking (ids are persistent object ids).
* the older single point ``<point x="10.5" y="20.1" alt="cup">cup</point>`` and
  ``<points x1=".." y1=".." x2=".." y2=".." alt="..">..</points>`` with 0-100 coordinates.

X and Y in ``coords`` are integers on a 0-1000 scale; every returned point has ``x`` and
``y`` in 0..1. Malformed markup never raises: whatever is well-formed is returned.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

__all__ = ["Point", "parse_points", "parse_count", "strip_points"]


@dataclass(frozen=True)
class Point:
    """One point Molmo2 placed: ``x``, ``y`` in 0..1 (relative to width and height),
    ``image`` the 1-based image index (None for video), ``t`` the time in seconds (None
    for images), ``id`` the point or object id, ``label`` the text inside the tag."""

    x: float
    y: float
    image: int | None = None
    t: float | None = None
    id: int | None = None
    label: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_TAG = re.compile(
    r"<(?P<tag>points|point|tracks|track)\b(?P<attrs>[^>]*)>(?P<label>.*?)</(?P=tag)\s*>",
    re.IGNORECASE | re.DOTALL,
)
# An opening tag whose closing tag never came (truncated generation).
_OPEN_TAG = re.compile(r"<(?P<tag>points|point|tracks|track)\b(?P<attrs>[^>]*)>", re.IGNORECASE)
# Generation cut off inside the coords attribute itself.
_CUT_COORDS = re.compile(r"<(?:points|tracks)\b[^>]*?coords\s*=\s*[\"']?(?P<coords>[^\"'>]*)$", re.IGNORECASE)
_ATTR = re.compile(r"([A-Za-z_][\w-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+))")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for m in _ATTR.finditer(text):
        out[m.group(1).lower()] = next(g for g in m.group(2, 3, 4) if g is not None)
    return out


def _clip01(v: float) -> float | None:
    if v != v or v < 0 or v > 1.0005:  # NaN or out of range: not a point we trust
        return None
    return min(v, 1.0)


def _parse_coords(coords: str, label: str | None) -> list[Point]:
    points: list[Point] = []
    groups = [g for g in re.split(r"[;\t\n]", coords) if g.strip()]
    for group in groups:
        tokens = []
        for token in group.split():
            if not _NUMBER.match(token):
                break  # keep the well-formed triples before the damage
            tokens.append(token)
        if not tokens:
            continue
        prefix, rest = tokens[0], tokens[1:]
        if "." in prefix:
            image, t = None, float(prefix)
        else:
            image, t = int(prefix), None
        for i in range(0, len(rest) - len(rest) % 3, 3):
            pid, x, y = rest[i : i + 3]
            if "." in pid:
                continue
            px, py = _clip01(float(x) / 1000.0), _clip01(float(y) / 1000.0)
            if px is None or py is None:
                continue
            points.append(Point(x=px, y=py, image=image, t=t, id=int(pid), label=label))
    return points


def _parse_xy_attrs(attrs: dict[str, str], label: str | None) -> list[Point]:
    """Older markup: x/y or x1/y1, x2/y2 ... attributes on a 0-100 scale."""
    points = []
    pairs = []
    if "x" in attrs and "y" in attrs:
        pairs.append((attrs["x"], attrs["y"]))
    i = 1
    while f"x{i}" in attrs and f"y{i}" in attrs:
        pairs.append((attrs[f"x{i}"], attrs[f"y{i}"]))
        i += 1
    for n, (x, y) in enumerate(pairs, start=1):
        try:
            px, py = _clip01(float(x) / 100.0), _clip01(float(y) / 100.0)
        except ValueError:
            continue
        if px is None or py is None:
            continue
        points.append(Point(x=px, y=py, image=1, t=None, id=n, label=label))
    return points


def parse_points(text: str | None) -> list[Point]:
    """Every point in a Molmo2 answer, in the order written. Never raises."""
    if not text:
        return []
    points: list[Point] = []
    consumed_end = 0
    for m in _TAG.finditer(text):
        consumed_end = m.end()
        points.extend(_points_of(_attrs(m.group("attrs")), m.group("label")))
    # A last tag cut off by the token limit: keep its well-formed coordinates.
    tail = _OPEN_TAG.search(text, consumed_end)
    if tail:
        points.extend(_points_of(_attrs(tail.group("attrs")), None))
    else:
        cut = _CUT_COORDS.search(text, consumed_end)
        if cut:
            # The last number may itself be cut short ("4" of "400"): drop it.
            coords = cut.group("coords").rsplit(None, 1)[0] if " " in cut.group("coords").strip() else ""
            points.extend(_parse_coords(coords, None))
    return points


def _points_of(attrs: dict[str, str], raw_label: str | None) -> list[Point]:
    label = (raw_label or "").strip() or attrs.get("alt") or None
    if "coords" in attrs:
        return _parse_coords(attrs["coords"], label)
    return _parse_xy_attrs(attrs, label)


def strip_points(text: str) -> str:
    """The answer with point markup replaced by its label (for captions and embeddings)."""
    text = _TAG.sub(lambda m: (m.group("label") or "").strip() or _attrs(m.group("attrs")).get("alt", ""), text)
    text = _OPEN_TAG.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


_WORDS = {
    "no": 0, "none": 0, "zero": 0, "one": 1, "a single": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}
_NUM = r"(\d+|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
_COUNT_PATTERNS = [
    re.compile(r"total\s+(?:count\s+)?(?:of\s+|is\s+|was\s+|=\s*)?" + _NUM + r"\b", re.I),
    re.compile(r"\bthere\s+(?:are|is|were|was)\s+(?:a\s+total\s+of\s+|exactly\s+|about\s+|approximately\s+)?" + _NUM + r"\b", re.I),
    re.compile(r"\b(?:count|number)\s+(?:of\s+[\w\s]+?\s+)?(?:is|was|=|:)\s*" + _NUM + r"\b", re.I),
    re.compile(r"\bI\s+(?:count|see|can\s+see)\s+" + _NUM + r"\b", re.I),
]
_NONE = re.compile(r"\bthere\s+(?:are|is|were)\s+(?:none|no\b)|\bnone\s+(?:are|were)\s+(?:visible|present)", re.I)


def _to_int(token: str) -> int:
    token = token.lower()
    return int(token) if token.isdigit() else _WORDS[token]


def parse_count(text: str | None) -> int | None:
    """The count stated in an answer, or None when it states none.

    Handles "Counting the <points ...>dogs</points> shows a total of 3.", "There are 3
    <points ...>dogs</points>.", "There are none.", and prose such as "Counting the people
    in the video shows a total of 9." A bare number ("3") counts too.
    """
    if not text:
        return None
    plain = strip_points(text)
    for pattern in _COUNT_PATTERNS:
        m = pattern.search(plain)
        if m:
            return _to_int(m.group(1))
    if _NONE.search(plain):
        return 0
    bare = plain.strip().rstrip(".")
    if bare.isdigit():
        return int(bare)
    if bare.lower() in _WORDS:
        return _WORDS[bare.lower()]
    return None
