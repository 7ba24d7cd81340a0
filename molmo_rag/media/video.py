"""Videos to segments: probe, cut, and decode on demand with PyAV.

A video is cut into segments that cover it from 0 to its end without gaps or overlaps,
never longer than 120 s: fixed windows, or shots (scene-aware). Shot boundaries are found
by PySceneDetect's AdaptiveDetector fed with tiny frames that PyAV decodes fast: B-frames
and the deblocking filter are skipped, and the small picture is sampled straight from the
decoded YUV planes (no full-size colour conversion). The scan runs in a background thread
and segments are yielded while it goes on, so sampling the first segments overlaps
scanning the rest; no more than a few frames are ever held in memory.

Each segment's loader decodes only what it is asked for: it seeks to the segment, keeps
the frames nearest the wanted times (in *clip time*, 0 at the segment start), applies the
rotation stored in the display matrix and downscales. When samples are several frames
apart, non-reference frames are not decoded at all; the timestamps returned are those of
the frames actually kept.

Upload clips (what REST backends send) are the segment's own packets, copied, when a small
H.264 segment runs from keyframe to keyframe; otherwise a re-encode at the size and frame
rate Molmo2 reads (640 px, 4 fps unless ReaderOptions sets clip caps).

Segments follow the frames that exist: a stretch without frames longer than
:func:`frame_gap_seconds` (a camera that records on motion, clips joined days apart, a
damaged timestamp) is a gap, not footage. No segment covers it: the segments of each stretch
of footage cover it as a whole video's would, and the first after a gap says "gap". Fixed
windows find the gaps from the packets' timestamps (nothing is decoded), the scene scan from
the frames it decodes anyway.

A truncated file (frames stop well before the length its header declares, or a decoding
error stops them) is read as far as it decodes: its segments cover the readable part and
``read_video`` raises CorruptMediaError after them, naming the second from which on
nothing could be read. FFmpeg's errors are told in words ("invalid data found when
processing input"), never as PyAV's ``[Errno 1094995529]``, with what to do about them.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    CorruptMediaError,
    MediaTooLargeError,
    MissingDependencyError,
    SourceNotFoundError,
    UnsupportedMediaError,
)
from .images import fit_within
from .items import MediaItem, VideoFrames
from .options import MAX_SEGMENT_SECONDS, ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

    from .blob import Blob

__all__ = [
    "VideoInfo",
    "Segment",
    "Gap",
    "frame_gap_seconds",
    "VideoSegmentLoader",
    "probe",
    "detect_cuts",
    "CutScan",
    "plan_segments",
    "SegmentPlanner",
    "read_video",
    "sample_times",
    "clip_limits",
    "read_segment",
]

_FAST_DECODE = {"skip_loop_filter": "all"}

log = logging.getLogger(__name__)

CLIP_PRESET = "veryfast"
"""x264 preset of re-encoded clips."""
REMUX_MAX_BYTES_PER_SECOND = 125_000
"""A segment whose packets take more than this (1 Mbit/s) is re-encoded rather than copied,
so that clips stay small to upload."""


def clip_limits(options: ReaderOptions) -> tuple[int, int, float]:
    """(longer side, shorter side, frame rate) caps of upload clips."""
    return options.clip_max_side, options.clip_short_side, options.clip_max_fps


def _av():
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "video", "reading videos") from exc
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a probe found. Times are seconds from the first frame."""

    duration: float
    fps: float
    frame_count: int
    width: int
    """Width as displayed (rotation applied)."""
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    """Degrees counter-clockwise the decoded pictures are turned to display them."""
    start_time: float
    """Time 0 of the video in the stream's own clock (what seeks are relative to): the
    stream's start, as players and ffmpeg count, or the first frame's time if earlier."""
    codec: str
    has_audio: bool
    exact_duration: bool
    """True when the duration comes from the video stream itself (not the container)."""
    first_frame: float = 0.0
    """Seconds from time 0 to the first frame that decodes: more than 0 when the file starts
    after a lost keyframe (cut out of a longer stream); times are still counted from 0."""
    declared_duration: float | None = None
    """The length the file itself declares (the video stream's duration, a Matroska track's
    DURATION tag, or the header's duration in formats that store one), None when it declares
    none (an estimate from the bit rate does not count)."""
    damage: str | None = None
    """The decoding error that ended the readable part early, if one did."""
    frames: int | None = None
    """How many frames the file holds (its video packets with a timestamp inside the
    readable part), once a scan has counted them; None before, or when no packet has one."""

    @property
    def truncated(self) -> bool:
        """Frames stop well before the declared end, or a decoding error stopped them (known
        once the end has been decoded: by :func:`probe` with ``check_end``)."""
        return self.damage is not None or (
            self.declared_duration is not None and _stops_early(self.duration, self.declared_duration, self.fps)
        )


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    boundary: str
    """Why the segment starts where it does: 'start', 'scene' (a shot boundary), 'window'
    (a fixed window), 'split' (a long shot split into equal parts) or 'gap' (the first
    frame after a stretch without frames)."""


@dataclass(frozen=True)
class Gap:
    """A stretch without frames that is not footage (seconds from time 0)."""

    start: float
    """The end of the last frame before it (0 when the video starts with the gap)."""
    end: float
    """The time of the first frame after it."""


