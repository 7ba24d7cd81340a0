"""What a video file holds: its streams, duration, frame rate, size and rotation, and whether
its frames stop before the length it declares (truncated or damaged)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import CorruptMediaError, MediaTooLargeError
from ..options import ReaderOptions
from .container import _av, _decode_at, _decoding, _frame_time, _opened, _video_stream
from .ffmpeg_errors import _REDO, _ffmpeg_reason, _no_frame

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob


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
