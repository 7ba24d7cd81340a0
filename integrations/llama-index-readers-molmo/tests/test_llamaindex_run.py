"""The package on the core's one run: the reader, the extractor and the reranker are
``molmo_rag.RunOptions`` (the core's fields, defaults and checks), each makes ONE
``molmo_rag.Run`` reused by every call (one backend), a ready ``Run`` is shared and left
open, and serialisation keeps the options but never a secret."""

from __future__ import annotations

import json

import pytest
from llama_index.core.schema import ImageNode
from llama_index.readers.molmo import MolmoExtractor, MolmoGroundedReranker, MolmoReader

from molmo_rag import Run, RunOptions, UsageError, VideoTask
from molmo_rag.testing import FakeBackend


@pytest.fixture
def made(monkeypatch) -> dict[str, list[FakeBackend]]:
    """Every FakeBackend made (by name, through the core's create_backend) and closed."""
    seen: dict[str, list[FakeBackend]] = {"made": [], "closed": []}
    init, close = FakeBackend.__init__, FakeBackend.close

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen["made"].append(self)

    def recording_close(self):
        seen["closed"].append(self)
        close(self)

    monkeypatch.setattr(FakeBackend, "__init__", recording_init)
    monkeypatch.setattr(FakeBackend, "close", recording_close)
    return seen


def test_one_backend_across_load_data_calls_until_close(li_media, made):
    photos = li_media / "photos"
    # share_backend=False: the reader's run owns its backend and close() releases it
    reader = MolmoReader(backend="fake", count=["person"], backend_options={"batch_size": 2}, share_backend=False)
    assert made["made"] == []  # nothing is made before the first call
    (first,) = reader.load_data(photos / "coffee.png")
    (second,) = reader.load_data(photos / "chelsea.png")
    (backend,) = made["made"]  # one backend served both calls
    assert reader.get_backend() is backend and backend.batch_size == 2
    assert backend.calls == 2 * 3 and first.metadata["counts"].keys() == second.metadata["counts"].keys() == {"person"}
    reader.close()
    assert made["closed"] == [backend]
    reader.load_data(photos / "coffee.png")  # after close: a new run, answered from the cache
    assert len(made["made"]) == 2 and made["made"][1].calls == 0
    reader.close()


def test_components_share_the_process_backend_by_default(li_media, made):
    from molmo_rag import close_shared_backends

    photos = li_media / "photos"
    reader, other = MolmoReader(backend="fake", scene=False), MolmoReader(backend="fake", count=["person"])
    extractor = MolmoExtractor(backend="fake", scene=False)
    reader.load_data(photos / "coffee.png")
    other.load_data(photos / "chelsea.png")
    extractor.extract([ImageNode(image_path=str(photos / "astronaut.png"))])
    (backend,) = made["made"]  # one configuration: one backend in this process
    assert reader.get_backend() is other.get_backend() is extractor.get_backend() is backend
    different = MolmoReader(backend="fake", backend_options={"batch_size": 1})
    assert different.get_backend() is not backend and len(made["made"]) == 2  # another configuration
    for component in (reader, other, extractor, different):
        component.close()
    assert made["closed"] == []  # the shared one lives on for the next component
    close_shared_backends()
    assert backend in made["closed"]


async def test_async_and_sync_calls_share_the_run(li_media, made):
    photos = li_media / "photos"
    reader = MolmoReader(backend="fake", scene=False)
    assert len(await reader.aload_data(photos / "coffee.png")) == 1
    assert len(reader.load_data(photos / "chelsea.png")) == 1
    assert len([d async for d in reader.alazy_load_data(photos / "astronaut.png")]) == 1
    (backend,) = made["made"]
    assert backend.calls == 3  # caption only, one per photo, on the one backend
    reader.close()


def test_extractor_makes_one_backend_for_every_batch(li_media, made):
    photos = li_media / "photos"
    extractor = MolmoExtractor(backend="fake", scene=False, share_backend=False)
    for name in ("coffee.png", "chelsea.png"):
        (metadata,) = extractor.extract([ImageNode(image_path=str(photos / name))])
        assert metadata["caption"]
    (backend,) = made["made"]
    assert backend.calls == 2
    extractor.close()
    assert made["closed"] == [backend]