GAP_MIN_FRAMES = 20
"""max_frame_gap_seconds is raised to this many frames at the video's frame rate: frames a
few intervals apart are footage, and the scene scan skips B-frames (H.264 allows 16 in a
row)."""


def frame_gap_seconds(info: "VideoInfo", options: ReaderOptions) -> float:
    """The longest stretch where no frame shows that still counts as footage (see
    ``ReaderOptions.max_frame_gap_seconds``): that option, raised to GAP_MIN_FRAMES frames,
    then lowered to the shortest segment that may start where no frame does (a fixed window;
    in 'scenes' mode a split part, at least half of max_segment_seconds), so that no segment
    falls where no frame shows."""
    if options.max_frame_gap_seconds is None:
        return math.inf
    if options.segment_mode == "fixed":
        part = min(options.segment_seconds, MAX_SEGMENT_SECONDS)
    else:
        part = min(options.max_segment_seconds, MAX_SEGMENT_SECONDS) / 2
    return min(part, max(options.max_frame_gap_seconds, GAP_MIN_FRAMES / info.fps))


def _gap_before(t: float, last: float | None, gap: float, fps: float) -> Gap | None:
    """The gap before the frame at ``t``, if no frame shows for more than ``gap`` seconds
    before it: since the frame at ``last`` (None: since time 0), which shows for one frame
    at the video's rate (never more than ``gap``: a rate that counts the gaps is no guide)."""
    if last is None:
        return Gap(0.0, t) if t > gap else None
    shown = last + min(1.0 / fps, gap)
    return Gap(shown, t) if t - shown > gap else None


# --- opening and probing ----------------------------------------------------------------------
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


def _memory_error(blob: "Blob", exc: Exception) -> CorruptMediaError:
    """FFmpeg could not allocate what the file asks for (ENOMEM), typically a damaged size or
    index field (an MP4 whose index says each frame is a GiB, over FFmpeg's allocation cap)."""
    return CorruptMediaError(
        f"{blob.source}: damaged video: it asks for more memory than FFmpeg could allocate "
        f"(a damaged size or index field); {_REDO}",
        source=blob.source,
    )


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


def _stops_early(readable: float, declared: float, fps: float) -> bool:
    """Whether frames that end at ``readable`` fall short of a declared length (more than a
    second, or three frames, short: the usual slack between container and stream ends)."""
    return readable < declared - max(1.0, 3.0 / fps)


_HEADER_DURATION_FORMATS = frozenset({"matroska", "webm", "flv", "asf"})
"""Containers whose header states the length (elsewhere FFmpeg's container duration may be an
estimate from the bit rate or from the last timestamps, which a truncated file shares)."""


def _tag_seconds(value: Any) -> float | None:
    """Seconds of a Matroska DURATION tag ('00:00:40.000000000')."""
    try:
        hours, minutes, seconds = str(value).strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (TypeError, ValueError):
        return None


