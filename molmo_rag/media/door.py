"""The source door: what every entry point decides about the sources it is given, decided here
once.

- **One source or many**: a str, ``Path`` (any ``os.PathLike``), ``bytes``, ``bytearray``,
  ``memoryview``, binary file object, PIL image or :class:`MediaItem` is ONE source (a str
  is never iterated as characters, bytes never as numbers, a file never as lines); a list,
  tuple, set or generator of those is many (:func:`as_sources`, :func:`as_source_list`).
- **Local or not**: :func:`is_local_path` (a path, not a URL, a ``data:`` URI or the label
  of an in-memory source such as ``<bytes>``).
- **The form the index stores**: :func:`absolute_source` (a local file's absolute path in
  its text form, :mod:`.names`; anything else unchanged). The point id made from it and the
  media id is :func:`molmo_rag.index.records.point_id`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from ..errors import MolmoRagError
from .items import MediaItem
from .names import local_path, text_path

__all__ = [
    "absolute_path",
    "absolute_source",
    "as_source_list",
    "as_sources",
    "is_data_uri",
    "is_local_path",
    "is_one_source",
    "is_other_scheme",
    "is_pil_image",
    "is_stream",
    "is_web_url",
    "reusable_source_list",
]

_OTHER_SCHEME = re.compile(r"(?i)([a-z][a-z0-9+.-]+://|(?:javascript|vbscript|about|blob|mailto|tel|file):)")
"""A URL of a scheme other than http(s) and data: ``ftp://``, ``file://``, ``javascript:``, ..."""

_REUSABLE = (list, tuple, set, frozenset)


def is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def is_stream(obj: Any) -> bool:
    """A binary file object (anything with ``read`` that is not a path)."""
    return hasattr(obj, "read") and not isinstance(obj, (str, os.PathLike))


def is_one_source(obj: Any) -> bool:
    """Whether ``obj`` is one source (or one ready entry: a MediaItem, a reader's error),
    never a collection of them, even when Python could iterate it."""
    return (
        isinstance(obj, (str, bytes, bytearray, memoryview, os.PathLike, MediaItem, MolmoRagError))
        or is_pil_image(obj)
        or is_stream(obj)
    )


def as_sources(sources: Any) -> Iterable[Any]:
    """``sources`` as an iterable of single sources, lazily: one source (or an object that is
    not iterable, which then fails as a source of its own) becomes a list of one; a
    collection or generator is returned as it is and pulled only as it is read."""
    if is_one_source(sources) or not isinstance(sources, Iterable):
        return [sources]
    return sources


def as_source_list(sources: Any) -> list[Any]:
    """:func:`as_sources` as a list (a generator is consumed)."""
    return list(as_sources(sources))


def reusable_source_list(sources: Any) -> list[Any] | None:
    """The sources as a list when listing them consumes nothing (one source, a list, tuple
    or set); None for an iterator or generator, which only the reader may pull."""
    listed = as_sources(sources)
    return list(listed) if isinstance(listed, _REUSABLE) else None


def is_web_url(source: Any) -> bool:
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


def is_data_uri(source: Any) -> bool:
    return isinstance(source, str) and source[:5].lower() == "data:"


def is_other_scheme(source: str) -> bool:
    """A URL of a scheme molmo-rag does not read (``ftp://``, ``file:``, ``javascript:``)."""
    return bool(_OTHER_SCHEME.match(source))


def is_local_path(source: Any) -> bool:
    """Whether a source, or a source as the index stores it, names a place on this machine:
    a path (``str`` or ``os.PathLike``) that is not a URL, a ``data:`` URI or the label of
    an in-memory source (``<bytes>``, ``<stream>``, ``<memory>``). Nothing is opened."""
    if isinstance(source, os.PathLike):
        return True
    if not isinstance(source, str) or not source:
        return False
    return not (is_web_url(source) or is_data_uri(source) or source.startswith("<") or is_other_scheme(source))


def absolute_path(source: str | os.PathLike) -> str:
    """A local path made absolute (``~`` expanded) in its text form, whether or not it exists."""
    path = os.path.expanduser(os.fsdecode(source))
    return text_path(os.path.abspath(local_path(path)))


def absolute_source(source: str, memo: dict[str, str] | None = None) -> str:
    """The source the index stores for an item: a local file's path made absolute, so the
    index points back at it from any working directory; URLs, data URIs, in-memory labels
    and names of nothing on disk unchanged. ``memo`` spares a second look at the disk for a
    source already seen (the items of one file)."""
    if memo is not None and source in memo:
        return memo[source]
    found = source
    if is_local_path(source) and os.path.exists(local_path(source)):
        found = absolute_path(source)
    if memo is not None:
        memo[source] = found
    return found
