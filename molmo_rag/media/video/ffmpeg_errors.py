"""FFmpeg's errors told in words ("invalid data found when processing input"), never as PyAV's
``[Errno 1094995529]``, with what to do about them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import CorruptMediaError

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob

_REDO = "re-export or re-download it"


def _ffmpeg_reason(exc: BaseException) -> str:
    """What an FFmpeg error says, in words: PyAV's ``[Errno 1094995529] Invalid data found
    when processing input: 'x.mp4'`` (AVERROR_INVALIDDATA) becomes "invalid data found when
    processing input" (the path is told by the message around it)."""
    text = str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__
    return text[:1].lower() + text[1:]


def _mp4_ends_before_its_index(blob: "Blob") -> bool:
    """An MP4/MOV whose top-level boxes run past the end of the file before any 'moov' (the
    index): what a download or a recording that stopped early leaves, as encoders write the
    index last."""
    try:
        size = blob.size
        with blob.open() as f:
            at, first = 0, True
            while at + 8 <= size:
                f.seek(at)
                header = f.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if first and kind != b"ftyp":
                    return False
                if kind == b"moov" or not kind.isalnum():
                    return False
                if length == 1 and len(header) == 16:  # a 64-bit size follows
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:  # 'to the end of the file'
                    length = size - at
                if length < 8:
                    return False
                if at + length > size:
                    return True
                at, first = at + length, False
    except OSError:
        return False
    return False


def _unreadable(blob: "Blob", exc: BaseException) -> CorruptMediaError:
    """The error of a file FFmpeg cannot open: truncated or damaged, said in words."""
    if _mp4_ends_before_its_index(blob):
        what = ": the MP4 ends before its index (moov), as a download or recording that stopped early does"
    else:
        what = f" (FFmpeg: {_ffmpeg_reason(exc)})"
    return CorruptMediaError(f"{blob.source}: truncated or damaged video{what}; {_REDO}", source=blob.source)


def _memory_error(blob: "Blob", exc: Exception) -> CorruptMediaError:
    """FFmpeg could not allocate what the file asks for (ENOMEM), typically a damaged size or
    index field (an MP4 whose index says each frame is a GiB, over FFmpeg's allocation cap)."""
    return CorruptMediaError(
        f"{blob.source}: damaged video: it asks for more memory than FFmpeg could allocate "
        f"(a damaged size or index field); {_REDO}",
        source=blob.source,
    )


def _no_frame(blob: "Blob", damage: list[Exception]) -> CorruptMediaError:
    reason = f" (decoding failed: {_ffmpeg_reason(damage[0])})" if damage else ""
    return CorruptMediaError(f"{blob.source} has no decodable frame{reason}; {_REDO}", source=blob.source)
