"""From sources to media items: expand, fetch, sniff (:mod:`.sniffing`) and dispatch to
the readers.

A *source* is a path (file, folder, glob), an http(s) URL, a ``data:`` URI, raw bytes (a
bytearray, a memoryview), a binary file object, a PIL image or a ready MediaItem; what is
one source and what is many, and what is a local path, :mod:`.door` decides. :func:`read`
yields :class:`MediaItem` objects lazily; a source that cannot be used yields its
:class:`~molmo_rag.errors.InputError` (with ``.source`` set) in its place and the rest
goes on.

The kind of a file is told by its first bytes (magic numbers), so a JPEG named ``.png`` or
a PDF named ``.bin`` is read right; the name only helps when the bytes say nothing.
"""

from __future__ import annotations

import base64
import binascii
import glob as globlib
import logging
import os
import re
import stat
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    CorruptMediaError,
    InputError,
    MolmoRagError,
    SourceNotFoundError,
    UnsupportedMediaError,
)
from .blob import Blob
from .door import as_sources, is_data_uri, is_other_scheme, is_pil_image, is_stream, is_web_url
from .download import check_size as _check_size
from .download import fetch_url
from .download import strip_credentials as _strip_credentials
from .items import MediaItem
from .names import local_path, text_path
from .sniffing import Kind, classify, keynote_error, sniff
from .options import (
    KEYNOTE_EXTENSIONS,
    MEDIA_EXTENSIONS,
    NOT_MEDIA_EXTENSIONS,
    ReaderOptions,
)

__all__ = ["Blob", "Kind", "read", "reopen", "expand", "sniff", "classify", "fetch_url", "from_data_uri"]

log = logging.getLogger(__name__)



# --- expanding sources --------------------------------------------------------------------
_GLOB_CHARS = re.compile(r"[*?\[]")


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _is_hidden(name: str, options: ReaderOptions) -> bool:
    return name.startswith(".") and not options.include_hidden


def _reports_odd_entry(name: str, options: ReaderOptions) -> bool:
    """Whether a broken link, named pipe or unreadable entry of this name gets an error line:
    yes for a wanted ending and for an unknown one; no for what is clearly not media and for
    media endings the caller left out of ``options.extensions``."""
    suffix = _suffix(name)
    if options.every_file or suffix in options.extensions:
        return True
    return suffix not in NOT_MEDIA_EXTENSIONS and suffix not in MEDIA_EXTENSIONS


def _odd_entry_error(path: str, exc: OSError | None = None, mode: int = 0) -> InputError:
    """The error line of a path that is neither a readable file nor a folder."""
    if exc is None:
        what = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return UnsupportedMediaError(f"{path} is {what}, not a regular file; it is not read", source=path)
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        target = os.readlink(path)
        return SourceNotFoundError(f"{path} is a broken symbolic link (to {target!r}, which does not exist)", source=path)
    return SourceNotFoundError(f"cannot open {path}: {exc.strerror or exc}", source=path)


_KEYNOTE_BUNDLE_MEMBERS = ("Index.zip", "Index", "index.apxl", "index.apxl.gz")


def _is_keynote_bundle(path: str) -> bool:
    """A Keynote deck saved as a package folder (``talk.key/Index.zip``, ``.../Index/``)."""
    return _suffix(path) in KEYNOTE_EXTENSIONS and any(
        os.path.exists(os.path.join(path, member)) for member in _KEYNOTE_BUNDLE_MEMBERS
    )


_SHARED_ENDINGS = {
    ".key": lambda head: head.startswith(b"PK\x03\x04"),  # else a TLS/SSH or licence key
    ".ts": lambda head: head[:1] == b"\x47" or head[4:5] == b"\x47",  # else TypeScript source
}
"""Endings that media share with common non-media files, and how the first bytes of the
media kind look: a folder walk passes over the others quietly."""


