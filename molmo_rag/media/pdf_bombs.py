"""PDF bombs, found before PDFium parses a page.

PDFium inflates a page's whole content stream into memory to parse it, and decodes an
embedded image at its full declared size to render it: a 300 KB file whose content stream
inflates to 300 MB, or whose image declares 50,000 x 50,000 pixels, would take that much
memory. :func:`refuse_pdf_bomb` walks the file's streams (their dictionaries, read as raw
bytes) and, with bounded memory, inflates each Flate stream big enough to matter, up to a
cap, discarding what it makes.

Limits: streams of an encrypted file (their bytes are ciphertext) and streams whose first
filter is not Flate (LZW, ASCII85 before Flate) are not inflated here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from ..errors import MediaTooLargeError
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from .blob import Blob

__all__ = ["refuse_pdf_bomb", "BOMB_BYTES", "BOMB_RATIO"]

BOMB_BYTES = 64 * 1024**2
BOMB_RATIO = 100
"""A stream is a bomb when it inflates to more than BOMB_BYTES and more than BOMB_RATIO
times its size (the rule the ZIP bomb check of decks uses too); an image stream may inflate
to its declared pixels, which max_image_pixels bounds."""
_DEFLATE_MAX_RATIO = 1032
_STREAM = re.compile(rb"(?<![A-Za-z])stream(?:\r\n|\n|\r)")
_FLATE_FIRST = re.compile(rb"/Filter\s*(?:\[\s*)?/(?:FlateDecode|Fl)(?![A-Za-z])")
_IMAGE = re.compile(rb"/Subtype\s*/Image(?![A-Za-z])")
_WIDTH = re.compile(rb"/Width\s+(\d{1,10})(?![\d.])")
_HEIGHT = re.compile(rb"/Height\s+(\d{1,10})(?![\d.])")
_DIRECT_LENGTH = re.compile(rb"/Length\s+(\d{1,12})(?!\s+\d+\s+R)(?![\d.])")
_SCAN_CHUNK = 1 << 20
_OVERLAP = 16
_DICT_WINDOW = 16 * 1024
_INFLATE_STEP = 1 << 20


def _streams(f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(where its data starts, its dictionary) of each ``stream`` keyword in the file, read
    chunk by chunk (a keyword inside binary data gives a dictionary that does not parse or
    data that does not inflate: harmless)."""
    offset, tail = 0, b""
    while True:
        f.seek(offset)
        chunk = f.read(_SCAN_CHUNK)
        if not chunk:
            return
        window, base = tail + chunk, offset - len(tail)
        found = [m for m in _STREAM.finditer(window) if m.end() > len(tail)]
        offset += len(chunk)
        tail = window[-_OVERLAP:]
        for match in found:
            keyword = base + match.start()
            f.seek(max(0, keyword - _DICT_WINDOW))
            before = f.read(keyword - max(0, keyword - _DICT_WINDOW))
            yield base + match.end(), before[before.rfind(b"obj") + 1 :]


def _inflated_size(f: IO[bytes], start: int, limit: int) -> tuple[int, int]:
    """(bytes a Flate stream inflates to, stopping just past ``limit``; bytes it took)."""
    f.seek(start)
    inflater = zlib.decompressobj()
    made = taken = 0
    while made <= limit and not inflater.eof:
        data = inflater.unconsumed_tail or f.read(_INFLATE_STEP)
        if not data:
            break
        if not inflater.unconsumed_tail:
            taken += len(data)
        made += len(inflater.decompress(data, _INFLATE_STEP))
    return made, taken - len(inflater.unused_data) - len(inflater.unconsumed_tail)


def refuse_pdf_bomb(blob: "Blob", options: ReaderOptions) -> None:
    """Raise MediaTooLargeError for a PDF holding a stream that inflates past the bomb rule
    or an image declaring more than ``max_image_pixels``; nothing is kept in memory."""
    source = blob.source
    with blob.open() as f:
        for start, header in _streams(f):
            image = _IMAGE.search(header) is not None
            width, height = _WIDTH.search(header), _HEIGHT.search(header)
            declared = int(width.group(1)) * int(height.group(1)) if image and width and height else 0
            if declared > options.max_image_pixels:
                raise MediaTooLargeError(
                    f"{source} holds an image declaring {int(width.group(1))}x{int(height.group(1))} = {declared} "
                    f"pixels, over max_image_pixels ({options.max_image_pixels}); refused as a possible "
                    "decompression bomb",
                    source=source,
                )
            if _FLATE_FIRST.search(header) is None:
                continue
            limit = max(BOMB_BYTES, 4 * declared + (1 << 20))  # an image: up to 4 bytes a pixel
            length = _DIRECT_LENGTH.search(header)
            if length is not None and int(length.group(1)) * _DEFLATE_MAX_RATIO <= limit:
                continue  # too short to inflate past the limit
            try:
                made, taken = _inflated_size(f, start, limit)
            except zlib.error:
                continue  # not Flate data after all (encrypted, or a keyword inside binary data)
            if made > limit and made > BOMB_RATIO * max(taken, 1):
                raise MediaTooLargeError(
                    f"{source} is a PDF bomb: {taken} bytes of one of its streams (at byte {start}) inflate to "
                    f"more than {limit} bytes; refused without rendering it",
                    source=source,
                )
