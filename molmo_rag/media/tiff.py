"""TIFF pages through tifffile, where Pillow falls short.

Pillow reads most TIFFs, but not every valid one: pages stored planar (one plane per
sample) with an alpha plane or more than three samples, big-endian BigTIFF, and 16-bit
planar pages without compression (which it decodes into the wrong colours). tifffile reads
those, and lists a file's pages (leaving out the reduced-resolution previews and masks
that some writers store as pages). It is optional: without it, TIFFs are read by Pillow
alone. tifffile decodes no LZW or JPEG without ``imagecodecs``; such pages stay Pillow's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CorruptMediaError, MediaTooLargeError
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .blob import Blob

__all__ = ["is_tiff", "main_pages", "is_planar", "page_size", "decode_page"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_REDUCED_OR_MASK = 0b101
"""NewSubfileType bits of a reduced-resolution copy (1) and of a transparency mask (4)."""
_MAX_PAGES = 10_000
_PHOTOMETRIC_MINISWHITE, _PHOTOMETRIC_MINISBLACK, _PHOTOMETRIC_RGB, _PHOTOMETRIC_PALETTE = 0, 1, 2, 3
_PHOTOMETRIC_SEPARATED = 5  # CMYK
_ALPHA_EXTRASAMPLES = (1, 2)  # associated, unassociated alpha


def is_tiff(head: bytes) -> bool:
    return head.startswith(_TIFF_MAGIC)


def _tifffile():
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


def main_pages(blob: "Blob") -> list[int] | None:
    """Indexes (in the file's page chain) of the full pages, previews and masks left out;
    None when tifffile is missing or cannot read the file's page directory."""
    tifffile = _tifffile()
    if tifffile is None:
        return None
    try:
        with blob.open() as f, tifffile.TiffFile(f) as tif:
            pages = []
            for index, page in enumerate(tif.pages):
                if index >= _MAX_PAGES:
                    break
                if not int(getattr(page, "subfiletype", 0) or 0) & _REDUCED_OR_MASK:
                    pages.append(index)
            return pages or None
    except Exception:  # tifffile raises many kinds on damaged files: Pillow then says what is wrong
        return None


def is_planar(blob: "Blob", index: int) -> bool:
    """Whether the page stores one plane per sample (PlanarConfiguration 2), which tifffile
    decodes better than Pillow; False without tifffile."""
    tifffile = _tifffile()
    if tifffile is None:
        return False
    try:
        with blob.open() as f, tifffile.TiffFile(f) as tif:
            page = tif.pages[index]
            return int(page.planarconfig) == 2 and int(page.samplesperpixel) > 1
    except Exception:
        return False


def page_size(blob: "Blob", index: int) -> tuple[int, int] | None:
    """(width, height) of a page as tifffile reads it, or None when it cannot."""
    tifffile = _tifffile()
    if tifffile is None:
        return None
    try:
        with blob.open() as f, tifffile.TiffFile(f) as tif:
            page = tif.pages[index]
            return int(page.imagewidth), int(page.imagelength)
    except Exception:
        return None


def _to_8bit(arr, bits: int):
    """Samples of any type as uint8: integers scaled from their bit depth, floats (and
    signed integers) stretched over their finite range."""
    import numpy as np

    from .images import stretch_to_8bit

    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        top = (1 << min(bits, arr.dtype.itemsize * 8)) - 1 if bits else np.iinfo(arr.dtype).max
        return (arr.astype(np.float64) * (255.0 / top)).round().clip(0, 255).astype(np.uint8)
    return stretch_to_8bit(arr)


def _picture(page, arr) -> "Image.Image":
    """A decoded page (samples last) as a PIL image Pillow's conversions understand."""
    import numpy as np
    from PIL import Image

    photometric = int(page.photometric)
    extra = tuple(int(e) for e in (page.extrasamples or ()))
    samples = arr.shape[-1] if arr.ndim == 3 else 1
    alpha = arr[..., -1] if arr.ndim == 3 and extra and extra[-1] in _ALPHA_EXTRASAMPLES else None
    if photometric == _PHOTOMETRIC_RGB and samples >= 3:
        colour = _to_8bit(arr[..., :3], page.bitspersample)
        if alpha is None:
            return Image.fromarray(np.ascontiguousarray(colour), "RGB")
        rgba = np.dstack([colour, _to_8bit(alpha, page.bitspersample)])
        return Image.fromarray(rgba, "RGBA")
    if photometric in (_PHOTOMETRIC_MINISBLACK, _PHOTOMETRIC_MINISWHITE):
        grey = _to_8bit(arr[..., 0] if arr.ndim == 3 else arr, page.bitspersample)
        if photometric == _PHOTOMETRIC_MINISWHITE:
            grey = 255 - grey
        if alpha is None:
            return Image.fromarray(np.ascontiguousarray(grey), "L")
        return Image.fromarray(np.dstack([grey, _to_8bit(alpha, page.bitspersample)]), "LA")
    if photometric == _PHOTOMETRIC_SEPARATED and samples >= 4:
        return Image.fromarray(np.ascontiguousarray(_to_8bit(arr[..., :4], page.bitspersample)), "CMYK")
    if photometric == _PHOTOMETRIC_PALETTE and page.colormap is not None:
        palette = _to_8bit(np.asarray(page.colormap).T, 16)
        return Image.fromarray(palette[arr if arr.ndim == 2 else arr[..., 0]], "RGB")
    raise ValueError(f"photometric interpretation {photometric} with {samples} sample(s) is not supported")


def decode_page(blob: "Blob", index: int, options: ReaderOptions) -> "Image.Image":
    """One page decoded by tifffile, as a PIL image (not yet RGB nor downscaled); the pixel
    cap is checked before anything is decoded. Raises CorruptMediaError when it cannot."""
    import numpy as np

    tifffile = _tifffile()
    source = blob.source
    if tifffile is None:
        raise CorruptMediaError(f"{source} has a TIFF page Pillow cannot read (install tifffile)", source=source)
    try:
        with blob.open() as f, tifffile.TiffFile(f) as tif:
            page = tif.pages[index]
            width, height = int(page.imagewidth), int(page.imagelength)
            if width * height > options.max_image_pixels:
                raise MediaTooLargeError(
                    f"{source} declares a {width}x{height} = {width * height} pixel page, over max_image_pixels "
                    f"({options.max_image_pixels}); refused as a possible decompression bomb",
                    source=source,
                )
            arr = page.asarray()
            axes = page.axes
            if "S" in axes and arr.ndim == 3:
                arr = np.moveaxis(arr, axes.index("S"), -1)
            picture = _picture(page, arr)
            orientation = int(page.tags.valueof(274, 1) or 1)
    except (CorruptMediaError, MediaTooLargeError):
        raise
    except Exception as exc:  # tifffile raises many kinds on damaged or unusual files
        raise CorruptMediaError(f"{source} has a TIFF page that cannot be decoded: {exc}", source=source) from exc
    return _oriented(picture, orientation)


_ORIENTATIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
"""TIFF Orientation tag values (the same as EXIF's) as Pillow transpositions."""


def _oriented(picture: "Image.Image", orientation: int) -> "Image.Image":
    from PIL import Image

    method = _ORIENTATIONS.get(orientation)
    return picture.transpose(getattr(Image.Transpose, method)) if method else picture
