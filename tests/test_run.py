"""One run (molmo_rag.run): RunOptions as data (validated, merged, dumped without secrets),
the plan checked on the backend's class before anything is built, who makes and closes the
backend and the result cache (a door given RunOptions closes what it built, a door given a
Run leaves it open for the next call), the default plan's tri-state, the typed sync twins,
and each default written once."""

from __future__ import annotations

import ast
import inspect
import json
import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from molmo_rag import ConfigurationError, Run, RunOptions, UnsupportedTaskError, UsageError
from molmo_rag.analyze import aanalyze, analyze
from molmo_rag.backends import base
from molmo_rag.cache import ResultCache
from molmo_rag.documents import MediaDocument, aiter_documents, iter_documents
from molmo_rag.media import MediaItem, ReaderOptions
from molmo_rag.pipeline import aindex, index, open_index
from molmo_rag.run import run_options
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask
from molmo_rag.testing import FakeBackend

ROOT = Path(__file__).resolve().parents[1]


class ClosingBackend(FakeBackend):
    """The pixel backend, registered as ``closing``, recording each one made and each close."""

    name: ClassVar[str] = "closing"
    made: ClassVar[list["ClosingBackend"]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = 0
        type(self).made.append(self)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def made(monkeypatch) -> list[ClosingBackend]:
    """``backend="closing"`` resolvable; the backends made by name in this test."""
    monkeypatch.setitem(base.BACKENDS, "closing", f"{__name__}:ClosingBackend")
    monkeypatch.setattr(ClosingBackend, "made", [])
    return ClosingBackend.made


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (48, 32), (200, 40, 30)).save(path)
    return path


def is_open(cache: ResultCache) -> bool:
    try:
        cache.failure_count()
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database"
        return False
    return True


def documents(docs) -> list[MediaDocument]:
    docs = list(docs)
    assert docs and all(isinstance(d, MediaDocument) for d in docs), docs
    return docs


# -- options as data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choices", "option"),
    [
        ({"bogus": 1}, "bogus"),
        ({"concurrency": 0}, "concurrency"),
        ({"window": 0}, "window"),
        ({"thumbnail_size": -1}, "thumbnail_size"),
        ({"detail": "huge"}, "detail"),
        ({"count": ["!!"]}, "count"),  # no letters or digits: no payload key for its counts
        ({"reader_options": {"no_such_option": 1}}, "reader_options"),
    ],
)
def test_bad_options_are_one_usage_error_naming_the_field(choices, option):
    with pytest.raises(UsageError) as caught:
        RunOptions(**choices)
    assert caught.value.option == option
    assert option in str(caught.value)


def test_options_are_read_into_their_types():
    options = RunOptions(count="person", ask="What is it?", reader_options={"jpeg_quality": 70}, cache="some/folder")
    assert options.count == ["person"] and options.ask == ["What is it?"]
    assert isinstance(options.reader_options, ReaderOptions) and options.reader_options.jpeg_quality == 70
    assert options.cache == Path("some/folder")
    tasks = RunOptions(tasks=[{"task": "caption", "detail": "high"}]).tasks
    assert tasks == [Caption(detail="high")]


def test_dumps_and_repr_never_show_a_secret():
    secrets = {"api_key": "sk-live-1", "token": "tok-2", "client_secret": "sec-3", "password": "pw-4"}
    options = RunOptions(backend="openai", backend_options={**secrets, "base_url": "http://127.0.0.1:9"}, count="dog")
    shown = [
        repr(options),
        str(options),
        json.dumps(options.model_dump(mode="json")),
        options.model_dump_json(),
        str(options.model_dump()),
    ]
    for text in shown:
        for value in secrets.values():
            assert value not in text
    assert "backend_options" not in repr(options)
    assert options.model_dump(mode="json")["backend_options"] == {"base_url": "http://127.0.0.1:9"}
    assert options.backend_options["api_key"] == "sk-live-1"  # kept for the backend: only never shown
    again = RunOptions(**json.loads(options.model_dump_json()))  # a dump reads back (less its secrets)
    assert again.count == ["dog"] and again.backend == "openai"


