"""The video package's modules import one way: each only those below it in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

import molmo_rag.media.video as video

LAYERS = [
    "ffmpeg_errors",
    "container",
    "probe",
    "gaps",
    "scenes",
    "segments",
    "frames",
    "clips",
    "loader",
    "reader",
]
PACKAGE = Path(video.__file__).parent


def _siblings_imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_every_module_of_the_package_has_a_layer():
    assert {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"} == set(LAYERS)


def test_modules_import_only_the_layers_below_them():
    for rank, module in enumerate(LAYERS):
        above = _siblings_imported(module) - set(LAYERS[:rank])
        assert not above, f"{module} imports {sorted(above)}, which are not below it"


def test_the_package_keeps_the_names_it_had_as_one_module():
    from molmo_rag.media.video import CLIP_PRESET, REMUX_MAX_BYTES_PER_SECOND, clips

    for name in video.__all__:
        assert getattr(video, name).__module__.startswith("molmo_rag.media.video.")
    assert (CLIP_PRESET, REMUX_MAX_BYTES_PER_SECOND) == (clips.CLIP_PRESET, clips.REMUX_MAX_BYTES_PER_SECOND)
