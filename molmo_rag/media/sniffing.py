"""What a file is, told by its bytes: magic numbers first, the name only when they say
nothing. :func:`sniff` reads a head of bytes; :func:`classify` looks deeper where it must
(inside ZIPs and OLE containers) and turns what is no readable media into a typed error
that says what the bytes are."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from typing import IO, Literal

from ..errors import CorruptMediaError, InputError, SourceNotFoundError, UnsupportedMediaError
from .blob import Blob
from .options import (
    AUDIO_EXTENSIONS,
    KEYNOTE_EXTENSIONS,
    LIBREOFFICE_DECK_EXTENSIONS,
    OOXML_DECK_EXTENSIONS,
    RAW_IMAGE_EXTENSIONS,
    READABLE_EXTENSIONS,
    UNSUPPORTED_IMAGE_EXTENSIONS,
)

__all__ = ["Kind", "sniff", "classify", "keynote_error"]

Kind = Literal["image", "heic", "pdf", "pptx", "odp", "ppt", "keynote", "video", "audio", "zip", "ole", "unknown"]
"""What :func:`sniff` and :func:`classify` tell; ``pptx`` is any OOXML deck (.pptx, .pptm,
.ppsx, .potx, ...), ``odp`` an OpenDocument presentation (zipped or flat XML), ``ppt`` a
legacy binary PowerPoint deck."""
_SNIFF_BYTES = 8192


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


def _zip_opens(blob: Blob) -> bool:
    """Whether the ZIP's central directory (its table of contents) can be read."""
    try:
        with blob.open() as f, zipfile.ZipFile(f):
            return True
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError):
        return False


_KEYNOTE_MEMBERS = frozenset({"Index/Document.iwa", "Index.zip", "index.apxl", "index.apxl.gz"})

# Compound File Binary (OLE2) layout, as legacy .ppt/.doc/.xls use it.
_OLE_FREE, _OLE_END = 0xFFFFFFFF, 0xFFFFFFFE
_OLE_MAX_DIRECTORY_SECTORS = 4096
_POWERPOINT_STREAM = "PowerPoint Document"
_ENCRYPTED_OOXML_STREAMS = frozenset({"EncryptionInfo", "EncryptedPackage"})


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


def _ole_streams(blob: Blob) -> set[str]:
    """The stream names of an OLE2 file (empty when its directory cannot be read)."""
    try:
        with blob.open() as f:
            return set(_ole_stream_names(f))
    except (OSError, struct.error, ValueError):
        return set()


def _encrypted_office_error(blob: Blob) -> UnsupportedMediaError:
    """A password-protected OOXML file: Office wraps the encrypted ZIP in an OLE2 container
    (``EncryptionInfo`` + ``EncryptedPackage``), which hides whether it is a deck."""
    source = blob.source
    if blob.suffix in OOXML_DECK_EXTENSIONS:
        what = "a password-protected (encrypted) deck"
    else:
        what = "a password-protected (encrypted) Office file (a deck, document or workbook)"
    return UnsupportedMediaError(
        f"{source} is {what}: it cannot be read without its password; open it in PowerPoint, "
        "remove the password and save again",
        source=source,
    )


def keynote_error(source: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(
        f"{source} is a Keynote deck: Keynote files cannot be read; export to PPTX or PDF", source=source
    )


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
    elif kind == "ole":
        streams = _ole_streams(blob)
        if _POWERPOINT_STREAM in streams:
            kind = "ppt"
        elif _ENCRYPTED_OOXML_STREAMS <= streams:
            raise _encrypted_office_error(blob)
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
        return keynote_error(source)
    if kind == "zip" and suffix in OOXML_DECK_EXTENSIONS | LIBREOFFICE_DECK_EXTENSIONS and not _zip_opens(blob):
        return CorruptMediaError(
            f"{source} is a damaged or truncated ZIP archive (its table of contents cannot be read), "
            "not a readable deck",
            source=source,
        )
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


