import asyncio
from typing import ClassVar

import numpy as np
import pytest
from _pixel_backend import PixelBackend
from PIL import Image

from molmo_rag.analyze import Failure
from molmo_rag.cache import ResultCache
from molmo_rag.enrich import EnrichedItem, Enricher, EnrichOptions, equivalents
from molmo_rag.errors import InputError, UnsupportedTaskError
from molmo_rag.media.items import MediaItem, VideoFrames
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask


class WaveSpeedLike(PixelBackend):
    """Captions images; captions video and runs video tasks (no scene, count or ask)."""

    name: ClassVar[str] = "wavespeed-like"
    capabilities: ClassVar = {"image": frozenset({"caption"}), "video": frozenset({"caption", "video"})}


class ImagesOnly(PixelBackend):
    name: ClassVar[str] = "images-only"
    capabilities: ClassVar = {"image": frozenset({"caption", "scene", "count", "ask"})}


def image(colour, blobs=0, source="<memory>"):
    a = np.zeros((48, 80, 3), np.uint8)
    a[:] = colour
    for k in range(blobs):
        a[5:15, 5 + 20 * k : 12 + 20 * k] = 255
    return MediaItem.from_pil(Image.fromarray(a), source=source)


def video(colour, start=0.0, source="clip.mp4"):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    frames[:] = colour
    frames[:, 4:10, 4:10] = 255
    vf = VideoFrames(frames, [0.0, 0.5, 1.0, 1.5], 2.0, 48, 32, 2.0, 4, [0, 1, 2, 3])
    return MediaItem.from_frames(vf, source=source, start=start)


def by_task(entry: EnrichedItem) -> dict:
    return {r.task.name if r.task.name != "video" else f"video:{r.task.task}": r for r in entry.results}


def test_default_plan_and_explicit_tasks_on_images():
    backend = PixelBackend()
    enricher = Enricher(backend, options=EnrichOptions(count=["blobs"], ask=["What colour?"]))
    [red, blue] = enricher.enrich([image((200, 30, 30), 2), image((30, 60, 200), 1)])
    assert backend.calls == 8
    r = by_task(red)
    assert set(r) == {"caption", "scene", "count", "ask"}
    assert "red" in r["caption"].fields["caption"] and r["caption"].fields["detail"] == "medium"
    assert r["count"].fields["count"] == 2 and len(r["count"].fields["points"]) == 2
    assert by_task(blue)["count"].fields["count"] == 1
    assert "blue" in by_task(blue)["ask"].fields["answer"]
    assert not red.failures and red.cached == 0


def test_plan_adapts_to_capabilities_with_one_warning_per_task_and_kind():
    warnings: list[str] = []
    backend = WaveSpeedLike()
    enricher = Enricher(backend, options=EnrichOptions(count=["people"]), on_warning=warnings.append)
    out = enricher.enrich([image((200, 30, 30)), image((30, 160, 40)), video((30, 60, 200)), video((200, 30, 30), 2.0)])
    # images: only the caption (scene and count skipped); video: caption, scene and counting via VideoTask
    assert set(by_task(out[0])) == {"caption"}
    assert set(by_task(out[2])) == {"caption", "video:scene_description", "video:counting"}
    assert by_task(out[2])["video:counting"].fields["count"] == 1
    assert len(warnings) == 2 and warnings == enricher.skipped
    assert any("scene on image" in w and "default task" in w for w in warnings)
    assert any("count on image" in w and "requested task" in w for w in warnings)
    # a later chunk warns no more
    enricher.enrich([image((1, 2, 3))])
    assert len(warnings) == 2


def test_explicit_task_no_input_can_run_fails_up_front():
    class CaptionOnly(PixelBackend):
        name: ClassVar[str] = "caption-only"
        capabilities: ClassVar = {"image": frozenset({"caption"}), "video": frozenset({"caption"})}

    with pytest.raises(UnsupportedTaskError) as info:
        Enricher(CaptionOnly(), options=EnrichOptions(ask=["Why?"]))
    assert "caption-only" in str(info.value) and "ask" in str(info.value)
    assert "openai" in info.value.capable  # names the backends that can
    # the defaults alone never fail: they are skipped
    Enricher(CaptionOnly())


def test_explicit_task_runnable_on_some_inputs_is_skipped_on_the_others():
    warnings: list[str] = []
    enricher = Enricher(ImagesOnly(), options=EnrichOptions(count=["x"]), on_warning=warnings.append)
    photo, clip = enricher.enrich([image((200, 30, 30)), video((200, 30, 30))])
    assert set(by_task(photo)) == {"caption", "scene", "count"}
    assert clip.results == [] and clip.failures == []
    assert len(warnings) == 3  # caption, scene and count on video_segment


