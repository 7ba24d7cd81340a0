"""Cutting a video into segments that cover its footage without gaps or overlaps, never longer
than MAX_SEGMENT_SECONDS: fixed windows, or shots (scene-aware); none covers a gap."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..options import MAX_SEGMENT_SECONDS, ReaderOptions
from .gaps import Gap, _frame_times, _gap_before, frame_gap_seconds
from .probe import VideoInfo, _last_frame_end, _stops_early
from .scenes import CutScan

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    boundary: str
    """Why the segment starts where it does: 'start', 'scene' (a shot boundary), 'window'
    (a fixed window), 'split' (a long shot split into equal parts) or 'gap' (the first
    frame after a stretch without frames)."""


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
