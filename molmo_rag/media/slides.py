"""Slide decks (PPTX and other PowerPoint XML decks, ODP, PPT, PDF) to one media item per
slide, each slide rendered whole.

PPTX (and .pptm, .ppsx, .potx, ...): LibreOffice (headless, in a throw-away profile, under
a timeout) turns the deck into a PDF once per content hash (cached in ``slides/`` under the
one cache root), pypdfium2 rasterises each page on demand, and python-pptx supplies each
slide's title, text and speaker notes (one parse per deck). Without LibreOffice the slides
are approximated from their embedded pictures and text, with one warning; a picture over
``max_slide_picture_pixels`` is left out.

ODP and legacy PPT: only LibreOffice reads them; it renders them to PDF, which is then read
like any PDF (titles and text from the rendered pages, no speaker notes; slides LibreOffice
leaves out, the hidden ones, do not count in the slide numbers). Without LibreOffice each
such deck gets an error that says to install it.

PDF: every page is a slide; its text comes from the PDF's text layer, its title from the
PDF's outline (bookmarks) or else the largest text on the page, never a bare page number.
A PDF bomb is refused before PDFium parses it (:mod:`molmo_rag.media.pdf_bombs`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptMediaError, EmptyMediaError, MediaTooLargeError, MissingDependencyError, UnsupportedMediaError
from .images import fit_within, to_rgb
from .items import MediaItem, encode_image
from .options import ReaderOptions

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .blob import Blob

__all__ = [
    "SlideInfo",
    "PdfPageLoader",
    "FallbackSlideLoader",
    "read_pdf",
    "read_pptx",
    "read_libreoffice_deck",
    "pptx_slides",
    "render_deck_pdf",
    "clean_title",
    "clean_text",
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
    """The one folder everything molmo-rag stores lives under (renders in its ``slides/``):
    ``options.cache_dir`` (the engine sets it to the result cache's folder), else
    ``MOLMO_RAG_CACHE_DIR``, else the user cache folder."""
    from ..locations import default_cache_dir

    return Path(options.cache_dir).expanduser() if options.cache_dir is not None else default_cache_dir()


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
        if _declares_no_pages(source):  # PDFium refuses to load a document without pages
            raise CorruptMediaError(f"{label} has no pages", source=label) from exc
        raise CorruptMediaError(f"{label} is not a readable PDF: {exc}", source=label) from exc


_SMALL_PDF_BYTES = 1 << 20
_PAGE_TREE_OF_NONE = re.compile(rb"/Type\s*/Pages\b.{0,200}?/Count\s+0\b|/Count\s+0\b.{0,200}?/Type\s*/Pages\b", re.S)
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page\b")


def _declares_no_pages(source: Path | bytes) -> bool:
    """A small PDF whose page tree counts 0 pages and that holds no page object."""
    try:
        if isinstance(source, bytes):
            data = source[: _SMALL_PDF_BYTES + 1]
        else:
            with open(source, "rb") as f:
                data = f.read(_SMALL_PDF_BYTES + 1)
    except OSError:
        return False
    if len(data) > _SMALL_PDF_BYTES:
        return False
    return _PAGE_TREE_OF_NONE.search(data) is not None and _PAGE_OBJECT.search(data) is None


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


# --- text clean-up -------------------------------------------------------------------------
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
"""Line and paragraph breaks, PowerPoint's vertical tab (a soft break in a title) among them."""
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_TITLE_MAX_CHARS = 200


def clean_title(text: str | None) -> str | None:
    """One line: every line break (``\\v``, ``\\r\\n``, U+2028, ...) and run of spaces becomes
    a single space, other control characters go; None when nothing is left."""
    if not text:
        return None
    text = _CONTROL.sub("", _LINE_BREAK.sub(" ", text.replace("\t", " ")))
    return " ".join(text.split())[:_TITLE_MAX_CHARS] or None


def clean_text(text: str | None) -> str:
    """Lines joined by ``\\n`` whatever break the source used; other control characters go,
    tabs become spaces, trailing spaces and blank lines are dropped."""
    if not text:
        return ""
    text = _CONTROL.sub("", _LINE_BREAK.sub("\n", text.replace("\t", " ")))
    return "\n".join(line.rstrip() for line in text.split("\n") if line.strip())


# --- PDF page titles -------------------------------------------------------------------------
_PAGE_LABEL = re.compile(
    r"(?:(?:page|p\.|slide|seite|folie|diapositive|diapositiva|pagina|página)\s*)?"
    r"(?:\d+|(?=[ivxlc])(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3}))(?:\s*(?:/|of|von|de|di)\s*\d+)?",
    re.IGNORECASE,
)
"""A bare page number or roman numeral ("3", "iv", "Page 2 of 9", "Slide 4"): never a title."""
_TITLE_SIZE_RATIO = 1.15
"""Text is a title when its font is at least this much larger than the next size on the page."""
_TITLE_SCAN_CHARS = 5000


def _is_page_label(text: str) -> bool:
    return _PAGE_LABEL.fullmatch(text.strip()) is not None


def _bookmark_page(doc, bookmark) -> int | None:
    """The page a bookmark points at: its destination, or its GoTo action's."""
    import pypdfium2.raw as pdfium_c

    dest = bookmark.get_dest()
    if dest is not None:
        return dest.get_index()
    action = pdfium_c.FPDFBookmark_GetAction(bookmark.raw)
    if not action or pdfium_c.FPDFAction_GetType(action) != pdfium_c.PDFACTION_GOTO:
        return None
    raw_dest = pdfium_c.FPDFAction_GetDest(doc.raw, action)
    index = pdfium_c.FPDFDest_GetDestPageIndex(doc.raw, raw_dest) if raw_dest else -1
    return index if index >= 0 else None


def _outline_titles(doc) -> dict[int, str]:
    """Page index -> the title of the outermost (then first) bookmark that points at it."""
    found: dict[int, tuple[int, str]] = {}
    for bookmark in doc.get_toc():
        page = _bookmark_page(doc, bookmark)
        title = clean_title(bookmark.get_title())
        if page is None or title is None or _is_page_label(title):
            continue
        if page not in found or bookmark.level < found[page][0]:
            found[page] = (bookmark.level, title)
    return {page: title for page, (_, title) in found.items()}


def _char_font_size(textpage, index: int, matrix) -> float:
    """The size a character is drawn at, in points: its font size scaled by its matrix
    (many PDFs set text at 1 pt and scale it up)."""
    import pypdfium2.raw as pdfium_c

    size = pdfium_c.FPDFText_GetFontSize(textpage, index)
    if pdfium_c.FPDFText_GetMatrix(textpage, index, matrix):
        size *= math.sqrt(abs(matrix.a * matrix.d - matrix.b * matrix.c)) or 1.0
    return round(size * 2) / 2


def _sized_lines(textpage) -> list[tuple[str, float]]:
    """The page's text lines, each with the largest size it is set in."""
    import pypdfium2.raw as pdfium_c

    matrix = pdfium_c.FS_MATRIX()
    lines: list[tuple[str, float]] = []
    chars: list[str] = []
    size = 0.0
    for index in range(min(textpage.count_chars(), _TITLE_SCAN_CHARS)):
        char = chr(pdfium_c.FPDFText_GetUnicode(textpage, index))
        if char in "\r\n":
            if "".join(chars).strip():
                lines.append(("".join(chars), size))
            chars, size = [], 0.0
            continue
        chars.append(char)
        if not char.isspace() and not pdfium_c.FPDFText_IsGenerated(textpage, index):
            size = max(size, _char_font_size(textpage, index, matrix))
    if "".join(chars).strip():
        lines.append(("".join(chars), size))
    return lines


def _largest_text_title(textpage) -> str | None:
    """The first run of lines in the largest font, when that font is clearly bigger than
    any other on the page (or the page's only line); page numbers are left out."""
    lines = [(text, size) for text, size in _sized_lines(textpage) if not _is_page_label(text)]
    if len(lines) == 1:
        return clean_title(lines[0][0])
    sizes = sorted({size for _, size in lines}, reverse=True)
    if len(sizes) < 2 or sizes[0] < sizes[1] * _TITLE_SIZE_RATIO:
        return None
    top = sizes[0]
    start = next(i for i, (_, size) in enumerate(lines) if size == top)
    run = []
    for text, size in lines[start:]:
        if size != top:
            break
        run.append(text)
    return clean_title(" ".join(run))


def _page_title(outline: dict[int, str], index: int, textpage) -> str | None:
    return outline.get(index) or _largest_text_title(textpage)


def _rendered_size(width_pt: float, height_pt: float, options: ReaderOptions) -> tuple[int, int]:
    """Pixel size of a rendered page, as :class:`PdfPageLoader` makes it: pypdfium2 rounds
    the page up to whole pixels, then the picture is fitted within ``max_image_side``.
    PDFium's page size already has the page's /Rotate applied."""
    scale = _page_scale(width_pt, height_pt, options)
    width, height = math.ceil(width_pt * scale), math.ceil(height_pt * scale)
    fit = options.max_image_side / max(width, height)
    if fit >= 1:
        return width, height
    return max(1, round(width * fit)), max(1, round(height * fit))


def _pdf_pages(pdf: Path | bytes, label: str, options: ReaderOptions) -> list[tuple[str | None, str, tuple[int, int]]]:
    """(title, text, rendered size) of every page of a PDF."""
    with _PDFIUM_LOCK:
        doc = _open_pdf(pdf, label)
        try:
            outline = _outline_titles(doc)
            pages = []
            for i in range(len(doc)):
                page = doc[i]
                width, height = page.get_size()
                textpage = page.get_textpage()
                text = clean_text(textpage.get_text_range())
                title = _page_title(outline, i, textpage)
                textpage.close()
                pages.append((title, text, _rendered_size(width, height, options)))
                page.close()
        except Exception as exc:
            if isinstance(exc, CorruptMediaError):
                raise
            raise CorruptMediaError(f"{label} has a damaged page: {exc}", source=label) from exc
        finally:
            doc.close()
    return pages


def _pdf_slide_items(
    blob: "Blob", pdf: Path | bytes, options: ReaderOptions, rendered_by: str, empty: str
) -> Iterator[MediaItem]:
    sha = blob.sha256()
    pages = _pdf_pages(pdf, blob.source, options)
    if not pages:
        raise CorruptMediaError(f"{blob.source} {empty}", source=blob.source)
    for i, (title, text, (width, height)) in enumerate(pages):
        yield MediaItem(
            kind="slide",
            source=blob.source,
            media_id=f"{sha}#slide={i + 1}",
            content_hash=sha,
            loader=PdfPageLoader(pdf, i, options, blob.source),
            slide=i + 1,
            title=title,
            slide_text=text or None,
            width=width,
            height=height,
            extra={"slides": len(pages), "rendered_by": rendered_by},
        )


def read_pdf(blob: "Blob", options: ReaderOptions) -> Iterator[MediaItem]:
    """Every page of a PDF as a slide: rendered on demand, text from the text layer, title
    from the outline or the largest text. A PDF bomb (a stream inflating to far more than
    it holds, an image declaring too many pixels) is refused before PDFium parses it."""
    from .pdf_bombs import refuse_pdf_bomb

    refuse_pdf_bomb(blob, options)
    pdf: Path | bytes = blob.path if blob.data is None else blob.data
    yield from _pdf_slide_items(blob, pdf, options, "pdfium", "has no pages")


def read_libreoffice_deck(blob: "Blob", options: ReaderOptions, kind: str = "odp") -> Iterator[MediaItem]:
    """An ODP or legacy PPT deck (``kind`` ``odp`` or ``ppt``): LibreOffice renders it to a
    PDF, whose pages are the slides (titles and text from the rendered pages, no notes)."""
    if find_soffice() is None:
        what = "an OpenDocument presentation" if kind == "odp" else "a legacy PowerPoint (.ppt) deck"
        raise UnsupportedMediaError(
            f"{blob.source} is {what}, which only LibreOffice can read, and LibreOffice (soffice) "
            "is not installed: install it (e.g. apt-get install libreoffice-impress) or save the deck as PPTX",
            source=blob.source,
        )
    pdf = render_deck_pdf(blob, options, _deck_file_suffix(blob, kind))
    if pdf is None:  # pragma: no cover - LibreOffice went away between the two looks
        raise UnsupportedMediaError(f"{blob.source} needs LibreOffice, which is not installed", source=blob.source)
    yield from _pdf_slide_items(blob, pdf, options, "libreoffice", "has no slides")


# --- PPTX: text and notes ------------------------------------------------------------------
@dataclass
class SlideInfo:
    """What python-pptx tells about one slide."""

    number: int
    title: str | None
    text: str
    notes: str
    hidden: bool
    pictures: list[tuple[int, int, int, int, str]] = field(default_factory=list, repr=False)
    """(left, top, width, height) in EMU and the picture's member name in the deck's ZIP, in
    z-order (only when asked): the bytes are read from the ZIP when the slide is drawn."""
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


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape_ooxml(text: str) -> str:
    """Office's ``_xHHHH_`` escapes (``_x000D_`` for a carriage return) as characters."""
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _pptx_title(text: str | None) -> str | None:
    return clean_title(_unescape_ooxml(text or ""))


def _pptx_text(text: str | None) -> str:
    return clean_text(_unescape_ooxml(text or ""))


def _frame_text(shape) -> str:
    return _pptx_text(shape.text_frame.text)


def _slide_info(number: int, slide, with_pictures: bool) -> SlideInfo:
    from pptx.shapes.picture import Picture

    title_shape = slide.shapes.title
    title = _pptx_title(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else None
    texts, pictures, boxes = [], [], []
    for shape in _walk_shapes(slide.shapes):
        geometry = _geometry(shape)
        is_title = title_shape is not None and shape.shape_id == title_shape.shape_id
        if shape.has_text_frame and _frame_text(shape):
            if not is_title:
                texts.append(_frame_text(shape))
            if geometry:
                boxes.append((*geometry, _frame_text(shape), is_title))
        if getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = [_pptx_title(cell.text) or "" for cell in row.cells]
                if any(cells):
                    texts.append(" | ".join(cells))
        if getattr(shape, "has_chart", False) and shape.has_chart:
            chart = shape.chart
            if chart.has_title and chart.chart_title.has_text_frame:
                texts.append(_pptx_title(chart.chart_title.text_frame.text) or "")
            if geometry:
                boxes.append((*geometry, "[chart]", False))
        if with_pictures and isinstance(shape, Picture) and geometry:
            try:
                pictures.append((*geometry, shape.part.related_part(shape._element.blip_rId).partname.membername))
            except Exception:  # a linked (not embedded) picture has no part
                pass
    notes = ""
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = _pptx_text(slide.notes_slide.notes_text_frame.text)
    hidden = slide._element.get("show") in ("0", "false")
    return SlideInfo(number, title, "\n".join(t for t in texts if t), notes, hidden, pictures, boxes)


_MACRO_MAIN_CONTENT_TYPES = (
    "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",  # .ppsm
    "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",  # .potm
)


def _open_presentation(f):
    """Any PowerPoint XML deck (.pptx, .pptm, .ppsx, .ppsm, .potx, .potm), read by python-pptx.

    ``pptx.Presentation()`` accepts only .pptx and .pptm; their main parts are all the same
    presentation part, so the package is opened as such whatever its content type."""
    from pptx.opc.package import PartFactory
    from pptx.package import Package
    from pptx.parts.presentation import PresentationPart

    for content_type in _MACRO_MAIN_CONTENT_TYPES:
        PartFactory.part_type_for.setdefault(content_type, PresentationPart)
    part = Package.open(f).main_document_part
    if not isinstance(part, PresentationPart):
        raise ValueError(f"the main part is {part.content_type}, not a presentation")
    return part.presentation


_BOMB_RATIO = 100
_BOMB_BYTES = 64 * 1024**2


def _refuse_zip_bomb(blob: "Blob") -> None:
    """python-pptx inflates every part of a deck into memory: refuse a deck whose parts
    inflate more than _BOMB_RATIO times, to more than _BOMB_BYTES together (a ZIP bomb),
    from the sizes its ZIP directory declares (zipfile never inflates past those)."""
    try:
        with blob.open() as f, zipfile.ZipFile(f) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # python-pptx says what is wrong with it
    bombs = [i for i in infos if i.file_size > _BOMB_RATIO * max(i.compress_size, 1)]
    inflated = sum(i.file_size for i in bombs)
    if inflated > _BOMB_BYTES:
        packed = sum(i.compress_size for i in bombs)
        raise MediaTooLargeError(
            f"{blob.source} is a ZIP bomb: {len(bombs)} part(s) of {packed} bytes inflate to {inflated} bytes "
            f"(e.g. {bombs[0].filename}); refused without inflating them",
            source=blob.source,
        )


def pptx_slides(blob: "Blob", with_pictures: bool = False) -> tuple[list[SlideInfo], tuple[int, int]]:
    """Slides of a deck (title, text, notes; pictures if asked) and the slide size in EMU."""
    _pptx()
    _refuse_zip_bomb(blob)
    try:
        with blob.open() as f:
            prs = _open_presentation(f)
            size = (int(prs.slide_width or 9144000), int(prs.slide_height or 6858000))
            return [_slide_info(n, slide, with_pictures) for n, slide in enumerate(prs.slides, start=1)], size
    except (KeyError, ValueError, OSError, AttributeError, TypeError) as exc:
        raise CorruptMediaError(f"{blob.source} is not a readable PowerPoint deck: {exc}", source=blob.source) from exc
    except Exception as exc:  # python-pptx / lxml / zipfile raise many kinds on damaged decks
        raise CorruptMediaError(
            f"{blob.source} is not a readable PowerPoint deck: {type(exc).__name__}: {exc}", source=blob.source
        ) from exc


# --- PPTX: rendering with LibreOffice -------------------------------------------------------
_DECK_FILE_SUFFIXES = {"pptx": ".pptx", "odp": ".odp", "ppt": ".ppt"}


def _deck_file_suffix(blob: "Blob", kind: str) -> str:
    """The file ending LibreOffice is shown the deck under: the deck's own when it is one
    of that kind's endings, else the kind's usual one (flat-XML ODP gets .fodp)."""
    from .options import LIBREOFFICE_DECK_EXTENSIONS, OOXML_DECK_EXTENSIONS

    own = blob.suffix
    if kind == "pptx":
        return own if own in OOXML_DECK_EXTENSIONS else ".pptx"
    if kind == "odp":
        if not blob.head(4).startswith(b"PK"):
            return ".fodp"
        return own if own in (".odp", ".otp") else ".odp"
    return own if own in LIBREOFFICE_DECK_EXTENSIONS - {".odp", ".otp", ".fodp"} else _DECK_FILE_SUFFIXES[kind]


def render_deck_pdf(blob: "Blob", options: ReaderOptions, suffix: str = ".pptx") -> Path | None:
    """The deck rendered to PDF by LibreOffice, cached by content hash; None without LibreOffice.

    ``suffix`` is the ending the deck is handed to LibreOffice under (.pptx, .ppsx, .odp,
    .fodp, .ppt, ...)."""
    exe = find_soffice()
    if exe is None:
        return None
    variant = "-all" if options.include_hidden_slides else ""
    cache_dir = cache_root(options) / "slides"
    cached = cache_dir / f"{blob.sha256()}{variant}.pdf"
    if cached.is_file() and cached.stat().st_size > 0:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = "pdf"
    if options.include_hidden_slides:
        target = 'pdf:impress_pdf_Export:{"ExportHiddenSlides":{"type":"boolean","value":"true"}}'
    with tempfile.TemporaryDirectory(prefix="molmo-rag-lo-") as tmp:
        work = Path(tmp)
        deck = work / f"deck{suffix}"
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
        # LibreOffice (and GTK's dconf under it) writes nothing outside the throw-away folder
        env = {**os.environ, "HOME": str(work), **{f"XDG_{d}_HOME": str(work / d.lower()) for d in ("CACHE", "CONFIG", "DATA", "STATE")}}
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

    It keeps what the deck's one parse told about the slide (text boxes, where each picture
    is and its member name in the ZIP); the picture bytes are read from the ZIP each time
    the slide is drawn, so none stay in memory. A picture over ``max_slide_picture_pixels``
    (after a JPEG's reduced-scale decoding) is left out, with a warning.
    """

    def __init__(self, blob: "Blob", info: SlideInfo, slide_size: tuple[int, int], options: ReaderOptions):
        self.blob = blob
        self.info = info
        self.number = info.number
        self.slide_size = slide_size
        self.options = options

    def size(self) -> tuple[int, int]:
        scale = self.options.slide_dpi / _EMU_PER_INCH
        w, h = self.slide_size[0] * scale, self.slide_size[1] * scale
        fit = min(1.0, self.options.max_image_side / max(w, h))
        return max(1, round(w * fit)), max(1, round(h * fit))

    def open(self) -> "Image.Image":
        from PIL import Image, ImageDraw, ImageFont

        width, height = self.size()
        px = width / self.slide_size[0]  # pixels per EMU
        canvas = Image.new("RGB", (width, height), "white")
        if self.info.pictures:
            with self.blob.open() as f, zipfile.ZipFile(f) as deck:
                for left, top, w, h, member in self.info.pictures:
                    box = (max(1, round(w * px)), max(1, round(h * px)))
                    picture = self._picture(deck, member, box)
                    if picture is not None:
                        canvas.paste(picture, (round(left * px), round(top * px)))
        draw = ImageDraw.Draw(canvas)
        for left, top, w, h, text, is_title in self.info.boxes:
            size = max(8, round((36 if is_title else 20) / 72 * _EMU_PER_INCH * px))
            font = ImageFont.load_default(size=size)
            chars = max(8, int(w * px / (size * 0.55)))
            wrapped = "\n".join(textwrap.fill(line, chars) for line in text.splitlines())
            if text == "[chart]":
                draw.rectangle([left * px, top * px, (left + w) * px, (top + h) * px], outline="gray", width=2)
            draw.multiline_text((round(left * px), round(top * px)), wrapped, fill="black", font=font)
        return canvas

    def _picture(self, deck: zipfile.ZipFile, member: str, box: tuple[int, int]) -> "Image.Image | None":
        """One embedded picture fitted to its box; None when it cannot be drawn (an EMF or
        WMF Pillow cannot read, a damaged one) or is over the pixel cap (with a warning)."""
        from PIL import Image

        cap = self.options.max_slide_picture_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with deck.open(member) as stream, Image.open(stream) as pic:
                    if pic.format == "JPEG":
                        pic.draft("RGB", box)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
                    if pic.width * pic.height > cap:
                        self._warn_over_cap(member, pic.size, cap)
                        return None
                    return to_rgb(pic).resize(box, Image.Resampling.LANCZOS)
        except Image.DecompressionBombError:
            self._warn_over_cap(member, None, cap)
        except Exception:  # an embedded format Pillow cannot read (EMF, WMF), or a damaged one
            pass
        return None

    def _warn_over_cap(self, member: str, size: tuple[int, int] | None, cap: int) -> None:
        what = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixel" if size else "huge"
        log.warning(
            "%s slide %d: the %s picture %s is over max_slide_picture_pixels (%d) and is left out of the "
            "slide drawn without LibreOffice",
            self.blob.source, self.number, what, member, cap,
        )

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
    slides, slide_size = pptx_slides(blob, with_pictures=True)  # the deck's one parse
    if not slides:
        raise EmptyMediaError(
            f"{blob.source} is a deck with no slides: there is nothing in it to read; add slides or leave it out",
            source=blob.source,
        )
    sha = blob.sha256()
    wanted = [s for s in slides if options.include_hidden_slides or not s.hidden]
    pdf = render_deck_pdf(blob, options, _deck_file_suffix(blob, "pptx"))
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
            loader = FallbackSlideLoader(blob, info, slide_size, options)
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