def _declared_end(container: Any, stream: Any) -> tuple[float | None, bool]:
    """(End of the video in the stream clock as the file declares it, whether that comes from
    the video stream itself); (None, False) when the file declares no length."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    if stream.duration:
        return start + float(stream.duration * tb), True
    tagged = _tag_seconds(stream.metadata.get("DURATION")) if stream.metadata else None
    if tagged:
        return start + tagged, False
    if container.duration and _HEADER_DURATION_FORMATS & set(container.format.name.split(",")):
        return (container.start_time or 0) / 1_000_000 + container.duration / 1_000_000, False
    return None, False


_RATE_SAMPLE = 64
"""Packets whose spacing tells the frame rate of footage that comes in bursts."""


_MAX_FOOTAGE_FPS = 240.0


def _footage_rate(blob: "Blob", average: float) -> float:
    """The frame rate of the footage, where the stream's average rate counts the gaps between
    its frames too (MP4's is frames / duration: 4.5 fps for two 10 s clips at 25 fps, 100 s
    apart, 1/1800 fps for two frames an hour apart): the typical spacing of the next packets,
    or their typical duration (what the container says each frame shows for), when that is
    over twice as dense (and a frame rate footage has), else ``average``. Reads the first
    packets (nothing is decoded)."""
    stamps: list[int] = []
    durations: list[int] = []
    with _opened(blob) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                stamps.append(stamp)
                if packet.duration:
                    durations.append(packet.duration)
                if len(stamps) >= _RATE_SAMPLE:
                    break
        except _av().FFmpegError:
            pass  # a damaged file: probe finds out where
    stamps = sorted(set(stamps))
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    typical = [statistics.median_low(values) for values in (steps, durations) if len(values) >= 2]
    if not typical:
        return average
    rate = 1 / (min(typical) * time_base)
    return float(rate) if 2 * average < rate <= _MAX_FOOTAGE_FPS else average


def probe(blob: "Blob", options: ReaderOptions | None = None, check_end: bool = True) -> VideoInfo:
    """Duration, frame rate, size and rotation; decodes the first frame (and, with
    ``check_end``, the end) so that damaged files fail here.

    With ``check_end`` a truncated file (frames stop well before the length it declares, or
    a decoding error stops them) is not an error: ``duration`` is then the part that
    decodes, and ``declared_duration`` / ``damage`` say what is missing (``truncated``)."""
    options = options or ReaderOptions()
    with _opened(blob) as container, _decoding(blob):
        stream = _video_stream(container)
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        first = next(iter(container.decode(stream)), None)
        if first is None:
            raise CorruptMediaError(
                f"{blob.source} has a video stream but no decodable frame; {_REDO}", source=blob.source
            )
        first_time = _frame_time(first)
        declared_start = float(stream.start_time * tb) if stream.start_time is not None else None
        stream_start = 0.0 if declared_start is None else declared_start
        if first_time is None:
            origin = stream_start
        elif declared_start is not None and declared_start <= first_time:
            # The first packets may not decode (no keyframe before them): keep the stream's
            # clock anyway, so that times match what players and ffmpeg show.
            origin = declared_start
        else:
            origin = first_time
        first_frame = 0.0 if first_time is None else first_time - origin
        declared, exact = _declared_end(container, stream)
        if declared is not None:
            end = declared
        elif container.duration:  # an estimate: used only until the end is decoded
            end = (container.start_time or 0) / 1_000_000 + container.duration / 1_000_000
        else:
            end = None
        rotation = int(first.rotation or 0) % 360
        coded = (first.width, first.height)
        has_audio = bool(container.streams.audio)
        codec = stream.codec_context.name
    fps = _footage_rate(blob, fps)
    damage = None
    if end is None or check_end:
        last_end, damage = _last_frame_end(blob, origin, end, fps)
        if end is None or not exact or _stops_early(last_end - origin, end - origin, fps):
            end = last_end
        if damage is not None and declared is not None and not _stops_early(last_end - origin, declared - origin, fps):
            damage = None  # an error at the very end of a whole file: nothing worth telling is lost
    duration = max(end - origin, 1.0 / fps)
    if options.max_video_seconds is not None and duration > options.max_video_seconds:
        raise MediaTooLargeError(
            f"{blob.source} lasts {duration:.1f} s, over max_video_seconds ({options.max_video_seconds:g})",
            source=blob.source,
        )
    width, height = (coded[1], coded[0]) if rotation in (90, 270) else coded
    return VideoInfo(
        duration=duration,
        fps=fps,
        frame_count=max(1, round(duration * fps)),
        width=width,
        height=height,
        coded_width=coded[0],
        coded_height=coded[1],
        rotation=rotation,
        start_time=origin,
        codec=codec,
        has_audio=has_audio,
        exact_duration=exact,
        first_frame=first_frame,
        declared_duration=None if declared is None else max(declared - origin, 1.0 / fps),
        damage=damage,
    )


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


def _last_frame_end(blob: "Blob", origin: float, end: float | None, fps: float) -> tuple[float, str | None]:
    """End time of the last decodable frame, decoding only from the keyframe before the end,
    and the error that stopped decoding before the end of the data, if one did."""
    near_end = end is not None and end - origin > 2.0
    last = None
    damage: list[Exception] = []
    for frame in _decode_at(blob, end - 1.0 if near_end else 0.0, fast=True, damage=damage):
        t = _frame_time(frame)
        if t is not None:
            last = t if last is None else max(last, t)
    if last is None:
        raise _no_frame(blob, damage)
    return last + 1.0 / fps, (_ffmpeg_reason(damage[0]) if damage else None)


def _no_frame(blob: "Blob", damage: list[Exception]) -> CorruptMediaError:
    reason = f" (decoding failed: {_ffmpeg_reason(damage[0])})" if damage else ""
    return CorruptMediaError(f"{blob.source} has no decodable frame{reason}; {_REDO}", source=blob.source)


# --- cutting ------------------------------------------------------------------------------------
def _snap(t: float, fps: float | None) -> float:
    """Round a boundary to the frame grid, so that a segment starts exactly on a frame."""
    return round(t * fps) / fps if fps else t


def _equal_parts(
    start: float, end: float, max_len: float, first_boundary: str, fps: float | None = None
) -> list[Segment]:
    n = max(1, math.ceil((end - start) / max_len - 1e-9))
    step = (end - start) / n
    edges = [start] + [_snap(start + i * step, fps) for i in range(1, n)] + [end]
    if any(b - a > max_len + 1e-9 for a, b in zip(edges, edges[1:])):
        edges = [start + i * step for i in range(n)] + [end]  # snapping would overshoot the cap
    return [Segment(edges[i], edges[i + 1], first_boundary if i == 0 else "split") for i in range(n)]


class SegmentPlanner:
    """Turns shot boundaries, as they are found, into segments.

    Scenes shorter than ``min_len`` merge into the next one (a short last scene merges into
    the one before), scenes longer than ``max_len`` are split into equal parts. One segment
    is held back until the next boundary so that a short tail can still merge into it.
    """

    def __init__(
        self, min_len: float, max_len: float, fps: float | None = None, start: float = 0.0, boundary: str = "start"
    ):
        self.fps = fps
        self.min_len = min_len
        self.max_len = min(max_len, MAX_SEGMENT_SECONDS)
        self.start = start
        self.start_boundary = boundary
        self.held: Segment | None = None

    def cut(self, t: float) -> list[Segment]:
        if t - self.start < self.min_len:
            return []
        pieces = _equal_parts(self.start, t, self.max_len, self.start_boundary, self.fps)
        self.start, self.start_boundary = t, "scene"
        ready = ([self.held] if self.held else []) + pieces[:-1]
        self.held = pieces[-1]
        return ready

    def finish(self, end: float) -> list[Segment]:
        if self.held is not None and end - self.start < self.min_len:
            return _equal_parts(self.held.start, end, self.max_len, self.held.boundary, self.fps)
        return ([self.held] if self.held else []) + _equal_parts(
            self.start, end, self.max_len, self.start_boundary, self.fps
        )


def plan_segments(
    duration: float,
    cuts: list[float],
    options: ReaderOptions,
    fps: float | None = None,
    first_frame: float = 0.0,
) -> list[Segment]:
    """Segments covering [0, duration]: fixed windows, or the given shot boundaries.

    With ``fps``, inner boundaries are put on the frame grid (a window of 2.5 s at 12.5 fps
    starts on the frame at 2.48 s, not between frames). Windows that end before
    ``first_frame`` (the first frame that decodes) join the next, so none is empty."""
    if options.segment_mode == "fixed":
        window = min(options.segment_seconds, MAX_SEGMENT_SECONDS)
        n = max(1, math.ceil(duration / window - 1e-9))
        edges = [0.0] + [_snap(i * window, fps) for i in range(1, n)] + [duration]
        if any(b <= a or b - a > MAX_SEGMENT_SECONDS for a, b in zip(edges, edges[1:])):
            edges = [min(i * window, duration) for i in range(n)] + [duration]
        segments = [Segment(edges[i], edges[i + 1], "start" if i == 0 else "window") for i in range(n)]
        last = segments[-1]
        if len(segments) > 1 and last.end - last.start < options.min_segment_seconds:
            merged = Segment(segments[-2].start, last.end, segments[-2].boundary)
            if merged.end - merged.start <= MAX_SEGMENT_SECONDS:
                segments[-2:] = [merged]
        while len(segments) > 1 and segments[0].end <= first_frame:
            if segments[1].end - segments[0].start > MAX_SEGMENT_SECONDS:
                break
            segments[:2] = [Segment(segments[0].start, segments[1].end, segments[0].boundary)]
        return segments
    planner = SegmentPlanner(options.min_segment_seconds, options.max_segment_seconds, fps)
    out: list[Segment] = []
    for t in sorted(cuts):
        if 0 < t < duration:
            out += planner.cut(t)
    return out + planner.finish(duration)


def _tiny_bgr(frame: Any, width: int) -> "np.ndarray":
    """A small BGR picture of a frame, sampled from its YUV planes when it is 8-bit 4:2:0."""
    import numpy as np

    if frame.format.name in ("yuv420p", "yuvj420p"):
        import cv2

        step = max(2, (frame.width // width) & ~1)
        planes = frame.planes
        y = np.frombuffer(planes[0], np.uint8).reshape(planes[0].height, planes[0].line_size)
        u = np.frombuffer(planes[1], np.uint8).reshape(planes[1].height, planes[1].line_size)
        v = np.frombuffer(planes[2], np.uint8).reshape(planes[2].height, planes[2].line_size)
        y = y[: frame.height : step, : frame.width : step]
        half = step // 2
        u = u[: frame.height // 2 : half, : frame.width // 2 : half]
        v = v[: frame.height // 2 : half, : frame.width // 2 : half]
        h, w = min(y.shape[0], u.shape[0]), min(y.shape[1], u.shape[1])
        yuv = np.dstack([y[:h, :w], u[:h, :w], v[:h, :w]])
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    height = max(2, round(frame.height * width / frame.width))
    return frame.to_ndarray(width=width, height=height, format="bgr24", interpolation="FAST_BILINEAR")


class CutScan:
    """Iterating yields shot boundaries (seconds from the first frame) as they are found,
    and a :class:`Gap` where no frame shows for more than ``gap`` seconds (each stretch of
    footage is scanned on its own); afterwards ``decoded_end`` is the end time of the last
    decoded frame, ``damage`` the decoding error that stopped the scan early (a file cut
    inside a packet), if one did, and ``frames`` the packets read (None if none had a
    timestamp)."""

    def __init__(
        self,
        blob: "Blob",
        info: VideoInfo,
        options: ReaderOptions,
        stop: threading.Event | None = None,
        gap: float = math.inf,
    ):
        self.blob = blob
        self.info = info
        self.options = options
        self.stop = stop or threading.Event()
        self.gap = gap
        self.decoded_end: float | None = None
        self.damage: str | None = None
        self.frames: int | None = None

    def __iter__(self) -> Iterator[float | Gap]:
        try:
            from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
        except ImportError as exc:
            raise MissingDependencyError("scenedetect", "video", "scene-aware video segments") from exc

        info, options = self.info, self.options
        rate = Fraction(info.fps).limit_denominator(1001)

        def new_detector() -> Any:
            return AdaptiveDetector(
                adaptive_threshold=options.scene_threshold,
                min_content_val=options.scene_min_content,
                min_scene_len=0.4,  # seconds; the planner enforces min_segment_seconds afterwards
                weights=ContentDetector.Components(1.0, 1.0, 1.0, 1.0 if options.scene_edges else 0.0),
            )

        packets = 0

        def count(packet: Any) -> None:
            nonlocal packets
            if packet.pts is not None or packet.dts is not None:
                packets += 1

        detector = new_detector()
        last = None
        damage: list[Exception] = []
        with _opened(self.blob) as container, _decoding(self.blob):
            stream = _video_stream(container, fast=True, skip="BIDIR")
            for frame in _decoded(container, stream, damage, count):
                if self.stop.is_set():
                    return
                t = _frame_time(frame)
                t = (last + 1.0 / info.fps if last is not None else 0.0) if t is None else t - info.start_time
                if t < 0:
                    continue
                found = _gap_before(t, last, self.gap, info.fps)
                if found is not None:
                    if last is not None:  # the footage before the gap ends here
                        for cut in detector.post_process(FrameTimecode(float(last), rate)):
                            yield cut.seconds
                        detector = new_detector()
                    yield found
                last = t
                tiny = _tiny_bgr(frame, options.scene_frame_width)
                for cut in detector.process_frame(FrameTimecode(float(t), rate), tiny):
                    yield cut.seconds
        if last is None:
            raise _no_frame(self.blob, damage)
        self.damage = _ffmpeg_reason(damage[0]) if damage else None
        self.frames = packets or None
        for cut in detector.post_process(FrameTimecode(float(last), rate)):
            yield cut.seconds
        self.decoded_end = last + 1.0 / info.fps


def detect_cuts(blob: "Blob", info: VideoInfo | None = None, options: ReaderOptions | None = None) -> list[float]:
    """All shot boundaries of a video, in seconds from its first frame."""
    options = options or ReaderOptions()
    info = info or probe(blob, options, check_end=False)
    return [cut for cut in CutScan(blob, info, options) if not isinstance(cut, Gap)]


_REORDER_DEPTH = 32
"""Packets come in decoding order; their presentation times are put in order through a
buffer this deep (H.264 and HEVC reorder at most 16 frames)."""


def _frame_times(blob: "Blob", info: VideoInfo) -> Iterator[float]:
    """The presentation times of the video's frames (seconds from time 0), in order, from
    its packets alone: nothing is decoded. A damaged file is read up to its first error."""
    av = _av()
    pending: list[float] = []
    with _opened(blob) as container:
        stream = container.streams.video[0]
        tick = float(stream.time_base)
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue  # the empty packet at the end of the stream
                heapq.heappush(pending, stamp * tick - info.start_time)
                if len(pending) > _REORDER_DEPTH:
                    yield heapq.heappop(pending)
        except av.FFmpegError:
            pass  # the readable part is what probe found
    while pending:
        yield heapq.heappop(pending)


def _fixed_segments(blob: "Blob", info: VideoInfo, options: ReaderOptions) -> Iterator[Segment | VideoInfo]:
    """Fixed windows over each stretch of footage (the gaps found from the packets'
    timestamps); a VideoInfo that counts the frames comes before the last stretch's."""
    gap = frame_gap_seconds(info, options)
    half = 0.5 / info.fps
    start, boundary, last, frames = 0.0, "start", None, 0
    for t in _frame_times(blob, info):
        if not -half <= t < info.duration:
            continue
        frames += 1
        found = _gap_before(t, last, gap, info.fps)
        if found is not None:
            if found.start > start:
                yield from _windows(start, found.start, boundary, info, options)
            start, boundary = found.end, "gap"
        last = t if last is None else max(last, t)
    yield replace(info, frames=frames or None)
    yield from _windows(start, info.duration, boundary, info, options)


