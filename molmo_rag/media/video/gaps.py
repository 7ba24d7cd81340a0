"""Stretches without frames (a camera that records on motion, clips joined days apart, a
damaged timestamp): gaps, not footage; found from the packets' timestamps (nothing decoded)
or from the frames a scan decodes anyway."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..options import MAX_SEGMENT_SECONDS, ReaderOptions
from .container import _av, _opened
from .probe import VideoInfo

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob


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