def _is_other_file_sharing_the_ending(path: str, suffix: str) -> bool:
    """A ``.key`` that is not a Keynote ZIP, a ``.ts`` that is not an MPEG transport stream."""
    looks_like_media = _SHARED_ENDINGS.get(suffix)
    if looks_like_media is None:
        return False
    try:
        with open(path, "rb") as f:
            return not looks_like_media(f.read(8))
    except OSError:
        return False


def _entry(path: str, options: ReaderOptions, seen: set[tuple[int, int]] | None) -> Iterator[Path | InputError]:
    """One folder or glob entry: a file to read, the files of a sub-folder (when ``seen`` is
    given and the walk is recursive), its error line, or nothing when it is not wanted."""
    name = os.path.basename(path)
    if _is_hidden(name, options):
        return
    try:
        info = os.stat(path)  # follows links; never opens the entry (a FIFO would block)
    except OSError as exc:  # a broken or looping link, no permission
        if _reports_odd_entry(name, options):
            yield _odd_entry_error(path, exc)
        return
    suffix = _suffix(name)
    if stat.S_ISDIR(info.st_mode):
        if suffix in options.extensions and _is_keynote_bundle(path):
            yield keynote_error(path)
        elif seen is not None and options.recursive:
            yield from _walk(Path(path), options, seen)
    elif stat.S_ISREG(info.st_mode):
        if options.every_file or (suffix in options.extensions and not _is_other_file_sharing_the_ending(path, suffix)):
            yield Path(path)
    elif _reports_odd_entry(name, options):
        yield _odd_entry_error(path, mode=info.st_mode)


def _walk(root: Path, options: ReaderOptions, seen: set[tuple[int, int]] | None = None) -> Iterator[Path | InputError]:
    """Files under ``root`` with a wanted ending, and the error lines of entries that cannot be
    read, in sorted order (depth-first, by name).

    Symlinked folders are followed once: a link back up the tree does not loop."""
    seen = set() if seen is None else seen
    try:
        info = root.stat()
        names = sorted(entry.name for entry in os.scandir(root))
    except OSError as exc:
        yield _odd_entry_error(str(root), exc)
        return
    if (info.st_dev, info.st_ino) in seen:
        return
    seen.add((info.st_dev, info.st_ino))
    for name in names:
        yield from _entry(os.path.join(root, name), options, seen)


def _walk_blobs(path: Path, options: ReaderOptions) -> Iterator[Blob | InputError]:
    found = 0
    for entry in _walk(path, options):
        if isinstance(entry, InputError):
            yield entry
        else:
            found += 1
            yield Blob(source=text_path(entry), path=entry)
    if not found:
        what = "files" if options.every_file else "media files"
        raise SourceNotFoundError(f"no {what} in folder {str(path)!r}", source=str(path))


def _glob_blobs(pattern: str, options: ReaderOptions) -> Iterator[Blob | InputError]:
    matches = globlib.glob(os.path.expanduser(pattern), recursive=True)
    # '**' walks symlinked folders again: keep one path per file, the shortest
    shortest: dict[str, Path | InputError] = {}
    for match in sorted(matches, key=lambda m: (m.count(os.sep), m)):
        for entry in _entry(match, options, seen=None):
            if isinstance(entry, Path):
                key = os.path.realpath(entry)
            else:  # a broken link has no real path; its folder has
                key = os.path.join(os.path.realpath(os.path.dirname(match)), os.path.basename(match))
            shortest.setdefault(key, entry)
    entries = sorted(shortest.values(), key=lambda e: str(e) if isinstance(e, Path) else e.source)
    if not any(isinstance(e, Path) for e in entries):
        yield from (e for e in entries if isinstance(e, InputError))
        raise SourceNotFoundError(f"no media files match {pattern!r}", source=str(pattern))
    for entry in entries:
        yield entry if isinstance(entry, InputError) else Blob(source=text_path(entry), path=entry)


