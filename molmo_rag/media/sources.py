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
import stat
import struct
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
from .netaddr import is_public_url
from .options import (
    AUDIO_EXTENSIONS,
    KEYNOTE_EXTENSIONS,
    LIBREOFFICE_DECK_EXTENSIONS,
    MEDIA_EXTENSIONS,
    NOT_MEDIA_EXTENSIONS,
    OOXML_DECK_EXTENSIONS,
    RAW_IMAGE_EXTENSIONS,
    READABLE_EXTENSIONS,
    UNSUPPORTED_IMAGE_EXTENSIONS,
    ReaderOptions,
)

__all__ = ["Blob", "Kind", "read", "expand", "sniff", "classify", "fetch_url", "from_data_uri"]

log = logging.getLogger(__name__)

Kind = Literal["image", "heic", "pdf", "pptx", "odp", "ppt", "keynote", "video", "audio", "zip", "ole", "unknown"]
"""What :func:`sniff` and :func:`classify` tell; ``pptx`` is any OOXML deck (.pptx, .pptm,
.ppsx, .potx, ...), ``odp`` an OpenDocument presentation (zipped or flat XML), ``ppt`` a
legacy binary PowerPoint deck."""
_CHUNK = 1 << 20
_SNIFF_BYTES = 8192


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


_ODF_PRESENTATION = b"application/vnd.oasis.opendocument.presentation"  # also matches -template

# MPEG audio frame header fields (ISO 11172-3 / 13818-3), indexed by their bits.
_MPEG_BITRATES_KBPS = {  # (is MPEG-1, layer) -> bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_SAMPLE_RATES = {0b11: (44100, 48000, 32000), 0b10: (22050, 24000, 16000), 0b00: (11025, 12000, 8000)}
_ADTS_SAMPLE_RATE_INDEXES = 13


def _mpeg_audio_frame_length(head: bytes, at: int = 0) -> int | None:
    """Length in bytes of the MPEG audio frame whose header starts at ``at``; None when the
    four bytes there are not a valid header (sync, version, layer, bitrate, sample rate)."""
    if len(head) < at + 4:
        return None
    b1, b2, b3 = head[at + 1], head[at + 2], head[at + 3]
    if head[at] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 0b11, (b1 >> 1) & 0b11
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 0b11, (b2 >> 1) & 1
    if version == 0b01 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3 or b3 & 0b11 == 0b10:
        return None  # reserved values (emphasis 10 too); free-format bitrate is not accepted
    mpeg1, layer = version == 0b11, 4 - layer_bits
    bitrate = _MPEG_BITRATES_KBPS[(mpeg1, layer)][bitrate_index - 1] * 1000
    sample_rate = _MPEG_SAMPLE_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // sample_rate + padding) * 4
    per_frame = 144 if layer == 2 or mpeg1 else 72
    return per_frame * bitrate // sample_rate + padding


def _adts_frame_length(head: bytes, at: int = 0) -> int | None:
    """Length of the AAC (ADTS) frame whose header starts at ``at``; None when not valid."""
    if len(head) < at + 7 or head[at] != 0xFF or head[at + 1] & 0xF6 != 0xF0:
        return None  # 12 sync bits, layer 00
    if (head[at + 2] >> 2) & 0x0F >= _ADTS_SAMPLE_RATE_INDEXES:
        return None
    length = ((head[at + 3] & 0x03) << 11) | (head[at + 4] << 3) | (head[at + 5] >> 5)
    return length if length >= 7 else None


def _is_frame_stream(head: bytes, frame_length) -> bool:
    """A valid frame header at 0 and, when the head reaches that far, another right after."""
    length = frame_length(head)
    if length is None:
        return False
    return len(head) < length + 4 or frame_length(head, length) is not None


def _is_flat_odp(head: bytes) -> bool:
    """A flat-XML OpenDocument presentation (.fodp)."""
    return head.lstrip().startswith(b"<") and b'office:mimetype="' + _ODF_PRESENTATION in head


def sniff(head: bytes, name: str = "") -> Kind:
    """The kind of a file from its first bytes (8 KiB is plenty).

    ``zip`` and ``ole`` containers are told apart further by :func:`classify`, which can
    look inside; ``name`` is accepted for callers that have one but the bytes decide."""
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
    if head.startswith((b"ID3", b"fLaC")):
        return "audio"
    if _is_frame_stream(head, _mpeg_audio_frame_length) or _is_frame_stream(head, _adts_frame_length):
        return "audio"  # MP3 / MP2 or AAC without an ID3 tag
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if _is_flat_odp(head):
        return "odp"
    return "unknown"


def _zip_kind(blob: Blob) -> Kind:
    """What a ZIP holds: an OOXML deck (``ppt/presentation.xml``, whatever the file's name),
    an OpenDocument presentation (its ``mimetype``), a Keynote deck, or just ``zip``."""
    try:
        with blob.open() as f, zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            if "ppt/presentation.xml" in names:
                return "pptx"
            if "mimetype" in names:
                with z.open("mimetype") as m:
                    if m.read(len(_ODF_PRESENTATION)) == _ODF_PRESENTATION:
                        return "odp"
            if names & _KEYNOTE_MEMBERS:
                return "keynote"
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError, NotImplementedError):
        pass
    return "zip"


