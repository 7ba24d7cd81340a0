"""Opening a video with PyAV (imported lazily), seeking, and decoding from a time on, with
FFmpeg's errors turned into typed ones."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import CorruptMediaError, MissingDependencyError, SourceNotFoundError, UnsupportedMediaError
from .ffmpeg_errors import _REDO, _ffmpeg_reason, _memory_error, _unreadable

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob

_FAST_DECODE = {"skip_loop_filter": "all"}


def _av():
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "video", "reading videos") from exc
    return av


@contextmanager
def _opened(blob: "Blob") -> Iterator[Any]:
    av = _av()
    try:
        container = av.open(blob.av_input(), metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise SourceNotFoundError(f"no such file: {blob.source}", source=blob.source) from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise _unreadable(blob, exc) from exc
    except av.error.MemoryError as exc:
        raise _memory_error(blob, exc) from exc
    except av.FFmpegError as exc:
        raise CorruptMediaError(
            f"{blob.source}: cannot be opened as a video (FFmpeg: {_ffmpeg_reason(exc)}); "
            "check that it is a video, or re-export it as MP4 (H.264)",
            source=blob.source,
        ) from exc
    try:
        if not container.streams.video:
            if container.streams.audio:
                raise UnsupportedMediaError(f"{blob.source} has no video to read (audio only)", source=blob.source)
            # e.g. an MP4 cut inside its index ('moov'): the container opens, no stream is usable
            raise CorruptMediaError(
                f"{blob.source} has no readable video or audio stream (truncated or damaged)", source=blob.source
            )
        yield container
    finally:
        container.close()


@contextmanager
def _decoding(blob: "Blob") -> Iterator[Any]:
    """Decode errors inside the block become CorruptMediaError."""
    av = _av()
    try:
        yield
    except (av.error.InvalidDataError, av.error.EOFError, av.error.PermissionError) as exc:
        raise CorruptMediaError(
            f"{blob.source}: damaged video: decoding failed ({_ffmpeg_reason(exc)}); {_REDO}", source=blob.source
        ) from exc
    except av.error.MemoryError as exc:
        raise _memory_error(blob, exc) from exc
    except av.FFmpegError as exc:
        raise CorruptMediaError(
            f"{blob.source}: cannot be decoded (FFmpeg: {_ffmpeg_reason(exc)}); re-export it as MP4 (H.264)",
            source=blob.source,
        ) from exc


def _video_stream(container: Any, fast: bool = False, skip: str = "DEFAULT") -> Any:
    """The first video stream, set up for decoding.

    ``fast`` skips the deblocking filter (blockier pictures; for scene detection only).
    ``skip`` is FFmpeg's skip_frame: "NONREF" drops frames nothing else is predicted from
    (the rest decode exactly), "BIDIR" drops every B-frame (scene detection only).
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if fast:
        stream.codec_context.options = dict(_FAST_DECODE)
    stream.codec_context.skip_frame = skip
    return stream


def _frame_time(frame: Any) -> float | None:
    return float(frame.time) if frame.pts is not None and frame.time is not None else None


def _seek(container: Any, stream: Any, seconds: float) -> bool:
    """Seek a freshly opened container to the keyframe at or before ``seconds`` (stream clock).

    False when FFmpeg refuses (no keyframe before that time, as in a file that starts after
    a lost keyframe): decoding then simply starts from the beginning."""
    target = int(math.floor(seconds / stream.time_base)) if seconds > 0 else 0
    try:
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
    except _av().error.PermissionError:
        return False
    return True


def _decoded(
    container: Any, stream: Any, damage: list[Exception] | None, on_packet: Any = None
) -> Iterator[Any]:
    """``container.decode(stream)``; with a ``damage`` list, an FFmpeg error ends the frames
    instead: the frames the decoder still holds are flushed out and the error is appended.
    (A file cut inside a packet fails there, and the frames before the cut still count.)
    ``on_packet`` (with ``damage`` only) sees every packet read, decoded or skipped."""
    if damage is None:
        yield from container.decode(stream)
        return
    av = _av()
    try:
        for packet in container.demux(stream):
            if on_packet is not None:
                on_packet(packet)
            yield from packet.decode()
    except av.FFmpegError as exc:
        damage.append(exc)
        try:
            yield from stream.codec_context.decode(None)
        except av.FFmpegError:
            pass


def _decode_at(
    blob: "Blob",
    seconds: float,
    fast: bool = False,
    skip: str = "DEFAULT",
    damage: list[Exception] | None = None,
) -> Iterator[Any]:
    """Decoded frames from the keyframe at or before ``seconds`` (stream clock) to the end.

    In files without an index (MPEG-TS above all) FFmpeg's seek can land on a later keyframe
    or past the last one (or past the end of a truncated file). Then the seek is retried
    further back (1, 4, 16... s before) and, at last, decoding starts from the beginning:
    slower, never wrong. With a ``damage`` list, a decoding error ends the frames and is
    appended to it (see :func:`_decoded`)."""
    back = 0.0
    while True:
        target = seconds - back
        errors: list[Exception] | None = None if damage is None else []
        with _opened(blob) as container, _decoding(blob):
            stream = _video_stream(container, fast=fast, skip=skip)
            seeked = target > 0 and _seek(container, stream, target)
            frames = _decoded(container, stream, errors)
            first = next(frames, None)
            first_time = _frame_time(first) if first is not None else None
            overshot = first is None or (first_time is not None and first_time > seconds + 1e-3)
            if seeked and overshot:
                back = 1.0 if back == 0 else back * 4
                continue
            try:
                if first is None:
                    return
                yield first
                yield from frames
            finally:
                if damage is not None:
                    damage.extend(errors)
            return
