"""Media items: what readers produce and backends consume.

A :class:`MediaItem` is one image, one slide (rendered whole) or one video segment. It is
cheap to create: pixels, frames and clips are produced on demand by its loader, so a
folder of thousands of files or an hour of video never sits in memory at once.

Times of a video segment (``start``, ``end``) are in seconds of the source video; the
frames and clips a segment hands to backends are in *clip time* (0 at ``start``), and the
shared backend layer shifts answers back into video time.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

__all__ = [
    "MediaKind",
    "MediaItem",
    "VideoFrames",
    "ImageLoader",
    "VideoLoader",
    "InMemoryImage",
    "InMemoryVideo",
    "sha256_hex",
    "encode_image",
]

MediaKind = Literal["image", "slide", "video_segment"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_image(image: "Image.Image", fmt: str = "PNG", quality: int = 90) -> tuple[bytes, str]:
    """Encode a PIL image; returns (bytes, mime type)."""
    fmt = fmt.upper()
    if fmt in ("JPG", "JPEG"):
        fmt = "JPEG"
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue(), f"image/{fmt.lower()}"


@dataclass
class VideoFrames:
    """Decoded frames of one clip for the local backend.

    ``frames`` is a uint8 array (T, H, W, C); ``timestamps`` are seconds in clip time;
    ``fps`` and ``total_frames`` describe the clip the frames were sampled from, and
    ``indices`` are the sampled frame numbers in it (for transformers' VideoMetadata).
    """

    frames: "np.ndarray"
    timestamps: list[float]
    fps: float
    width: int
    height: int
    duration: float
    total_frames: int
    indices: list[int]

    def __len__(self) -> int:
        return len(self.timestamps)


@runtime_checkable
class ImageLoader(Protocol):
    def open(self) -> "Image.Image":
        """The image, RGB, orientation applied, already downscaled to the reader's cap."""

    def encoded(self) -> tuple[bytes, str]:
        """The image as bytes ready to send (JPEG or PNG) and its mime type."""


@runtime_checkable
class VideoLoader(Protocol):
    def frames(self, num_frames: int, max_fps: float) -> VideoFrames:
        """Up to ``num_frames`` frames, at most ``max_fps`` per second, in clip time."""

    def clip(self) -> tuple[bytes, str]:
        """The segment as a small self-contained video file (bytes, mime type)."""

    def thumbnail(self) -> "Image.Image":
        """A representative frame."""


@dataclass(eq=False)
class MediaItem:
    """One image, slide or video segment, with its metadata and an on-demand loader."""

    kind: MediaKind
    source: str
    media_id: str
    loader: Any = field(repr=False)
    content_hash: str = ""
    slide: int | None = None
    title: str | None = None
    slide_text: str | None = None
    notes: str | None = None
    start: float | None = None
    end: float | None = None
    width: int | None = None
    height: int | None = None
    remote_url: str | None = None
    """The original http(s) URL when the item is that whole file (REST backends pass it on)."""
    extra: dict = field(default_factory=dict)

    @property
    def model_input(self) -> Literal["image", "video"]:
        return "video" if self.kind == "video_segment" else "image"

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    # --- pixels, produced on demand -----------------------------------------------------
    def image(self) -> "Image.Image":
        if self.model_input != "image":
            return self.loader.thumbnail()
        return self.loader.open()

    def image_bytes(self) -> tuple[bytes, str]:
        return self.loader.encoded()

    def frames(self, num_frames: int = 64, max_fps: float = 2.0) -> VideoFrames:
        return self.loader.frames(num_frames, max_fps)

    def clip(self) -> tuple[bytes, str]:
        return self.loader.clip()

    def thumbnail(self) -> "Image.Image":
        if self.model_input == "image":
            return self.loader.open()
        return self.loader.thumbnail()

    def describe(self) -> dict:
        """Metadata as JSON fields (what results and index payloads carry)."""
        out: dict = {"source": self.source, "kind": self.kind, "media_id": self.media_id}
        for key in ("slide", "title", "slide_text", "notes", "start", "end"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    # --- construction from memory (tests, notebooks, integrations) ----------------------
    @classmethod
    def from_pil(cls, image: "Image.Image", source: str = "<memory>") -> "MediaItem":
        loader = InMemoryImage(image)
        return cls(
            kind="image",
            source=source,
            media_id=loader.content_hash,
            content_hash=loader.content_hash,
            loader=loader,
            width=image.width,
            height=image.height,
        )

    @classmethod
    def from_frames(
        cls, frames: VideoFrames, source: str = "<memory>", start: float = 0.0, clip: bytes | None = None
    ) -> "MediaItem":
        loader = InMemoryVideo(frames, clip)
        return cls(
            kind="video_segment",
            source=source,
            media_id=f"{loader.content_hash}#t={start:.3f}-{start + frames.duration:.3f}",
            content_hash=loader.content_hash,
            loader=loader,
            start=start,
            end=start + frames.duration,
            width=frames.width,
            height=frames.height,
        )


class InMemoryImage:
    """Loader for a PIL image already in memory."""

    def __init__(self, image: "Image.Image"):
        self._image = image.convert("RGB") if image.mode != "RGB" else image
        self.content_hash = sha256_hex(
            f"{self._image.size}".encode() + self._image.tobytes()
        )

    def open(self) -> "Image.Image":
        return self._image

    def encoded(self) -> tuple[bytes, str]:
        return encode_image(self._image, "PNG")


class InMemoryVideo:
    """Loader for frames already decoded; ``clip`` bytes must be given for REST backends."""

    def __init__(self, frames: VideoFrames, clip: bytes | None = None):
        self._frames = frames
        self._clip = clip
        self.content_hash = sha256_hex(frames.frames.tobytes() + repr(frames.timestamps).encode())

    def frames(self, num_frames: int, max_fps: float) -> VideoFrames:
        f = self._frames
        if len(f) <= num_frames:
            return f
        import numpy as np

        pick = np.linspace(0, len(f) - 1, num_frames).round().astype(int).tolist()
        return VideoFrames(
            frames=f.frames[pick],
            timestamps=[f.timestamps[i] for i in pick],
            fps=f.fps,
            width=f.width,
            height=f.height,
            duration=f.duration,
            total_frames=f.total_frames,
            indices=[f.indices[i] for i in pick],
        )

    def clip(self) -> tuple[bytes, str]:
        if self._clip is None:
            from ..errors import UnsupportedMediaError

            raise UnsupportedMediaError("these in-memory frames have no encoded clip to upload")
        return self._clip, "video/mp4"

    def thumbnail(self) -> "Image.Image":
        from PIL import Image

        return Image.fromarray(self._frames.frames[len(self._frames) // 2])
