"""Shot boundaries: PySceneDetect's AdaptiveDetector fed with tiny frames that PyAV decodes
fast (B-frames and the deblocking filter skipped, the small picture sampled straight from the
decoded YUV planes)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ...errors import MissingDependencyError
from ..options import ReaderOptions
from .container import _decoded, _decoding, _frame_time, _opened, _video_stream
from .ffmpeg_errors import _ffmpeg_reason, _no_frame
from .gaps import Gap, _gap_before
from .probe import VideoInfo, probe

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..blob import Blob


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
