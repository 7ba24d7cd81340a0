"""The local backend in the model actor pool: real transformers code (the tiny offline
Molmo2 checkpoint, CPU) loaded once per actor, giving the collection a single-machine
run gives. On a GPU cluster the same actor takes ``num_gpus`` (``--ray-gpus``)."""

from __future__ import annotations

import _ray_media
import pytest

from molmo_rag import RunOptions


@pytest.mark.timeout(600)
def test_local_molmo2_actors_write_the_collection_of_a_single_machine_run(ray_cluster, tiny_molmo2_path, tmp_path):
    from molmo_rag.pipeline import index
    from molmo_rag.ray import PoolOptions
    from molmo_rag.ray import index as ray_index

    media = _ray_media.library(tmp_path / "media", photos=("astronaut", "coffee"), video=True, deck=False, corrupt=True)
    cache = tmp_path / "cache"

    def options(**extra) -> RunOptions:
        return RunOptions(
            backend="local", model=str(tiny_molmo2_path), backend_options={"device": "cpu", "max_new_tokens": 8},
            concurrency=2, detail="low", count=["person"], cache=str(cache), **extra,
        )

    single = index(str(media), options(), db=str(tmp_path / "single"))
    spread = ray_index(str(media), options(no_cache=True), pool=PoolOptions(actors=2, actor_cpus=0.5), db=str(tmp_path / "ray"))
    assert single.done == spread.done > 0 and spread.cached == 0  # computed again, by the actors
    assert (spread.items, spread.indexed) == (single.items, single.indexed)
    assert [f.to_json()["error_type"] for f in spread.failed] == [f.to_json()["error_type"] for f in single.failed] == ["CorruptMediaError"]
    ours, theirs = _ray_media.points(tmp_path / "single"), _ray_media.points(tmp_path / "ray")
    assert ours == theirs
    assert {payload["backend"] for payload, _ in theirs.values()} == {"local"}
    assert {payload["kind"] for payload, _ in theirs.values()} == {"image", "video_segment"}