def test_reader_extractor_and_reranker_share_one_run(li_media, made):
    photos = li_media / "photos"
    options = RunOptions(backend="fake", count=["person"])
    with Run(options) as run:
        reader, extractor = MolmoReader(run, keep_image=True), MolmoExtractor(run, fill_text=False)
        reranker = MolmoGroundedReranker(run, top_n=1)
        assert reader.count == extractor.count == ["person"] and reader.backend == "fake"  # the run's options
        (doc,) = reader.load_data(photos / "coffee.png")
        (metadata,) = extractor.extract([ImageNode(image_path=str(photos / "chelsea.png"))])
        assert doc.metadata["counts"].keys() == metadata["counts"].keys() == {"person"}
        (backend,) = made["made"]
        assert reader.get_backend() is extractor.get_backend() is run.backend is backend
        assert backend.calls == 2 * 3
        for component in (reader, extractor, reranker):
            component.close()  # a Run given is left open: whoever made it closes it
        assert made["closed"] == []
        reader.load_data(photos / "coffee.png")  # still usable: from the cache
    assert made["closed"] == [backend] and backend.calls == 6


def test_options_given_as_run_options():
    options = RunOptions(backend="fake", count=["person"], window=3)
    reader = MolmoReader(options, scene=False, detail="high")
    assert (reader.backend, reader.count, reader.window, reader.detail) == ("fake", ["person"], 3, "high")
    assert MolmoReader(options, count=["car"]).count == ["car"]  # keywords on top of the options
    with Run(RunOptions(backend=FakeBackend())) as run, pytest.raises(UsageError, match="count") as info:
        MolmoExtractor(run, count=["car"])  # a built run's plan cannot change
    assert info.value.option == "count"


@pytest.mark.parametrize("component", [MolmoReader, MolmoExtractor, MolmoGroundedReranker])
def test_unknown_and_bad_options_are_errors_naming_them(component):
    with pytest.raises(UsageError, match=rf"{component.__name__} options colour") as info:
        component(colour="red")
    assert info.value.option == "colour"
    with pytest.raises(UsageError, match="window") as info:
        component(window=0)
    assert info.value.option == "window"


def test_questions_is_ask():
    reader = MolmoReader(questions="Is it outdoors?")  # one string or many, as the core takes them
    assert reader.ask == reader.questions == ["Is it outdoors?"] and "questions" not in reader.to_dict()
    with pytest.raises(UsageError, match="questions or ask") as info:
        MolmoReader(questions=["a?"], ask=["b?"])
    assert info.value.option == "questions"


def test_serialisation_round_trip_keeps_options_and_drops_secrets(tmp_path):
    reader = MolmoReader(
        backend="wavespeed", backend_options={"api_key": "sk-never-stored", "base_url": "http://127.0.0.1:9"},
        count=["person"], questions=["Is it outdoors?"], tasks=[VideoTask(task="summary")], default_tasks=True,
        scene=False, detail="high", reader_options={"segment_mode": "fixed"}, cache=tmp_path / "c", no_cache=True,
        window=4, keep_image=True, raise_on_error=True,
    )
    data = reader.to_dict()
    text = reader.to_json()
    assert "sk-never-stored" not in text and "sk-never-stored" not in repr(reader)
    assert data["class_name"] == "MolmoReader" and data["backend_options"] == {"base_url": "http://127.0.0.1:9"}
    again = MolmoReader.from_json(text)
    assert again.backend_options == {"base_url": "http://127.0.0.1:9"}
    for name in ("backend", "count", "ask", "tasks", "default_tasks", "scene", "detail", "reader_options", "cache",
                 "no_cache", "window", "keep_image", "raise_on_error"):
        assert getattr(again, name) == getattr(reader, name), name
    assert again.run_options().explicit_tasks() == reader.run_options().explicit_tasks()
    assert MolmoReader.from_dict(data).to_dict() == data

    extractor = MolmoExtractor(backend="fake", count=["car"], backend_options={"token": "t0k3n", "batch_size": 2})
    assert "t0k3n" not in extractor.to_json()
    assert MolmoExtractor.from_json(extractor.to_json()).to_dict() == extractor.to_dict()
    reranker = MolmoGroundedReranker(backend="fake", top_n=3, count_labels=["person"], cache=False)
    back = MolmoGroundedReranker.from_dict(reranker.to_dict())
    assert (back.backend, back.top_n, back.count_labels, back.cache) == ("fake", 3, ["person"], False)


def test_caption_and_scene_shape_the_core_plan():
    both = MolmoReader(count=["person"]).run_options()
    assert type(both) is RunOptions and both.runs_default_plan and both.count == ["person"]
    caption = MolmoReader(scene=False, detail="high", tasks=[VideoTask(task="summary")], default_tasks=True).run_options()
    assert not caption.runs_default_plan
    assert [t.key() for t in caption.tasks] == ["caption(detail=high)", VideoTask(task="summary").key()]
    own = MolmoReader(scene=False, tasks=[VideoTask(task="summary")]).run_options()  # the core's rule: tasks replace the plan
    assert not own.runs_default_plan and [t.key() for t in own.tasks] == [VideoTask(task="summary").key()]
