"""Sync front doors over the async core (molmo_rag.syncio): with and without a running event
loop (Jupyter runs cells inside one), clean early exits, errors and interrupts passed on
with the async side's clean-up run, and work that goes on while the caller holds an item."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time

import pytest

from molmo_rag.syncio import in_running_loop, iterate_sync, run_sync


def threads() -> int:
    """Live threads, less tqdm's process-wide monitor (started once by any progress bar)."""
    return sum(1 for t in threading.enumerate() if t.name != "tqdm_monitor")


def settled(before: int, within: float = 5.0) -> bool:
    """True once no thread started since ``before`` is left (a short wait for joins)."""
    deadline = time.monotonic() + within
    while threads() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return threads() <= before


def inside_a_loop(fn):
    """Call ``fn`` from a coroutine run by asyncio.run, as code in a notebook cell does."""

    async def main():
        assert in_running_loop()
        loop = asyncio.get_running_loop()
        value = fn()
        assert asyncio.get_running_loop() is loop  # the caller's loop is left as it was
        return value

    return asyncio.run(main())


def plainly(fn):
    return fn()


BOTH = pytest.mark.parametrize("call", [plainly, inside_a_loop], ids=["no-loop", "in-loop"])


class Recorder:
    """An async generator factory that records its clean-up and where it ran."""

    def __init__(self, n: int = 3, fail_at: int | None = None, pause: float = 0.0):
        self.n, self.fail_at, self.pause = n, fail_at, pause
        self.closed = False
        self.threads: set[int] = set()

    async def gen(self):
        try:
            for i in range(self.n):
                self.threads.add(threading.get_ident())
                if i == self.fail_at:
                    raise ValueError(f"broke at {i}")
                if self.pause and i:
                    await asyncio.sleep(self.pause)
                yield i
        finally:
            self.closed = True


def test_in_running_loop():
    assert not in_running_loop()
    assert inside_a_loop(in_running_loop)


@BOTH
def test_run_sync_returns_and_raises(call):
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    async def fail():
        raise KeyError("missing")

    before = threads()
    assert call(lambda: run_sync(double(21))) == 42
    with pytest.raises(KeyError, match="missing"):
        call(lambda: run_sync(fail()))
    assert settled(before)


def test_run_sync_inside_a_loop_runs_on_another_thread_and_leaves_none():
    async def where():
        return threading.get_ident()

    before = threads()
    assert inside_a_loop(lambda: run_sync(where())) != threading.get_ident()
    assert settled(before)


@BOTH
def test_iterate_sync_yields_everything_and_cleans_up(call):
    rec = Recorder(4)
    before = threads()
    assert call(lambda: list(iterate_sync(rec.gen()))) == [0, 1, 2, 3]
    assert rec.closed and settled(before)


@BOTH
def test_closing_early_runs_the_generators_clean_up(call):
    rec = Recorder(10)
    before = threads()

    def take_two():
        it = iterate_sync(rec.gen())
        got = [next(it), next(it)]
        assert not rec.closed
        it.close()
        return got

    assert call(take_two) == [0, 1]
    assert rec.closed and settled(before)


@BOTH
def test_dropping_the_iterator_closes_the_generator(call):
    rec = Recorder(10)
    before = threads()

    def take_one_and_drop():
        for value in iterate_sync(rec.gen()):
            return value  # the iterator is dropped here, unfinished

    assert call(take_one_and_drop) == 0
    gc.collect()
    assert rec.closed and settled(before)


@BOTH
def test_an_error_in_the_generator_reaches_the_caller(call):
    rec = Recorder(5, fail_at=2)
    before = threads()
    got: list[int] = []

    def consume():
        for value in iterate_sync(rec.gen()):
            got.append(value)

    with pytest.raises(ValueError, match="broke at 2"):
        call(consume)
    assert got == [0, 1] and rec.closed and settled(before)


