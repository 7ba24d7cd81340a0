"""Image files to media items.

JPEG, PNG, WebP, GIF (first frame), BMP, TIFF (first page), AVIF where Pillow reads it, and
HEIC/HEIF with the ``heic`` extra (pillow-heif). EXIF orientation is applied, images are
downscaled to ``max_image_side`` before anything sees them, and decompression bombs are
refused from the header alone. Pixels are decoded only when a loader is asked for them.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ..errors import CorruptMediaError, MediaTooLargeError, UnsupportedMediaError
from .items import MediaItem, encode_image
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .blob import Blob

__all__ = ["FileImageLoader", "read_image", "read_pil", "to_rgb", "fit_within"]

_ORIENTATION_TAG = 0x0112
_SENT_AS_IS = {"JPEG": "image/jpeg", "PNG": "image/png"}
_LOSSLESS_SOURCES = {"PNG", "GIF", "BMP"}


def _register_heif(source: str) -> None:
    try:
        from pillow_heif import register_heif_opener
    except ImportError as exc:
        raise UnsupportedMediaError(
            f"{source} is HEIC/HEIF; reading it needs pillow-heif: pip install 'molmo-rag[heic]'",
            source=source,
        ) from exc
    register_heif_opener()


def to_rgb(image: "Image.Image") -> "Image.Image":
    """RGB, with transparency composited on white (not the black that convert() leaves)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: scale to 8 bits instead of clipping
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else arr * 0
        return Image.fromarray(arr.astype("uint8")).convert("RGB")
    return image.convert("RGB")


def fit_within(image: "Image.Image", max_side: int) -> "Image.Image":
    """Downscale (never upscale) so that the longer side is at most ``max_side``."""
    from PIL import Image

    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@contextmanager
def _opened(blob: "Blob", options: ReaderOptions) -> Iterator["Image.Image"]:
    """``Image.open`` with our errors, and the pixel cap checked from the header alone."""
    from PIL import Image, UnidentifiedImageError

    source = blob.source
    head = blob.head(64)
    if head[4:8] == b"ftyp":
        from .sniffing import sniff

        if sniff(head) == "heic":
            _register_heif(source)
    stream = blob.open()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(stream)
            except Image.DecompressionBombError as exc:
                raise MediaTooLargeError(f"{source} is a decompression bomb: {exc}", source=source) from exc
            except UnidentifiedImageError as exc:
                raise CorruptMediaError(f"{source} cannot be decoded as an image", source=source) from exc
            except (OSError, SyntaxError, ValueError) as exc:
                raise CorruptMediaError(f"{source} is a damaged image: {exc}", source=source) from exc
        width, height = image.size
        if width * height > options.max_image_pixels:
            raise MediaTooLargeError(
                f"{source} declares {width}x{height} = {width * height} pixels, over max_image_pixels "
                f"({options.max_image_pixels}); refused as a possible decompression bomb",
                source=source,
            )
        if width == 0 or height == 0:
            raise CorruptMediaError(f"{source} has no pixels ({width}x{height})", source=source)
        yield image
    finally:
        stream.close()


def _orientation(image: "Image.Image") -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block must not sink a good picture
        return 1


def _decode(image: "Image.Image", blob: "Blob", options: ReaderOptions) -> "Image.Image":
    from PIL import Image, ImageOps

    source = blob.source
    max_side = options.max_image_side
    if image.format == "JPEG" and max(image.size) > max_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target.
        scale = max_side / max(image.size)
        image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptMediaError(f"{source} is truncated or damaged: {exc}", source=source) from exc
    image = ImageOps.exif_transpose(image) or image
    return fit_within(to_rgb(image), max_side)


class FileImageLoader:
    """Decodes an image file on demand; keeps no pixels between calls."""

    def __init__(self, blob: "Blob", options: ReaderOptions):
        self.blob = blob
        self.options = options
        self.content_hash = blob.sha256()
        self.format: str | None = None
        self.original_size: tuple[int, int] | None = None
        self.orientation = 1
        self.frames = 1
        self.plain_mode = False

    def probe(self) -> tuple[int, int]:
        """Read the header (and decode once when ``verify_images``); returns the output size."""
        with _opened(self.blob, self.options) as image:
            self.format = image.format
            self.original_size = image.size
            self.orientation = _orientation(image)
            self.frames = getattr(image, "n_frames", 1)
            self.plain_mode = image.mode in ("RGB", "L") and "transparency" not in image.info
            if self.options.verify_images:
                return _decode(image, self.blob, self.options).size
        width, height = self.original_size
        if self.orientation in (5, 6, 7, 8):
            width, height = height, width
        scale = min(1.0, self.options.max_image_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def open(self) -> "Image.Image":
        with _opened(self.blob, self.options) as image:
            return _decode(image, self.blob, self.options)

    def encoded(self) -> tuple[bytes, str]:
        if self._original_is_fit():
            return self.blob.read_bytes(), _SENT_AS_IS[self.format]
        image = self.open()
        if self.format in _LOSSLESS_SOURCES:
            return encode_image(image, "PNG")
        return encode_image(image, "JPEG", quality=self.options.jpeg_quality)

    def _original_is_fit(self) -> bool:
        """The file itself can be sent: JPEG/PNG, upright, small enough, plain RGB/grey."""
        if self.original_size is None:
            self.probe()
        return (
            self.format in _SENT_AS_IS
            and self.orientation == 1
            and self.frames == 1
            and max(self.original_size) <= self.options.max_image_side
            and self.plain_mode
        )

    def __repr__(self) -> str:
        return f"FileImageLoader({self.blob.source!r})"


def read_image(blob: "Blob", options: ReaderOptions) -> MediaItem:
    """One image file (already sniffed as an image) to its media item."""
    loader = FileImageLoader(blob, options)
    width, height = loader.probe()
    original_width, original_height = loader.original_size
    extra = {"format": loader.format, "original_width": original_width, "original_height": original_height}
    if loader.frames > 1:
        extra["frames"] = loader.frames
    return MediaItem(
        kind="image",
        source=blob.source,
        media_id=loader.content_hash,
        content_hash=loader.content_hash,
        loader=loader,
        width=width,
        height=height,
        remote_url=blob.remote_url,
        extra=extra,
    )


def read_pil(image: "Image.Image", options: ReaderOptions, source: str = "<memory>") -> MediaItem:
    """A PIL image already in memory: oriented, RGB, downscaled, hashed by its pixels."""
    from PIL import ImageOps

    fitted = fit_within(to_rgb(ImageOps.exif_transpose(image) or image), options.max_image_side)
    return MediaItem.from_pil(fitted, source=source)

