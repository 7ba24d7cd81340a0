"""Parse the points and counts Molmo2 writes into its answers.

Forms handled (see AI2's Molmo2 model cards and technical report):

* ``<points coords="1 1 460 588 2 504 740">cups</points>``: a single image; groups are
  ``PREFIX ID X Y ID X Y ...`` separated by ``;`` (AI2's own parser also splits on tab,
  ``,`` and ``:``, so this one does too).
* several images: PREFIX is the 1-based image index (an integer).
* video: PREFIX is the timestamp in seconds printed with a decimal point (``3.0``).
* ``<tracks coords="...">`` for tracking (ids are persistent object ids); tags may also
  be self-closing (``<tracks coords="..."/>``), as AI2's parser allows.
* the older single point ``<point x="10.5" y="20.1" alt="cup">cup</point>`` and
  ``<points x1=".." y1=".." x2=".." y2=".." alt="..">..</points>`` with 0-100 coordinates.

X and Y in ``coords`` are integers on a 0-1000 scale; every returned point has ``x`` and
``y`` in 0..1. Malformed markup never raises: whatever is well-formed is returned, also
from answers whose markup came back HTML-escaped or with backslash-escaped quotes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

__all__ = ["Point", "ImplausibleCount", "parse_points", "parse_count", "read_count", "strip_points"]


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


_TAG_NAMES = r"(?:points|point|tracks|track)"
_OPEN_TAG = re.compile(r"<(?P<tag>points|point|tracks|track)\b(?P<attrs>[^<>]*)>", re.IGNORECASE)
# Generation cut off inside the opening tag itself (no ">" yet).
_CUT_TAG = re.compile(r"<" + _TAG_NAMES + r"\b[^<>]*$", re.IGNORECASE)
_CUT_COORDS = re.compile(r"coords\s*=\s*[\"']?(?P<coords>[^\"'>]*)$", re.IGNORECASE)
_ESCAPED_TAG = re.compile(r"&lt;/?" + _TAG_NAMES + r"\b|<" + _TAG_NAMES + r"\b[^<>]*&quot;", re.IGNORECASE)
_ATTR = re.compile(r"([A-Za-z_][\w-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+))")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_GROUP_SEP = re.compile(r"[;\t\n,:]")


@dataclass(frozen=True)
class _Tag:
    start: int
    end: int
    attrs: dict[str, str]
    label: str | None  # the text inside; None when self-closing or never closed
    self_closing: bool = False


def _unescape(text: str) -> str:
    """Markup that came back HTML-escaped (``&lt;points coords=&quot;...``) made plain."""
    return html.unescape(text) if _ESCAPED_TAG.search(text) else text


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for m in _ATTR.finditer(text.replace('\\"', '"').replace("\\'", "'")):
        out[m.group(1).lower()] = next(g for g in m.group(2, 3, 4) if g is not None)
    return out


def _tags(text: str) -> Iterator[_Tag]:
    """Every point tag in order; an unclosed one ends where the next tag begins."""
    openers = list(_OPEN_TAG.finditer(text))
    for i, m in enumerate(openers):
        raw = m.group("attrs")
        if raw.rstrip().endswith("/"):
            yield _Tag(m.start(), m.end(), _attrs(raw.rstrip()[:-1]), None, self_closing=True)
            continue
        limit = openers[i + 1].start() if i + 1 < len(openers) else len(text)
        close = re.compile(rf"</{m.group('tag')}\s*>", re.IGNORECASE).search(text, m.end(), limit)
        if close:
            yield _Tag(m.start(), close.end(), _attrs(raw), text[m.end() : close.start()])
        else:
            yield _Tag(m.start(), m.end(), _attrs(raw), None)


def _clip01(v: float) -> float | None:
    if v != v or v < 0 or v > 1.0005:  # NaN or out of range: not a point we trust
        return None
    return min(v, 1.0)


def _parse_coords(coords: str, label: str | None) -> list[Point]:
    points: list[Point] = []
    for group in _GROUP_SEP.split(coords):
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
            if "." in pid or pid.startswith("-"):
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


def _label(tag: _Tag) -> str | None:
    label = " ".join((tag.label or "").split())  # newlines and runs of spaces inside the tag
    return label or tag.attrs.get("alt") or None


def parse_points(text: str | None) -> list[Point]:
    """Every point in a Molmo2 answer, in the order written. Never raises."""
    if not text:
        return []
    text = _unescape(text)
    points: list[Point] = []
    consumed_end = 0
    for tag in _tags(text):
        consumed_end = tag.end
        points.extend(_points_of(tag.attrs, _label(tag)))
    # A last tag cut off by the token limit inside its coords: keep the complete triples.
    cut = _CUT_TAG.search(text, consumed_end)
    coords = _CUT_COORDS.search(cut.group(0)) if cut else None
    if coords:
        # The last number may itself be cut short ("4" of "400"): drop it.
        kept = coords.group("coords").rsplit(None, 1)[0] if " " in coords.group("coords").strip() else ""
        points.extend(_parse_coords(kept, None))
    return points


def _points_of(attrs: dict[str, str], label: str | None) -> list[Point]:
    if "coords" in attrs:
        return _parse_coords(attrs["coords"], label)
    return _parse_xy_attrs(attrs, label)


def strip_points(text: str) -> str:
    """The answer with point markup replaced by its label (for captions and embeddings)."""
    if not text:
        return ""
    text = _unescape(text)
    parts, pos = [], 0
    for tag in _tags(text):
        parts.append(text[pos : tag.start])
        if tag.label is not None or tag.self_closing:
            parts.append(_label(tag) or "")
        pos = tag.end
    parts.append(_CUT_TAG.sub("", text[pos:]))
    return re.sub(r"[ \t]{2,}", " ", "".join(parts)).strip()


_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SMALL = "|".join(sorted(_UNITS, key=len, reverse=True))
_WORD_NUM = (
    r"(?:(?:" + "|".join(_TENS) + r")(?:[-\s](?:" + "|".join(k for k in _UNITS if 0 < _UNITS[k] < 10) + r"))?"
    r"|" + _SMALL + r"|a\s+single|a\s+dozen|a\s+hundred|one\s+hundred)"
)
# "1,234" before "1" so a thousands separator is not read as the end of the number.
_NUM = r"(\d{1,3}(?:,\d{3})+(?!\d)|\d+|" + _WORD_NUM + r")"
_QUALIFIER = r"(?:(?:a\s+total\s+of|exactly|about|around|roughly|approximately|only|just|at\s+least)\s+)?"
_COUNT_PATTERNS = [
    re.compile(r"\btotal\s+(?:count\s+|number\s+)?(?:of\s+|is\s+|was\s+|=\s*|:\s*)?" + _NUM + r"\b", re.I),
    re.compile(r"\bthere(?:\s+(?:are|is|were|was)|['’](?:s|re))\s+" + _QUALIFIER + _NUM + r"\b", re.I),
    re.compile(r"\b(?:count|number)\s+(?:of\s+[\w\s]+?\s+)?(?:is|was|=|:)\s*" + _QUALIFIER + _NUM + r"\b", re.I),
    re.compile(r"\bI\s+(?:count(?:ed)?|see|can\s+see|found|find|spot|can\s+spot)\s+" + _QUALIFIER + _NUM + r"\b", re.I),
    re.compile(r"\banswer\s*(?:is|:)\s*" + _NUM + r"\b", re.I),
    re.compile(r"\b(?:shows?|showing|contains?|has|have|depicts?|features?)\s+" + _QUALIFIER + _NUM + r"\b", re.I),
    # The answer opens with the number: "5 people.", "Only one person is visible."
    re.compile(r"^[\s\"'*]*(?:only\s+|just\s+|exactly\s+)?" + _NUM + r"(?=[.!*\"']*\s*$|\s+[^\W\d_])", re.I),
]
_NONE = re.compile(
    r"\bthere(?:\s+(?:are|is|were|was)|['’](?:s|re))\s+(?:none|no)\b"
    r"|\bnone\s+(?:are|is|were|was)?\s*(?:visible|present|shown|in\s+(?:the|this))"
    r"|\b(?:are|is|were|was)(?:\s+not|n['’]t)\s+any\b"
    r"|\b(?:do|does|did|can|could|ca)(?:n['’]t|\s+not|not)\s+(?:see|find|spot|count)\s+any\b"
    r"|\bI\s+(?:see|find|count)\s+(?:no|none)\b"
    r"|^[\s\"'*]*(?:no|none|zero|nothing)\b(?=[.!]?\s*$|\s+[^\W\d_])",
    re.I,
)
# "There is a cat.": one, unless the article opens a quantity ("a lot of", "a group of").
_A_SINGLE = re.compile(
    r"\bthere(?:\s+(?:is|was)|['’]s)\s+(?:only\s+|just\s+|exactly\s+)?an?\s+"
    r"(?!(?:total|lot|lots|number|few|couple|group|crowd|bunch|pair|dozen|hundred|handful|"
    r"several|many|variety|series|set|row|line|herd|flock|pile|stack|collection|pack|team|"
    r"fleet|swarm|school|cluster|range|mix|large|small|huge|big|great|good|whole)\b)",
    re.I,
)


MAX_PLAUSIBLE_COUNT = 1_000_000


class ImplausibleCount(ValueError):
    """An answer states a count no scene holds (a run of digits: degenerate generation);
    ``stated`` is the number as written, cut to 20 characters, ``digits`` how many it has.
    A ValueError internal to parsing, not in errors.py: ``tasks`` turns it into a
    MalformedAnswerError before it leaves."""

    def __init__(self, stated: str):
        self.digits = sum(c.isdigit() for c in stated)
        self.stated = stated if len(stated) <= 20 else stated[:17] + "..."
        what = f"a number of {self.digits} digits ({self.stated})" if self.digits > 9 else self.stated
        super().__init__(f"{what}, more than any scene holds ({MAX_PLAUSIBLE_COUNT:,} at most)")


def _to_int(token: str) -> int:
    token = " ".join(token.lower().replace("-", " ").split())
    if token[0].isdigit():
        digits = token.replace(",", "")
        # checked before int(): Python refuses to convert more than 4,300 digits
        if len(digits.lstrip("0")) > len(str(MAX_PLAUSIBLE_COUNT)) or int(digits) > MAX_PLAUSIBLE_COUNT:
            raise ImplausibleCount(token)
        return int(digits)
    special = {"a single": 1, "a dozen": 12, "a hundred": 100, "one hundred": 100}
    if token in special:
        return special[token]
    words = token.split()
    return sum(_TENS.get(w, _UNITS.get(w, 0)) for w in words)


def parse_count(text: str | None) -> int | None:
    """The count stated in an answer, or None when it states none.

    Handles "Counting the <points ...>dogs</points> shows a total of 3.", "There are 3
    <points ...>dogs</points>.", "There are none.", "No people.", number words
    ("twenty-one"), thousands separators, and prose such as "Counting the people in the
    video shows a total of 9." A bare number ("3") counts too. A run of digits no scene
    holds (over ``MAX_PLAUSIBLE_COUNT``) is degenerate generation, not a count: None (see
    :func:`read_count` to tell it apart). Never raises.
    """
    try:
        return read_count(text)
    except ImplausibleCount:
        return None


def read_count(text: str | None) -> int | None:
    """:func:`parse_count`, but a stated count over ``MAX_PLAUSIBLE_COUNT`` (5,000 digits,
    say) raises :class:`ImplausibleCount` instead of reading as None."""
    if not text:
        return None
    plain = strip_points(text)
    for pattern in _COUNT_PATTERNS:
        m = pattern.search(plain)
        if m:
            return _to_int(m.group(1))
    if _NONE.search(plain):
        return 0
    if _A_SINGLE.search(plain):
        return 1
    return None
