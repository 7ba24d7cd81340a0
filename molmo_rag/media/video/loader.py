"""The lazy loader of a video segment: its frames and thumbnail (frames.py) and its upload
clip (clips.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..options import ReaderOptions
from .clips import encoded, remuxed
from .frames import SegmentFrames
from .probe import VideoInfo

if TYPE_CHECKING:  # pragma: no cover
    from ..blob import Blob

log = logging.getLogger(__name__)


class VideoSegmentLoader(SegmentFrames):
    """Frames, a small clip and a thumbnail of one segment, decoded on demand."""

    def __init__(self, blob: "Blob", info: VideoInfo, start: float, end: float, options: ReaderOptions):
        super().__init__(blob, info, start, end, options)
        self.clip_method: str | None = None
        """How the last clip was made: "remux" (packets copied) or "encode"."""

    def clip(self) -> tuple[bytes, str]:
        """The segment as a small H.264 MP4 (no audio, rotation applied), what REST backends
        upload: the source's own packets when they can be copied as they are (see
        :func:`clips.remuxed`), else re-encoded at the size and frame rate the model reads
        (:func:`clips.clip_limits`). ``clip_method`` says which it was ("remux" or "encode")."""
        data = remuxed(self)
        if data is not None:
            self.clip_method = "remux"
        else:
            data, self.clip_method = encoded(self), "encode"
        log.debug("%s: clip %s, %d bytes", self, self.clip_method, len(data))
        return data, "video/mp4"

    def __repr__(self) -> str:
        return f"VideoSegmentLoader({self.blob.source!r}, {self.start:.3f}-{self.end:.3f})"
