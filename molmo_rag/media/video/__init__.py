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

The package, one job a module (each imports only those above it):
``ffmpeg_errors`` (FFmpeg's errors in words), ``container`` (open, seek, decode with PyAV),
``probe`` (what the file holds), ``gaps`` (stretches without frames), ``scenes`` (shot
boundaries), ``segments`` (scene-aware and fixed cutting), ``frames`` (decoding a segment's
frames and thumbnail), ``clips`` (upload clips), ``loader`` (a segment's lazy loader),
``reader`` (``read_video``, ``read_segment``).
"""

from __future__ import annotations

# The clip constants are read where clips.py uses them: set them on .clips, not here.
from .clips import CLIP_PRESET, REMUX_MAX_BYTES_PER_SECOND, clip_limits  # noqa: F401
from .frames import sample_times
from .gaps import Gap, frame_gap_seconds
from .loader import VideoSegmentLoader
from .probe import VideoInfo, probe
from .reader import read_segment, read_video
from .scenes import CutScan, detect_cuts
from .segments import Segment, SegmentPlanner, plan_segments

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
