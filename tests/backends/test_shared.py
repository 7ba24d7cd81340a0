"""One backend per process per configuration; backends and caches that pickle as what
they were made from, and are rebuilt (once) where they land."""

from __future__ import annotations

import multiprocessing
import pickle
import threading

import httpx
import pytest

from molmo_rag import ResultCache, Run, RunOptions, UsageError, close_shared_backends
from molmo_rag.backends.base import Backend
from molmo_rag.backends.openai import OpenAIBackend
from molmo_rag.backends.shared import shared_backends
from molmo_rag.testing import FakeBackend


@pytest.fixture(autouse=True)
def fresh():
    close_shared_backends()
    yield
    close_shared_backends()


class Closing(FakeBackend):
    closed = 0

    def close(self) -> None:
        Closing.closed += 1


def test_a_backend_pickles_as_its_configuration_and_lands_on_the_shared_one():
    made = FakeBackend(delay=0.01, fail_on="x")
    copy = pickle.loads(pickle.dumps(made))
    assert copy is not made and type(copy) is FakeBackend
    assert copy.made_with() == {"delay": 0.01, "fail_on": "x"} and copy.delay == 0.01
    assert pickle.loads(pickle.dumps(made)) is copy  # one per configuration in this process
    assert pickle.loads(pickle.dumps(FakeBackend(delay=0.02))) is not copy


def test_a_backend_made_with_what_cannot_travel_says_so():
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="sk-secret-1", http_client=httpx.AsyncClient())
    with pytest.raises(UsageError, match="cannot be copied") as caught:
        pickle.dumps(backend)
    assert "sk-secret-1" not in str(caught.value)


def test_runs_that_share_get_one_backend_and_leave_it_open(monkeypatch):
    from molmo_rag.backends import base

    made: list[Backend] = []

    class Counted(Closing):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setitem(base.BACKENDS, "counted", f"{__name__}:_counted")
    globals()["_counted"] = Counted
    runs = [Run(backend="counted", share_backend=True, cache=False) for _ in range(3)]
    assert len(made) == 1 and all(r.backend is made[0] for r in runs)
    other = Run(backend="counted", share_backend=True, backend_options={"delay": 0.5}, cache=False)
    assert len(made) == 2 and other.backend is not made[0]  # another configuration, another backend
    own = Run(backend="counted", cache=False)  # not shared: this run's own
    assert len(made) == 3 and own.backend is made[2]
    Closing.closed = 0
    for run in [*runs, other, own]:
        run.close()
    assert Closing.closed == 1  # only the run's own; the shared ones live on
    assert shared_backends() == made[:2]
    close_shared_backends()
    assert Closing.closed == 3 and shared_backends() == []


def test_sharing_is_safe_from_many_threads(monkeypatch):
    from molmo_rag.backends import base

    made = []

    class Slow(FakeBackend):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setitem(base.BACKENDS, "slow", f"{__name__}:_slow")
    globals()["_slow"] = Slow
    backends = []
    threads = [threading.Thread(target=lambda: backends.append(Run(backend="slow", share_backend=True, cache=False).backend)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(b is made[0] for b in backends)


def test_run_options_dump_a_ready_backend_as_its_name_and_plain_options_without_secrets():
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="sk-secret-2", concurrency=3)
    dumped = RunOptions(backend=backend).model_dump(mode="json")
    assert dumped["backend"] == "openai"
    assert dumped["backend_options"] == {"base_url": "http://127.0.0.1:9/v1", "concurrency": 3}
    assert "sk-secret-2" not in str(dumped)


def test_a_result_cache_pickles_as_its_folder(tmp_path):
    cache = ResultCache(tmp_path / "c", read=False, retry_failed=True)
    cache.put("k", media_id="m", backend="fake", model="m", task="caption", text="t", fields={"caption": "t"})
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.directory == cache.directory and copy.read is False and copy.retry_failed is True
    copy.read = True
    assert copy.get("k").text == "t"
    cache.close()
    copy.close()


def _made_with_in_a_worker(payload: bytes) -> dict:
    backend = pickle.loads(payload)
    return {"type": type(backend).__name__, "options": backend.made_with(), "same": pickle.loads(payload) is backend}


def test_a_backend_travels_to_another_process():
    payload = pickle.dumps(FakeBackend(delay=0.03))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        answer = pool.apply(_made_with_in_a_worker, (payload,))
    assert answer == {"type": "FakeBackend", "options": {"delay": 0.03}, "same": True}
