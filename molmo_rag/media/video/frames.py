"""Decoding a segment's frames on demand: seek to it, keep the frames nearest the wanted times
(in *clip time*, 0 at the segment start), apply the rotation stored in the display matrix and
downscale; when samples are several frames apart, non-reference frames are not decoded."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...errors import CorruptMediaError
from ..images import fit_within
from ..items import VideoFrames
from ..options import ReaderOptions
from .container import _decode_at, _frame_time
from .ffmpeg_errors import _REDO, _ffmpeg_reason
from .probe import VideoInfo, _stops_early

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

    from ..blob import Blob


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


class SegmentFrames:
    """Frames and a thumbnail of one segment, decoded on demand."""

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
