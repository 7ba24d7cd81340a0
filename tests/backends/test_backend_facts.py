"""The facts about a backend live on its class (capabilities, price, the environment it
reads, its concurrency option, its default model), and the planner, the cost estimate and
the CLI read them there instead of checking backend names."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

import molmo_rag
from molmo_rag import cost
from molmo_rag.analyze import analyze
from molmo_rag.backends.base import MODEL_ENV, BackendEnv, Request, backend_class, create_backend
from molmo_rag.cli import main
from molmo_rag.cli.common import options_from_flags
from molmo_rag.cost import Price
from molmo_rag.errors import UnsupportedTaskError
from molmo_rag.media.items import MediaItem, VideoFrames
from molmo_rag.run import Run
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask
from molmo_rag.testing.fake_backend import FakeBackend
from molmo_rag.testing.loopback import OpenOctopusServer
from molmo_rag.vocabulary import BACKENDS

PACKAGE = Path(molmo_rag.__file__).parent
FACTS = ("capabilities", "default_model", "price", "env")


def _options_of(cls) -> set[str]:
    """The option names a backend class takes (its Options model, else its constructor)."""
    options = getattr(cls, "Options", None)
    if options is not None:
        return set(options.model_fields)
    return set(inspect.signature(cls).parameters)


def _keys(monkeypatch) -> None:
    """Every hosted backend finds a key and a base URL that goes nowhere in the environment."""
    for name in BACKENDS:
        env = backend_class(name).env
        if env.api_key:
            monkeypatch.setenv(env.api_key, "k" * 12)
        if env.base_url:
            monkeypatch.setenv(env.base_url, "http://127.0.0.1:9")


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_declares_its_facts(name):
    cls = backend_class(name)
    assert cls.name == name
    declared = {fact for klass in cls.__mro__[: cls.__mro__.index(molmo_rag.backends.base.Backend)] for fact in vars(klass)}
    assert set(FACTS) <= declared, f"{name} leaves {set(FACTS) - declared} to the base class"
    assert cls.capabilities and set(cls.capabilities) <= {"image", "video"}
    assert isinstance(cls.price, Price) and isinstance(cls.env, BackendEnv)
    assert isinstance(cls.default_model, str) and cls.default_model
    assert cls.concurrency_option in _options_of(cls)


def test_the_test_backend_declares_its_facts_too():
    assert FakeBackend.concurrency_option in _options_of(FakeBackend)
    assert FakeBackend.env == BackendEnv() and FakeBackend.price == cost.FREE
    assert FakeBackend().model == FakeBackend.default_model


def test_the_model_is_the_one_given_then_the_declared_variable_then_the_default(monkeypatch):
    _keys(monkeypatch)
    monkeypatch.setenv(MODEL_ENV, "my/checkpoint")
    for name in BACKENDS:
        cls = backend_class(name)
        from_env = "my/checkpoint" if cls.env.model == MODEL_ENV else cls.default_model
        assert cls.resolve_model("given/model") == "given/model"
        assert cls.resolve_model() == from_env
        assert create_backend(name).model == from_env
    monkeypatch.setenv(MODEL_ENV, "")  # an empty variable is unset
    assert backend_class("local").resolve_model() == backend_class("local").default_model


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_the_concurrency_flag_sets_the_option_the_backend_declares(monkeypatch, name):
    _keys(monkeypatch)
    run = Run(options_from_flags(backend=name, concurrency=3, cache=False))  # what the CLI makes of --concurrency 3
    try:
        assert getattr(run.backend.options, type(run.backend).concurrency_option) == 3
    finally:
        run.close()


class LanesBackend(FakeBackend):
    """A backend whose concurrency option has a name no code knows."""

    name: ClassVar[str] = "lanes"
    concurrency_option: ClassVar[str | None] = "lanes"
    made: ClassVar[list["LanesBackend"]] = []

    def __init__(self, model: str | None = None, lanes: int = 1):
        super().__init__(model=model, batch_size=lanes)
        LanesBackend.made.append(self)


def test_the_cli_concurrency_reaches_an_option_of_any_name(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(BACKENDS, "lanes", f"{__name__}:LanesBackend")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    code = main(["caption", str(tmp_path / "red.png"), "--backend", "lanes", "-c", "3", "--cache-dir", str(tmp_path / "cache")])
    out, _ = capsys.readouterr()
    assert code == 0 and "red" in out
    assert LanesBackend.made[-1].batch_size == 3


def test_no_backend_name_decides_a_fact():
    checked = [PACKAGE / "cost.py", PACKAGE / "enrich.py", PACKAGE / "engine.py", PACKAGE / "backends" / "base.py", *(PACKAGE / "cli").glob("*.py")]
    names = "|".join(BACKENDS)
    by_name = re.compile(rf"""(==|!=|\bin)\s*(\(|\{{|frozenset\(\{{)?\s*["']({names})["']""")
    for path in checked:
        text = path.read_text()
        assert not by_name.search(text), f"{path.name} checks a backend by name"
        assert "MODEL_ENV_BACKENDS" not in text and "FREE_BACKENDS" not in text
    imported = {
        node.module or "" for node in ast.walk(ast.parse((PACKAGE / "cost.py").read_text())) if isinstance(node, ast.ImportFrom)
    }
    assert not any("backends" in module for module in imported), "cost.py imports from backends"


def _video(duration: float) -> MediaItem:
    frames = VideoFrames(
        frames=np.zeros((2, 8, 8, 3), dtype=np.uint8), timestamps=[0.0, duration / 2],
        fps=1.0, width=8, height=8, duration=duration, total_frames=2, indices=[0, 1],
    )
    return MediaItem.from_frames(frames, source=f"v{duration}.mp4")


@pytest.mark.parametrize("name", ["wavespeed", "openoctopus", "openai", "local"])
def test_an_estimate_costs_what_the_backend_itself_prices(monkeypatch, name):
    _keys(monkeypatch)
    items = [MediaItem.from_pil(Image.new("RGB", (8, 8)), source="a.png"), _video(12.0), _video(61.0)]
    tasks = [Caption(), Scene(), Count(target="cars"), Ask(question="why?"), VideoTask()]
    backend = create_backend(name)
    try:
        own = sum(
            backend.estimate_cost(Request(item, task)) for item in items for task in tasks if backend.supports(task, item.model_input)
        )
        calls = sum(backend.supports(task, item.model_input) for item in items for task in tasks)
        for given in (backend, type(backend)):
            estimate = cost.estimate(given, items, tasks)
            assert estimate.backend == name and estimate.calls == calls
            assert estimate.cost_usd == pytest.approx(own)
    finally:
        backend.close()


def test_an_unsupported_task_is_refused_once_before_any_media_is_read_or_sent(tmp_path):
    # OpenOctopus reads images only: a video task is refused up front, naming who can,
    # before the missing file is looked at (reading it first would report that instead).
    with OpenOctopusServer(api_key="k" * 12) as server:
        backend = create_backend("openoctopus", api_key="k" * 12, base_url=server.base_url)
        sources = [str(tmp_path / "missing.mp4"), str(tmp_path / "also-missing.mp4")]
        with pytest.raises(UnsupportedTaskError, match="local, openai, wavespeed"):
            list(analyze(sources, [VideoTask()], backend))
        assert server.stats.requests == 0


def test_the_cli_refuses_it_in_one_line_with_nothing_sent(monkeypatch, tmp_path, capsys):
    with OpenOctopusServer(api_key="k" * 12) as server:
        monkeypatch.setenv("OPENOCTOPUS_API_KEY", "k" * 12)
        monkeypatch.setenv("OPENOCTOPUS_BASE_URL", server.base_url)
        code = main(["video", str(tmp_path / "missing.mp4"), "--backend", "openoctopus", "--cache-dir", str(tmp_path / "cache")])
        out, err = capsys.readouterr()
        assert server.stats.requests == 0
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 1 and lines == ["molmo-rag: error: backend 'openoctopus' cannot run task 'video'; backends that can: local, openai, wavespeed"]


def test_one_check_says_whether_a_backend_runs_tasks_on_kinds_of_media():
    wavespeed = backend_class("wavespeed")
    wavespeed.check_plan([Count(target="cars")])  # on video, so the plan can run
    with pytest.raises(UnsupportedTaskError, match="local, openai, openoctopus"):
        wavespeed.check_plan([Count(target="cars")], kinds=["image"])
    with pytest.raises(UnsupportedTaskError):
        wavespeed.check_plan([Scene()], kinds=["image"])
    wavespeed.check_plan([Scene()], kinds=["video"], adapt=False)
