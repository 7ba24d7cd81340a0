"""Media readers: sources to :class:`MediaItem` (image | slide | video_segment).

``read(sources, options)`` yields items lazily; heavy libraries (PyAV, python-pptx,
pypdfium2, PySceneDetect) load only when a source of their kind is read.
"""

from .items import (
    ImageLoader,
    InMemoryImage,
    InMemoryVideo,
    MediaItem,
    MediaKind,
    VideoFrames,
    VideoLoader,
    encode_image,
    sha256_hex,
)
from .options import ReaderOptions
from .blob import Blob
from .sniffing import classify, sniff
from .sources import read

__all__ = [
    "Blob",
    "ImageLoader",
    "InMemoryImage",
    "InMemoryVideo",
    "MediaItem",
    "MediaKind",
    "ReaderOptions",
    "VideoFrames",
    "VideoLoader",
    "classify",
    "encode_image",
    "read",
    "sha256_hex",
    "sniff",
]
