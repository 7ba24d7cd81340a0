"""File names as text: the one form of a path that sources, ids, payloads and output carry.

A POSIX file name is bytes. Python hands a name that is not valid UTF-8 over as a str with
lone surrogates (``os.fsdecode``'s ``surrogateescape``: ``b"x\\xff.jpg"`` -> ``"x\\udcff.jpg"``),
which opens the file but cannot be written where UTF-8 is required (JSON, SQLite, Qdrant,
uuid5, a strict stdout). So a source names such a file with each byte that is not UTF-8
written ``\\xNN`` (:func:`text_path`): ``x\\xff.jpg``, the same text in every run, hence the
same point id; :func:`local_path` turns that text back into the name on disk when a source
is opened again (search hits, ``remove --missing``, grounding).
"""

from __future__ import annotations

import os
import re

__all__ = ["text_path", "local_path"]

_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")
"""A byte of 0x80 or more written by :func:`text_path` (``surrogateescape`` only makes those)."""


def text_path(path: str | bytes | os.PathLike) -> str:
    """``path`` as valid UTF-8 text: unchanged when it is, else with each byte that is not
    UTF-8 written ``\\xNN``."""
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name gave (U+D800...): as \udNNN
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def local_path(source: str) -> str:
    """The name on disk of a source written by :func:`text_path`: ``source`` itself when
    that exists (or holds no ``\\xNN``), else the name with those bytes put back, when a file
    of that name exists."""
    if "\\x" not in source or os.path.lexists(source):
        return source
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), source)
    return raw if raw != source and os.path.lexists(raw) else source
