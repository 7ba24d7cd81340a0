"""The contract every backend honours, run through the same cases.

``local`` runs the real transformers code on the tiny Molmo2 checkpoint; the REST backends
run against their loopback servers on 127.0.0.1. Text from the tiny random model is noise,
so these cases check the shape of what comes back, never its wording.
"""

from __future__ import annotations

import pytest

from molmo_rag import Ask, Caption, Count, Scene, VideoTask
from molmo_rag.backends.base import BACKENDS, Request, Result, backend_class, get_backend
from molmo_rag.errors import CorruptMediaError, MolmoRagError, UnsupportedTaskError
from molmo_rag.testing.loopback import SERVERS
from molmo_rag.media.items import MediaItem

from rest_helpers import FAST, images, video_item

TASKS = [Caption(detail="low"), Ask(question="What is shown?"), Count(target="squares"), Scene(), VideoTask(task="summary")]
FIELDS = {
    "caption": {"caption": str, "detail": str},
    "ask": {"question": str, "answer": str},
    "count": {"target": str, "points": list},
    "scene": {"scene": str},
    "video": {"task": str, "answer": str},
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request, tiny_molmo2_path):
    name = request.param
    if name == "local":
        backend = get_backend("local", model=str(tiny_molmo2_path), batch_size=4, num_frames=4, max_new_tokens=8)
        yield backend
        backend.close()
        return
    with SERVERS[name](api_key="contract-key") as server:
        backend = get_backend(name, base_url=server.base_url, api_key="contract-key", **FAST)
        yield backend
        backend.close()


class _BrokenImage:
    """A loader whose file turned out to be damaged when finally read."""

    content_hash = "broken"

    def open(self):
        raise CorruptMediaError("damaged image", source="broken.jpg")

    def encoded(self):
        raise CorruptMediaError("damaged image", source="broken.jpg")


def _check_result(result, request: Request, backend_name: str) -> None:
    assert isinstance(result, Result), result
    doc = result.to_json()
    for key in ("source", "kind", "backend", "model", "media_id", "cost_usd"):
        assert key in doc
    assert doc["backend"] == backend_name and doc["model"]
    assert doc["cost_usd"] >= 0
    for key, typ in FIELDS[request.task.name].items():
        assert isinstance(doc[key], typ), (key, doc)
    if request.task.name == "count":
        assert doc["count"] is None or isinstance(doc["count"], int)
        for point in doc["points"]:
            assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
            if request.item.model_input == "video" and point["t"] is not None:
                assert point["t"] >= request.item.start  # moved into video time
    if request.item.kind == "video_segment":
        assert doc["start"] == request.item.start and doc["end"] == request.item.end


@pytest.mark.parametrize("media", ["image", "video"])
def test_every_task_runs_or_names_who_can(backend, media):
    item = images(1)[0] if media == "image" else video_item(start=12.0)
    requests = [Request(item, task) for task in TASKS]
    results = backend.run(requests)
    assert len(results) == len(requests)
    for request, result in zip(requests, results):
        if backend.supports(request.task, media):
            _check_result(result, request, backend.name)
        else:
            assert isinstance(result, UnsupportedTaskError)
            capable = [n for n in BACKENDS if backend_class(n).supports(request.task, media)]
            assert result.capable == sorted(capable) and backend.name not in result.capable


def test_each_item_of_a_batch_gets_its_own_result(backend):
    items = images(5)
    results = backend.run([Request(item, Caption()) for item in items])
    assert [r.item for r in results] == items
    for item, result in zip(items, results):
        _check_result(result, Request(item, Caption()), backend.name)


def test_a_broken_item_fails_alone(backend):
    good = images(3)
    broken = MediaItem(kind="image", source="broken.jpg", media_id="broken", loader=_BrokenImage())
    items = [good[0], broken, good[1], good[2]]
    results = backend.run([Request(item, Caption()) for item in items])
    assert isinstance(results[1], MolmoRagError) and "damaged" in str(results[1])
    for i in (0, 2, 3):
        assert isinstance(results[i], Result)


def test_capabilities_are_declared_for_both_inputs(backend):
    declared = backend.capabilities
    assert set(declared) <= {"image", "video"}
    assert "caption" in declared.get("image", ())
