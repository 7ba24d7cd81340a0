"""How the listed sources become read tasks, and a pool that leaves room to read."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from molmo_rag.ray import PoolOptions
from molmo_rag.ray.pipeline import _fit_pool
from molmo_rag.ray.stages import source_groups


def test_videos_decks_and_big_files_read_alone_photos_packed_yet_spread(tmp_path):
    photos = []
    for i in range(100):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(b"x" * 100)
        photos.append(str(path))
    big = tmp_path / "huge.png"
    big.write_bytes(b"x" * (5 << 20))
    listed = [*photos, str(tmp_path / "talk.mp4"), str(tmp_path / "deck.pptx"), str(big), "https://example.com/a.jpg", b"bytes"]
    groups = source_groups(listed, slots=2)
    assert [str(tmp_path / "talk.mp4")] in groups and [str(tmp_path / "deck.pptx")] in groups and [str(big)] in groups
    packed = [g for g in groups if len(g) > 1]
    assert packed and max(len(g) for g in packed) <= 32 and len(groups) >= 8  # four tasks a reading slot
    assert sorted(map(str, (e for g in groups for e in g))) == sorted(map(str, listed))  # every source once
    assert source_groups(photos[:3], slots=8) == [[p] for p in photos[:3]]  # few photos: one task each


def test_a_pool_that_would_take_every_cpu_leaves_one_for_reading():
    said = []
    assert _fit_pool(PoolOptions(actors=1, actor_cpus=1.0), 1, 4.0, said.append).actor_cpus == 1.0 and not said
    fitted = _fit_pool(PoolOptions(actors=2, actor_cpus=1.0), 2, 2.0, said.append)
    assert fitted.actor_cpus == 0.5 and "none of the cluster's 2 for reading" in said[0]
    assert _fit_pool(PoolOptions(actors=1, actor_cpus=1.0), 1, 1.0, said.append).actor_cpus == 0.0