_KEYNOTE_MEMBERS = frozenset({"Index/Document.iwa", "Index.zip", "index.apxl", "index.apxl.gz"})

# Compound File Binary (OLE2) layout, as legacy .ppt/.doc/.xls use it.
_OLE_FREE, _OLE_END = 0xFFFFFFFF, 0xFFFFFFFE
_OLE_MAX_DIRECTORY_SECTORS = 4096
_POWERPOINT_STREAM = "PowerPoint Document"


def _ole_stream_names(f: IO[bytes]) -> Iterator[str]:
    """Names of the streams in an OLE2 compound file, read from its directory sectors
    (following the FAT chain that the header's own DIFAT entries cover)."""
    header = f.read(512)
    sector_size = 1 << struct.unpack_from("<H", header, 0x1E)[0]
    first_directory = struct.unpack_from("<I", header, 0x30)[0]
    difat = struct.unpack_from("<109I", header, 0x4C)

    def read_sector(number: int) -> bytes:
        f.seek((number + 1) * sector_size)
        return f.read(sector_size)

    def next_sector(number: int) -> int:
        per_sector = sector_size // 4
        index = number // per_sector
        if index >= len(difat) or difat[index] in (_OLE_FREE, _OLE_END):
            return _OLE_END
        return struct.unpack_from("<I", read_sector(difat[index]), (number % per_sector) * 4)[0]

    sector, visited = first_directory, 0
    while sector not in (_OLE_FREE, _OLE_END) and visited < _OLE_MAX_DIRECTORY_SECTORS:
        data = read_sector(sector)
        for offset in range(0, len(data) - 127, 128):
            name_length, entry_type = struct.unpack_from("<HB", data, offset + 64)
            if entry_type == 2 and 2 <= name_length <= 64:  # a stream
                yield data[offset : offset + name_length - 2].decode("utf-16-le", "replace")
        sector, visited = next_sector(sector), visited + 1


def _is_powerpoint_ole(blob: Blob) -> bool:
    """An OLE2 file with a "PowerPoint Document" stream: a legacy .ppt/.pps/.pot deck."""
    try:
        with blob.open() as f:
            return any(name == _POWERPOINT_STREAM for name in _ole_stream_names(f))
    except (OSError, struct.error, ValueError):
        return False


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
    if suffix in options.extensions:
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


