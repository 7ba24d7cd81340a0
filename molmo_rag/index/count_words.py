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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .filters import Condition, label_key

__all__ = ["CountQuery", "split_counts", "singular"]

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
_NOUN = r"(?P<x>[a-z][a-z'-]*(?:\s+[a-z][a-z'-]*){0,2})"

# (pattern before the noun, operator, fixed number or None to read N); tried in order, so
# longer phrasings win over the plain "N X".
_PHRASES: list[tuple[str, str, int | None]] = [
    (rf"(?:at\s+least|no\s+fewer\s+than|no\s+less\s+than|a\s+minimum\s+of)\s+{_NUMBER}\s+", ">=", None),
    (rf"{_NUMBER}\s+or\s+more\s+", ">=", None),
    (r"(?P<plus>\d+)\+\s*", ">=", None),
    (rf"(?:more\s+than|over|above)\s+{_NUMBER}\s+", ">", None),
    (rf"(?:at\s+most|no\s+more\s+than|up\s+to|a\s+maximum\s+of)\s+{_NUMBER}\s+", "<=", None),
    (rf"{_NUMBER}\s+or\s+(?:fewer|less)\s+", "<=", None),
    (rf"(?:fewer\s+than|less\s+than|under|below)\s+{_NUMBER}\s+", "<", None),
    (rf"(?:exactly|only|precisely|just)\s+{_NUMBER}\s+", "==", None),
    (r"(?:a\s+single|a\s+lone|only\s+one|just\s+one|exactly\s+one|one\s+single)\s+", "==", 1),
    (r"(?:no|without\s+any|without|zero|not\s+a\s+single|not\s+any)\s+", "==", 0),
    (rf"{_NUMBER}\s+", "==", None),
]
_COMPILED = [(re.compile(r"\b" + before + _NOUN, re.IGNORECASE), op, fixed) for before, op, fixed in _PHRASES]
_DANGLING = re.compile(r"^(?:with|and|having|containing|of|where|that\s+has|that\s+have)\b\s*|\s*\b(?:with|and|having|containing|of)$", re.IGNORECASE)


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


@dataclass
class CountQuery:
    """A query split into its text and the count conditions read from it."""

    text: str
    conditions: list[Condition] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    """The phrases that became conditions, as written."""

    @property
    def where(self) -> list[str]:
        """The conditions in ``--where`` syntax, e.g. ``["count.person>=3"]``."""
        return [f"count.{c.field.split('.', 1)[1]}{c.op}{c.value}" for c in self.conditions]


def split_counts(query: str, labels: Iterable[str]) -> CountQuery:
    """Read the count phrases of ``query`` whose noun is one of ``labels``."""
    known = _label_index(labels)
    text = " ".join(query.split())
    conditions: list[Condition] = []
    phrases: list[str] = []
    for pattern, op, fixed in _COMPILED:
        while True:
            found = _first_mapped(pattern, text, known)
            if found is None:
                break
            match, label, end = found
            groups = match.groupdict()
            raw = groups.get("n") or groups.get("plus")
            value = fixed if fixed is not None else _number(raw)
            conditions.append(Condition(f"counts.{label}", op, value))  # type: ignore[arg-type]
            phrases.append(text[match.start() : end])
            text = " ".join((text[: match.start()] + " " + text[end:]).split())
    while True:
        cleaned = _DANGLING.sub("", text).strip(" ,;")
        if cleaned == text:
            break
        text = cleaned
    return CountQuery(text=text, conditions=conditions, phrases=phrases)


def _first_mapped(pattern: re.Pattern, text: str, known: dict[str, str]) -> tuple[re.Match, str, int] | None:
    """The first match whose noun (its longest leading run of words) is a known label."""
    for match in pattern.finditer(text):
        words = match.group("x").split()
        for n in range(len(words), 0, -1):
            noun = " ".join(words[:n]).lower()
            label = known.get(noun) or known.get(singular(noun))
            if label:
                return match, label, _end_of_words(text, match.start("x"), n)
    return None


def _end_of_words(text: str, start: int, n: int) -> int:
    words = list(re.finditer(r"\S+", text[start:]))
    return start + words[n - 1].end()
