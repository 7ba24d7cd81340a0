"""The picture of every document, on disk, where any framework can open it.

A photo that is a local file is its own picture. Everything else (a photo read from a URL
or from bytes, a rendered slide, a video segment's representative frame, and on request
the segment's frames) is saved once under a ``pictures`` folder of the cache root, named
by the content hash of the item it shows, so the same slide of the same deck is one file
however many runs, documents or machines sharing the folder ask for it.

These paths go into each document's metadata (``image_path``, ``frame_paths``; and
``image_url`` for a photo read from the web), which is what LlamaIndex's ``ImageNode`` and
a LangChain chat model's image blocks are made from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .media.door import is_local_path
from .media.names import local_path

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .media.items import MediaItem

__all__ = ["PICTURES", "picture_folder", "save_frames", "save_picture"]

PICTURES = "pictures"
"""The folder, under the cache root, that holds the saved pictures."""

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


def picture_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/pictures`` (default: the default cache directory's)."""
    from .locations import default_cache_dir

    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / PICTURES


def _name(item: "MediaItem", suffix: str = "") -> str:
    return hashlib.sha256(f"{item.media_id}{suffix}".encode()).hexdigest()[:40]


def _write_once(path: Path, data: bytes) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)  # a reader never sees half a picture
    return path


def _jpeg(image: "Image.Image") -> bytes:
    from .media.items import encode_image

    return encode_image(image, "JPEG", quality=90)[0]


def local_photo(item: "MediaItem") -> Path | None:
    """The file of a photo read from local disk whose path is text (None for anything else:
    a name that is not UTF-8 cannot go into metadata, so such a photo is saved instead)."""
    if item.kind == "image" and is_local_path(item.source):
        path = Path(local_path(item.source))
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            return None
        if path.is_file():
            return path
    return None


def save_picture(item: "MediaItem", folder: Path) -> Path | None:
    """A file showing ``item`` at the resolution it was read: the photo's own file, else
    the picture saved under ``folder``. None when it cannot be made (a picture is never
    worth failing a document over)."""
    own = local_photo(item)
    if own is not None:
        return own
    try:
        if item.kind == "image":
            data, mime = item.image_bytes()
            return _write_once(folder / f"{_name(item)}{_EXTENSIONS.get(mime, '.img')}", data)
        target = folder / f"{_name(item)}.jpg"
        if target.exists():
            return target
        return _write_once(target, _jpeg(item.thumbnail()))
    except Exception:
        return None


def save_frames(item: "MediaItem", folder: Path, count: int) -> list[Path]:
    """Up to ``count`` frames of a video segment, evenly spread, saved under ``folder``
    (``[]`` for a photo or slide, or when they cannot be decoded)."""
    if item.kind != "video_segment" or count <= 0:
        return []
    names = [folder / f"{_name(item, f'#frame{i}/{count}')}.jpg" for i in range(count)]
    if all(path.exists() for path in names):
        return names
    try:
        from PIL import Image

        frames = item.frames(num_frames=count, max_fps=1e6).frames
    except Exception:
        return []
    return [_write_once(path, _jpeg(Image.fromarray(frame))) for path, frame in zip(names, frames)]
