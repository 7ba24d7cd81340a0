"""From sources to media items: expand, fetch, sniff and dispatch to the readers.

A *source* is a path (file, folder, glob), an http(s) URL, a ``data:`` URI, raw bytes, a
binary file object or a PIL image. :func:`read` yields :class:`MediaItem` objects lazily;
a source that cannot be used yields its :class:`~molmo_rag.errors.InputError` (with
``.source`` set) in its place and the rest goes on.

The kind of a file is told by its first bytes (magic numbers), so a JPEG named ``.png`` or
a PDF named ``.bin`` is read right; the name only helps when the bytes say nothing.
"""

from __future__ import annotations

import base64
import binascii
import glob as globlib
import hashlib
import io
import logging
import os
import re
import tempfile
import urllib.parse
import weakref
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from ..errors import (
    CorruptMediaError,
    InputError,
    MediaTooLargeError,
    MolmoRagError,
    SourceNotFoundError,
    UnreachableSourceError,
    UnsupportedMediaError,
)
from .items import MediaItem
from .options import IMAGE_EXTENSIONS, SLIDE_EXTENSIONS, VIDEO_EXTENSIONS, ReaderOptions

__all__ = ["Blob", "Kind", "read", "expand", "sniff", "classify", "fetch_url", "from_data_uri"]

log = logging.getLogger(__name__)

Kind = Literal["image", "heic", "pdf", "pptx", "video", "audio", "zip", "ole", "unknown"]
_CHUNK = 1 << 20


