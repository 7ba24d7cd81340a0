"""Media readers: sources to :class:`MediaItem` (image | slide | video_segment).

``read(sources, options)`` yields items lazily (one source or many, local or not, and the
absolute form the index stores: :mod:`.door`); heavy libraries (PyAV, python-pptx,
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
from .door import absolute_source, as_source_list, as_sources, is_local_path
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
    "absolute_source",
    "as_source_list",
    "as_sources",
    "classify",
    "encode_image",
    "is_local_path",
    "read",
    "sha256_hex",
    "sniff",
]
