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
"""

from __future__ import annotations

import math
import queue
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

    from .sources import Blob

__all__ = [
    "VideoInfo",
    "Segment",
    "VideoSegmentLoader",
    "probe",
    "detect_cuts",
    "CutScan",
    "plan_segments",
    "SegmentPlanner",
    "read_video",
    "sample_times",
]

_FAST_DECODE = {"skip_loop_filter": "all"}


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


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    boundary: str
    """Why the segment starts where it does: 'start', 'scene' (a shot boundary), 'window'
    (a fixed window) or 'split' (a long shot split into equal parts)."""


# --- opening and probing ----------------------------------------------------------------------
@contextmanager
def _opened(blob: "Blob") -> Iterator[Any]:
    av = _av()
    try:
        container = av.open(blob.av_input(), metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise SourceNotFoundError(f"no such file: {blob.source}", source=blob.source) from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise CorruptMediaError(
            f"{blob.source} is not a readable video (truncated or damaged): {exc}", source=blob.source
        ) from exc
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"{blob.source} cannot be opened as a video: {exc}", source=blob.source) from exc
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
        raise CorruptMediaError(f"{blob.source} is damaged: {exc}", source=blob.source) from exc
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"{blob.source} cannot be decoded: {exc}", source=blob.source) from exc


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


def probe(blob: "Blob", options: ReaderOptions | None = None, check_end: bool = True) -> VideoInfo:
    """Duration, frame rate, size and rotation; decodes the first frame (and, with
    ``check_end``, the last second) so that damaged or truncated files fail here."""
    options = options or ReaderOptions()
    with _opened(blob) as container, _decoding(blob):
        stream = _video_stream(container)
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        first = next(iter(container.decode(stream)), None)
        if first is None:
            raise CorruptMediaError(f"{blob.source} has a video stream but no decodable frame", source=blob.source)
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
        if stream.duration:
            end, exact = stream_start + float(stream.duration * tb), True
        elif container.duration:
            container_start = (container.start_time or 0) / 1_000_000
            end, exact = container_start + container.duration / 1_000_000, False
        else:
            end, exact = None, False
        rotation = int(first.rotation or 0) % 360
        coded = (first.width, first.height)
        has_audio = bool(container.streams.audio)
        codec = stream.codec_context.name
    if end is None or check_end:
        last_end = _last_frame_end(blob, origin, end, fps)
        if end is None or not exact:
            end = last_end
        elif last_end < end - max(1.0, 3.0 / fps):
            raise CorruptMediaError(
                f"{blob.source} is truncated: frames stop at {last_end - origin:.2f} s of "
                f"{end - origin:.2f} s",
                source=blob.source,
            )
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


def _decode_at(blob: "Blob", seconds: float, fast: bool = False, skip: str = "DEFAULT") -> Iterator[Any]:
    """Decoded frames from the keyframe at or before ``seconds`` (stream clock) to the end.

    In files without an index (MPEG-TS above all) FFmpeg's seek can land on a later keyframe
    or past the last one. Then the seek is retried further back (1, 4, 16... s before) and,
    at last, decoding starts from the beginning: slower, never wrong."""
    back = 0.0
    while True:
        target = seconds - back
        with _opened(blob) as container, _decoding(blob):
            stream = _video_stream(container, fast=fast, skip=skip)
            seeked = target > 0 and _seek(container, stream, target)
            frames = container.decode(stream)
            first = next(frames, None)
            first_time = _frame_time(first) if first is not None else None
            overshot = first is None or (first_time is not None and first_time > seconds + 1e-3)
            if seeked and overshot:
                back = 1.0 if back == 0 else back * 4
                continue
            if first is None:
                return
            yield first
            yield from frames
            return


def _last_frame_end(blob: "Blob", origin: float, end: float | None, fps: float) -> float:
    """End time of the last decodable frame, decoding only from the keyframe before the end."""
    near_end = end is not None and end - origin > 2.0
    last = None
    for frame in _decode_at(blob, end - 1.0 if near_end else 0.0, fast=True):
        t = _frame_time(frame)
        if t is not None:
            last = t if last is None else max(last, t)
    if last is None:
        raise CorruptMediaError(f"{blob.source} has no decodable frame", source=blob.source)
    return last + 1.0 / fps


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

    def __init__(self, min_len: float, max_len: float, fps: float | None = None):
        self.fps = fps
        self.min_len = min_len
        self.max_len = min(max_len, MAX_SEGMENT_SECONDS)
        self.start = 0.0
        self.start_boundary = "start"
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
    """Iterating yields shot boundaries (seconds from the first frame) as they are found;
    afterwards ``decoded_end`` is the end time of the last decoded frame."""

    def __init__(self, blob: "Blob", info: VideoInfo, options: ReaderOptions, stop: threading.Event | None = None):
        self.blob = blob
        self.info = info
        self.options = options
        self.stop = stop or threading.Event()
        self.decoded_end: float | None = None

    def __iter__(self) -> Iterator[float]:
        try:
            from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
        except ImportError as exc:
            raise MissingDependencyError("scenedetect", "video", "scene-aware video segments") from exc

        info, options = self.info, self.options
        rate = Fraction(info.fps).limit_denominator(1001)
        detector = AdaptiveDetector(
            adaptive_threshold=options.scene_threshold,
            min_content_val=options.scene_min_content,
            min_scene_len=0.4,  # seconds; the planner enforces min_segment_seconds afterwards
            weights=ContentDetector.Components(1.0, 1.0, 1.0, 1.0 if options.scene_edges else 0.0),
        )
        last = None
        with _opened(self.blob) as container, _decoding(self.blob):
            stream = _video_stream(container, fast=True, skip="BIDIR")
            for frame in container.decode(stream):
                if self.stop.is_set():
                    return
                t = _frame_time(frame)
                t = (last + 1.0 / info.fps if last is not None else 0.0) if t is None else t - info.start_time
                if t < 0:
                    continue
                last = t
                tiny = _tiny_bgr(frame, options.scene_frame_width)
                for cut in detector.process_frame(FrameTimecode(float(t), rate), tiny):
                    yield cut.seconds
        if last is None:
            raise CorruptMediaError(f"{self.blob.source} has no decodable frame", source=self.blob.source)
        for cut in detector.post_process(FrameTimecode(float(last), rate)):
            yield cut.seconds
        self.decoded_end = last + 1.0 / info.fps


def detect_cuts(blob: "Blob", info: VideoInfo | None = None, options: ReaderOptions | None = None) -> list[float]:
    """All shot boundaries of a video, in seconds from its first frame."""
    options = options or ReaderOptions()
    info = info or probe(blob, options, check_end=False)
    return list(CutScan(blob, info, options))


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

    @property
    def duration(self) -> float:
        return self.end - self.start

    def _clip_frames(self, first: float, skip_nonref: bool = False) -> Iterator[tuple[float, Any]]:
        """(clip time, frame) from the keyframe before ``first`` (clip time) to the segment end."""
        half = 0.5 / self.info.fps
        wanted = max(self.start + max(0.0, first), self.info.first_frame)
        previous = None
        skip = "NONREF" if skip_nonref else "DEFAULT"
        for frame in _decode_at(self.blob, self.info.start_time + wanted, skip=skip):
            t = _frame_time(frame)
            if t is None:  # no timestamp: count on from the previous frame
                t = previous + 1.0 / self.info.fps if previous is not None else 0.0
            else:
                t -= self.info.start_time + self.start
            previous = t
            if t < -half:
                continue
            if t >= self.duration - half:
                break
            yield max(0.0, t), frame

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
        """The segment re-encoded as a small H.264 MP4 (no audio), rotation applied."""
        av = _av()
        import numpy as np

        options = self.options
        width, height = self.info.width, self.info.height
        scale = min(1.0, options.clip_short_side / min(width, height), options.clip_max_side / max(width, height))
        out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
        rate = Fraction(min(self.info.fps, options.clip_max_fps)).limit_denominator(1001)
        with tempfile.TemporaryDirectory(prefix="molmo-rag-clip-") as tmp:
            path = Path(tmp) / "clip.mp4"
            with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                stream = out.add_stream(_h264_encoder(av), rate=rate)
                stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
                stream.options = {"crf": str(options.clip_crf), "preset": "veryfast"}
                last_pts = -1
                for t, frame in self._clip_frames(0.0):
                    pts = round(t * rate)
                    if pts <= last_pts:
                        continue  # dropping frames to honour the rate cap
                    last_pts = pts
                    if self.info.rotation:
                        rgb = self._array(frame, max(frame.width, frame.height))
                        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                    frame.pts, frame.time_base = pts, 1 / rate
                    for packet in stream.encode(frame):
                        out.mux(packet)
                if last_pts < 0:
                    raise CorruptMediaError(
                        f"{self.blob.source}: no frame decodes between {self.start:.2f} s and {self.end:.2f} s",
                        source=self.blob.source,
                    )
                for packet in stream.encode():
                    out.mux(packet)
            return path.read_bytes(), "video/mp4"

    def __repr__(self) -> str:
        return f"VideoSegmentLoader({self.blob.source!r}, {self.start:.3f}-{self.end:.3f})"


def _h264_encoder(av: Any) -> str:
    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            return name
    raise UnsupportedMediaError("this PyAV build has no H.264 encoder to make upload clips")


def read_video(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """Segments of a video, yielded as soon as they are known."""
    scenes = options.segment_mode == "scenes"
    info = probe(blob, options, check_end=not scenes)
    sha = blob.sha256()
    if scenes:
        segments = _in_background(lambda stop: _scene_segments(blob, info, options, stop))
    else:
        segments = iter(plan_segments(info.duration, [], options, info.fps, info.first_frame))
    pending: Segment | None = None
    index = 0
    # Hold one segment back: only the last one learns the total count, and a lone segment
    # that is the whole file keeps the remote URL.
    for segment in segments:
        if pending is not None:
            yield _item(blob, sha, info, pending, index, None, options)
            index += 1
        pending = segment
    if pending is not None:
        yield _item(blob, sha, info, pending, index, index + 1, options)


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
) -> Iterator[Segment]:
    planner = SegmentPlanner(options.min_segment_seconds, options.max_segment_seconds, info.fps)
    scan = CutScan(blob, info, options, stop)
    for cut in scan:
        if cut < info.duration:
            yield from planner.cut(cut)
    if scan.stop.is_set():
        return
    end = info.duration
    if info.exact_duration and scan.decoded_end < info.duration - max(1.0, 3.0 / info.fps):
        raise CorruptMediaError(
            f"{blob.source} is truncated: frames stop at {scan.decoded_end:.2f} s of {info.duration:.2f} s",
            source=blob.source,
        )
    if not info.exact_duration:
        end = scan.decoded_end
    yield from planner.finish(end)


def _item(
    blob: "Blob", sha: str, info: VideoInfo, segment: Segment, index: int, count: int | None, options: ReaderOptions
) -> MediaItem:
    whole = count == 1
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
            "video_duration": info.duration,
            "fps": info.fps,
            "rotation": info.rotation,
        },
    )