@dataclass(eq=False)
class Blob:
    """The bytes of one source: a file on disk or bytes in memory, and where they came from."""

    source: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    remote_url: str | None = None
    mime: str | None = None
    """The content type the server or data URI declared, if any."""
    _sha256: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.path is not None and self.remote_url is None:
            return self.path.name
        tail = urllib.parse.urlparse(self.remote_url).path if self.remote_url else self.source
        return tail.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1].lower()

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")

    def head(self, n: int = 4096) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:
            return f.read(n)

    def read_bytes(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes, streamed in chunks and remembered."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            if self.data is not None:
                digest.update(self.data)
            else:
                with open(self.path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def av_input(self) -> Any:
        """What ``av.open`` takes for these bytes."""
        return io.BytesIO(self.data) if self.data is not None else str(self.path)


# --- sniffing -----------------------------------------------------------------------------
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"F4A ", b"F4B "}


def sniff(head: bytes, name: str = "") -> Kind:
    """The kind of a file from its first bytes (and, only when they say nothing, its name)."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "image"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image", b"AVI ": "video", b"WAVE": "audio"}.get(head[8:12], "unknown")
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return "pdf"
    if head[4:8] == b"ftyp":
        major = head[8:12]
        brands = {major} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
        if major in _AVIF_BRANDS or (major == b"mif1" and brands & _AVIF_BRANDS):
            return "image"
        if major in _HEIF_BRANDS:
            return "heic"
        if major in _AUDIO_BRANDS:
            return "audio"
        return "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video"  # old QuickTime without ftyp
    if head.startswith(b"\x1a\x45\xdf\xa3") or head.startswith(b"OggS") or head.startswith(b"FLV"):
        return "video"  # Matroska/WebM, Ogg, FLV: the probe tells video from audio-only
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "video"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "video"  # MPEG transport stream
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video"  # ASF / WMV
    if head.startswith((b"ID3", b"fLaC")) or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    return "unknown"


def _is_pptx(blob: Blob) -> bool:
    try:
        with blob.open() as f, zipfile.ZipFile(f) as z:
            return "ppt/presentation.xml" in z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


# --- expanding sources --------------------------------------------------------------------
_GLOB_CHARS = re.compile(r"[*?\[]")


def _walk(root: Path, options: ReaderOptions, seen: set[tuple[int, int]] | None = None) -> Iterator[Path]:
    """Files under ``root`` with a wanted ending, in sorted order (depth-first, by name).

    Symlinked folders are followed once: a link back up the tree does not loop."""
    seen = set() if seen is None else seen
    try:
        stat = root.stat()
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    if (stat.st_dev, stat.st_ino) in seen:
        return
    seen.add((stat.st_dev, stat.st_ino))
    for entry in entries:
        if not options.include_hidden and entry.name.startswith("."):
            continue
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:  # a broken or looping link
            continue
        if is_dir:
            if options.recursive:
                yield from _walk(Path(entry.path), options, seen)
        elif is_file and os.path.splitext(entry.name)[1].lower() in options.extensions:
            yield Path(entry.path)


def expand(source: Any, options: ReaderOptions | None = None) -> Iterator[Blob | InputError | Any]:
    """One source to blobs: a folder or glob to its files; a URL fetched; bytes wrapped.

    PIL images pass through unchanged; a bad source becomes its InputError.
    """
    options = options or ReaderOptions()
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            _check_size(len(data), options, "<bytes>")
            yield Blob(source="<bytes>", data=data)
            return
        if _is_pil(source):
            yield source
            return
        if hasattr(source, "read") and not isinstance(source, (str, os.PathLike)):
            name = getattr(source, "name", None)
            label = str(name) if isinstance(name, str) else "<stream>"
            data = source.read(options.max_download_bytes + 1)
            _check_size(len(data), options, label)
            yield Blob(source=label, data=data)
            return
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            yield fetch_url(source, options)
            return
        if isinstance(source, str) and source.startswith("data:"):
            yield from_data_uri(source, options)
            return
        if not isinstance(source, (str, os.PathLike)):
            raise UnsupportedMediaError(
                f"cannot read a source of type {type(source).__name__}", source=repr(source)[:200]
            )
        path = Path(source).expanduser()
        if path.is_dir():
            found = 0
            for file in _walk(path, options):
                found += 1
                yield Blob(source=str(file), path=file)
            if not found:
                raise SourceNotFoundError(f"no media files in folder {str(path)!r}", source=str(path))
        elif path.is_file():
            yield Blob(source=str(path), path=path)
        elif isinstance(source, str) and _GLOB_CHARS.search(source):
            matches = globlib.glob(os.path.expanduser(source), recursive=True)
            # '**' walks symlinked folders again: keep one path per file, the shortest
            shortest: dict[str, str] = {}
            for m in sorted(matches, key=lambda m: (m.count(os.sep), m)):
                if (
                    os.path.isfile(m)
                    and os.path.splitext(m)[1].lower() in options.extensions
                    and (options.include_hidden or not os.path.basename(m).startswith("."))
                ):
                    shortest.setdefault(os.path.realpath(m), m)
            files = [Path(m) for m in sorted(shortest.values())]
            if not files:
                raise SourceNotFoundError(f"no media files match {source!r}", source=str(source))
            yield from (Blob(source=str(p), path=p) for p in files)
        else:
            raise SourceNotFoundError(f"no such file or folder: {str(source)!r}", source=str(source))
    except InputError as err:
        yield err


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def _check_size(size: int, options: ReaderOptions, source: str) -> None:
    if size > options.max_download_bytes:
        raise MediaTooLargeError(
            f"{source} is larger than max_download_bytes ({options.max_download_bytes} bytes)",
            source=source,
        )


# --- URLs and data URIs -------------------------------------------------------------------
def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def fetch_url(url: str, options: ReaderOptions | None = None) -> Blob:
    """Stream ``url`` with httpx under the size cap; small files stay in memory."""
    import httpx

    options = options or ReaderOptions()
    shown = _strip_credentials(url)
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnreachableSourceError(f"{shown} is not a valid URL: {exc}", source=shown) from exc
    spool: IO[bytes] | None = None
    try:
        timeout = httpx.Timeout(options.url_timeout)
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code in (404, 410):
                raise SourceNotFoundError(f"{shown} answered HTTP {response.status_code}", source=shown)
            if response.status_code >= 400:
                raise UnreachableSourceError(f"{shown} answered HTTP {response.status_code}", source=shown)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit():
                _check_size(int(declared), options, shown)
            mime = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
            if mime and mime.startswith(("text/html", "application/json")):
                raise UnsupportedMediaError(f"{shown} is {mime}, not media", source=shown)
            buf = io.BytesIO()
            size = 0
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                _check_size(size, options, shown)
                if spool is None and size > options.download_in_memory_bytes:
                    spool = tempfile.NamedTemporaryFile(prefix="molmo-rag-", delete=False)
                    spool.write(buf.getvalue())
                    buf = None
                (spool if spool is not None else buf).write(chunk)
    except InputError:
        if spool is not None:
            spool.close()
            _unlink_quietly(spool.name)
        raise
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        if spool is not None:
            spool.close()
            _unlink_quietly(spool.name)
        raise UnreachableSourceError(f"cannot fetch {shown}: {type(exc).__name__}: {exc}", source=shown) from exc
    # A URL with a user name or password is not handed on: backends would send it (and the
    # password) to a hosted API; they send the bytes fetched here instead.
    remote = url if shown == url else None
    if spool is None:
        return Blob(source=shown, data=buf.getvalue(), remote_url=remote, mime=mime)
    spool.close()
    blob = Blob(source=shown, path=Path(spool.name), remote_url=remote, mime=mime)
    weakref.finalize(blob, _unlink_quietly, spool.name)
    return blob


_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", re.DOTALL)


def _strip_credentials(url: str) -> str:
    """The URL without ``user:password@`` (works on malformed URLs too)."""
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    scheme, authority, tail = match.groups()
    return f"{scheme}{authority.rpartition('@')[2]}{tail}"


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
def classify(blob: Blob) -> Kind:
    """The kind of a blob's media, or a typed InputError."""
    try:
        size = blob.size
    except OSError as exc:
        raise SourceNotFoundError(f"cannot open {blob.source}: {exc.strerror}", source=blob.source) from exc
    if size == 0:
        raise CorruptMediaError(f"{blob.source} is empty (0 bytes)", source=blob.source)
    kind = sniff(blob.head(4096), blob.name)
    if kind == "zip":
        if _is_pptx(blob):
            return "pptx"
        if blob.suffix == ".pptx":
            raise CorruptMediaError(f"{blob.source} is a ZIP file but not a PowerPoint deck", source=blob.source)
        raise UnsupportedMediaError(f"{blob.source} is a ZIP archive, not an image, deck or video", source=blob.source)
    if kind == "ole":
        raise UnsupportedMediaError(
            f"{blob.source} is a legacy Office file (.ppt/.doc); save it as .pptx", source=blob.source
        )
    if kind == "audio":
        raise UnsupportedMediaError(f"{blob.source} is audio only; there are no pictures to read", source=blob.source)
    if kind == "unknown":
        suffix = blob.suffix
        if suffix in SLIDE_EXTENSIONS | VIDEO_EXTENSIONS | IMAGE_EXTENSIONS:
            raise CorruptMediaError(
                f"{blob.source} is named {suffix} but its bytes are not that format", source=blob.source
            )
        raise UnsupportedMediaError(f"{blob.source} is not an image, slide deck or video", source=blob.source)
    return kind


def _items_of(blob: Blob, options: ReaderOptions) -> Iterator[MediaItem]:
    kind = classify(blob)
    if kind in ("image", "heic"):
        from .images import read_image

        yield read_image(blob, options)
    elif kind == "pdf":
        from .slides import read_pdf

        yield from read_pdf(blob, options)
    elif kind == "pptx":
        from .slides import read_pptx

        yield from read_pptx(blob, options)
    else:
        from .video import read_video

        yield from read_video(blob, options)


def _is_single(source: Any) -> bool:
    single = (str, bytes, bytearray, memoryview, os.PathLike)
    return isinstance(source, single) or _is_pil(source) or hasattr(source, "read")


def read(sources: Any, options: ReaderOptions | None = None) -> Iterator[MediaItem | InputError]:
    """Yield the media items of ``sources`` lazily, in order.

    ``sources`` is one source or an iterable of them (paths, folders, globs, URLs, data
    URIs, bytes, file objects, PIL images). A source that cannot be read yields its typed
    :class:`InputError` (``.source`` set) and reading goes on with the next.
    """
    options = options or ReaderOptions()
    if _is_single(sources) or not isinstance(sources, Iterable):
        sources = [sources]  # a lone unreadable object becomes its UnsupportedMediaError
    for source in sources:
        for blob in expand(source, options):
            if isinstance(blob, InputError):
                yield blob
            elif _is_pil(blob):
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
        yield err
    except (MolmoRagError, MemoryError):
        raise  # a missing extra or a bad option concerns every source, not this one
    except Exception as exc:  # a reader bug must not end the batch: report it on this source
        log.exception("unexpected error reading %s", blob.source)
        yield CorruptMediaError(f"cannot read {blob.source}: {type(exc).__name__}: {exc}", source=blob.source)

