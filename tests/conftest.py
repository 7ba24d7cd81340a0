"""Fixtures shared by every test suite."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_result_cache(tmp_path_factory, monkeypatch):
    """Each test gets a result cache of its own (``caption`` and the other commands read and
    write one too), so no test answers from another's results or the user's cache."""
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path_factory.mktemp("result-cache")))


@pytest.fixture(scope="session")
def tiny_molmo2_path(tmp_path_factory):
    """A tiny random-init Molmo2 checkpoint (real transformers classes), built once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from molmo_rag.testing import build_tiny_molmo2

    return build_tiny_molmo2(tmp_path_factory.mktemp("models") / "tiny-molmo2")