def _windows(start: float, end: float, boundary: str, info: VideoInfo, options: ReaderOptions) -> list[Segment]:
    """plan_segments' fixed windows over the footage from ``start`` to ``end``, the first
    one saying why it starts there."""
    first_frame = info.first_frame if start == 0.0 else 0.0
    windows = plan_segments(end - start, [], options, info.fps, first_frame)
    return [
        Segment(start + w.start, start + w.end, boundary if w.boundary == "start" else w.boundary) for w in windows
    ]


# --- segments and their loader --------------------------------------------------------------------
def sample_times(duration: float, num_frames: int, max_fps: float, fps: float) -> list[float]:
    """Clip times to sample: every 1/max_fps s from 0, or ``num_frames`` evenly when that is
    fewer. Never denser than the video's own frame rate."""
    max_fps = min(max_fps, fps)
    num_frames = max(1, num_frames)
    if duration * max_fps <= num_frames:
        n = max(1, math.ceil(duration * max_fps - 1e-9))
        return [i / max_fps for i in range(n)]
    return [i * duration / num_frames for i in range(num_frames)]


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _rgb(frame: Any, max_side: int | None) -> "np.ndarray":
    """The frame as RGB, downscaled to ``max_side``: swscale converts at full size (its
    fast path), OpenCV resizes (several times faster than swscale's filtered scalers)."""
    width, height = _fit(frame.width, frame.height, max_side)
    if (width, height) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    try:
        import cv2
    except ImportError:
        return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BILINEAR")
    return cv2.resize(frame.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_LINEAR)