def _path_blobs(source: str | os.PathLike, options: ReaderOptions) -> Iterator[Blob | InputError]:
    """A path named by the caller: a file (whatever its ending), a folder, or a glob; a name
    that is not UTF-8 as it is or as the text molmo-rag writes for it (``x\\xff.jpg``)."""
    path = Path(local_path(str(Path(source).expanduser())))
    if path.is_dir() and _is_keynote_bundle(str(path)):
        raise keynote_error(str(path))
    if path.is_dir():
        yield from _walk_blobs(path, options)
    elif path.is_file():
        yield Blob(source=text_path(path), path=path)
    elif isinstance(source, str) and _GLOB_CHARS.search(source):
        yield from _glob_blobs(source, options)
    elif os.path.lexists(path):  # a broken link, a named pipe, a socket, a device
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise _odd_entry_error(str(path), exc) from exc
        raise _odd_entry_error(str(path), mode=mode)
    else:
        raise SourceNotFoundError(f"no such file or folder: {str(source)!r}", source=str(source))


def expand(source: Any, options: ReaderOptions | None = None) -> Iterator[Blob | InputError | Any]:
    """One source to blobs: a folder or glob to its files; a URL fetched; bytes wrapped.

    PIL images pass through unchanged; a bad source becomes its InputError, and so does each
    entry of a folder that cannot be read (a broken link, a named pipe, ...).
    """
    options = options or ReaderOptions()
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            _check_size(len(data), options, "<bytes>")
            yield Blob(source="<bytes>", data=data)
            return
        if is_pil_image(source):
            yield source
            return
        if is_stream(source):
            name = getattr(source, "name", None)
            label = str(name) if isinstance(name, str) else "<stream>"
            data = source.read(options.max_download_bytes + 1)
            _check_size(len(data), options, label)
            yield Blob(source=label, data=data)
            return
        if is_web_url(source):
            yield fetch_url(source, options)
            return
        if is_data_uri(source):
            yield from_data_uri(source, options)
            return
        if isinstance(source, str) and is_other_scheme(source) and not os.path.lexists(source):
            raise _other_scheme_error(source)
        if not isinstance(source, (str, os.PathLike)):
            raise UnsupportedMediaError(
                f"cannot read a source of type {type(source).__name__}", source=repr(source)[:200]
            )
        for entry in _path_blobs(source, options):
            yield _as_text(entry) if isinstance(entry, InputError) else entry
    except InputError as err:
        yield _as_text(err)


def _as_text(err: InputError) -> InputError:
    """The error with its source and message as valid UTF-8 (a file name that is not UTF-8
    written as :func:`~.names.text_path` writes it), like the sources of items."""
    if err.source is not None:
        err.source = text_path(err.source)
    if err.args and isinstance(err.args[0], str):
        err.args = (text_path(err.args[0]), *err.args[1:])
    return err


def _other_scheme_error(source: str) -> UnsupportedMediaError:
    shown = _strip_credentials(source)
    scheme = source.split(":", 1)[0].lower()
    hint = ""
    if scheme == "file":
        hint = f"; for a local file give its path ({urllib.parse.unquote(urllib.parse.urlsplit(source).path)!r})"
    return UnsupportedMediaError(
        f"{shown}: {scheme}: URLs are not read; sources are local paths, http(s) URLs and data: URIs{hint}",
        source=shown,
    )


# --- URLs and data URIs -------------------------------------------------------------------
def from_data_uri(uri: str, options: ReaderOptions | None = None) -> Blob:
    """Decode ``data:[<mime>][;base64],<payload>``."""
    options = options or ReaderOptions()
    header, sep, payload = uri.partition(",")
    mime = header[5:].split(";")[0].strip().lower() or None
    label = f"data:{mime or ''}"
    if not sep:
        raise CorruptMediaError("malformed data URI (no comma)", source=label)
    try:
        if header.endswith(";base64"):
            data = base64.b64decode(payload, validate=False)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise CorruptMediaError(f"malformed data URI: {exc}", source=label) from exc
    _check_size(len(data), options, label)
    return Blob(source=f"{label};{len(data)} bytes", data=data, mime=mime)


