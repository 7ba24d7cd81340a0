"""Sample media made on the fly: for tests, notebooks and benchmarks.

Everything here is generated from real photographs (``skimage.data``, bundled with
scikit-image) so detectors see natural images, and every generator returns the ground
truth it built in: cut times of a video, titles and notes of a deck, the text of a PDF.

* :func:`photo` - a bundled photograph as a PIL image.
* :func:`make_video` - an H.264 video of shots (pans, zooms, stills) joined by hard cuts
  at known times; any frame rate (29.97, 12.5, ...), optional rotation metadata and audio.
* :func:`make_audio` - an audio-only file (for the "no video stream" case).
* :func:`make_deck` - a PPTX with titles, bullet text, speaker notes, a picture and a chart.
* :func:`make_pdf` - a PDF with one text page per entry, optionally password-protected.

Needs the ``dev`` extra (scikit-image) for photos, ``video`` (PyAV) for videos and
``slides`` (python-pptx) for decks.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

__all__ = [
    "PHOTOS",
    "Shot",
    "SyntheticVideo",
    "SlideSpec",
    "photo",
    "make_video",
    "make_audio",
    "make_deck",
    "make_pdf",
    "random_shots",
    "spots_world",
]

# Bundled with scikit-image (no download). Consecutive shots never reuse one.
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "camera",
    "coins",
    "moon",
    "brick",
)

Motion = Literal["static", "pan", "zoom_in", "zoom_out"]


@lru_cache(maxsize=32)
def _photo_array(name: str) -> "np.ndarray":
    try:
        import numpy as np
        import skimage.data
    except ImportError as exc:  # pragma: no cover - dev extra
        raise MissingDependencyError("scikit-image", "samples", "sample photos") from exc
    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))


def photo(name: str = "astronaut") -> "Image.Image":
    """A bundled photograph (RGB)."""
    from PIL import Image

    return Image.fromarray(_photo_array(name))


# --- video --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shot:
    """One shot: a photo filmed for ``seconds`` with a camera ``motion``."""

    photo: str
    seconds: float
    motion: Motion = "pan"


@dataclass
class SyntheticVideo:
    """A generated video and its ground truth."""

    path: Path
    shots: list[Shot]
    cuts: list[float]
    """Times (s) of the first frame of every shot after the first."""
    duration: float
    fps: Fraction
    width: int
    height: int
    rotation: int
    frame_count: int


def random_shots(
    total_seconds: float, *, min_seconds: float = 2.0, max_seconds: float = 20.0, seed: int = 0
) -> list[Shot]:
    """Shots of random length and motion filling ``total_seconds``."""
    rng = random.Random(seed)
    shots: list[Shot] = []
    left, previous = total_seconds, None
    while left > 1e-6:
        seconds = min(left, rng.uniform(min_seconds, max_seconds))
        if left - seconds < min_seconds:
            seconds = left
        name = rng.choice([p for p in PHOTOS if p != previous])
        shots.append(Shot(name, round(seconds, 3), rng.choice(["static", "pan", "pan", "zoom_in", "zoom_out"])))
        left -= seconds
        previous = name
    return shots


def _window(shape: tuple[int, int], aspect: float, motion: Motion, p: float) -> tuple[int, int, int, int]:
    """Crop window (top, left, height, width) into a photo at progress ``p`` in 0..1."""
    ph, pw = shape
    h = min(ph, pw / aspect)
    if motion == "zoom_in":
        h *= 1.0 - 0.45 * p
    elif motion == "zoom_out":
        h *= 0.55 + 0.45 * p
    elif motion == "pan":
        h *= 0.7
    w = h * aspect
    if motion == "pan":
        left = (pw - w) * p
        top = (ph - h) * (0.3 + 0.4 * p)
    else:
        left, top = (pw - w) / 2, (ph - h) / 2
    return int(top), int(left), max(2, int(h)), max(2, int(w))


def make_video(
    path: str | Path,
    shots: Sequence[Shot],
    *,
    size: tuple[int, int] = (320, 180),
    fps: Fraction | float | str = Fraction(25),
    rotation: int = 0,
    audio: bool = False,
    crf: int = 30,
    preset: str = "veryfast",
    gop: int | None = None,
) -> SyntheticVideo:
    """Write an H.264 MP4 of ``shots`` joined by hard cuts and return its ground truth.

    ``size`` is (width, height) as stored; ``rotation`` (degrees counter-clockwise, the
    value :attr:`av.VideoFrame.rotation` reads back) is written as display-matrix metadata
    only, so a reader must rotate the decoded frames itself. ``gop`` is the keyframe
    interval in frames (None: the encoder's default).
    """
    try:
        import av
        import numpy as np
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("av", "video", "sample videos") from exc

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    width, height = size
    starts, t = [], 0.0
    for shot in shots:
        starts.append(t)
        t += shot.seconds
    duration_target = t
    total_frames = max(1, round(duration_target * rate))
    shot_of_frame = []
    for i in range(total_frames):
        ts = float(i / rate)
        k = max(j for j, s in enumerate(starts) if s <= ts + 1e-9)
        shot_of_frame.append(k)
    cuts = [float(i / rate) for i in range(1, total_frames) if shot_of_frame[i] != shot_of_frame[i - 1]]

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, **({"g": str(gop)} if gop else {})}
        if rotation:
            stream.set_display_rotation(rotation)
        astream = None
        if audio:
            astream = out.add_stream("aac", rate=22050, layout="mono")
        first = {}
        for k in range(len(shots)):
            frames_k = [i for i, s in enumerate(shot_of_frame) if s == k]
            if frames_k:
                first[k] = (frames_k[0], len(frames_k))
        for i in range(total_frames):
            k = shot_of_frame[i]
            shot = shots[k]
            start_i, n = first[k]
            p = (i - start_i) / max(1, n - 1)
            img = _photo_array(shot.photo)
            top, left, h, w = _window(img.shape[:2], width / height, shot.motion, p)
            crop = np.ascontiguousarray(img[top : top + h, left : left + w])
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
                width=width, height=height, format="yuv420p", interpolation="BILINEAR"
            )
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_tone(out, astream, duration_target)
    return SyntheticVideo(
        path=path,
        shots=list(shots),
        cuts=cuts,
        duration=float(total_frames / rate),
        fps=rate,
        width=width,
        height=height,
        rotation=rotation,
        frame_count=total_frames,
    )


def _write_tone(out, astream, seconds: float) -> None:
    import av
    import numpy as np

    rate, chunk = astream.codec_context.sample_rate, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio(path: str | Path, seconds: float = 2.0) -> Path:
    """An audio-only M4A (AAC) file: a 440 Hz tone."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("av", "video", "sample audio") from exc
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        astream = out.add_stream("aac", rate=22050, layout="mono")
        _write_tone(out, astream, seconds)
    return path


# --- slide decks --------------------------------------------------------------------------
@dataclass
class SlideSpec:
    """One slide of a generated deck."""

    title: str
    bullets: list[str] = field(default_factory=list)
    notes: str = ""
    picture: str | None = None
    """Name of a bundled photo to place on the slide."""
    chart: bool = False
    """Add a column chart (a real PowerPoint chart object)."""
    hidden: bool = False


def make_deck(path: str | Path, slides: Sequence[SlideSpec]) -> Path:
    """Write a 16:9 PPTX with the given slides (title + bullets layout)."""
    try:
        from pptx import Presentation
        from pptx.chart.data import CategoryChartData
        from pptx.enum.chart import XL_CHART_TYPE
        from pptx.util import Inches
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("python-pptx", "slides", "sample decks") from exc

    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    layout = prs.slide_layouts[1]  # Title and Content
    for spec in slides:
        slide = prs.slides.add_slide(layout)
        title = slide.shapes.title
        title.left, title.top, title.width, title.height = Inches(0.6), Inches(0.4), Inches(12.1), Inches(1.0)
        title.text = spec.title
        body = slide.placeholders[1]
        body.left, body.top, body.width, body.height = Inches(0.6), Inches(1.6), Inches(6.2), Inches(5.2)
        body.text_frame.text = spec.bullets[0] if spec.bullets else ""
        for bullet in spec.bullets[1:]:
            body.text_frame.add_paragraph().text = bullet
        if spec.picture:
            buf = io.BytesIO()
            photo(spec.picture).save(buf, format="PNG")
            buf.seek(0)
            slide.shapes.add_picture(buf, Inches(7.2), Inches(1.6), width=Inches(5.5))
        if spec.chart:
            data = CategoryChartData()
            data.categories = ["Q1", "Q2", "Q3", "Q4"]
            data.add_series("Sales", (12.0, 18.5, 9.0, 22.0))
            slide.shapes.add_chart(
                XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(7.2), Inches(1.6), Inches(5.5), Inches(5.0), data
            )
        if spec.notes:
            slide.notes_slide.notes_text_frame.text = spec.notes
        if spec.hidden:
            slide._element.set("show", "0")
    path = Path(path)
    prs.save(str(path))
    return path


# --- PDFs ---------------------------------------------------------------------------------
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _pdf_escape(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(
    path: str | Path,
    pages: Sequence[Sequence[str]],
    *,
    password: str | None = None,
    size: tuple[float, float] = (960.0, 540.0),
) -> Path:
    """Write a PDF, one page per entry; each entry's lines are drawn top-down in Helvetica.

    The first line of a page is set large, as a slide title. With ``password`` the file is
    encrypted (standard security handler, revision 2, RC4) and cannot be opened without it.
    """
    width, height = size
    file_id = hashlib.md5(repr((list(map(list, pages)), password)).encode()).digest()
    key = None
    encrypt_dict = b""
    if password is not None:
        owner_key = hashlib.md5((password.encode() + _PAD)[:32]).digest()[:5]
        user_pad = (password.encode() + _PAD)[:32]
        o_value = _rc4(owner_key, user_pad)
        p_value = -4
        key = hashlib.md5(user_pad + o_value + struct.pack("<i", p_value) + file_id).digest()[:5]
        u_value = _rc4(key, _PAD)
        encrypt_dict = (
            b"<< /Filter /Standard /V 1 /R 2 /Length 40 /O <" + o_value.hex().encode()
            + b"> /U <" + u_value.hex().encode() + b"> /P " + str(p_value).encode() + b" >>"
        )

    objects: list[bytes] = []  # index i holds object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(num: int, data: bytes) -> bytes:
        data = zlib.compress(data)
        if key is not None:
            obj_key = hashlib.md5(key + struct.pack("<I", num)[:3] + b"\x00\x00").digest()[:10]
            data = _rc4(obj_key, data)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"

    catalog = add(b"")
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for lines in pages:
        ops = [b"BT"]
        y = height - 80
        for n, line in enumerate(lines):
            size_pt = 36 if n == 0 else 20
            ops.append(b"/F1 %d Tf 1 0 0 1 60 %d Tm (%s) Tj" % (size_pt, y, _pdf_escape(line)))
            y -= 60 if n == 0 else 32
        ops.append(b"ET")
        content = add(b"")
        objects[content - 1] = stream(content, b"\n".join(ops))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_obj, int(width), int(height), font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    encrypt_ref = add(encrypt_dict) if encrypt_dict else None

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    trailer = b"<< /Size %d /Root %d 0 R /ID [<%s> <%s>]" % (
        len(objects) + 1,
        catalog,
        file_id.hex().encode(),
        file_id.hex().encode(),
    )
    if encrypt_ref:
        trailer += b" /Encrypt %d 0 R" % encrypt_ref
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    path = Path(path)
    path.write_bytes(bytes(out))
    return path


def spots_world(folder: str | Path, hits: int = 4, misses: int = 6) -> dict[str, int]:
    """A picture world whose right answers are known, for grounding and count tests with
    :class:`~molmo_rag.testing.FakeBackend` (which counts bright spots): ``hits`` dark blue
    pictures with 1, 2, ... bright square spots (``spots-N.png``) and ``misses`` bright
    yellow pictures without any (``plain-N.png``), whose captions ("bright") a text search
    prefers. Returns ``{path: number of spots}``."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, int] = {}
    for i in range(hits):
        a = np.zeros((60, 40 + 30 * hits, 3), np.uint8)
        a[:] = (20, 30, 110)
        for k in range(i + 1):
            a[20:30, 10 + 30 * k : 20 + 30 * k] = 255
        Image.fromarray(a).save(folder / f"spots-{i}.png")
        truth[str(folder / f"spots-{i}.png")] = i + 1
    for i in range(misses):
        a = np.zeros((60, 40 + 30 * hits, 3), np.uint8)
        a[:] = (220, 210, 40 + 5 * i)  # distinct shades: no two are copies of one file
        Image.fromarray(a).save(folder / f"plain-{i}.png")
        truth[str(folder / f"plain-{i}.png")] = 0
    return truth