def _rotate(array: "np.ndarray", rotation: int) -> "np.ndarray":
    import numpy as np

    return np.rot90(array, k=(rotation // 90) % 4) if rotation % 360 else array


class VideoSegmentLoader:
    """Frames, a small clip and a thumbnail of one segment, decoded on demand."""

    def __init__(self, blob: "Blob", info: VideoInfo, start: float, end: float, options: ReaderOptions):
        self.blob = blob
        self.info = info
        self.start = start
        self.end = end
        self.options = options
        self.clip_method: str | None = None
        """How the last clip was made: "remux" (packets copied) or "encode"."""

    @property
    def duration(self) -> float:
        return self.end - self.start

    def _clip_frames(self, first: float, skip_nonref: bool = False) -> Iterator[tuple[float, Any]]:
        """(clip time, frame) from the keyframe before ``first`` (clip time) to the segment end."""
        half = 0.5 / self.info.fps
        wanted = max(self.start + max(0.0, first), self.info.first_frame)
        previous = None
        skip = "NONREF" if skip_nonref else "DEFAULT"
        damage: list[Exception] = []
        for frame in _decode_at(self.blob, self.info.start_time + wanted, skip=skip, damage=damage):
            t = _frame_time(frame)
            if t is None:  # no timestamp: count on from the previous frame
                t = previous + 1.0 / self.info.fps if previous is not None else 0.0
            else:
                t -= self.info.start_time + self.start
            previous = t
            if t < -half:
                continue
            if t >= self.duration - half:
                return
            yield max(0.0, t), frame
        # The data ended. A decoding error that stopped the frames inside the segment is
        # damage (the end of a truncated file's readable part is not: frames reach it).
        fps = self.info.fps
        if damage and (previous is None or _stops_early(previous + 1.0 / fps, self.duration, fps)):
            at = self.start + max(0.0, previous or 0.0)
            raise CorruptMediaError(
                f"{self.blob.source}: decoding failed at {at:.2f} s, inside the segment "
                f"{self.start:.2f}-{self.end:.2f} s ({_ffmpeg_reason(damage[0])}); {_REDO}",
                source=self.blob.source,
            )

    def _array(self, frame: Any, max_side: int | None) -> "np.ndarray":
        return _rotate(_rgb(frame, max_side), self.info.rotation)

    def frames(self, num_frames: int, max_fps: float) -> VideoFrames:
        import numpy as np

        targets = sample_times(self.duration, num_frames, max_fps, self.info.fps)
        spacing = targets[1] - targets[0] if len(targets) > 1 else self.duration
        # Skipping non-reference frames is safe when samples are several frames apart.
        skip = spacing * self.info.fps >= 4
        times: list[float] = []
        stack: "np.ndarray | None" = None
        max_side = self.options.max_frame_side

        def keep(t: float, frame: Any) -> None:
            nonlocal stack
            if times and times[-1] == t:
                return  # two wanted times, one nearest frame
            array = self._array(frame, max_side)
            if stack is None:  # filled in place: no second copy of every frame
                stack = np.empty((len(targets), *array.shape), np.uint8)
            stack[len(times)] = array
            times.append(t)

        j, previous = 0, None
        for t, frame in self._clip_frames(targets[0], skip_nonref=skip):
            while j < len(targets) and t >= targets[j]:
                if previous is not None and abs(previous[0] - targets[j]) < abs(t - targets[j]):
                    keep(*previous)
                else:
                    keep(t, frame)
                j += 1
            if j == len(targets):
                break
            previous = (t, frame)
        if j < len(targets) and previous is not None:
            keep(*previous)
        if stack is None:
            raise CorruptMediaError(
                f"{self.blob.source}: no frame decodes between {self.start:.2f} s and {self.end:.2f} s",
                source=self.blob.source,
            )
        stack = stack[: len(times)]
        fps = self.info.fps
        return VideoFrames(
            frames=stack,
            timestamps=times,
            fps=fps,
            width=int(stack.shape[2]),
            height=int(stack.shape[1]),
            duration=self.duration,
            total_frames=max(1, round(self.duration * fps)),
            indices=[min(round(t * fps), max(0, round(self.duration * fps) - 1)) for t in times],
        )

    def thumbnail(self) -> "Image.Image":
        from PIL import Image

        middle = self.duration / 2
        chosen = None
        for t, frame in self._clip_frames(middle, skip_nonref=self.duration * self.info.fps >= 8):
            chosen = frame
            if t >= middle:
                break
        if chosen is None:
            raise CorruptMediaError(
                f"{self.blob.source}: no frame decodes near {self.start + middle:.2f} s", source=self.blob.source
            )
        return fit_within(Image.fromarray(self._array(chosen, None)), self.options.max_image_side)

    def clip(self) -> tuple[bytes, str]:
        """The segment as a small H.264 MP4 (no audio, rotation applied), what REST backends
        upload: the source's own packets when they can be copied as they are (see
        :meth:`_remuxed`), else re-encoded at the size and frame rate the model reads
        (:func:`clip_limits`). ``clip_method`` says which it was ("remux" or "encode")."""
        data = self._remuxed()
        if data is not None:
            self.clip_method = "remux"
        else:
            data, self.clip_method = self._encoded(), "encode"
        log.debug("%s: clip %s, %d bytes", self, self.clip_method, len(data))
        return data, "video/mp4"

    def _remuxed(self) -> bytes | None:
        """The segment's packets copied into an MP4 without decoding them, or None when that
        would not give a clip as good as a re-encoded one: the video must be 8-bit 4:2:0
        H.264 in MP4/Matroska (so its parameter sets travel in the header), within the clip
        size caps, not rotated; the segment must start on a keyframe and end on the next
        segment's keyframe (or at the end of a whole file), every frame in between must
        show inside it (no open GOP), and the packets must stay under
        REMUX_MAX_BYTES_PER_SECOND. Timestamps are shifted to start at 0."""
        info = self.info
        max_side, short_side, _ = clip_limits(self.options)
        coded = (info.coded_width, info.coded_height)
        if info.codec != "h264" or info.rotation or max(coded) > max_side or min(coded) > short_side:
            return None
        av = _av()
        half = 0.5 / info.fps
        start, end = info.start_time + self.start, info.start_time + self.end
        at_end = self.end >= info.duration - half and not info.truncated
        budget = REMUX_MAX_BYTES_PER_SECOND * max(self.duration, 1.0)
        with _opened(self.blob) as container, _decoding(self.blob):
            stream = container.streams.video[0]
            names = set(container.format.name.split(","))
            extradata = stream.codec_context.extradata or b""
            pix_fmt = stream.codec_context.format.name if stream.codec_context.format else None
            if not names & {"mp4", "mov", "matroska"} or extradata[:1] != b"\x01":
                return None  # no avcC header (MPEG-TS, raw H.264): the MP4 muxer needs one
            if pix_fmt not in ("yuv420p", "yuvj420p"):
                return None  # 10-bit or 4:2:2/4:4:4 H.264: many decoders refuse it
            tb = stream.time_base
            if self.start > 0 and not _seek(container, stream, start):
                return None
            packets: list[Any] = []
            size = 0
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue  # the empty packet at the end of the stream
                if packet.pts is None or packet.is_corrupt:
                    return None
                t = float(packet.pts * tb)
                if not packets and not (packet.is_keyframe and abs(t - start) <= half):
                    return None  # the segment does not start on a keyframe
                if packets and packet.is_keyframe and t >= end - half:
                    if abs(t - end) > half:
                        return None
                    break  # the next segment's keyframe
                if not start - half <= t < end - half:
                    return None  # a frame outside the segment (open GOP, or no keyframe at the end)
                packets.append(packet)
                size += packet.size
                if size > budget:
                    return None
            else:
                if not at_end:
                    return None
            if not packets:
                return None
            shift = packets[0].pts
            with tempfile.TemporaryDirectory(prefix="molmo-rag-clip-") as tmp:
                path = Path(tmp) / "clip.mp4"
                with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                    copy = out.add_stream_from_template(stream)
                    for packet in packets:
                        packet.pts -= shift
                        packet.dts -= shift
                        packet.stream = copy
                        out.mux(packet)
                return path.read_bytes()

    def _encoded(self) -> bytes:
        """The segment re-encoded at the clip caps: each output frame is the decoded frame
        nearest its time, so a frame-rate cap far below the source's skips decoding the
        frames nothing else is predicted from."""
        av = _av()
        import numpy as np

        info = self.info
        max_side, short_side, max_fps = clip_limits(self.options)
        width, height = info.width, info.height
        scale = min(1.0, short_side / min(width, height), max_side / max(width, height))
        out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
        rate = Fraction(min(info.fps, max_fps)).limit_denominator(1001)
        slots = max(1, math.ceil(self.duration * rate - 1e-6))
        with tempfile.TemporaryDirectory(prefix="molmo-rag-clip-") as tmp:
            path = Path(tmp) / "clip.mp4"
            with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                stream = out.add_stream(_h264_encoder(av), rate=rate)
                stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
                stream.options = {"crf": str(self.options.clip_crf), "preset": CLIP_PRESET}
                written = 0

                def write(frame: Any) -> None:
                    nonlocal written
                    if info.rotation:
                        rgb = self._array(frame, max(frame.width, frame.height))
                        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                    frame.pts, frame.time_base = written, 1 / rate
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    written += 1

                previous = None
                for t, frame in self._clip_frames(0.0, skip_nonref=info.fps / rate >= 4):
                    while written < slots and t >= written / rate:
                        wanted = written / rate
                        nearer = previous is not None and abs(previous[0] - wanted) < abs(t - wanted)
                        write(previous[1] if nearer else frame)
                    if written == slots:
                        break
                    previous = (t, frame)
                # Frames ran out (the last ones were not decoded): the last one fills in up
                # to one output frame after it, never more.
                while previous is not None and written < slots and written / rate < previous[0] + 1 / rate:
                    write(previous[1])
                if written == 0:
                    raise CorruptMediaError(
                        f"{self.blob.source}: no frame decodes between {self.start:.2f} s and {self.end:.2f} s",
                        source=self.blob.source,
                    )
                for packet in stream.encode():
                    out.mux(packet)
            return path.read_bytes()

    def __repr__(self) -> str:
        return f"VideoSegmentLoader({self.blob.source!r}, {self.start:.3f}-{self.end:.3f})"


def _h264_encoder(av: Any) -> str:
    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            return name
    raise UnsupportedMediaError("this PyAV build has no H.264 encoder to make upload clips")


def read_video(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """Segments of a video, yielded as soon as they are known.

    A truncated or damaged video yields the segments that decode, then raises
    CorruptMediaError saying from when on nothing could be read."""
    scenes = options.segment_mode == "scenes"
    info = probe(blob, options, check_end=not scenes)
    sha = blob.sha256()
    if scenes:
        segments = _in_background(lambda stop: _scene_segments(blob, info, options, stop))
    else:
        segments = _fixed_segments(blob, info, options)
    pending: Segment | None = None
    index = 0
    # Hold one segment back: only the last one learns the total count, and a lone segment
    # that is the whole file keeps the remote URL.
    for segment in segments:
        if isinstance(segment, VideoInfo):  # the scan found the end: the segments that follow use it
            info = segment
            continue
        if pending is not None:
            yield _item(blob, sha, info, pending, index, None, options)
            index += 1
        pending = segment
    if pending is not None:
        yield _item(blob, sha, info, pending, index, index + 1, options)
    if info.truncated:
        raise _truncation_error(blob, info)


def read_segment(blob: "Blob", start: float, end: float, options: ReaderOptions) -> MediaItem:
    """The segment [start, end] of a video as the item :func:`read_video` made for it (same
    media id), without cutting the rest of the video: what a search hit points back at."""
    info = probe(blob, options, check_end=False)
    if not (0 <= start < end <= info.duration + 1.0 / max(info.fps, 1.0)):
        raise CorruptMediaError(
            f"{blob.source} has no segment {start:.1f}-{end:.1f} s (it lasts {info.duration:.1f} s)", source=blob.source
        )
    return _item(blob, blob.sha256(), info, Segment(start, end, "reopened"), 0, None, options)


def _truncation_error(blob: "Blob", info: VideoInfo) -> CorruptMediaError:
    readable = info.duration
    if info.declared_duration is not None and _stops_early(readable, info.declared_duration, info.fps):
        what, why = f"truncated after {readable:.1f} s of {info.declared_duration:.1f} s", ""
    else:  # no declared length to compare with: a decoding error stopped the frames
        what, why = f"damaged after {readable:.1f} s", f" (decoding failed: {info.damage})"
    return CorruptMediaError(
        f"{blob.source}: {what}; segments after {readable:.1f} s could not be read{why}; {_REDO} for the rest",
        source=blob.source,
    )


def _in_background(make: Any, ahead: int = 8) -> Iterator[Any]:
    """Run the generator ``make(stop)`` in a thread, at most ``ahead`` results ahead.

    Scene detection then goes on decoding while the caller samples the segments it already
    has (PyAV releases the GIL while decoding), and stops as soon as the caller stops.
    """
    results: queue.Queue = queue.Queue(ahead)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                results.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for value in make(stop):
                if not put(("value", value)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the caller's thread
            put(("error", exc))

    worker = threading.Thread(target=work, name="molmo-rag-scene-scan", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = results.get()
            if kind == "value":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        worker.join()


def _scene_segments(
    blob: "Blob", info: VideoInfo, options: ReaderOptions, stop: threading.Event | None = None
) -> Iterator[Segment | VideoInfo]:
    """Segments at the shot boundaries, none over a gap. A VideoInfo that counts the frames
    comes before the last segments; when the scan shows the video stops before the end it
    declares (or a decoding error stops it), its ``duration`` is the readable part."""

    def planner_from(start: float = 0.0, boundary: str = "start") -> SegmentPlanner:
        return SegmentPlanner(options.min_segment_seconds, options.max_segment_seconds, info.fps, start, boundary)

    planner = planner_from()
    scan = CutScan(blob, info, options, stop, gap=frame_gap_seconds(info, options))
    for found in scan:
        if isinstance(found, Gap):
            if info.exact_duration and found.end >= info.duration:
                continue  # frames past the declared end count no more than cuts there
            if found.start > planner.start:
                yield from planner.finish(found.start)
            planner = planner_from(found.end, "gap")
        elif found < info.duration:
            yield from planner.cut(found)
    if scan.stop.is_set():
        return
    readable, damage = scan.decoded_end, scan.damage
    declared = info.declared_duration
    stops_early = declared is not None and _stops_early(readable, declared, info.fps)
    if stops_early or damage is not None or not info.exact_duration:
        # The scan skipped B-frames: the last frames are decoded again, all of them.
        last_end, _ = _last_frame_end(blob, info.start_time, info.start_time + readable, info.fps)
        readable = max(readable, last_end - info.start_time)
        stops_early = declared is not None and _stops_early(readable, declared, info.fps)
    if damage is not None and declared is not None and not stops_early:
        damage = None  # an error at the very end of a whole file: nothing worth telling is lost
    info = replace(info, frames=scan.frames)
    if stops_early or damage is not None:
        info = replace(info, duration=readable, frame_count=max(1, round(readable * info.fps)), damage=damage)
        end = readable
    else:
        end = info.duration if info.exact_duration else readable
    yield info
    yield from planner.finish(end)


def _item(
    blob: "Blob", sha: str, info: VideoInfo, segment: Segment, index: int, count: int | None, options: ReaderOptions
) -> MediaItem:
    whole = count == 1 and not info.truncated and segment.start == 0.0
    return MediaItem(
        kind="video_segment",
        source=blob.source,
        media_id=f"{sha}#t={segment.start:.3f}-{segment.end:.3f}",
        content_hash=sha,
        loader=VideoSegmentLoader(blob, info, segment.start, segment.end, options),
        start=segment.start,
        end=segment.end,
        width=info.width,
        height=info.height,
        remote_url=blob.remote_url if whole else None,
        extra={
            "segment": index,
            "boundary": segment.boundary,
            # the length the file declares (when truncated, more than the segments cover)
            "video_duration": info.declared_duration if info.truncated and info.declared_duration else info.duration,
            "fps": info.fps,
            "rotation": info.rotation,
            # the frames the whole file holds, on the segments read once they are counted
            **({"video_frames": info.frames} if info.frames is not None else {}),
        },
    )

