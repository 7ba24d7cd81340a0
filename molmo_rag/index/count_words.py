"""Counts in words: "at least 3 people on a stage" -> a text query and count filters.

:func:`split_counts` finds count phrases in a query and turns each into the same
condition ``--where`` takes (``counts.person >= 3``); the words left are the text query.
It is deterministic (no model): a phrase maps only when its number and its noun are read
without doubt and the noun is a label actually counted in the collection (``labels``);
anything else stays in the text query, never guessed.

Phrases read (N = digits or number words up to twenty, "a dozen"; X = a counted label,
singular or plural, one to three words):

=====================================================  ==========
"at least N X", "N or more X", "N+ X", "no fewer than"  ``>= N``
"more than N X", "over N X"                             ``> N``
"at most N X", "no more than N X", "N or fewer X"       ``<= N``
"fewer than N X", "less than N X", "under N X"          ``< N``
"exactly N X", "N X", "only N X"                        ``== N``
"a single X", "one X", "only one X", "a lone X"         ``== 1``
"no X", "without X", "zero X", "without any X"          ``== 0``
=====================================================  ==========

Reading is linear in the query's length (each phrasing is one pass over it). Phrases that
look like counts but find nothing to filter on are kept in the text query and listed in
``CountQuery.kept`` with the reason: the label was never counted in the collection, or it
was (``--count`` at index time) but no item has a count for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import UsageError
from .filters import Condition, label_key

__all__ = ["CountQuery", "KeptPhrase", "split_counts", "singular", "check_query", "MAX_QUERY_CHARS"]

MAX_QUERY_CHARS = 4096
"""The longest query a search takes, in characters; a longer one is a usage error (a
search query says what to look for in words, not a document)."""

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "a dozen": 12, "dozen": 12,
}
_IRREGULAR = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose", "oxen": "ox", "sheep": "sheep",
    "fish": "fish", "deer": "deer", "buses": "bus", "glasses": "glass", "boxes": "box", "knives": "knife",
    "leaves": "leaf", "wolves": "wolf", "shelves": "shelf", "lives": "life", "wives": "wife", "dice": "die",
}
_NUMBER = r"(?P<n>\d+|a\s+dozen|dozen|" + "|".join(sorted((w for w in _NUMBER_WORDS if " " not in w), key=len, reverse=True)) + r")"
_WORD = r"[^\W\d_](?:[^\W\d_]|['-])*"  # letters of any script (labels may be '人'), then ' and -
_NOUN = rf"(?P<x>{_WORD}(?:\s+{_WORD}){{0,2}})"

# (pattern before the noun, operator, fixed number or None to read N, explicit); tried in
# order, so longer phrasings win over the plain "N X". An explicit phrasing is a count
# whatever its noun, so one whose noun was never counted is reported as kept.
_PHRASES: list[tuple[str, str, int | None, bool]] = [
    (rf"(?:at\s+least|no\s+fewer\s+than|no\s+less\s+than|a\s+minimum\s+of)\s+{_NUMBER}\s+", ">=", None, True),
    (rf"{_NUMBER}\s+or\s+more\s+", ">=", None, True),
    (r"(?P<plus>\d+)\+\s*", ">=", None, True),
    (rf"(?:more\s+than|over|above)\s+{_NUMBER}\s+", ">", None, True),
    (rf"(?:at\s+most|no\s+more\s+than|up\s+to|a\s+maximum\s+of)\s+{_NUMBER}\s+", "<=", None, True),
    (rf"{_NUMBER}\s+or\s+(?:fewer|less)\s+", "<=", None, True),
    (rf"(?:fewer\s+than|less\s+than|under|below)\s+{_NUMBER}\s+", "<", None, True),
    (rf"(?:exactly|only|precisely|just)\s+{_NUMBER}\s+", "==", None, True),
    (r"(?:a\s+single|a\s+lone|only\s+one|just\s+one|exactly\s+one|one\s+single)\s+", "==", 1, True),
    (r"(?:no|without\s+any|without|zero|not\s+a\s+single|not\s+any)\s+", "==", 0, False),
    (rf"{_NUMBER}\s+", "==", None, False),
]
_COMPILED = [(re.compile(r"\b" + before + _NOUN, re.IGNORECASE), op, fixed, explicit) for before, op, fixed, explicit in _PHRASES]
_LEADING = frozenset({"with", "and", "having", "containing", "of", "where"})
_TRAILING = frozenset({"with", "and", "having", "containing", "of"})


def check_query(query: str) -> None:
    """Raise UsageError for a query over :data:`MAX_QUERY_CHARS`."""
    if len(query) > MAX_QUERY_CHARS:
        raise UsageError(
            f"the query is {len(query):,} characters long; a search takes at most {MAX_QUERY_CHARS:,} "
            "(MAX_QUERY_CHARS): say in fewer words what to look for",
            option="query",
        )


def singular(word: str) -> str:
    """A plain English singular, enough to match labels: people -> person, boxes -> box."""
    word = word.strip().lower()
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("ches", "shes", "xes", "sses", "zzes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 2:
        last = last[:-1]
    return f"{head} {last}".strip()


def _label_index(labels: Iterable[str]) -> dict[str, str]:
    """Spoken forms -> label key, for the labels counted in the collection."""
    index: dict[str, str] = {}
    for label in labels:
        key = label_key(label)
        spoken = key.replace("_", " ")
        for form in (spoken, singular(spoken)):
            index.setdefault(form, key)
    return index


def _number(text: str) -> int:
    text = " ".join(text.lower().split())
    return int(text) if text.isdigit() else _NUMBER_WORDS[text]


@dataclass(frozen=True)
class KeptPhrase:
    """A phrase that reads as a count but has nothing to filter on, kept in the text query."""

    phrase: str
    label: str
    """The label key its noun names (``person`` for "people")."""
    reason: Literal["never_counted", "no_counts"]
    """``never_counted``: the collection has no count of that label and was never asked
    for one; ``no_counts``: it was asked for (``count`` at index time), but no item has a
    count of it (the counts failed, or the backend could not count those items)."""


@dataclass
class CountQuery:
    """A query split into its text and the count conditions read from it."""

    text: str
    conditions: list[Condition] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    """The phrases that became conditions, as written."""
    kept: list[KeptPhrase] = field(default_factory=list)
    """Phrases that read as counts but were kept as text (one per label), and why."""

    @property
    def where(self) -> list[str]:
        """The conditions in ``--where`` syntax, e.g. ``["count.person>=3"]``."""
        return [f"count.{c.field.split('.', 1)[1]}{c.op}{c.value}" for c in self.conditions]


def split_counts(query: str, labels: Iterable[str], *, asked: Iterable[str] = ()) -> CountQuery:
    """Read the count phrases of ``query`` whose noun is one of ``labels`` (the labels with
    counts in the collection). ``asked``: the labels asked for at index time; a phrase
    naming one of them that has no count is reported in ``kept`` as ``no_counts``."""
    known = _label_index(labels)
    counted = set(known.values())
    unread = {form: key for form, key in _label_index(asked).items() if key not in counted}
    text = " ".join(query.split())
    read = CountQuery(text="")
    kept: dict[str, KeptPhrase] = {}
    for pattern, op, fixed, explicit in _COMPILED:
        pieces: list[str] = []
        last = pos = 0
        while (match := pattern.search(text, pos)) is not None:
            words = match.group("x").split()
            label, n = _lookup(words, known)
            if label is None:
                _note_kept(text, match, words, explicit, unread, kept)
                pos = match.end()
                continue
            end = _end_of_words(match, n)
            groups = match.groupdict()
            value = fixed if fixed is not None else _number(groups.get("n") or groups["plus"])
            condition = Condition(f"counts.{label}", op, value)  # type: ignore[arg-type]
            if condition not in read.conditions:
                read.conditions.append(condition)
            read.phrases.append(text[match.start() : end])
            pieces.append(text[last : match.start()])
            last = pos = end
        if pieces:  # what this phrasing matched leaves the text before the next one runs
            pieces.append(text[last:])
            text = " ".join(" ".join(pieces).split())
    read.text = _tidy(text)
    read.kept = list(kept.values())
    return read


def _lookup(words: list[str], index: dict[str, str]) -> tuple[str | None, int]:
    """The label the longest leading run of ``words`` names, and how many words it took."""
    for n in range(len(words), 0, -1):
        noun = " ".join(words[:n]).lower()
        label = index.get(noun) or index.get(singular(noun))
        if label:
            return label, n
    return None, 0


def _note_kept(text: str, match: re.Match, words: list[str], explicit: bool, unread: dict[str, str], kept: dict[str, KeptPhrase]) -> None:
    label, n = _lookup(words, unread)
    reason = "no_counts"
    if label is None:
        if not explicit:
            return  # "2 charts", "no idea": not surely a count
        label, n, reason = label_key(singular(words[0])), 1, "never_counted"
    if label not in kept:
        kept[label] = KeptPhrase(text[match.start() : _end_of_words(match, n)], label, reason)  # type: ignore[arg-type]


def _end_of_words(match: re.Match, n: int) -> int:
    """Where the first ``n`` words of the match's noun end, in the text."""
    ends = [word.end() for word in re.finditer(r"\S+", match.group("x"))]
    return match.start("x") + ends[n - 1]


def _tidy(text: str) -> str:
    """The text without the joining words a removed phrase left at its ends ("a street
    with", "and on a stage")."""
    words = text.split()
    first, last = 0, len(words)
    while first < last:
        word = words[first].strip(",;").lower()
        if not word or word in _LEADING:
            first += 1
        elif word == "that" and first + 1 < last and words[first + 1].strip(",;").lower() in ("has", "have"):
            first += 2
        else:
            break
    while last > first and (not words[last - 1].strip(",;") or words[last - 1].strip(",;").lower() in _TRAILING):
        last -= 1
    return " ".join(words[first:last]).strip(" ,;")
