"""Before a run on several nodes: does every node see the sources and the cache folder?"""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from molmo_rag.ray.shared_storage import missing_on_nodes, unseen_paths  # noqa: E402


def test_every_node_of_a_cluster_on_one_machine_sees_the_sources_and_the_cache(ray_cluster, tmp_path):
    import ray

    (tmp_path / "media").mkdir()
    photo = tmp_path / "media" / "a.jpg"
    photo.write_bytes(b"x")
    assert missing_on_nodes(ray, tmp_path / "cache", [photo]) == []
    assert not list((tmp_path / "cache").glob(".molmo-rag-shared-*"))  # the marker is gone again


def test_a_node_that_cannot_see_the_sources_is_named_one_line_per_node(ray_cluster, tmp_path):
    import ray

    lines = missing_on_nodes(ray, tmp_path / "cache", [str(tmp_path / "mounted-elsewhere" / "a.jpg"), b"bytes"])
    assert len(lines) == 2  # both nodes of the cluster, each once
    assert all("cannot see the sources" in line and "mounted-elsewhere" in line for line in lines)
    assert all("cache folder" not in line for line in lines)  # the cache folder is seen by both


def test_unseen_paths(tmp_path):
    (tmp_path / "here").write_text("x")
    assert unseen_paths([str(tmp_path / "here"), str(tmp_path / "gone")]) == [str(tmp_path / "gone")]


def test_a_run_whose_first_source_is_missing_everywhere_warns_of_nothing_shared(ray_cluster, tmp_path):
    """A mistyped path is a failure of its own (SourceNotFoundError), not a storage problem."""
    from molmo_rag import RunOptions
    from molmo_rag.ray import PoolOptions, index
    from molmo_rag.testing.fake_backend import FakeBackend

    (tmp_path / "media").mkdir()
    from _ray_media import small_photo

    small_photo("coffee").save(tmp_path / "media" / "coffee.jpg")
    warnings: list[str] = []
    summary = index([str(tmp_path / "typo"), str(tmp_path / "media")], RunOptions(backend=FakeBackend(), cache=str(tmp_path / "cache")),
                    pool=PoolOptions(actors=1, actor_cpus=0.5), db=str(tmp_path / "db"), on_warning=warnings.append)
    assert summary.indexed == 1 and [f.to_json()["error_type"] for f in summary.failed] == ["SourceNotFoundError"]
    assert not [w for w in warnings if "cannot see" in w]
