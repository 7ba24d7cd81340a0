"""Reading a video: its segments as MediaItems, yielded as soon as they are known (the scene
scan runs in a background thread), or one segment again by its times (a search hit)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...errors import CorruptMediaError
from ..items import MediaItem
from ..options import ReaderOptions
from .ffmpeg_errors import _REDO
from .loader import VideoSegmentLoader
from .probe import VideoInfo, _stops_early, probe
from .segments import Segment, _fixed_segments, _scene_segments

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob


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
