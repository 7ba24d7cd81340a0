"""Image files to media items.

JPEG, PNG, WebP, GIF (first frame), BMP, TIFF (every page, one item each; pages Pillow
cannot read, planar ones among them, through tifffile), AVIF where Pillow reads it, and
HEIC/HEIF with the ``heic`` extra (pillow-heif). EXIF orientation is applied, images are
downscaled to ``max_image_side`` before anything sees them, and decompression bombs are
refused from the header alone, as are JPEGs and PNGs whose data is too short to fill the
size their header claims. Pixels are decoded only when a loader is asked for them.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ..errors import CorruptMediaError, MediaTooLargeError, UnsupportedMediaError
from . import tiff
from .items import MediaItem, encode_image
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

    from .blob import Blob

__all__ = ["FileImageLoader", "read_image", "read_images", "read_pil", "to_rgb", "fit_within", "stretch_to_8bit"]

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

        return Image.fromarray(stretch_to_8bit(np.asarray(image))).convert("RGB")
    return image.convert("RGB")


def _frame_count(image: "Image.Image") -> int:
    """How many frames Pillow sees. Counting walks every page of a TIFF, and a later page
    Pillow cannot set up (a float64 page after an RGB one) must not lose the readable ones:
    each TIFF page is its own item anyway, enumerated by :mod:`.tiff`."""
    if image.format == "TIFF":
        return 1
    try:
        return getattr(image, "n_frames", 1)
    except (SyntaxError, OSError, ValueError, EOFError):
        return 1


def stretch_to_8bit(arr: "np.ndarray") -> "np.ndarray":
    """Samples stretched over 0..255 from their finite range: NaN (no data, common in float
    TIFFs) becomes 0 and does not spoil the range, +inf is 255 and -inf 0."""
    import numpy as np

    arr = np.asarray(arr)
    if np.iscomplexobj(arr):  # complex samples (FFT data): their magnitude is the picture
        arr = np.abs(arr)
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if finite.all():
        lo, hi = float(arr.min()), float(arr.max())
    elif finite.any():
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
    else:
        return np.zeros(arr.shape, np.uint8)
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.where(np.isposinf(arr), 255.0, 0.0)
    return np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0).clip(0, 255).astype(np.uint8)


def fit_within(image: "Image.Image", max_side: int) -> "Image.Image":
    """Downscale (never upscale) so that the longer side is at most ``max_side``."""
    from PIL import Image

    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@contextmanager
def _opened(blob: "Blob", options: ReaderOptions, page: int = 0) -> Iterator["Image.Image"]:
    """``Image.open`` (at page ``page`` of a multi-page file) with our errors; the pixel cap,
    and for JPEG and PNG whether the data can fill the size claimed, checked from the
    header alone."""
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
                if page:
                    image.seek(page)
            except Image.DecompressionBombError as exc:
                raise MediaTooLargeError(f"{source} is a decompression bomb: {exc}", source=source) from exc
            except UnidentifiedImageError as exc:
                raise CorruptMediaError(f"{source} cannot be decoded as an image", source=source) from exc
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
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
        _refuse_underfilled(image, blob)
        yield image
    finally:
        stream.close()


# --- data that cannot fill its header ---------------------------------------------------------
_DEFLATE_MAX_RATIO = 1032
"""Deflate never makes more than 1032 bytes of one: a 258-byte match costs at least 2 bits."""
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
"""Start-of-frame markers of Huffman-coded JPEGs (the arithmetic-coded ones can go below
the floor below, and are left unchecked)."""
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_MAX_MARKERS = 4096


def _png_floor(blob: "Blob", width: int, height: int) -> int | None:
    """The fewest bytes a PNG of this size can hold: its unfiltered rows, deflated at best."""
    head = blob.head(29)
    if len(head) < 29 or head[12:16] != b"IHDR" or head[25] not in _PNG_CHANNELS:
        return None
    depth, channels = head[24], _PNG_CHANNELS[head[25]]
    row = 1 + -(-width * channels * depth // 8)
    return row * height // _DEFLATE_MAX_RATIO


def _jpeg_floor(blob: "Blob", width: int, height: int) -> tuple[int, int] | None:
    """(bytes after the first start-of-scan, the fewest a Huffman-coded JPEG of this size
    needs there): each minimum coded unit (8x8 pixels per sampling step) codes at least one
    DC difference of at least one bit. None for other JPEGs or a header that cannot be walked."""
    import struct

    try:
        with blob.open() as f:
            if f.read(2) != b"\xff\xd8":
                return None
            sampling = None
            for _ in range(_JPEG_MAX_MARKERS):
                prefix = f.read(2)
                if len(prefix) < 2 or prefix[0] != 0xFF:
                    return None
                marker = prefix[1]
                while marker == 0xFF:  # fill bytes
                    more = f.read(1)
                    if not more:
                        return None
                    marker = more[0]
                if marker in _JPEG_STANDALONE_MARKERS:
                    continue
                (length,) = struct.unpack(">H", f.read(2))
                if length < 2:
                    return None
                body = f.read(length - 2)
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    if marker not in _JPEG_HUFFMAN_FRAMES or len(body) < 6:
                        return None
                    factors = body[7 : 7 + 3 * body[5] : 3]
                    sampling = (max((b >> 4 for b in factors), default=1) or 1, max((b & 15 for b in factors), default=1) or 1)
                elif marker == 0xDA:
                    if sampling is None:
                        return None
                    units = -(-width // (8 * sampling[0])) * -(-height // (8 * sampling[1]))
                    return blob.size - f.tell(), units // 8
    except (OSError, struct.error, ValueError):
        return None
    return None


def _refuse_underfilled(image: "Image.Image", blob: "Blob") -> None:
    """Refuse a JPEG or PNG whose data is too short to fill the size its header claims (a
    forged or cut header): decoders fill the missing part with grey or black, or allocate
    the whole claimed size before they find out."""
    width, height = image.size
    if image.format == "PNG":
        need, have = _png_floor(blob, width, height), blob.size
    elif image.format in ("JPEG", "MPO"):
        found = _jpeg_floor(blob, width, height)
        have, need = found if found is not None else (0, None)
    else:
        return
    if need is not None and have < need:
        source = blob.source
        raise CorruptMediaError(
            f"{source} is a {image.format} whose header claims {width}x{height} pixels but it holds only "
            f"{have} bytes of image data, too little to fill them (at least {need} needed): it is truncated "
            "or its header is wrong; export the picture again",
            source=source,
        )


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
    """Decodes an image file (one page of a multi-page TIFF) on demand; keeps no pixels
    between calls. A TIFF page Pillow cannot read, or reads wrong (planar pages), is
    decoded by tifffile."""

    def __init__(self, blob: "Blob", options: ReaderOptions, page: int = 0):
        self.blob = blob
        self.options = options
        self.page = page
        """The page's index in the file's page chain (0 for every other format)."""
        self.content_hash = blob.sha256()
        self.format: str | None = None
        self.original_size: tuple[int, int] | None = None
        self.orientation = 1
        self.frames = 1
        self.plain_mode = False
        self.via_tifffile = False

    def probe(self) -> tuple[int, int]:
        """Read the header (and decode once when ``verify_images``); returns the output size."""
        is_tiff = tiff.is_tiff(self.blob.head(4))
        self.via_tifffile = is_tiff and tiff.is_planar(self.blob, self.page)
        if not self.via_tifffile:
            try:
                return self._probe_with_pillow()
            except CorruptMediaError:
                if not is_tiff:
                    raise
                try:
                    self.via_tifffile = True
                    return self._probe_with_tifffile()
                except CorruptMediaError:
                    self.via_tifffile = False
                    raise
        return self._probe_with_tifffile()

    def _probe_with_pillow(self) -> tuple[int, int]:
        with _opened(self.blob, self.options, self.page) as image:
            self.format = image.format
            self.original_size = image.size
            self.orientation = _orientation(image)
            self.frames = _frame_count(image)
            self.plain_mode = image.mode in ("RGB", "L") and "transparency" not in image.info
            if self.options.verify_images:
                return _decode(image, self.blob, self.options).size
        return self._fitted_size()

    def _probe_with_tifffile(self) -> tuple[int, int]:
        image = fit_within(to_rgb(tiff.decode_page(self.blob, self.page, self.options)), self.options.max_image_side)
        self.format, self.frames = "TIFF", 1
        self.original_size = tiff.page_size(self.blob, self.page) or image.size
        return image.size

    def _fitted_size(self) -> tuple[int, int]:
        width, height = self.original_size
        if self.orientation in (5, 6, 7, 8):
            width, height = height, width
        scale = min(1.0, self.options.max_image_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def open(self) -> "Image.Image":
        if self.via_tifffile:
            return fit_within(to_rgb(tiff.decode_page(self.blob, self.page, self.options)), self.options.max_image_side)
        with _opened(self.blob, self.options, self.page) as image:
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
        page = f", page={self.page + 1}" if self.page else ""
        return f"FileImageLoader({self.blob.source!r}{page})"


def _tiff_pages(blob: "Blob") -> list[int]:
    """Indexes of a TIFF's full pages (previews and masks left out); [0] when it has one or
    its page chain cannot be read (the first page's reader then says what is wrong)."""
    pages = tiff.main_pages(blob)
    if pages is not None:
        return pages
    from PIL import Image

    try:
        with blob.open() as f, Image.open(f) as image:
            return list(range(getattr(image, "n_frames", 1)))
    except Exception:
        return [0]


def read_image(blob: "Blob", options: ReaderOptions, page: int = 0, number: int | None = None, of: int = 1) -> MediaItem:
    """One image file (already sniffed as an image) to its media item; with ``number``, page
    ``number`` of ``of`` (at index ``page`` of the file's page chain) of a multi-page TIFF."""
    loader = FileImageLoader(blob, options, page)
    width, height = loader.probe()
    original_width, original_height = loader.original_size
    extra = {"format": loader.format, "original_width": original_width, "original_height": original_height}
    if number is not None:
        extra.update(page=number, pages=of)
    elif loader.frames > 1:
        extra["frames"] = loader.frames
    return MediaItem(
        kind="image",
        source=blob.source,
        media_id=loader.content_hash if number is None else f"{loader.content_hash}#page={number}",
        content_hash=loader.content_hash,
        loader=loader,
        slide=number,
        width=width,
        height=height,
        remote_url=blob.remote_url if number is None else None,
        extra=extra,
    )


def read_images(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """Every picture of an image file: the one, or each page of a multi-page TIFF (its
    number in ``slide``, ``page`` and ``pages`` in ``extra``), page by page."""
    pages = _tiff_pages(blob) if tiff.is_tiff(blob.head(4)) else [0]
    if len(pages) == 1:
        yield read_image(blob, options, pages[0])
        return
    for number, index in enumerate(pages, start=1):
        yield read_image(blob, options, index, number, len(pages))


def read_pil(image: "Image.Image", options: ReaderOptions, source: str = "<memory>") -> MediaItem:
    """A PIL image already in memory: oriented, RGB, downscaled, hashed by its pixels."""
    from PIL import ImageOps

    fitted = fit_within(to_rgb(ImageOps.exif_transpose(image) or image), options.max_image_side)
    return MediaItem.from_pil(fitted, source=source)