def test_a_backend_instance_dumps_as_its_name_and_takes_no_backend_options():
    backend = FakeBackend()
    assert RunOptions(backend=backend).model_dump(mode="json")["backend"] == "fake"
    assert json.loads(RunOptions(backend=backend).model_dump_json())["backend"] == "fake"
    for extra in ({"model": "other"}, {"backend_options": {"delay": 1}}, {"concurrency": 2}):
        with pytest.raises(UsageError) as caught:
            RunOptions(backend=backend, **extra)
        assert caught.value.option == "backend"


def test_choices_on_top_of_options_are_validated_as_one():
    base_options = RunOptions(backend=FakeBackend(), count=["apple"])
    merged = run_options(base_options, {"count": "bee", "detail": "high"})
    assert merged.count == ["bee"] and merged.detail == "high" and merged.backend is base_options.backend
    assert base_options.count == ["apple"] and base_options.detail == "medium"  # the given options are left as they were
    with pytest.raises(UsageError, match="ready Backend"):
        run_options(base_options, {"model": "other"})
    with pytest.raises(UsageError) as caught:
        run_options(base_options, {"thumbnail_size": -5})
    assert caught.value.option == "thumbnail_size"


def test_a_door_runs_the_choices_given_on_top_of_options(photo):
    options = RunOptions(backend=FakeBackend(), cache=False, count=["apple"])
    (doc,) = documents(iter_documents(photo, options, count=["bee"]))
    assert doc.metadata["counts"] == {"bee": 0}
    assert [t for t in (r.task for r in doc.results) if isinstance(t, Count)] == [Count(target="bee")]
    with pytest.raises(UsageError) as caught:
        list(iter_documents(photo, options, window=0))
    assert caught.value.option == "window"


# -- the plan is checked before anything is built ----------------------------------------------


@pytest.fixture
def octopus_inits(monkeypatch) -> list[dict]:
    """OpenOctopus (images only) with no key in the environment; the options each of its
    constructions got."""
    from molmo_rag.backends.openoctopus import OpenOctopusBackend

    monkeypatch.delenv("OPENOCTOPUS_API_KEY", raising=False)
    calls: list[dict] = []
    real = OpenOctopusBackend.__init__

    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(OpenOctopusBackend, "__init__", recording)
    return calls


def test_a_task_the_backend_cannot_run_is_refused_before_it_is_made(octopus_inits):
    with pytest.raises(UnsupportedTaskError) as caught:
        Run(backend="openoctopus", tasks=[VideoTask(task="summary")])
    assert caught.value.backend == "openoctopus" and caught.value.task == "video"
    assert "wavespeed" in caught.value.capable
    assert octopus_inits == []  # not made: no key read (there is none), nothing opened
    # the same backend with a plan it can run is made, and only then misses its key
    with pytest.raises(ConfigurationError, match="OPENOCTOPUS_API_KEY"):
        Run(backend="openoctopus", count=["person"])
    assert len(octopus_inits) == 1