@BOTH
def test_an_error_in_the_callers_loop_body_closes_the_generator(call):
    rec = Recorder(5)
    before = threads()

    def consume():
        for value in iterate_sync(rec.gen()):
            if value == 1:
                raise RuntimeError("the consumer broke")

    with pytest.raises(RuntimeError, match="consumer broke"):
        call(consume)
    assert rec.closed and settled(before)


class Interrupt:
    """Raise KeyboardInterrupt in the main thread after ``delay`` s, as Ctrl-C does (through
    SIGUSR1, leaving SIGINT to asyncio.run and SIGALRM to pytest-timeout)."""

    def __init__(self, delay: float):
        self.delay = delay

    def __enter__(self):
        def handler(signum, frame):
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGUSR1, handler)
        self.timer = threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGUSR1))
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.timer.join()
        signal.signal(signal.SIGUSR1, self.previous)
        return False


@BOTH
def test_ctrl_c_while_waiting_for_the_next_item_is_a_keyboard_interrupt_and_cleans_up(call):
    rec = Recorder(3, pause=30.0)  # the second item takes long: the user presses Ctrl-C
    before = threads()
    got: list[int] = []

    def consume():
        with Interrupt(0.3):
            for value in iterate_sync(rec.gen()):
                got.append(value)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        call(consume)
    assert time.monotonic() - started < 15  # interrupted, not waited out
    assert got == [0]
    assert rec.closed  # the generator's clean-up ran (the engine's cancels its requests there)
    assert settled(before)


def test_ctrl_c_during_run_sync_inside_a_loop_cancels_the_coroutine():
    cleaned: list[bool] = []

    async def long_job():
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)

    before = threads()

    def call():
        with Interrupt(0.3):
            run_sync(long_job())

    with pytest.raises(KeyboardInterrupt):
        inside_a_loop(call)
    assert cleaned == [True]
    assert settled(before)


@BOTH
def test_background_work_goes_on_while_the_caller_holds_an_item(call):
    async def gen():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            yield ticks
            yield ticks
        finally:
            ticker.cancel()

    def consume():
        it = iterate_sync(gen())
        first = next(it)
        time.sleep(0.5)  # the caller works on the first item; the async side keeps going
        second = next(it)
        it.close()
        return first, second

    first, second = call(consume)
    assert first == 0
    assert second >= 5  # about 50 ticks happened while the caller held the first item


def test_the_sync_api_works_inside_a_running_loop(tmp_path):
    """What a notebook does: every sync entry point called from code the loop is running."""
    from test_engine import photos

    from molmo_rag import pipeline
    from molmo_rag.analyze import analyze
    from molmo_rag.backends.base import Request
    from molmo_rag.documents import iter_documents
    from molmo_rag.engine import read_entries
    from molmo_rag.enrich import Enricher
    from molmo_rag.tasks import Caption
    from molmo_rag.testing import FakeBackend

    paths = photos(tmp_path / "media", 3)
    before = threads()

    async def cell():
        loop = asyncio.get_running_loop()
        items = list(read_entries(paths))
        out = {
            "analyze": list(analyze(paths, [Caption()], FakeBackend())),
            "documents": list(iter_documents(paths, backend=FakeBackend(), cache=False, ordered=True)),
            "index": pipeline.index(paths, backend=FakeBackend(), db=tmp_path / "db", cache=tmp_path / "cache"),
            "run": FakeBackend().run([Request(item, Caption()) for item in items]),
            "enrich": Enricher(FakeBackend()).enrich(items),
        }
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0)
        return out

    out = asyncio.run(cell())
    assert [r.item.source for r in out["analyze"]] == paths and all(r.fields["caption"] for r in out["analyze"])
    assert [d.source for d in out["documents"]] == paths
    assert out["index"].indexed == 3 and not out["index"].failed
    assert [r.item.source for r in out["run"]] == paths and all(r.text for r in out["run"])
    assert [len(e.results) for e in out["enrich"]] == [2, 2, 2]
    assert settled(before), [t.name for t in threading.enumerate()]
