"""MolmoLoader over a folder and GenericLoader + MolmoBlobParser over the same folder report
the same failures (corrupt and truncated files, files that are not media), cumulatively
across calls; the loader passes over nothing in the folder that the parser reports."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from langchain_molmo import MolmoBlobParser, MolmoLoader

GOOD = {"good.png", "sub/also-good.png"}
BAD = {
    "truncated.png": "CorruptMediaError",
    "corrupt.jpg": "CorruptMediaError",
    "clip.mp4": "CorruptMediaError",
    "notes.txt": "UnsupportedMediaError",
    "report.docx": "UnsupportedMediaError",
    "data.bin": "UnsupportedMediaError",
    "sub/broken.webp": "CorruptMediaError",
}


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    from molmo_rag.testing import samples

    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    image = samples.photo("coffee")
    image.thumbnail((64, 64))
    image.save(root / "good.png")
    samples.photo("chelsea").resize((48, 32)).save(root / "sub" / "also-good.png")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    (root / "truncated.png").write_bytes(buffer.getvalue()[:300])
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00 cut short")
    (root / "notes.txt").write_text("shot list: coffee, cat")
    (root / "report.docx").write_bytes(b"PK\x03\x04 a word file, not a deck")
    (root / "data.bin").write_bytes(bytes(range(64)))
    (root / "sub" / "broken.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 broken")
    return root


def _named(root: Path, failures) -> dict[str, str]:
    return {Path(f.source).relative_to(root).as_posix(): type(f.error).__name__ for f in failures}


def test_loader_and_parser_report_the_same_failures_cumulatively(mixed_folder, lc_fake_backend):
    from langchain_community.document_loaders.generic import GenericLoader

    reported: list = []
    loader = MolmoLoader(mixed_folder, backend="fake", on_failure=reported.append)
    docs = loader.load()
    assert {Path(d.metadata["source"]).relative_to(mixed_folder).as_posix() for d in docs} == GOOD
    assert _named(mixed_folder, loader.failures) == BAD  # nothing in the folder passed over silently
    assert len(loader.failures) == len(BAD) and reported == loader.failures

    parser = MolmoBlobParser(backend="fake", on_failure=lambda f: None)
    generic = GenericLoader.from_filesystem(mixed_folder, glob="**/[!.]*", parser=parser)
    parsed = generic.load()  # one lazy_parse per blob: the parser keeps every blob's failures
    assert sorted(d.id for d in parsed) == sorted(d.id for d in docs)
    assert _named(mixed_folder, parser.failures) == BAD and len(parser.failures) == len(BAD)
    assert sorted(str(f.error) for f in parser.failures) == sorted(str(f.error) for f in loader.failures)

    # cumulative: a second call adds its failures to the first's
    loader.load()
    generic.load()
    assert len(loader.failures) == len(parser.failures) == 2 * len(BAD)
    loader.failures.clear()
    parser.failures.clear()
    assert list(loader.lazy_load())
    assert _named(mixed_folder, loader.failures) == BAD and len(loader.failures) == len(BAD)


async def test_async_loading_reports_the_same(mixed_folder, lc_fake_backend):
    loader = MolmoLoader(mixed_folder, backend="fake", on_failure=lambda f: None)
    docs = await loader.aload()
    assert len(docs) == len(GOOD) and _named(mixed_folder, loader.failures) == BAD


def test_hidden_files_stay_out_unless_asked(mixed_folder, lc_fake_backend):
    (mixed_folder / ".hidden.jpg").write_bytes(b"not a jpeg either")
    (mixed_folder / ".cache").mkdir()
    (mixed_folder / ".cache" / "thumb.png").write_bytes(b"junk")
    loader = MolmoLoader(mixed_folder, backend="fake", on_failure=lambda f: None)
    loader.load()
    assert _named(mixed_folder, loader.failures) == BAD
    seeing = MolmoLoader(
        mixed_folder, backend="fake", reader_options={"include_hidden": True}, on_failure=lambda f: None
    )
    seeing.load()
    hidden = {".hidden.jpg": "CorruptMediaError", ".cache/thumb.png": "CorruptMediaError"}
    assert _named(mixed_folder, seeing.failures) == {**BAD, **hidden}


def test_a_folder_with_no_media_endings_still_reads_what_is_in_it(tmp_path, lc_fake_backend):
    from molmo_rag.testing import samples

    folder = tmp_path / "odd"
    folder.mkdir()
    samples.photo("coffee").resize((40, 30)).save(folder / "picture.dat", format="PNG")  # a picture by its bytes
    (folder / "readme.txt").write_text("hello")
    loader = MolmoLoader(folder, backend="fake", on_failure=lambda f: None)
    (doc,) = loader.load()
    assert doc.metadata["kind"] == "image" and doc.metadata["source"] == str(folder / "picture.dat")
    assert _named(folder, loader.failures) == {"readme.txt": "UnsupportedMediaError"}
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = MolmoLoader(empty, backend="fake", on_failure=lambda f: None)
    assert nothing.load() == []
    assert [type(f.error).__name__ for f in nothing.failures] == ["SourceNotFoundError"]