def test_the_backend_named_by_the_environment_is_checked_too(octopus_inits, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_BACKEND", "openoctopus")
    with pytest.raises(UnsupportedTaskError):
        Run(tasks=[VideoTask(task="summary")])
    assert octopus_inits == []


def test_every_door_refuses_the_plan_before_reading_a_source(octopus_inits, tmp_path):
    missing = tmp_path / "not-there.png"
    plan = {"backend": "openoctopus", "tasks": [VideoTask(task="summary")]}
    with pytest.raises(UnsupportedTaskError):
        list(iter_documents(missing, **plan))
    with pytest.raises(UnsupportedTaskError):
        list(iter_documents(missing, RunOptions(**plan)))
    with open_index(":memory:") as store:
        with pytest.raises(UnsupportedTaskError):
            index(missing, RunOptions(**plan), db=store)
    assert octopus_inits == []


def test_analyze_refuses_its_tasks_before_the_backend_is_made(octopus_inits, tmp_path):
    """analyze's own tasks (not the run's plan) are checked on the backend's class too."""
    with pytest.raises(UnsupportedTaskError):
        list(analyze([tmp_path / "not-there.png"], [VideoTask(task="summary")], backend="openoctopus"))
    assert octopus_inits == []


# -- who makes and who closes ------------------------------------------------------------------


def test_a_run_makes_a_named_backend_once_and_closes_it(made, tmp_path):
    run = Run(backend="closing", cache=tmp_path / "cache")
    assert made == [run.backend] and run.model == FakeBackend.default_model
    cache = run.cache
    assert is_open(cache) and run.pictures_folder == tmp_path / "cache" / "pictures"
    run.close()
    assert made[0].closed == 1 and not is_open(cache)
    run.close()  # twice is harmless
    assert made[0].closed == 1

    with Run(backend="closing", concurrency=3) as run:
        assert run.backend.batch_size == 3  # concurrency is the backend's own option
    assert len(made) == 2 and made[1].closed == 1 and not is_open(run.cache)


def test_what_was_handed_in_ready_is_left_open(tmp_path):
    backend = ClosingBackend()
    cache = ResultCache(tmp_path / "cache")
    with Run(backend=backend, cache=cache) as run:
        assert run.backend is backend and run.cache is cache
    assert backend.closed == 0 and is_open(cache)
    cache.close()


def test_a_run_closes_what_it_made_when_building_fails(made, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError, match="result cache"):
        Run(backend="closing", cache=blocker)
    assert len(made) == 1 and made[0].closed == 1


def test_a_door_given_options_closes_what_it_built(made, photo, tmp_path):
    documents(iter_documents(photo, RunOptions(backend="closing", cache=tmp_path / "c1")))
    documents(iter_documents(photo, backend="closing", cache=False))
    results = list(analyze([photo], [Caption()], RunOptions(backend="closing", cache=False)))
    assert [type(r).__name__ for r in results] == ["Result"]
    with open_index(":memory:") as store:
        summary = index(photo, RunOptions(backend="closing", cache=False), db=store)
        assert summary.items == 1 and not summary.failed
    assert len(made) == 4 and [b.closed for b in made] == [1, 1, 1, 1]


def test_an_early_break_still_closes_what_the_door_built(made, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        Image.new("RGB", (32, 32), (40 * n, 90, 200)).save(folder / f"{n}.png")
    for doc in iter_documents(folder, backend="closing", cache=False):
        break
    assert len(made) == 1 and made[0].closed == 1


def test_a_door_given_a_run_leaves_it_open_for_the_next_call(made, photo):
    with Run(backend="closing", cache=False) as run:
        (doc,) = documents(iter_documents(photo, run))
        with open_index(":memory:") as store:
            summary = index(photo, run, db=store)
            assert summary.items == 1 and store.count() == 1
            assert set(store.all_points()) == {doc.source}
        results = list(analyze([photo], [Scene()], run))
        assert [r.text for r in results] == [doc.metadata["scene"]]
        assert len(made) == 1 and made[0].closed == 0
        assert made[0].calls == 2 + 2 + 1  # one backend served the three calls (no cache: each asked again)
    assert made[0].closed == 1


def test_a_door_given_a_run_refuses_choices_on_top(photo):
    with Run(backend=FakeBackend(), cache=False) as run:
        with pytest.raises(UsageError) as caught:
            list(iter_documents(photo, run, count=["cat"]))
        assert caught.value.option == "count" and "RunOptions" in str(caught.value)
        with pytest.raises(UsageError), open_index(":memory:") as store:
            index(photo, run, db=store, detail="high")
        with pytest.raises(UsageError):
            list(analyze([photo], [Caption()], run, ordered=True))
        documents(iter_documents(photo, run))  # the run is still usable


# -- the plan: default_tasks, counts and questions ---------------------------------------------


def plan(**choices) -> list:
    item = MediaItem.from_pil(Image.new("RGB", (16, 16), (10, 200, 10)))
    with Run(backend=FakeBackend(), cache=False, **choices) as run:
        return run.planner.plan(item)


@pytest.mark.parametrize(
    ("choices", "want"),
    [
        ({}, [Caption(detail="medium"), Scene()]),
        ({"detail": "low"}, [Caption(detail="low"), Scene()]),
        ({"tasks": [Caption(detail="high")]}, [Caption(detail="high")]),
        ({"tasks": [Caption(detail="high")], "default_tasks": True}, [Caption(detail="medium"), Scene(), Caption(detail="high")]),
        ({"default_tasks": False}, []),
        ({"default_tasks": False, "count": "tree"}, [Count(target="tree")]),
        ({"count": "tree", "ask": "Why?"}, [Caption(detail="medium"), Scene(), Count(target="tree"), Ask(question="Why?")]),
        ({"tasks": [Scene()], "count": "tree", "ask": "Why?"}, [Count(target="tree"), Ask(question="Why?"), Scene()]),
    ],
)
def test_the_default_plan_unless_tasks_are_given(choices, want):
    assert plan(**choices) == want


def test_tasks_of_ones_own_run_alone_through_a_door(photo):
    (doc,) = documents(iter_documents(photo, backend=FakeBackend(), cache=False, tasks=[Caption(detail="high")]))
    assert [r.task for r in doc.results] == [Caption(detail="high")]
    assert doc.metadata["caption"] and not doc.metadata.get("scene")


def test_a_run_engine_runs_exactly_the_tasks_given(photo):
    with Run(backend=FakeBackend(), cache=False, count="x") as run:
        results = list(analyze([photo], [Scene()], run))
    assert [r.task for r in results] == [Scene()]  # analyze runs its tasks, not the run's plan


# -- the sync twins ----------------------------------------------------------------------------

TWINS = [(iter_documents, aiter_documents), (index, aindex), (analyze, aanalyze)]


@pytest.mark.parametrize(("twin", "door"), TWINS, ids=[t.__name__ for t, _ in TWINS])
def test_a_sync_twin_has_its_async_doors_signature(twin, door):
    mine, theirs = inspect.signature(twin), inspect.signature(door)
    shape = lambda sig: [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]  # noqa: E731
    assert shape(mine) == shape(theirs)
    assert "run" in mine.parameters and mine.parameters["run"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert next(reversed(mine.parameters.values())).kind is inspect.Parameter.VAR_KEYWORD  # **choices
    assert twin.__name__ == door.__name__.removeprefix("a")
    if inspect.isasyncgenfunction(door):
        assert str(theirs.return_annotation).startswith("AsyncIterator[")
        assert str(mine.return_annotation) == str(theirs.return_annotation).replace("AsyncIterator", "Iterator", 1)
    else:
        assert mine.return_annotation == theirs.return_annotation == "RunSummary"
    # what tools reading __annotations__ (get_type_hints, docs) see agrees with the signature
    assert twin.__annotations__ == {**door.__annotations__, "return": mine.return_annotation}
    assert door.__annotations__["return"] == theirs.return_annotation


async def test_the_sync_twins_work_inside_a_running_event_loop(photo):
    with Run(backend=FakeBackend(), cache=False) as run:
        (doc,) = documents(iter_documents(photo, run))
        assert [r.task for r in analyze([photo], [Caption()], run)] == [Caption()]
        with open_index(":memory:") as store:
            assert index(photo, run, db=store).items == 1
        # and the async doors, on this loop, with the same run
        assert [d.id async for d in aiter_documents(photo, run)] == [doc.id]
        with open_index(":memory:") as store:
            assert (await aindex(photo, run, db=store)).items == 1


# -- each default written once -----------------------------------------------------------------

OWNERS = {"molmo_rag/run.py", "molmo_rag/enrich.py", "molmo_rag/tasks.py"}
"""Where the run's defaults are written (RunOptions; EnrichOptions; Caption's detail)."""
PARTS = {"molmo_rag/engine.py", "molmo_rag/cache.py"}
"""The parts a Run assembles, each usable alone: their keyword defaults say what the part
does when nobody asks (an Engine hands items out as they finish, a bare ResultCache does
not re-send remembered failures); the Run passes every value of its own."""
VENDOR_FAKES = "molmo_rag/testing/loopback/"
"""Stand-ins for the vendors' servers: their defaults are the vendors' (``detail_level``
absent is "medium" on WaveSpeed), not ours."""


def _sources() -> list[Path]:
    core = list((ROOT / "molmo_rag").rglob("*.py"))
    packages = [p for p in (ROOT / "integrations").glob("*/**/*.py") if "tests" not in p.relative_to(ROOT).parts]
    return sorted(
        p for p in core + packages
        if (rel := p.relative_to(ROOT).as_posix()) not in OWNERS | PARTS and not rel.startswith(VENDOR_FAKES)
    )


def _literal(node: ast.expr | None) -> tuple[bool, object]:
    """(True, value) for a literal default, also inside ``Field(...)`` or ``typer.Option(...)``."""
    if node is None:
        return False, None
    if isinstance(node, ast.Call):
        named = {k.arg: k.value for k in node.keywords}
        if "default" in named:
            return _literal(named["default"])
        factory = named.get("default_factory")
        if isinstance(factory, ast.Name) and factory.id in ("list", "dict", "tuple"):
            return True, {"list": [], "dict": {}, "tuple": ()}[factory.id]
        first = node.args[0] if node.args else None
        if first is not None and not (isinstance(first, ast.Constant) and str(first.value).startswith("-")):
            return _literal(first)  # Field(128, ...); not typer.Option("--flag", ...)
        return False, None
    try:
        return True, ast.literal_eval(node)
    except ValueError:
        return False, None


def _same(value: object, default: object) -> bool:
    empty = (list, tuple, set, frozenset)
    if isinstance(value, empty) and isinstance(default, empty):
        return not value and not default  # count=() restates count=[]
    return type(value) is type(default) and value == default


def _defaults(tree: ast.AST):
    """(name, default node, line) of every parameter and class-level field."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                yield arg.arg, default, arg.lineno
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                yield arg.arg, default, arg.lineno
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    yield stmt.target.id, stmt.value, stmt.lineno
                elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    yield stmt.targets[0].id, stmt.value, stmt.lineno


def restated_defaults() -> list[str]:
    defaults = {
        name: value
        for name, info in RunOptions.model_fields.items()
        if (value := info.get_default(call_default_factory=True)) is not None
    }
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node, line in _defaults(tree):
            if name in defaults:
                ok, value = _literal(node)
                if ok and _same(value, defaults[name]):
                    found.append(f"{path.relative_to(ROOT).as_posix()}:{line} {name}={value!r}")
    return found


def test_the_checker_sees_a_restated_default():
    tree = ast.parse(
        "def door(src, *, detail='medium', thumbnail_size=128, count=(), window=None, ordered=True): ...\n"
        "class Reader:\n    no_cache: bool = Field(default=False)\n    thumbnail_size: int = Field(64)\n"
        "    backend_options: dict = Field(default_factory=dict)\n"
    )
    defaults = {"detail": "medium", "thumbnail_size": 128, "count": [], "no_cache": False, "backend_options": {}}
    hits = sorted(name for name, node, _ in _defaults(tree) if name in defaults and _same(_literal(node)[1], defaults[name]))
    assert hits == ["backend_options", "count", "detail", "no_cache", "thumbnail_size"]


def test_each_run_default_is_written_once():
    """No door, CLI command or framework class restates a default of RunOptions: each reads
    it from there (a parameter defaulting to None, or no default), so changing it once
    changes it everywhere."""
    assert restated_defaults() == []
