"""Sources x doors: every kind of source the README lists, made for real, gives the same items
(count, media ids, stored source, point id) through every door that takes sources: the
reader, analyze / aanalyze, iter_documents, index (each also given a ready Run, and given
RunOptions), and the LlamaIndex and LangChain readers.
A bytearray or an open file is one source everywhere, never a sequence of numbers or lines."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from molmo_rag import Run, RunOptions, pipeline
from molmo_rag.analyze import aanalyze, analyze
from molmo_rag.documents import MediaDocument, iter_documents
from molmo_rag.engine import count_sources, read_entries
from molmo_rag.index.records import point_id
from molmo_rag.media import MediaItem, read
from molmo_rag.media.door import (
    absolute_source,
    as_source_list,
    as_sources,
    is_local_path,
    reusable_source_list,
)
from molmo_rag.tasks import Caption
from molmo_rag.testing import FakeBackend

COLOURS = {"a.png": (200, 40, 30), "b.png": (20, 90, 210)}


@pytest.fixture
def world(tmp_path, monkeypatch, http_root, http_server):
    """Two photos in ``photos/`` under the working directory (so relative sources must be
    stored absolute), photo ``a.png`` also served on 127.0.0.1."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (48, 32), colour).save(folder / name)
    shutil.copy(folder / "a.png", http_root / "door-a.png")
    monkeypatch.chdir(tmp_path)
    media_id = {name: next(read(folder / name)).media_id for name in COLOURS}
    return {"root": tmp_path, "folder": folder, "url": f"{http_server}/door-a.png", "media_id": media_id}


def _photo_bytes(world) -> bytes:
    return (world["folder"] / "a.png").read_bytes()


def _pil(world) -> Image.Image:
    with Image.open(world["folder"] / "a.png") as image:
        return image.convert("RGB")


SOURCES = {
    "str": lambda w: "photos/a.png",
    "Path": lambda w: Path("photos/a.png"),
    "folder": lambda w: "photos",
    "glob": lambda w: "photos/*.png",
    "url": lambda w: w["url"],
    "data URI": lambda w: "data:image/png;base64," + base64.b64encode(_photo_bytes(w)).decode(),
    "bytes": lambda w: _photo_bytes(w),
    "bytearray": lambda w: bytearray(_photo_bytes(w)),
    "memoryview": lambda w: memoryview(_photo_bytes(w)),
    "BinaryIO": lambda w: open("photos/a.png", "rb"),  # noqa: SIM115 - the door reads and the test closes it
    "BytesIO": lambda w: io.BytesIO(_photo_bytes(w)),
    "PIL image": lambda w: _pil(w),
    "MediaItem": lambda w: MediaItem.from_pil(_pil(w), source="a scanned photo"),
}


def expected(kind: str, world) -> list[tuple]:
    """(stored source, media id, point id) of each item, sorted."""
    folder, ids = world["folder"], world["media_id"]
    local = {"str": ["a.png"], "Path": ["a.png"], "folder": ["a.png", "b.png"], "glob": ["a.png", "b.png"], "BinaryIO": ["a.png"]}
    if kind in local:
        pairs = [(str(folder / name), ids[name]) for name in local[kind]]
    elif kind in ("PIL image", "MediaItem"):
        pil_id = MediaItem.from_pil(_pil(world)).media_id
        pairs = [("<memory>" if kind == "PIL image" else "a scanned photo", pil_id)]
    else:
        size = len(_photo_bytes(world))
        label = {"url": world["url"], "data URI": f"data:image/png;{size} bytes"}.get(kind, "<bytes>")
        if kind == "BytesIO":
            label = "<stream>"
        pairs = [(label, ids["a.png"])]
    return sorted((source, media_id, point_id(media_id, source)) for source, media_id in pairs)


def _entry(source: str, media_id: str, pid: str | None = None) -> tuple:
    return (source, media_id, pid or point_id(media_id, source))


def _error(failure) -> tuple:
    return ("error", type(getattr(failure, "error", failure)).__name__, str(getattr(failure, "source", "")))


# -- the doors: each gives sorted (stored source, media id, point id) or error rows -----------------
# The reader and analyze report sources as given; the doors that store them make local paths
# absolute. The first two are compared through absolute_source, the others as they come.


def door_read(source, world):
    return sorted(_entry(absolute_source(e.source), e.media_id) if isinstance(e, MediaItem) else _error(e) for e in read(source))


