"""A deterministic offline backend whose answers are computed from the pixels.

For tests, notebooks and examples that need *right* answers without a model: caption: the
dominant colour word of the image (or of the video's middle frame) and its brightness;
scene: bright/dark and warm/cool; count: one Molmo2 point per bright column band (a run of
columns holding bright pixels), in the real ``<points>`` markup so the real parser reads
it; ask: the mean colour as numbers. It counts its calls (a cached run makes none), can
sleep per batch to stand in for a slow model, and can refuse sources by name.

It runs through the same :class:`~molmo_rag.backends.base.BatchedBackend` machinery as the
local Molmo2 backend (batching, sessions, per-request failures).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..backends.base import Answer, BackendEnv, BatchedBackend, Request
from ..cost import FREE, Price
from ..errors import BackendError
from ..tasks import Ask, Caption, Count, Scene, VideoTask

__all__ = ["FakeBackend", "EnvFakeBackend", "register", "colour_word", "count_bright_bands"]

_COLOURS = {
    "red": (200, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 200),
    "yellow": (220, 210, 40),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "orange": (230, 130, 30),
    "purple": (120, 40, 150),
}


def colour_word(rgb: np.ndarray) -> str:
    return min(_COLOURS, key=lambda name: float(np.sum((np.array(_COLOURS[name]) - rgb) ** 2)))


def _pixels(request: Request) -> np.ndarray:
    item = request.item
    if item.model_input == "video":
        frames = item.frames(8, 2.0).frames
        return frames[len(frames) // 2]
    return np.asarray(item.image().convert("RGB"))


def count_bright_bands(pixels: np.ndarray) -> int:
    """How many separate runs of columns hold bright pixels (each 'object' is one run)."""
    bright = (pixels.astype(int).sum(axis=2) > 600).any(axis=0)
    edges = np.diff(np.concatenate([[0], bright.astype(int), [0]]))
    return int((edges == 1).sum())


class FakeBackend(BatchedBackend):
    """Answers from pixel statistics (see the module docstring)."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar = {
        "image": frozenset({"caption", "scene", "count", "ask"}),
        "video": frozenset({"caption", "scene", "count", "ask", "video"}),
    }
    default_model: ClassVar[str] = "pixel-stats-1"
    price: ClassVar[Price] = FREE
    env: ClassVar[BackendEnv] = BackendEnv()  # reads nothing: a test is what it is told
    concurrency_option: ClassVar[str | None] = "batch_size"

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 4,
        delay: float = 0.0,
        fail_on: str | None = None,
        ledger: str | None = None,
        die_once: str | None = None,
    ):
        self.model = model or self.default_model
        self.batch_size = batch_size
        self.delay = delay
        self.fail_on = fail_on  # a source substring whose requests fail (BackendError)
        self.ledger = ledger
        """A file every answered request appends one line to (``media_id<TAB>task``, with
        O_APPEND): what was asked, counted across processes (Ray workers, killed drivers)."""
        self.die_once = die_once
        """A marker file: the first process to get a batch creates it and kills itself
        with SIGKILL (a worker lost mid-run); every later batch, anywhere, is answered."""
        self.calls = 0
        self._lock = threading.Lock()

    def generate_batch(self, requests: Sequence[Request]) -> list[Answer]:
        if self.die_once:
            try:
                os.close(os.open(self.die_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        with self._lock:
            self.calls += len(requests)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on and any(self.fail_on in r.item.source for r in requests):
            raise BackendError(f"refused {self.fail_on}", backend=self.name)
        answers = [self._answer(r) for r in requests]
        if self.ledger:
            lines = "".join(f"{r.item.media_id}\t{r.task.name}\n" for r in requests).encode()
            fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines)
            finally:
                os.close(fd)
        return answers

    def _answer(self, request: Request) -> Answer:
        pixels = _pixels(request)
        mean = pixels.reshape(-1, 3).mean(axis=0)
        word = colour_word(mean)
        light = "bright" if mean.mean() > 110 else "dark"
        task = request.task
        media = request.item.model_input
        if isinstance(task, Caption):
            text = f"A {light} {word} {media} of {pixels.shape[1]}x{pixels.shape[0]} pixels."
        elif isinstance(task, Scene):
            warmth = "warm" if mean[0] > mean[2] else "cool"
            text = f"A {warmth} {light} setting dominated by {word}."
        elif isinstance(task, (Count, VideoTask)):
            target = getattr(task, "target", None) or getattr(task, "text", None) or "objects"
            n = count_bright_bands(pixels)
            prefix = "0.0" if media == "video" else "1"
            coords = " ".join(f"{i + 1} {100 + 50 * i} 500" for i in range(n))
            text = f'Counting the <points coords="{prefix} {coords}">{target}</points> shows a total of {n}.' if n else "There are none."
        elif isinstance(task, Ask):
            text = f"The mean colour is {word} ({int(mean[0])}, {int(mean[1])}, {int(mean[2])})."
        else:  # pragma: no cover
            raise BackendError(f"unknown task {task!r}", backend=self.name)
        return Answer(text=text, model=self.model)




class EnvFakeBackend(FakeBackend):
    """A FakeBackend whose default options come from ``MOLMO_RAG_FAKE_OPTIONS`` (JSON, e.g.
    ``{"delay": 0.2, "ledger": "/tmp/ledger"}``), for a CLI subprocess whose backend is
    made by name, in that process and in every Ray worker (which get the driver's
    ``MOLMO_RAG_*`` variables); options given explicitly win."""

    def __init__(self, **options):
        import json

        defaults = json.loads(os.environ.get("MOLMO_RAG_FAKE_OPTIONS") or "{}")
        super().__init__(**{**defaults, **options})



def register(name: str = "fake", monkeypatch=None) -> None:
    """Make ``--backend NAME`` (and ``create_backend(NAME)``) resolve to FakeBackend; with
    pytest's ``monkeypatch`` the registration is undone after the test."""
    from ..backends import base

    target = f"{__name__}:FakeBackend"
    if monkeypatch is not None:
        monkeypatch.setitem(base.BACKENDS, name, target)
    else:
        base.BACKENDS[name] = target
