"""Everything needed to run molmo-rag with no model, no key and no network: for tests,
notebooks, examples and benchmarks (this package is never imported by the core).

* :func:`build_tiny_molmo2` (:mod:`.tiny_molmo2`): a tiny random-weight Molmo2 checkpoint,
  built offline, that runs the real transformers code path (its answers are noise);
* :class:`FakeBackend` (:mod:`.fake_backend`): a backend whose answers are computed from
  the pixels, so tests know the right answers;
* :mod:`.samples`: sample photos, decks, PDFs and videos with known content;
* :mod:`.loopback`: HTTP servers on 127.0.0.1 that speak the WaveSpeed, OpenOctopus and
  OpenAI-compatible protocols, with switchable faults (``python -m
  molmo_rag.testing.loopback wavespeed``).

Names load on first use, so importing this package pulls in neither torch nor numpy.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "build_tiny_molmo2": ".tiny_molmo2",
    "Molmo2Sizes": ".tiny_molmo2",
    "TINY": ".tiny_molmo2",
    "MOLMO2_4B": ".tiny_molmo2",
    "make_tokenizer": ".tiny_molmo2",
    "make_processor": ".tiny_molmo2",
    "make_config": ".tiny_molmo2",
    "random_model": ".tiny_molmo2",
    "FakeBackend": ".fake_backend",
    "register_fake_backend": ".fake_backend",
    "WaveSpeedServer": ".loopback",
    "OpenOctopusServer": ".loopback",
    "OpenAIServer": ".loopback",
    "LoopbackServer": ".loopback",
}
_RENAMED = {"register_fake_backend": "register"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'molmo_rag.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
