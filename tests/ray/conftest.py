"""A real two-node Ray cluster on 127.0.0.1 (two CPUs each), started once for the Ray
tests, this process connected to it; and the small media they index.

Tests that change the cluster's nodes start one of their own (:func:`_ray_media.start_cluster`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import qdrant_client  # noqa: F401
    import ray.data  # noqa: F401
except ImportError:  # the ray extra is not installed: nothing here runs
    collect_ignore_glob = ["test_*.py"]

import _ray_media  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """The shared cluster (head + one worker node, four CPUs), this process its driver."""
    import ray

    from molmo_rag.ray.cluster import _quiet_progress

    if ray.is_initialized():  # pragma: no cover - another suite left one running
        ray.shutdown()
    cluster = _ray_media.start_cluster()
    try:
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        _quiet_progress()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def pool():
    from molmo_rag.ray import PoolOptions

    return PoolOptions(actors=2, actor_cpus=0.5)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """Four small photos, a 14 s video, a two-slide deck and a corrupt PNG."""
    return _ray_media.library(tmp_path_factory.mktemp("ray-media") / "library")


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    """A run's ``ray=None`` must not find a user's cluster."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield


def pytest_collection_modifyitems(items):
    # keep the tests that start clusters of their own last, so the shared one is not
    # running beside theirs for long
    own = [i for i in items if "own_cluster" in i.keywords]
    rest = [i for i in items if "own_cluster" not in i.keywords]
    items[:] = rest + own


def pytest_configure(config):
    config.addinivalue_line("markers", "own_cluster: starts a Ray cluster of its own")


os.environ.setdefault("RAY_DEDUP_LOGS", "0")


class Reference:
    """The single-machine run of :func:`media` (FakeBackend, ``count=["person"]``): its
    collection, summary and cache folder (pictures of slides and segments live there, so a
    run to compare with uses the same folder, with ``no_cache=True`` to compute again)."""

    def __init__(self, db: Path, cache: Path, summary):
        self.db, self.cache, self.summary = db, cache, summary
        self.points = _ray_media.points(db)

    def options(self, **extra):
        from molmo_rag import RunOptions
        from molmo_rag.testing.fake_backend import FakeBackend

        backend = extra.pop("backend", None) or FakeBackend(**extra.pop("fake", {}))
        return RunOptions(backend=backend, count=["person"], cache=str(self.cache), **extra)


@pytest.fixture(scope="session")
def reference(media, tmp_path_factory) -> Reference:
    from molmo_rag.pipeline import index

    root = tmp_path_factory.mktemp("ray-reference")
    ref = Reference(root / "db", root / "cache", None)
    ref.summary = index(str(media), ref.options(), db=str(ref.db))
    ref.points = _ray_media.points(ref.db)
    assert ref.points and ref.summary.failed
    return ref