# --- dispatch -----------------------------------------------------------------------------
def _items_of(blob: Blob, options: ReaderOptions) -> Iterator[MediaItem]:
    kind = classify(blob)
    if kind in ("image", "heic"):
        from .images import read_images

        yield from read_images(blob, options)
    elif kind == "pdf":
        from .slides import read_pdf

        yield from read_pdf(blob, options)
    elif kind == "pptx":
        from .slides import read_pptx

        yield from read_pptx(blob, options)
    elif kind in ("odp", "ppt"):
        from .slides import read_libreoffice_deck

        yield from read_libreoffice_deck(blob, options, kind)
    else:
        from .video import read_video

        yield from read_video(blob, options)


def reopen(
    source: str,
    *,
    kind: str,
    slide: int | None = None,
    start: float | None = None,
    end: float | None = None,
    options: ReaderOptions | None = None,
) -> MediaItem:
    """The one item a search hit points back at: a photo (page ``slide`` of a multi-page
    TIFF), slide ``slide`` of a deck, or the
    segment ``start``-``end`` of a video (cut exactly there, the rest not read). Raises the
    source's InputError when it is gone or unreadable."""
    options = options or ReaderOptions()
    blobs = [b for b in expand(source, options)]
    if len(blobs) != 1:
        raise SourceNotFoundError(f"{source} is not one file any more", source=source)
    blob = blobs[0]
    if isinstance(blob, InputError):
        raise blob
    if kind == "video_segment":
        if start is None or end is None:
            raise UnsupportedMediaError(f"a video segment of {source} needs its start and end", source=source)
        if classify(blob) != "video":
            raise UnsupportedMediaError(f"{source} is no longer a video", source=source)
        from .video import read_segment

        return read_segment(blob, start, end, options)
    for item in _items_of(blob, options):
        if item.kind == kind and (item.slide == slide or (slide is None and kind != "slide")):
            return item
    what = f"slide {slide}" if kind == "slide" else f"an {kind}"
    raise SourceNotFoundError(f"{source} has no {what} any more", source=source)


def read(sources: Any, options: ReaderOptions | None = None) -> Iterator[MediaItem | InputError]:
    """Yield the media items of ``sources`` lazily, in order.

    ``sources`` is one source or an iterable of them (paths, folders, globs, URLs, data
    URIs, bytes, bytearrays, memoryviews, file objects, PIL images, ready MediaItems; one or
    many as :func:`.door.as_sources` decides). A source that cannot be read yields its typed
    :class:`InputError` (``.source`` set) and reading goes on with the next.
    """
    options = options or ReaderOptions()
    for source in as_sources(sources):  # a lone unreadable object becomes its UnsupportedMediaError
        if isinstance(source, MediaItem):
            yield source
            continue
        for blob in expand(source, options):
            if isinstance(blob, InputError):
                yield blob
            elif is_pil_image(blob):
                from .images import read_pil

                yield read_pil(blob, options)
            else:
                yield from _read_blob(blob, options)


def _read_blob(blob: Blob, options: ReaderOptions) -> Iterator[MediaItem | InputError]:
    try:
        for item in _items_of(blob, options):
            yield item
    except InputError as err:
        if err.source is None:
            err.source = blob.source
        log.debug("skipping %s: %s", blob.source, err)
        yield _as_text(err)
    except (MolmoRagError, MemoryError):
        raise  # a missing extra or a bad option concerns every source, not this one
    except Exception as exc:  # a reader bug must not end the batch: report it on this source
        log.exception("unexpected error reading %s", blob.source)
        yield CorruptMediaError(f"cannot read {blob.source}: {type(exc).__name__}: {exc}", source=blob.source)

