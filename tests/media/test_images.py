from __future__ import annotations

import hashlib
import io
import sys

import numpy as np
import pytest
from PIL import Image

from molmo_rag.errors import CorruptMediaError, MediaTooLargeError, UnsupportedMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read
from molmo_rag.testing import samples


def _one(source, options=None) -> MediaItem:
    results = list(read(source, options))
    assert len(results) == 1
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]


def _save(image: Image.Image, path, fmt: str, **kw):
    image.save(path, format=fmt, **kw)
    return path


@pytest.mark.parametrize(
    "fmt,suffix",
    [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("GIF", ".gif")],
)
def test_formats_read_as_rgb_with_file_hash(tmp_path, fmt, suffix):
    path = _save(samples.photo("coffee"), tmp_path / f"coffee{suffix}", fmt)
    item = _one(path)
    assert item.kind == "image"
    assert item.media_id == item.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    image = item.image()
    assert image.mode == "RGB" and image.size == (600, 400) == (item.width, item.height)
    data, mime = item.image_bytes()
    assert mime in ("image/jpeg", "image/png")
    assert Image.open(io.BytesIO(data)).size == (600, 400)


def test_kind_comes_from_bytes_not_name(tmp_path):
    path = _save(samples.photo("rocket"), tmp_path / "really-a-jpeg.png", "JPEG")
    item = _one(path)
    assert item.extra["format"] == "JPEG"
    assert item.image().size == (640, 427)


def test_gif_first_frame(tmp_path):
    red, blue = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    item = _one(path)
    assert item.extra["frames"] == 2
    r, g, b = item.image().getpixel((20, 15))
    assert r > 200 and b < 50


def test_exif_orientation_applied(tmp_path):
    # A landscape picture whose EXIF says "rotate 90 CW to display" must come out portrait.
    array = np.zeros((40, 80, 3), np.uint8)
    array[:, :40] = (255, 0, 0)  # left half red in storage
    stored = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    item = _one(path)
    assert (item.width, item.height) == (40, 80)
    image = item.image()
    assert image.size == (40, 80)
    top = image.getpixel((20, 10))
    bottom = image.getpixel((20, 70))
    assert top[0] > 200 and top[1] < 60  # orientation 6: stored left ends up on top
    assert bottom[0] < 60
    # Orientation is baked in, so the original bytes are not sent as they are.
    data, mime = item.image_bytes()
    assert mime == "image/jpeg" and data != path.read_bytes()
    assert Image.open(io.BytesIO(data)).size == (40, 80)


def test_small_upright_jpeg_is_sent_as_is(tmp_path):
    path = _save(samples.photo("chelsea"), tmp_path / "cat.jpg", "JPEG")
    data, mime = _one(path).image_bytes()
    assert (data, mime) == (path.read_bytes(), "image/jpeg")


def test_transparency_becomes_white(tmp_path):
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    path = _save(rgba, tmp_path / "clear.png", "PNG")
    assert _one(path).image().getpixel((5, 5)) == (255, 255, 255)


def test_oversized_image_downscaled_before_sending(tmp_path):
    big = samples.photo("retina").resize((3000, 3000))
    path = _save(big, tmp_path / "big.jpg", "JPEG")
    item = _one(path, ReaderOptions(max_image_side=1024))
    assert (item.width, item.height) == (1024, 1024)
    assert item.image().size == (1024, 1024)
    data, _ = item.image_bytes()
    assert Image.open(io.BytesIO(data)).size == (1024, 1024)
    assert item.extra["original_width"] == 3000


def test_decompression_bomb_refused_from_header(tmp_path):
    path = _save(Image.new("L", (400, 300)), tmp_path / "bomb.png", "PNG")
    results = list(read(path, ReaderOptions(max_image_pixels=100_000)))
    assert isinstance(results[0], MediaTooLargeError)
    assert results[0].source == str(path)


def test_truncated_image_is_corrupt(tmp_path):
    good = _save(samples.photo("astronaut"), tmp_path / "good.jpg", "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    results = list(read(cut))
    assert isinstance(results[0], CorruptMediaError)


def test_truncated_image_without_verification_fails_on_load(tmp_path):
    good = _save(samples.photo("astronaut"), tmp_path / "good.png", "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    item = _one(cut, ReaderOptions(verify_images=False))
    with pytest.raises(CorruptMediaError):
        item.image()


def test_pil_image_source():
    image = samples.photo("astronaut").resize((1000, 500))
    item = _one(image, ReaderOptions(max_image_side=500))
    assert item.kind == "image" and item.source == "<memory>"
    assert item.image().size == (500, 250)


def test_heic_read_when_pillow_heif_is_installed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    path = tmp_path / "photo.heic"
    try:
        samples.photo("coffee").resize((120, 80)).save(path, format="HEIF")
    except Exception as exc:  # pragma: no cover - builds without an HEVC encoder
        pytest.skip(f"pillow-heif cannot encode here: {exc}")
    item = _one(path)
    assert item.image().size == (120, 80)


def test_heic_without_pillow_heif_names_the_extra(tmp_path, monkeypatch):
    # The ftyp box of an HEIC file, enough for sniffing to say "heic".
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails as if not installed
    results = list(read(path))
    assert isinstance(results[0], UnsupportedMediaError)
    assert "molmo-rag[heic]" in str(results[0])
