"""Slide decks (PPTX, PDF) to one media item per slide, each slide rendered whole.

PPTX: LibreOffice (headless, in a throw-away profile, under a timeout) turns the deck into
a PDF once per content hash (cached), pypdfium2 rasterises each page on demand, and
python-pptx supplies each slide's title, text and speaker notes. Without LibreOffice the
slides are approximated from their embedded pictures and text, with one warning.

PDF: every page is a slide; its text comes from the PDF's text layer.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptMediaError, MediaTooLargeError, MissingDependencyError
from .images import fit_within, to_rgb
from .items import MediaItem, encode_image
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .sources import Blob

__all__ = [
    "SlideInfo",
    "PdfPageLoader",
    "FallbackSlideLoader",
    "read_pdf",
    "read_pptx",
    "pptx_slides",
    "render_pptx_pdf",
    "find_soffice",
    "cache_root",
]

log = logging.getLogger(__name__)

# PDFium is not thread-safe; backends may ask for several slides from worker threads.
_PDFIUM_LOCK = threading.RLock()
_FALLBACK_WARNED = False
_EMU_PER_INCH = 914400


def _pdfium():
    try:
        import pypdfium2
    except ImportError as exc:
        raise MissingDependencyError("pypdfium2", "slides", "reading PDFs and rendering slides") from exc
    return pypdfium2


def _pptx():
    try:
        import pptx
    except ImportError as exc:
        raise MissingDependencyError("python-pptx", "slides", "reading PowerPoint decks") from exc
    return pptx


def cache_root(options: ReaderOptions) -> Path:
    if options.cache_dir is not None:
        return Path(options.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "molmo-rag"


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


# --- PDF pages ----------------------------------------------------------------------------
def _open_pdf(source: Path | bytes, label: str):
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == 4 or "password" in str(exc).lower():
            raise CorruptMediaError(f"{label} is an encrypted (password-protected) PDF", source=label) from exc
        raise CorruptMediaError(f"{label} is not a readable PDF: {exc}", source=label) from exc


def _page_scale(width_pt: float, height_pt: float, options: ReaderOptions) -> float:
    scale = options.slide_dpi / 72.0
    return min(scale, options.max_image_side / max(width_pt * scale, height_pt * scale, 1) * scale)


class PdfPageLoader:
    """Renders one PDF page on demand (nothing kept between calls)."""

    def __init__(self, pdf: Path | bytes, index: int, options: ReaderOptions, label: str):
        self.pdf = pdf
        self.index = index
        self.options = options
        self.label = label

    def open(self) -> "Image.Image":
        with _PDFIUM_LOCK:
            doc = _open_pdf(self.pdf, self.label)
            try:
                page = doc[self.index]
                width, height = page.get_size()
                image = page.render(scale=_page_scale(width, height, self.options)).to_pil()
                page.close()
            finally:
                doc.close()
        return fit_within(to_rgb(image), self.options.max_image_side)

    def encoded(self) -> tuple[bytes, str]:
        return encode_image(self.open(), "PNG")

    def __repr__(self) -> str:
        return f"PdfPageLoader({self.label!r}, page={self.index + 1})"


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return None


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())


def _rendered_size(width_pt: float, height_pt: float, options: ReaderOptions) -> tuple[int, int]:
    """Pixel size of a rendered page; PDFium's page size already has the page's /Rotate applied."""
    scale = _page_scale(width_pt, height_pt, options)
    return round(width_pt * scale), round(height_pt * scale)


def read_pdf(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """Every page of a PDF as a slide: rendered on demand, text from the text layer."""
    sha = blob.sha256()
    pdf: Path | bytes = blob.path if blob.data is None else blob.data
    with _PDFIUM_LOCK:
        doc = _open_pdf(pdf, blob.source)
        try:
            count = len(doc)
            pages = []
            for i in range(count):
                page = doc[i]
                width, height = page.get_size()
                textpage = page.get_textpage()
                text = _clean(textpage.get_text_range())
                textpage.close()
                pages.append((text, _rendered_size(width, height, options)))
                page.close()
        except Exception as exc:
            if isinstance(exc, CorruptMediaError):
                raise
            raise CorruptMediaError(f"{blob.source} has a damaged page: {exc}", source=blob.source) from exc
        finally:
            doc.close()
    if count == 0:
        raise CorruptMediaError(f"{blob.source} has no pages", source=blob.source)
    for i, (text, (width, height)) in enumerate(pages):
        yield MediaItem(
            kind="slide",
            source=blob.source,
            media_id=f"{sha}#slide={i + 1}",
            content_hash=sha,
            loader=PdfPageLoader(pdf, i, options, blob.source),
            slide=i + 1,
            title=_first_line(text),
            slide_text=text or None,
            width=width,
            height=height,
            extra={"slides": count, "rendered_by": "pdfium"},
        )


# --- PPTX: text and notes ------------------------------------------------------------------
@dataclass
class SlideInfo:
    """What python-pptx tells about one slide."""

    number: int
    title: str | None
    text: str
    notes: str
    hidden: bool
    pictures: list[tuple[int, int, int, int, bytes]] = field(default_factory=list, repr=False)
    """(left, top, width, height) in EMU and the image bytes, in z-order (only when asked)."""
    boxes: list[tuple[int, int, int, int, str, bool]] = field(default_factory=list, repr=False)
    """(left, top, width, height, text, is_title) of each text frame, in z-order."""


def _walk_shapes(shapes) -> Iterator[Any]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _walk_shapes(shape.shapes)
        else:
            yield shape


def _geometry(shape) -> tuple[int, int, int, int] | None:
    if shape.left is None or shape.top is None or shape.width is None or shape.height is None:
        return None
    return int(shape.left), int(shape.top), int(shape.width), int(shape.height)


def _slide_info(number: int, slide, with_pictures: bool) -> SlideInfo:
    from pptx.shapes.picture import Picture

    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else None
    texts, pictures, boxes = [], [], []
    for shape in _walk_shapes(slide.shapes):
        geometry = _geometry(shape)
        is_title = title_shape is not None and shape.shape_id == title_shape.shape_id
        if shape.has_text_frame and shape.text_frame.text.strip():
            if not is_title:
                texts.append(shape.text_frame.text.strip())
            if geometry:
                boxes.append((*geometry, shape.text_frame.text.strip(), is_title))
        if getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = [cell.text.strip() for cell in row.cells]
                if any(cells):
                    texts.append(" | ".join(cells))
        if getattr(shape, "has_chart", False) and shape.has_chart:
            chart = shape.chart
            if chart.has_title and chart.chart_title.has_text_frame:
                texts.append(chart.chart_title.text_frame.text.strip())
            if geometry:
                boxes.append((*geometry, "[chart]", False))
        if with_pictures and isinstance(shape, Picture) and geometry:
            try:
                pictures.append((*geometry, shape.image.blob))
            except Exception:  # a linked (not embedded) picture has no bytes
                pass
    notes = ""
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text.strip()
    hidden = slide._element.get("show") in ("0", "false")
    return SlideInfo(number, title or None, "\n".join(t for t in texts if t), notes, hidden, pictures, boxes)


def pptx_slides(blob: "Blob", with_pictures: bool = False) -> tuple[list[SlideInfo], tuple[int, int]]:
    """Slides of a deck (title, text, notes; pictures if asked) and the slide size in EMU."""
    pptx = _pptx()
    try:
        with blob.open() as f:
            prs = pptx.Presentation(f)
            size = (int(prs.slide_width or 9144000), int(prs.slide_height or 6858000))
            return [_slide_info(n, slide, with_pictures) for n, slide in enumerate(prs.slides, start=1)], size
    except (KeyError, ValueError, OSError, AttributeError, TypeError) as exc:
        raise CorruptMediaError(f"{blob.source} is not a readable PowerPoint deck: {exc}", source=blob.source) from exc
    except Exception as exc:  # python-pptx / lxml / zipfile raise many kinds on damaged decks
        raise CorruptMediaError(
            f"{blob.source} is not a readable PowerPoint deck: {type(exc).__name__}: {exc}", source=blob.source
        ) from exc


# --- PPTX: rendering with LibreOffice -------------------------------------------------------
def render_pptx_pdf(blob: "Blob", options: ReaderOptions) -> Path | None:
    """The deck rendered to PDF by LibreOffice, cached by content hash; None without LibreOffice."""
    exe = find_soffice()
    if exe is None:
        return None
    suffix = "-all" if options.include_hidden_slides else ""
    cache_dir = cache_root(options) / "slides"
    cached = cache_dir / f"{blob.sha256()}{suffix}.pdf"
    if cached.is_file() and cached.stat().st_size > 0:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = "pdf"
    if options.include_hidden_slides:
        target = 'pdf:impress_pdf_Export:{"ExportHiddenSlides":{"type":"boolean","value":"true"}}'
    with tempfile.TemporaryDirectory(prefix="molmo-rag-lo-") as tmp:
        work = Path(tmp)
        deck = work / "deck.pptx"
        if blob.data is not None:
            deck.write_bytes(blob.data)
        else:
            shutil.copyfile(blob.path, deck)
        cmd = [
            exe,
            f"-env:UserInstallation={(work / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--nodefault",
            "--convert-to",
            target,
            "--outdir",
            str(work / "out"),
            str(deck),
        ]
        env = {**os.environ, "HOME": str(work)}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env
        )
        try:
            _, stderr = proc.communicate(timeout=options.render_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise MediaTooLargeError(
                f"LibreOffice took longer than {options.render_timeout:g} s to render {blob.source}",
                source=blob.source,
            ) from None
        produced = work / "out" / "deck.pdf"
        if proc.returncode != 0 or not produced.is_file() or produced.stat().st_size == 0:
            detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise CorruptMediaError(
                f"LibreOffice could not render {blob.source} (exit {proc.returncode}): {detail[0]}",
                source=blob.source,
            )
        partial = cache_dir / f".{cached.name}.{os.getpid()}.{threading.get_ident()}"
        shutil.copyfile(produced, partial)
        os.replace(partial, cached)  # atomic: a reader never sees half a PDF
    return cached


# --- PPTX: the approximation used without LibreOffice ----------------------------------------
class FallbackSlideLoader:
    """Composes a slide from its embedded pictures and text boxes (no LibreOffice).

    The deck is parsed again on each call, so no picture bytes stay in memory.
    """

    def __init__(self, blob: "Blob", number: int, slide_size: tuple[int, int], options: ReaderOptions):
        self.blob = blob
        self.number = number
        self.slide_size = slide_size
        self.options = options

    def size(self) -> tuple[int, int]:
        scale = self.options.slide_dpi / _EMU_PER_INCH
        w, h = self.slide_size[0] * scale, self.slide_size[1] * scale
        fit = min(1.0, self.options.max_image_side / max(w, h))
        return max(1, round(w * fit)), max(1, round(h * fit))

    def open(self) -> "Image.Image":
        from PIL import Image, ImageDraw, ImageFont

        slides, _ = pptx_slides(self.blob, with_pictures=True)
        info = slides[self.number - 1]
        width, height = self.size()
        px = width / self.slide_size[0]  # pixels per EMU
        canvas = Image.new("RGB", (width, height), "white")
        for left, top, w, h, data in info.pictures:
            try:
                with Image.open(io.BytesIO(data)) as pic:
                    box = (max(1, round(w * px)), max(1, round(h * px)))
                    canvas.paste(to_rgb(pic).resize(box, Image.Resampling.LANCZOS), (round(left * px), round(top * px)))
            except Exception:  # an embedded format Pillow cannot read (EMF, WMF): leave it out
                continue
        draw = ImageDraw.Draw(canvas)
        for left, top, w, h, text, is_title in info.boxes:
            size = max(8, round((36 if is_title else 20) / 72 * _EMU_PER_INCH * px))
            font = ImageFont.load_default(size=size)
            chars = max(8, int(w * px / (size * 0.55)))
            wrapped = "\n".join(textwrap.fill(line, chars) for line in text.splitlines())
            if text == "[chart]":
                draw.rectangle([left * px, top * px, (left + w) * px, (top + h) * px], outline="gray", width=2)
            draw.multiline_text((round(left * px), round(top * px)), wrapped, fill="black", font=font)
        return canvas

    def encoded(self) -> tuple[bytes, str]:
        return encode_image(self.open(), "PNG")

    def __repr__(self) -> str:
        return f"FallbackSlideLoader({self.blob.source!r}, slide={self.number})"


def _warn_no_libreoffice() -> None:
    global _FALLBACK_WARNED
    if _FALLBACK_WARNED:
        return
    _FALLBACK_WARNED = True
    message = (
        "LibreOffice (soffice) is not installed: PPTX slides are approximated from their "
        "embedded pictures and text. Install LibreOffice to render slides whole."
    )
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def read_pptx(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """One item per slide (hidden slides skipped unless asked), rendered whole by LibreOffice."""
    slides, slide_size = pptx_slides(blob)
    if not slides:
        raise CorruptMediaError(f"{blob.source} has no slides", source=blob.source)
    sha = blob.sha256()
    wanted = [s for s in slides if options.include_hidden_slides or not s.hidden]
    pdf = render_pptx_pdf(blob, options)
    loaders: list[tuple[SlideInfo, Any, tuple[int, int], str]] = []
    if pdf is not None:
        with _PDFIUM_LOCK:
            doc = _open_pdf(pdf, blob.source)
            try:
                sizes = [doc[i].get_size() for i in range(len(doc))]
            finally:
                doc.close()
        if len(sizes) != len(wanted):
            log.warning(
                "%s: LibreOffice made %d pages for %d slides; pairing them in order",
                blob.source,
                len(sizes),
                len(wanted),
            )
        for index, (info, (w, h)) in enumerate(zip(wanted, sizes)):
            loader = PdfPageLoader(pdf, index, options, blob.source)
            loaders.append((info, loader, _rendered_size(w, h, options), "libreoffice"))
    else:
        _warn_no_libreoffice()
        for info in wanted:
            loader = FallbackSlideLoader(blob, info.number, slide_size, options)
            loaders.append((info, loader, loader.size(), "pictures+text"))
    for info, loader, (width, height), how in loaders:
        yield MediaItem(
            kind="slide",
            source=blob.source,
            media_id=f"{sha}#slide={info.number}",
            content_hash=sha,
            loader=loader,
            slide=info.number,
            title=info.title,
            slide_text=info.text or None,
            notes=info.notes or None,
            width=width,
            height=height,
            extra={"slides": len(slides), "rendered_by": how, **({"hidden": True} if info.hidden else {})},
        )
