"""MolmoReader over real media (photos, a PPTX deck, a PDF, a video, a broken file) with the
pixel-statistics FakeBackend: documents, ids, metadata, exclusions, failures, the cache,
SimpleDirectoryReader (sync, async, fsspec), and the native async path in a running loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import ImageDocument, MetadataMode
from llama_index.readers.molmo import MolmoLoadError, MolmoReader

from molmo_rag.index.records import point_id


def kinds(docs) -> list[tuple[str, str]]:
    return sorted((d.metadata["kind"], Path(d.metadata["source"]).name) for d in docs)


def test_load_data_one_document_per_photo_slide_and_segment(li_media, li_fake, li_expected_items, caplog):
    reader = MolmoReader(backend=li_fake, count=["person"])
    with caplog.at_level(logging.WARNING, logger="llama_index.readers.molmo"):
        docs = reader.load_data(li_media)
    assert kinds(docs) == li_expected_items
    assert all(isinstance(d, ImageDocument) for d in docs)
    # the broken file: one clear failure, logged with its cause and kept; the rest indexed
    assert [Path(f.source).name for f in reader.failures] == ["broken.jpg"]
    assert type(reader.failures[0].error).__name__ == "CorruptMediaError"
    assert "broken.jpg" in caplog.text and "CorruptMediaError" in caplog.text
    for doc in docs:
        meta = doc.metadata
        assert doc.id_ == point_id(meta["media_id"], meta["source"])  # the CLI's point id
        assert Path(meta["source"]).is_absolute() and meta["backend"] == "fake"
        assert meta["caption"] in doc.text and meta["scene"] in doc.text
        assert isinstance(meta["counts"]["person"], int) and all(p["label"] == "person" for p in meta["points"])
        assert "thumbnail" not in meta and doc.image_resource.data is None  # no base64 by default
        assert Path(doc.image_path).is_file()
        # the embedding sees the record text only (the CLI's vector); the LLM also sees where it is from
        assert doc.get_content(MetadataMode.EMBED) == doc.text
        llm = doc.get_content(MetadataMode.LLM)
        assert f"kind: {meta['kind']}" in llm and meta["source"] in llm
        assert "points" not in llm and "media_id" not in llm and "data:image" not in llm
    by_kind = {d.metadata["kind"]: d for d in docs}
    assert by_kind["image"].image_path == by_kind["image"].metadata["source"]  # the photo itself
    slide = by_kind["slide"]
    # rendered once, saved by content hash under the cache root's pictures/ folder
    assert slide.image_path == slide.metadata["image_path"] and Path(slide.image_path).parent.name == "pictures"
    assert {"slide", "title"} <= set(slide.metadata) and slide.metadata["title"] in slide.text
    segment = by_kind["video_segment"]
    assert segment.metadata["end"] > segment.metadata["start"] >= 0
    assert str(segment.video_resource.path) == segment.metadata["source"]
    assert f"slide: {slide.metadata['slide']}" in slide.get_content(MetadataMode.LLM)


def test_rerun_comes_from_the_cache(li_media, li_fake):
    reader = MolmoReader(backend=li_fake, count=["person"])
    first = reader.load_data(li_media / "photos")
    calls = li_fake.calls
    assert calls == 3 * 3  # caption, scene, count on three photos
    second = reader.load_data(li_media / "photos")
    assert li_fake.calls == calls  # zero backend calls
    assert [(d.id_, d.hash) for d in first] != [] and sorted((d.id_, d.hash) for d in first) == sorted(
        (d.id_, d.hash) for d in second
    )


def test_extra_info_keep_image_and_raise_on_error(li_media, li_fake):
    photo = li_media / "photos" / "coffee.png"
    reader = MolmoReader(backend=li_fake, keep_image=True, thumbnail_size=32, scene=False)
    (doc,) = reader.load_data(photo, extra_info={"album": "holidays"})
    assert doc.metadata["album"] == "holidays" and doc.metadata["kind"] == "image"
    assert doc.metadata["thumbnail"].startswith("data:image/jpeg;base64,")
    assert doc.image_resource.data and doc.image_resource.mimetype == "image/jpeg"
    assert "thumbnail" in doc.excluded_embed_metadata_keys and "thumbnail" in doc.excluded_llm_metadata_keys
    assert "scene" not in doc.metadata and li_fake.calls == 1  # caption only

    strict = MolmoReader(backend=li_fake, raise_on_error=True)
    with pytest.raises(MolmoLoadError, match="broken.jpg.*CorruptMediaError") as info:
        strict.load_data([li_media / "photos" / "broken.jpg", photo])
    assert info.value.failure.task is None


def test_failed_tasks_are_reported_one_by_one(li_media):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend(fail_on="chelsea", batch_size=1)
    reader = MolmoReader(backend=backend)
    docs = reader.load_data(li_media / "photos")
    assert sorted(Path(d.metadata["source"]).name for d in docs) == ["astronaut.png", "coffee.png"]
    by_task = [(Path(f.source).name, f.task.name if f.task else None) for f in reader.failures]
    assert sorted(by_task, key=str) == sorted([("broken.jpg", None), ("chelsea.png", "caption"), ("chelsea.png", "scene")], key=str)


def test_simple_directory_reader_over_a_mixed_folder(li_media, li_fake, li_expected_items, caplog):
    reader = MolmoReader(backend=li_fake, count=["person"])
    with caplog.at_level(logging.WARNING, logger="llama_index.readers.molmo"):
        docs = SimpleDirectoryReader(str(li_media), recursive=True, file_extractor=reader.file_extractor()).load_data()
    assert kinds(docs) == li_expected_items
    assert [Path(f.source).name for f in reader.failures] == ["broken.jpg"] and "broken.jpg" in caplog.text
    for doc in docs:  # SimpleDirectoryReader's metadata merged in, kept out of the embedding as it does
        assert doc.metadata["file_name"] == Path(doc.metadata["source"]).name
        assert doc.metadata["file_path"] == doc.metadata["source"]
        assert "file_name" in doc.excluded_embed_metadata_keys
    direct = {d.id_ for d in MolmoReader(backend=li_fake, count=["person"]).load_data(li_media)}
    assert {d.id_ for d in docs} == direct  # same ids whichever way the files came in


def test_fsspec_filesystem(li_media, li_fake):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.mkdir("/album")
    memory.pipe("/album/coffee.png", (li_media / "photos" / "coffee.png").read_bytes())
    reader = MolmoReader(backend=li_fake, scene=False)
    docs = SimpleDirectoryReader(input_files=["/album/coffee.png"], fs=memory, file_extractor=reader.file_extractor()).load_data()
    assert len(docs) == 1 and docs[0].metadata["source"] == "memory:///album/coffee.png"
    assert docs[0].metadata["caption"].startswith("A ")
    with pytest.raises(ValueError, match="folder on a MemoryFileSystem"):
        reader.load_data("/album", fs=memory)


async def test_native_async_path_inside_a_running_loop(li_media, li_expected_items):
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend(batch_size=1, delay=0.05)
    reader = MolmoReader(backend=backend, count=["person"])
    stream = reader.alazy_load_data(li_media)
    first = await stream.__anext__()
    # streamed: the first document comes while most requests have not been made yet
    assert first.metadata["kind"] in {"image", "slide", "video_segment"} and backend.calls < 9 * 3
    rest = [doc async for doc in stream]
    assert kinds([first, *rest]) == li_expected_items

    docs = await reader.aload_data(li_media / "decks")
    assert {d.metadata["kind"] for d in docs} == {"slide"} and len(docs) == 4
    # sync entry points work inside the running loop too (Jupyter), from the cache
    calls = backend.calls
    assert len(reader.load_data(li_media / "decks")) == 4 and backend.calls == calls
    sdr = SimpleDirectoryReader(str(li_media), recursive=True, file_extractor=reader.file_extractor())
    assert kinds(await sdr.aload_data()) == li_expected_items
    assert len(reader.failures) >= 2  # broken.jpg, once per pass that met it


async def test_async_generators_close_cleanly(li_media, li_fake):
    reader = MolmoReader(backend=li_fake)
    stream = reader.alazy_load_data(li_media / "photos")
    await stream.__anext__()
    await stream.aclose()  # the engine run stops; nothing is left running
    await asyncio.sleep(0)
    assert len(await reader.aload_data(li_media / "photos" / "coffee.png")) == 1