def door_read_entries(source, world):
    rows = [_entry(e.source, e.media_id) if isinstance(e, MediaItem) else _error(e) for e in read_entries(source, absolute=True)]
    return sorted(rows)


def _analyzed(outcome) -> tuple:
    if outcome.__class__.__name__ == "Failure":
        return _error(outcome)
    return _entry(absolute_source(outcome.item.source), outcome.item.media_id)


def door_analyze(source, world):
    return sorted(_analyzed(o) for o in analyze(source, [Caption()], FakeBackend()))


def door_aanalyze(source, world):
    async def collect():
        return [_analyzed(o) async for o in aanalyze(source, [Caption()], FakeBackend())]

    return sorted(asyncio.run(collect()))


def door_iter_documents(source, world):
    rows = [
        _entry(d.source, d.media_id, d.id) if isinstance(d, MediaDocument) else _error(d)
        for d in iter_documents(source, backend=FakeBackend(), cache=False)
    ]
    return sorted(rows)


def door_index(source, world):
    db = world["root"] / "db"
    summary = pipeline.index(source, backend=FakeBackend(), db=db, cache=False)
    with pipeline.open_index(db, create=False) as store:
        points = store.all_points()
    rows = [_entry(src, media_id, pid) for src, by_id in points.items() for pid, media_id in by_id.items()]
    return sorted(rows + [_error(f) for f in summary.failed])


def _run_options() -> RunOptions:
    return RunOptions(backend=FakeBackend(), cache=False)


def _documents(outcomes) -> list[tuple]:
    return sorted(_entry(d.source, d.media_id, d.id) if isinstance(d, MediaDocument) else _error(d) for d in outcomes)


def _indexed(source, run) -> list[tuple]:
    with pipeline.open_index(":memory:") as store:
        summary = pipeline.index(source, run, db=store)
        points = store.all_points()
    rows = [_entry(src, media_id, pid) for src, by_id in points.items() for pid, media_id in by_id.items()]
    return sorted(rows + [_error(f) for f in summary.failed])


def door_analyze_run(source, world):
    with Run(_run_options()) as run:
        return sorted(_analyzed(o) for o in analyze(source, [Caption()], run))


def door_analyze_options(source, world):
    return sorted(_analyzed(o) for o in analyze(source, [Caption()], _run_options()))


def door_iter_documents_run(source, world):
    with Run(_run_options()) as run:
        return _documents(iter_documents(source, run))


def door_iter_documents_options(source, world):
    return _documents(iter_documents(source, _run_options()))


def door_index_run(source, world):
    with Run(_run_options()) as run:
        return _indexed(source, run)


def door_index_options(source, world):
    return _indexed(source, _run_options())


def door_llamaindex(source, world):
    pytest.importorskip("llama_index.readers.molmo")
    from llama_index.readers.molmo import MolmoReader

    reader = MolmoReader(backend=FakeBackend())
    docs = reader.load_data(source)
    rows = [_entry(d.metadata["source"], d.metadata["media_id"], d.id_) for d in docs]
    return sorted(rows + [_error(f) for f in reader.failures])


def door_langchain(source, world):
    pytest.importorskip("langchain_molmo")
    from langchain_molmo import MolmoLoader

    loader = MolmoLoader(source, backend=FakeBackend())
    docs = loader.load()
    rows = [_entry(d.metadata["source"], d.metadata["media_id"], d.id) for d in docs]
    return sorted(rows + [_error(f) for f in loader.failures])


def _llamaindex_rows(reader, source) -> list[tuple]:
    docs = reader.load_data(source)
    rows = [_entry(d.metadata["source"], d.metadata["media_id"], d.id_) for d in docs]
    return sorted(rows + [_error(f) for f in reader.failures])


def door_llamaindex_run(source, world):
    pytest.importorskip("llama_index.readers.molmo")
    from llama_index.readers.molmo import MolmoReader

    with Run(_run_options()) as run:
        return _llamaindex_rows(MolmoReader(run), source)


def door_llamaindex_options(source, world):
    pytest.importorskip("llama_index.readers.molmo")
    from llama_index.readers.molmo import MolmoReader

    reader = MolmoReader(_run_options())
    try:
        return _llamaindex_rows(reader, source)
    finally:
        reader.close()


def _langchain_rows(loader) -> list[tuple]:
    docs = loader.load()
    rows = [_entry(d.metadata["source"], d.metadata["media_id"], d.id) for d in docs]
    return sorted(rows + [_error(f) for f in loader.failures])