def test_equivalents():
    assert equivalents(Scene(), "image") == [Scene()]
    assert equivalents(Count(target="dogs"), "video")[1] == VideoTask(task="counting", text="dogs")
    assert equivalents(Ask(question="Who?"), "video")[1] == VideoTask(task="general", text="Who?")


def test_cache_serves_a_rerun_without_backend_calls(tmp_path):
    items = [image((200, 30, 30), 1), image((30, 60, 200), 3), video((30, 160, 40))]
    with ResultCache(tmp_path) as cache:
        first = PixelBackend()
        cold = Enricher(first, options=EnrichOptions(count=["blobs"]), cache=cache).enrich(items)
        assert first.calls == 9 and len(cache) == 9
        second = PixelBackend()
        warm = Enricher(second, options=EnrichOptions(count=["blobs"]), cache=cache).enrich(items)
        assert second.calls == 0
        assert all(r.cached for e in warm for r in e.results)
        assert [[(r.task, r.text, r.fields) for r in e.results] for e in warm] == [
            [(r.task, r.text, r.fields) for r in e.results] for e in cold
        ]
        # another model or detail is another key
        third = PixelBackend(model="pixel-stats-2")
        Enricher(third, cache=cache).enrich(items[:1])
        assert third.calls == 2
        # --no-cache: no reads, fresh results written
        with ResultCache(tmp_path, read=False) as bypass:
            fourth = PixelBackend()
            Enricher(fourth, cache=bypass).enrich(items[:1])
            assert fourth.calls == 2


def test_failures_are_collected_and_never_cached(tmp_path):
    good, bad = image((200, 30, 30), source="good.png"), image((30, 60, 200), source="bad.png")
    with ResultCache(tmp_path) as cache:
        backend = PixelBackend(fail_on="bad", batch_size=4)
        out = Enricher(backend, cache=cache).enrich([good, bad])
        assert len(out[0].results) == 2 and not out[0].failures
        assert out[1].results == [] and len(out[1].failures) == 2
        failure = out[1].failures[0]
        assert failure.source == "bad.png" and failure.media_id == bad.media_id and "refused" in str(failure.error)
        assert len(cache) == 2  # only the good item's results
        retry = PixelBackend()
        Enricher(retry, cache=cache).enrich([good, bad])
        assert retry.calls == 2  # the failed ones are asked again


def test_engine_passes_reader_errors_through_in_order():
    items = [image((200, 30, 30)), InputError("cannot read", source="broken.jpg"), image((30, 60, 200))]

    async def run():
        return [o async for o in Enricher(PixelBackend()).engine(ordered=True, window=1).run(items)]

    out = asyncio.run(run())
    assert isinstance(out[0], EnrichedItem) and isinstance(out[1], Failure) and isinstance(out[2], EnrichedItem)
    assert out[1].source == "broken.jpg"


def test_caption_detail_changes_the_task():
    enricher = Enricher(PixelBackend(), options=EnrichOptions(detail="high", default_tasks=True))
    assert enricher.plan(image((1, 1, 1)))[0] == Caption(detail="high")
    assert Enricher(PixelBackend(), options=EnrichOptions(default_tasks=False, ask=["Q?"])).plan(image((1, 1, 1))) == [
        Ask(question="Q?")
    ]


def test_photos_and_slides_share_one_warning_per_skipped_task():
    warnings: list[str] = []
    slide = image((30, 160, 40), source="deck.pptx")
    slide.kind = "slide"
    enricher = Enricher(WaveSpeedLike(), on_warning=warnings.append)
    enricher.enrich([image((200, 30, 30)), slide])
    assert warnings == ["backend 'wavespeed-like' cannot run scene on images or slides: default task skipped "
                        "(backends that can: local, openoctopus, openai)"]


def test_copies_in_one_chunk_are_asked_once():
    backend = PixelBackend()
    a, b = image((200, 30, 30), 1, source="a.png"), image((200, 30, 30), 1, source="b.png")
    first, second = Enricher(backend, options=EnrichOptions(count=["blobs"])).enrich([a, b])
    assert backend.calls == 3  # caption, scene, count: once for both files
    assert [r.item.source for r in second.results] == ["b.png"] * 3 and all(r.cached for r in second.results)
    assert [r.fields for r in first.results] == [r.fields for r in second.results] and not first.cached
