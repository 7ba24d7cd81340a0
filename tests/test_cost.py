"""Seed pricing and estimates, computed without calling anything."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from molmo_rag import cost
from molmo_rag.backends.base import Request, backend_class, get_backend
from molmo_rag.errors import MediaTooLargeError
from molmo_rag.media.items import MediaItem, VideoFrames
from molmo_rag.tasks import Ask, Caption, Count, VideoTask


def _video(duration: float, start: float = 0.0) -> MediaItem:
    frames = VideoFrames(
        frames=np.zeros((2, 8, 8, 3), dtype=np.uint8) + int(duration) % 255,
        timestamps=[0.0, duration / 2],
        fps=1.0, width=8, height=8, duration=duration, total_frames=2, indices=[0, 1],
    )
    return MediaItem.from_frames(frames, source=f"v{duration}.mp4", start=start)


def _image() -> MediaItem:
    return MediaItem.from_pil(Image.new("RGB", (8, 8)), source="a.png")


@pytest.mark.parametrize(
    ("seconds", "usd"),
    [(0.5, 0.005), (5.0, 0.005), (5.1, 0.01), (10.0, 0.01), (10.0000001, 0.01), (30.0, 0.03), (60.0, 0.06), (120.0, 0.12), (None, 0.005)],
)
def test_wavespeed_video_price_table(seconds, usd):
    assert backend_class("wavespeed").price.video_cost(seconds) == pytest.approx(usd)


def test_videos_over_120_seconds_are_refused_with_a_clear_message():
    with pytest.raises(MediaTooLargeError, match=r"120 s WaveSpeed .*split") as info:
        backend_class("wavespeed").price.video_cost(120.5, source="long.mp4")
    assert info.value.source == "long.mp4"


def test_price_of_one_call_per_backend():
    image, video = _image(), _video(12.0)
    price = {name: backend_class(name).price for name in ("wavespeed", "openoctopus", "openai", "local")}
    assert price["wavespeed"].of(image) == 0.002
    assert price["wavespeed"].of(video) == 0.015
    assert price["openoctopus"].of(image) == 0.002
    assert price["openai"].of(video) == 0.0 and price["local"].of(image) == 0.0


def test_estimate_counts_calls_skips_unsupported_and_reports_too_long():
    items = [_image(), _image(), _video(12.0, start=30.0), _video(200.0)]
    tasks = [Caption(), Count(target="people"), VideoTask(task="summary")]
    est = cost.estimate(backend_class("wavespeed"), items, tasks)
    image_entry, _, video_entry, long_entry = est.items
    assert image_entry.calls == 1 and set(image_entry.skipped_tasks) == {"count", "video"}
    assert video_entry.calls == 3 and video_entry.cost_usd == pytest.approx(0.045)
    assert long_entry.calls == 0 and "120" in long_entry.error
    assert est.calls == 5 and est.cost_usd == pytest.approx(0.002 * 2 + 0.045)
    assert est.to_json()["items"][3]["error"]


def test_estimate_other_backends():
    items = [_image(), _video(6.0)]
    oo = cost.estimate(backend_class("openoctopus"), items, [Caption(), Ask(question="why?")])
    assert (oo.calls, oo.cost_usd) == (2, pytest.approx(0.004))
    assert oo.items[1].skipped_tasks == ["caption", "ask"]
    free = cost.estimate(backend_class("openai"), items, [Caption()])
    assert (free.calls, free.cost_usd) == (2, 0.0)


def test_backend_estimate_cost_matches():
    b = get_backend("wavespeed", api_key="k" * 8, base_url="http://127.0.0.1:9")
    assert b.estimate_cost(Request(_video(61.0), Caption())) == pytest.approx(0.065)