def _keynote_error(source: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(
        f"{source} is a Keynote deck: Keynote files cannot be read; export to PPTX or PDF", source=source
    )


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
            yield _keynote_error(path)
        elif seen is not None and options.recursive:
            yield from _walk(Path(path), options, seen)
    elif stat.S_ISREG(info.st_mode):
        if suffix in options.extensions and not _is_other_file_sharing_the_ending(path, suffix):
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
            yield Blob(source=str(entry), path=entry)
    if not found:
        raise SourceNotFoundError(f"no media files in folder {str(path)!r}", source=str(path))


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
        yield entry if isinstance(entry, InputError) else Blob(source=str(entry), path=entry)


def _path_blobs(source: str | os.PathLike, options: ReaderOptions) -> Iterator[Blob | InputError]:
    """A path named by the caller: a file (whatever its ending), a folder, or a glob."""
    path = Path(source).expanduser()
    if path.is_dir() and _is_keynote_bundle(str(path)):
        raise _keynote_error(str(path))
    if path.is_dir():
        yield from _walk_blobs(path, options)
    elif path.is_file():
        yield Blob(source=str(path), path=path)
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
        yield from _path_blobs(source, options)
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
            final_url = str(response.url)
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
    remote = url if _may_be_passed_on(url, final_url, options) else None
    if spool is None:
        return Blob(source=shown, data=buf.getvalue(), remote_url=remote, mime=mime)
    spool.close()
    blob = Blob(source=shown, path=Path(spool.name), remote_url=remote, mime=mime)
    weakref.finalize(blob, _unlink_quietly, spool.name)
    return blob


def _may_be_passed_on(url: str, final_url: str, options: ReaderOptions) -> bool:
    """Whether backends may hand ``url`` itself to a hosted API instead of the bytes fetched here.

    Not with a user name or password in it (they would travel with it), and not when it (or
    where it redirected) is on this machine or a private network, which a hosted service
    cannot reach, unless ``options.pass_private_urls``."""
    if _strip_credentials(url) != url:
        return False
    if options.pass_private_urls:
        return True
    return is_public_url(url) and (final_url == url or is_public_url(final_url))


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
_READABLE_KINDS = frozenset({"image", "heic", "pdf", "pptx", "odp", "ppt", "video"})
_MEDIA_MIME_PREFIXES = (
    "image/",
    "video/",
    "audio/",
    "application/pdf",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml",
    "application/vnd.oasis.opendocument.presentation",
)


def classify(blob: Blob) -> Kind:
    """The kind of a blob's media (one of image, heic, pdf, pptx, odp, ppt, video), or a
    typed InputError that says what the bytes are."""
    try:
        size = blob.size
    except OSError as exc:
        raise SourceNotFoundError(f"cannot open {blob.source}: {exc.strerror}", source=blob.source) from exc
    if size == 0:
        raise CorruptMediaError(f"{blob.source} is empty (0 bytes)", source=blob.source)
    head = blob.head(_SNIFF_BYTES)
    kind = sniff(head, blob.name)
    if kind == "zip":
        kind = _zip_kind(blob)
    elif kind == "ole" and _is_powerpoint_ole(blob):
        kind = "ppt"
    if _is_camera_raw(blob, head):
        raise UnsupportedMediaError(
            f"{blob.source} is a camera raw file ({blob.suffix}): raw files cannot be read; "
            "export it to JPEG or TIFF",
            source=blob.source,
        )
    if kind in _READABLE_KINDS:
        return kind
    raise _unreadable_error(blob, kind)


def _is_camera_raw(blob: Blob, head: bytes) -> bool:
    """Named as a raw format and not plainly a JPEG or PNG (raw TIFF-like files hold only a
    small preview that would pass for the photo)."""
    return blob.suffix in RAW_IMAGE_EXTENSIONS and not head.startswith((b"\xff\xd8\xff", b"\x89PNG"))


def _declared_as(blob: Blob) -> str | None:
    """How the source presents itself as media: "served as image/jpeg", "named .png"."""
    if blob.mime and blob.mime.startswith(_MEDIA_MIME_PREFIXES):
        verb = "served" if blob.remote_url or blob.source.startswith(("http://", "https://")) else "declared"
        return f"{verb} as {blob.mime}"
    if blob.suffix in READABLE_EXTENSIONS:
        return f"named {blob.suffix}"
    return None


def _unreadable_error(blob: Blob, kind: Kind) -> InputError:
    """The error for bytes that are no readable media, saying what they are."""
    source, suffix = blob.source, blob.suffix
    if kind == "keynote" or (kind == "zip" and suffix in KEYNOTE_EXTENSIONS):
        return _keynote_error(source)
    if kind == "zip" and suffix in OOXML_DECK_EXTENSIONS:
        return CorruptMediaError(f"{source} is a ZIP file but not a PowerPoint deck", source=source)
    if kind == "zip" and suffix in LIBREOFFICE_DECK_EXTENSIONS:
        return CorruptMediaError(f"{source} is a ZIP file but not an OpenDocument presentation", source=source)
    if kind == "zip":
        return UnsupportedMediaError(f"{source} is a ZIP archive, not an image, deck or video", source=source)
    if kind == "ole":
        return UnsupportedMediaError(
            f"{source} is a legacy Office file (.doc/.xls/.msg) but not a PowerPoint deck", source=source
        )
    declared = _declared_as(blob)
    if kind == "audio" or (kind == "unknown" and suffix in AUDIO_EXTENSIONS and not blob.mime):
        also = f" ({declared})" if declared else ""
        return UnsupportedMediaError(f"{source}{also} is audio only; there are no pictures to read", source=source)
    if declared:
        return CorruptMediaError(f"{source} is {declared} but its bytes are not an image, deck or video", source=source)
    if suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
        return UnsupportedMediaError(
            f"{source}: {suffix} images cannot be read; convert it to PNG or JPEG", source=source
        )
    return UnsupportedMediaError(f"{source} is not an image, slide deck or video", source=source)


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
    elif kind in ("odp", "ppt"):
        from .slides import read_libreoffice_deck

        yield from read_libreoffice_deck(blob, options, kind)
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