def door_langchain_run(source, world):
    pytest.importorskip("langchain_molmo")
    from langchain_molmo import MolmoLoader

    with Run(_run_options()) as run:
        return _langchain_rows(MolmoLoader(source, run))


def door_langchain_options(source, world):
    pytest.importorskip("langchain_molmo")
    from langchain_molmo import MolmoLoader

    loader = MolmoLoader(source, _run_options())
    try:
        return _langchain_rows(loader)
    finally:
        loader.close()


DOORS = {
    "media.read": door_read,
    "engine.read_entries": door_read_entries,
    "analyze": door_analyze,
    "aanalyze": door_aanalyze,
    "iter_documents": door_iter_documents,
    "index": door_index,
    "analyze(Run)": door_analyze_run,
    "analyze(RunOptions)": door_analyze_options,
    "iter_documents(Run)": door_iter_documents_run,
    "iter_documents(RunOptions)": door_iter_documents_options,
    "index(Run)": door_index_run,
    "index(RunOptions)": door_index_options,
    "MolmoReader": door_llamaindex,
    "MolmoLoader": door_langchain,
    "MolmoReader(Run)": door_llamaindex_run,
    "MolmoReader(RunOptions)": door_llamaindex_options,
    "MolmoLoader(Run)": door_langchain_run,
    "MolmoLoader(RunOptions)": door_langchain_options,
}


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_source_gives_the_same_items_through_every_door(kind, door, world):
    source = SOURCES[kind](world)
    try:
        got = DOORS[door](source, world)
    finally:
        if hasattr(source, "close"):
            source.close()
    assert got == expected(kind, world)


@pytest.mark.parametrize("door", ["media.read", "index"])
def test_many_sources_of_every_kind_at_once(door, world):
    """A list mixing every kind: each one source, the items of all of them together."""
    sources = [make(world) for make in SOURCES.values()]
    try:
        got = DOORS[door](sources, world)
    finally:
        for source in sources:
            if hasattr(source, "close"):
                source.close()
    want = sorted(row for kind in SOURCES for row in expected(kind, world))
    if door == "index":  # one point per (source, media id): copies at one label are one point
        want = sorted(set(want))
    assert got == want


# -- the decisions themselves ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_kind_is_one_source(kind, world):
    source = SOURCES[kind](world)
    assert as_source_list(source) == [source]
    assert reusable_source_list(source) == [source]
    assert count_sources(source) == len(expected(kind, world))
    if hasattr(source, "close"):
        source.close()


def test_collections_are_many_and_generators_are_pulled_lazily():
    assert as_source_list(["a.png", b"xy", Path("b.png")]) == ["a.png", b"xy", Path("b.png")]
    assert as_source_list(("a.png",)) == ["a.png"]
    assert reusable_source_list({"a.png"}) == ["a.png"]
    generator = (name for name in ["a.png", "b.png"])
    assert as_sources(generator) is generator  # not consumed here
    assert reusable_source_list(generator) is None and next(generator) == "a.png"
    assert count_sources(iter(["a.png"])) is None


@pytest.mark.parametrize(
    ("source", "local"),
    [
        ("photos/a.png", True),
        (Path("a.png"), True),
        ("/abs/x\\xff.jpg", True),
        ("https://example.org/a.png", False),
        ("HTTP://example.org/a.png", False),
        ("data:image/png;3 bytes", False),
        ("<bytes>", False),
        ("ftp://example.org/a.png", False),
        ("file:///tmp/a.png", False),
        (b"\x89PNG", False),
        (None, False),
    ],
)
def test_is_local_path(source, local):
    assert is_local_path(source) is local


def test_absolute_source_only_for_local_files_that_exist(world):
    assert absolute_source("photos/a.png") == str(world["folder"] / "a.png")
    assert absolute_source("photos/gone.png") == "photos/gone.png"
    assert absolute_source(world["url"]) == world["url"]
    assert absolute_source("<bytes>") == "<bytes>"


def test_remove_takes_one_source_as_given_to_index(world):
    """``remove("photos/a.png")`` removes that file's point (a str is one source, not its
    characters), relative like the index was given it."""
    db = world["root"] / "db"
    pipeline.index("photos", backend=FakeBackend(), db=db, cache=False)
    assert pipeline.remove("photos/a.png", db=db) == {str(world["folder"] / "a.png"): 1}
    assert pipeline.remove(Path("photos"), db=db, dry_run=True) == {str(world["folder"] / "b.png"): 1}
