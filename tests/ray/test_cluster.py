"""Joining Ray: the extra named when Ray is missing, the driver's connection kept."""

from __future__ import annotations

import sys

import pytest

from molmo_rag.errors import MissingDependencyError


def test_without_the_ray_extra_a_run_names_it(monkeypatch, tmp_path):
    from molmo_rag.ray import index

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as without the extra
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingDependencyError, match=r"molmo-rag\[ray\]"):
        index([str(tmp_path)], db=str(tmp_path / "db"), backend="openai", ray="local")
    assert not (tmp_path / "db").exists()  # refused before anything was made


def test_a_driver_already_connected_keeps_its_cluster(ray_cluster):
    import ray

    from molmo_rag.ray import connect

    assert connect("local") is False  # nothing started: the run uses the cluster this process joined
    assert ray.is_initialized() and len(ray.nodes()) == 2
