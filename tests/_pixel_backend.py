"""The pixel-statistics backend under the names the tests use: ``pixels`` is
:class:`molmo_rag.testing.FakeBackend`; ``caption-only`` captions and nothing else (for the
'explicit task it cannot run' paths)."""

from __future__ import annotations

from typing import ClassVar

from molmo_rag.testing.fake_backend import FakeBackend, colour_word, count_bright_bands  # noqa: F401


class PixelBackend(FakeBackend):
    name: ClassVar[str] = "pixels"


class CaptionOnlyBackend(PixelBackend):
    name: ClassVar[str] = "caption-only"
    capabilities: ClassVar = {"image": frozenset({"caption"}), "video": frozenset({"caption"})}


def register(monkeypatch=None) -> None:
    """Make ``--backend pixels`` and ``--backend caption-only`` resolvable (through pytest's monkeypatch when given)."""
    from molmo_rag.backends import base

    for name, cls in (("pixels", "PixelBackend"), ("caption-only", "CaptionOnlyBackend")):
        if monkeypatch is not None:
            monkeypatch.setitem(base.BACKENDS, name, f"{__name__}:{cls}")
        else:
            base.BACKENDS[name] = f"{__name__}:{cls}"
