"""Fixtures shared by every test suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_molmo2_path(tmp_path_factory):
    """A tiny random-init Molmo2 checkpoint (real transformers classes), built once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from molmo_rag.testing import build_tiny_molmo2

    return build_tiny_molmo2(tmp_path_factory.mktemp("models") / "tiny-molmo2")
