"""Upload clips, what REST backends send: the segment's own H.264 packets, copied, when a small
segment runs from keyframe to keyframe; otherwise a re-encode at the size and frame rate
Molmo2 reads (640 px, 4 fps unless ReaderOptions sets clip caps)."""

from __future__ import annotations

import math
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...errors import CorruptMediaError, UnsupportedMediaError
from ..options import ReaderOptions
from .container import _av, _decoding, _opened, _seek
from .frames import SegmentFrames

CLIP_PRESET = "veryfast"
"""x264 preset of re-encoded clips."""

REMUX_MAX_BYTES_PER_SECOND = 125_000
"""A segment whose packets take more than this (1 Mbit/s) is re-encoded rather than copied,
so that clips stay small to upload."""


def clip_limits(options: ReaderOptions) -> tuple[int, int, float]:
    """(longer side, shorter side, frame rate) caps of upload clips."""
    return options.clip_max_side, options.clip_short_side, options.clip_max_fps


def _h264_encoder(av: Any) -> str:
    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            return name
    raise UnsupportedMediaError("this PyAV build has no H.264 encoder to make upload clips")


def remuxed(segment: SegmentFrames) -> bytes | None:
    """The segment's packets copied into an MP4 without decoding them, or None when that
    would not give a clip as good as a re-encoded one: the video must be 8-bit 4:2:0
    H.264 in MP4/Matroska (so its parameter sets travel in the header), within the clip
    size caps, not rotated; the segment must start on a keyframe and end on the next
    segment's keyframe (or at the end of a whole file), every frame in between must
    show inside it (no open GOP), and the packets must stay under
    REMUX_MAX_BYTES_PER_SECOND. Timestamps are shifted to start at 0."""
    info = segment.info
    max_side, short_side, _ = clip_limits(segment.options)
    coded = (info.coded_width, info.coded_height)
    if info.codec != "h264" or info.rotation or max(coded) > max_side or min(coded) > short_side:
        return None
    av = _av()
    half = 0.5 / info.fps
    start, end = info.start_time + segment.start, info.start_time + segment.end
    at_end = segment.end >= info.duration - half and not info.truncated
    budget = REMUX_MAX_BYTES_PER_SECOND * max(segment.duration, 1.0)
    with _opened(segment.blob) as container, _decoding(segment.blob):
        stream = container.streams.video[0]
        names = set(container.format.name.split(","))
        extradata = stream.codec_context.extradata or b""
        pix_fmt = stream.codec_context.format.name if stream.codec_context.format else None
        if not names & {"mp4", "mov", "matroska"} or extradata[:1] != b"\x01":
            return None  # no avcC header (MPEG-TS, raw H.264): the MP4 muxer needs one
        if pix_fmt not in ("yuv420p", "yuvj420p"):
            return None  # 10-bit or 4:2:2/4:4:4 H.264: many decoders refuse it
        tb = stream.time_base
        if segment.start > 0 and not _seek(container, stream, start):
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


def encoded(segment: SegmentFrames) -> bytes:
    """The segment re-encoded at the clip caps: each output frame is the decoded frame
    nearest its time, so a frame-rate cap far below the source's skips decoding the
    frames nothing else is predicted from."""
    av = _av()
    import numpy as np

    info = segment.info
    max_side, short_side, max_fps = clip_limits(segment.options)
    width, height = info.width, info.height
    scale = min(1.0, short_side / min(width, height), max_side / max(width, height))
    out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
    rate = Fraction(min(info.fps, max_fps)).limit_denominator(1001)
    slots = max(1, math.ceil(segment.duration * rate - 1e-6))
    with tempfile.TemporaryDirectory(prefix="molmo-rag-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(_h264_encoder(av), rate=rate)
            stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
            stream.options = {"crf": str(segment.options.clip_crf), "preset": CLIP_PRESET}
            written = 0

            def write(frame: Any) -> None:
                nonlocal written
                if info.rotation:
                    rgb = segment._array(frame, max(frame.width, frame.height))
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                frame.pts, frame.time_base = written, 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
                written += 1

            previous = None
            for t, frame in segment._clip_frames(0.0, skip_nonref=info.fps / rate >= 4):
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
                    f"{segment.blob.source}: no frame decodes between {segment.start:.2f} s and {segment.end:.2f} s",
                    source=segment.blob.source,
                )
            for packet in stream.encode():
                out.mux(packet)
        return path.read_bytes()
