"""The streaming engine (molmo_rag.engine): a sliding window of requests, outcomes as they
finish or in order, bounded reading, results cached as they arrive, copies asked once,
reader errors in place, setup errors ending the run, clean early exits, progress."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import threading
import time
from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
from PIL import Image

from molmo_rag.backends.base import Backend, get_backend
from molmo_rag.cache import ResultCache
from molmo_rag.engine import Engine, EnrichedItem, FixedPlan, Progress, count_sources, read_entries
from molmo_rag.errors import ConfigurationError, InputError, MissingDependencyError
from molmo_rag.media.items import MediaItem
from molmo_rag.results import Failure
from molmo_rag.tasks import Caption, Scene
from molmo_rag.testing import FakeBackend, WaveSpeedServer

FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)
DEADLOCK = 20.0
"""How long a gated request waits for the condition it is gated on before giving up (a
generous guard, never reached when the engine behaves)."""


# -- helpers -----------------------------------------------------------------------------------


def photos(folder, n: int, size=(40, 30)) -> list[str]:
    """``n`` distinct small PNG photos (one colour each), named in source order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.png"
        Image.new("RGB", size, ((37 * i) % 256, (90 + 11 * i) % 256, 200 - 5 * i)).save(path)
        paths.append(str(path))
    return paths


class GateBackend(Backend):
    """A backend that answers from the pixels (FakeBackend's answers) one request at a time
    on the event loop, with a ``hold(request, backend)`` coroutine the test controls that
    each request awaits first; it records what was in flight and in which order requests
    finished."""

    name: ClassVar[str] = "gate"
    capabilities: ClassVar = FakeBackend.capabilities

    def __init__(self, window: int = 3, hold=None):
        self.model = "gate-1"
        self._window = window
        self.hold = hold
        self.pixels = FakeBackend()
        self.in_flight = 0
        self.max_in_flight = 0
        self.finished: list[str] = []
        self.gave_up = False

    @property
    def window(self) -> int:
        return self._window

    @property
    def calls(self) -> int:
        return self.pixels.calls

    @asynccontextmanager
    async def _open(self):
        async def call(request):
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.hold is not None:
                    await self.hold(request, self)
                return self.pixels.generate_batch([request])[0]
            finally:
                self.in_flight -= 1
                self.finished.append(request.item.source)

        yield call


async def wait_for(condition, backend: GateBackend) -> None:
    """Poll ``condition()`` until it holds; note on the backend when it never did."""
    deadline = time.monotonic() + DEADLOCK
    while not condition():
        if time.monotonic() > deadline:
            backend.gave_up = True
            return
        await asyncio.sleep(0.01)


def sources_of(outcomes) -> list[str]:
    return [o.item.source if isinstance(o, EnrichedItem) else o.source for o in outcomes]


async def collect(engine: Engine, sources) -> list:
    return [o async for o in engine.run(sources)]


# -- the sliding window --------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [False, True])
async def test_one_slow_request_holds_one_slot_and_order_is_as_asked(tmp_path, ordered):
    paths = photos(tmp_path, 8)
    slow = paths[0]

    async def hold(request, backend):
        if request.item.source == slow:  # finishes only once every other request has
            await wait_for(lambda: len(backend.finished) >= 2 * (len(paths) - 1), backend)

    backend = GateBackend(window=3, hold=hold)
    engine = Engine(backend, FixedPlan([Caption(), Scene()], backend), ordered=ordered)
    outcomes = await collect(engine, paths)

    assert not backend.gave_up, "the other requests waited for the slow one (chunks, not a sliding window)"
    assert backend.finished[-1] == slow and backend.finished[-2] == slow  # its two tasks ended last
    assert 1 < backend.max_in_flight <= 3
    assert all(isinstance(o, EnrichedItem) and len(o.results) == 2 and not o.failures for o in outcomes)
    if ordered:
        assert sources_of(outcomes) == paths  # source order although the first one finished last
    else:
        assert sources_of(outcomes)[-1] == slow  # completion order: the slow one comes out last
        assert sorted(sources_of(outcomes)) == paths


async def test_never_more_than_window_requests_in_flight(tmp_path):
    paths = photos(tmp_path, 16)
    rng = random.Random(7)
    filled = False

    async def hold(request, backend):
        nonlocal filled
        if not filled:  # the first requests wait for the window to fill (or to overflow)
            await wait_for(lambda: backend.in_flight >= 4, backend)
            filled = True
        await asyncio.sleep(rng.uniform(0, 0.01))

    backend = GateBackend(window=100, hold=hold)  # the engine's window, not the backend's, rules
    engine = Engine(backend, FixedPlan([Caption(), Scene()], backend), window=4)
    outcomes = await collect(engine, paths)
    assert len(outcomes) == 16 and backend.calls == 32 and not backend.gave_up
    assert backend.max_in_flight == 4


async def test_default_window_is_the_backends():
    backend = GateBackend(window=5)
    assert Engine(backend, FixedPlan([Caption()], backend)).window == 5
    fake = FakeBackend(batch_size=3)
    assert Engine(fake, FixedPlan([Caption()], fake)).window == 6  # one batch generating, the next prepared


def test_wavespeed_slow_job_does_not_hold_back_the_rest(tmp_path):
    paths = photos(tmp_path, 6)
    with WaveSpeedServer(api_key="k-engine", latency=0.02) as server:
        server.inject("slow_job", times=1, latency=4.0)  # the first job submitted is slow
        backend = get_backend("wavespeed", base_url=server.base_url, api_key="k-engine", concurrency=2, **FAST)
        try:
            engine = Engine(backend, FixedPlan([Caption()], backend))
            outcomes = asyncio.run(collect(engine, paths))
        finally:
            backend.close()
        assert server.stats.max_in_flight <= 2
    assert all(isinstance(o, EnrichedItem) and len(o.results) == 1 for o in outcomes)
    order = sources_of(outcomes)
    # one of the first two (submitted together) was slow; the other four went through the
    # free slot meanwhile, so the slow one came out last
    assert order[-1] in paths[:2]
    assert sorted(order) == paths


# -- bounded memory ------------------------------------------------------------------------------


def counted(paths: list[str], pulled: list[str]):
    for path in paths:
        pulled.append(path)
        yield path


async def test_reader_is_never_more_than_max_pending_items_ahead(tmp_path):
    paths = photos(tmp_path, 20)
    pulled: list[str] = []
    backend = GateBackend(window=1)
    engine = Engine(backend, FixedPlan([Caption()], backend), window=1, max_pending=3)
    handed, ahead = 0, []
    async for outcome in engine.run(counted(paths, pulled)):
        handed += 1
        if handed in (1, 10):
            await asyncio.sleep(0.5)  # a slow consumer: the reader runs as far ahead as it may
        ahead.append(len(pulled) - handed)
    assert handed == 20 and len(pulled) == 20
    assert max(ahead) <= 3
    assert ahead[0] == 3  # it did run ahead while the consumer was busy (reading overlaps)


async def test_ordered_mode_counts_items_waiting_for_a_slower_earlier_one(tmp_path):
    paths = photos(tmp_path, 12)
    pulled: list[str] = []

    async def hold(request, backend):
        if request.item.source == paths[0]:
            await asyncio.sleep(0.5)

    backend = GateBackend(window=2, hold=hold)
    engine = Engine(backend, FixedPlan([Caption()], backend), window=2, max_pending=4, ordered=True)
    out, pulled_at_first = [], None
    async for outcome in engine.run(counted(paths, pulled)):
        if pulled_at_first is None:
            pulled_at_first = len(pulled)
        out.append(outcome)
    assert sources_of(out) == paths
    assert pulled_at_first == 4  # the ones done behind the slow first item fill max_pending, no more


def test_max_pending_is_at_least_one_more_than_the_window():
    backend = GateBackend(window=4)
    assert Engine(backend, FixedPlan([Caption()], backend), max_pending=1).max_pending == 5
    assert Engine(backend, FixedPlan([Caption()], backend), max_pending=50).max_pending == 50


def test_read_entries_pulls_sources_lazily(tmp_path):
    paths = photos(tmp_path, 5)
    pulled: list[str] = []
    entries = read_entries(counted(paths, pulled))
    first = next(entries)
    assert isinstance(first, MediaItem) and first.source == paths[0]
    assert len(pulled) == 1  # one source read, not a chunk of them
    assert [e.source for e in entries] == paths[1:]


# -- the cache ----------------------------------------------------------------------------------


async def test_each_result_is_cached_as_it_arrives_and_a_rerun_calls_nothing(tmp_path):
    paths = photos(tmp_path / "media", 6)
    cache = ResultCache(tmp_path / "cache")
    blocked = asyncio.Event()

    async def hold(request, backend):
        if request.item.source == paths[0]:
            await blocked.wait()  # never set: this request is still in flight when the run is killed

    backend = GateBackend(window=3, hold=hold)
    plan = FixedPlan([Caption()], backend)
    engine = Engine(backend, plan, cache=cache)
    seen: list[EnrichedItem] = []

    async def consume():
        async for outcome in engine.run(paths):
            # stored before it was handed out
            assert plan.key(outcome.item, Caption()) in cache.get_many([plan.key(outcome.item, Caption())])
            seen.append(outcome)

    run = asyncio.ensure_future(consume())
    for _ in range(int(DEADLOCK / 0.01)):
        await asyncio.sleep(0.01)
        if len(seen) == 5:
            break
    run.cancel()  # what a kill does
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert len(seen) == 5 and len(cache) == 5

    again = GateBackend(window=3)
    outcomes = await collect(Engine(again, FixedPlan([Caption()], again), cache=cache), paths)
    assert again.calls == 1  # only the one that never finished
    assert sum(o.cached for o in outcomes) == 5 and len(cache) == 6

    third = GateBackend(window=3)
    outcomes = await collect(Engine(third, FixedPlan([Caption()], third), cache=cache), paths)
    assert third.calls == 0 and all(o.results[0].cached for o in outcomes)
    first_run = {o.item.source: o.results[0].text for o in seen}
    assert {o.item.source: o.results[0].text for o in outcomes if o.item.source in first_run} == first_run
    cache.close()


async def test_copies_of_one_file_in_flight_are_asked_once(tmp_path):
    [original] = photos(tmp_path / "a", 1)
    copies = [original]
    for name in ("b", "c"):
        (tmp_path / name).mkdir()
        copies.append(str(shutil.copy(original, tmp_path / name / "copy.png")))
    progress = Progress()

    async def hold(request, backend):
        # answer only once every copy was read and is waiting (wide margin after that)
        await wait_for(lambda: progress.files_seen >= 3, backend)
        await asyncio.sleep(0.3)

    backend = GateBackend(window=8, hold=hold)
    engine = Engine(backend, FixedPlan([Caption(), Scene()], backend), progress=progress, ordered=True)
    outcomes = await collect(engine, copies)  # no cache: only the in-flight twin check can save calls
    assert not backend.gave_up
    assert backend.calls == 2  # one caption, one scene, for three files
    assert sources_of(outcomes) == copies
    assert [o.cached for o in outcomes] == [0, 2, 2]  # the copies got the first one's answers
    texts = {tuple(r.text for r in o.results) for o in outcomes}
    assert len(texts) == 1
    assert all(r.item is o.item for o in outcomes for r in o.results)  # each copy's results point at it


# -- errors --------------------------------------------------------------------------------------


async def test_reader_errors_come_out_as_failures_in_place(tmp_path):
    good = photos(tmp_path, 2)
    missing = str(tmp_path / "nope.png")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    sources = [good[0], missing, str(corrupt), good[1]]
    backend = GateBackend()
    engine = Engine(backend, FixedPlan([Caption()], backend), ordered=True, absolute=True)
    outcomes = await collect(engine, sources)
    assert [type(o).__name__ for o in outcomes] == ["EnrichedItem", "Failure", "Failure", "EnrichedItem"]
    for failure, source in zip(outcomes[1:3], sources[1:3]):
        assert failure.task is None and failure.source == source
        assert isinstance(failure.error, InputError)
    assert backend.calls == 2
    assert engine.progress.done == 4 and engine.progress.failed == 2


async def test_a_failed_request_fails_its_task_and_the_run_goes_on(tmp_path):
    paths = photos(tmp_path, 3)

    class Refusing(GateBackend):
        capabilities: ClassVar = {"image": frozenset({"caption"})}  # no scene on images

    backend = Refusing()
    outcomes = await collect(Engine(backend, FixedPlan([Caption(), Scene()], backend), ordered=True), paths)
    assert [len(o.results) for o in outcomes] == [1, 1, 1]
    assert all(len(o.failures) == 1 and o.failures[0].task == Scene() for o in outcomes)
    assert "scene" in str(outcomes[0].failures[0].error)


async def test_a_setup_error_while_reading_ends_the_run_with_it(tmp_path, monkeypatch):
    from molmo_rag.testing import samples

    paths = photos(tmp_path, 2)
    deck = samples.make_pdf(tmp_path / "deck.pdf", [["One"], ["Two"]])
    monkeypatch.setitem(__import__("sys").modules, "pypdfium2", None)  # the slides extra is missing
    backend = GateBackend()
    engine = Engine(backend, FixedPlan([Caption()], backend), ordered=True)
    got = []
    with pytest.raises(MissingDependencyError, match="slides"):
        async for outcome in engine.run([paths[0], str(deck), paths[1]]):
            got.append(outcome)
    assert sources_of(got) in ([], [paths[0]])  # nothing after the error


async def test_a_source_iterator_that_raises_ends_the_run_with_its_error(tmp_path):
    paths = photos(tmp_path, 3)

    def sources():
        yield from paths[:2]
        raise ConfigurationError("the source listing broke")

    backend = GateBackend()
    with pytest.raises(ConfigurationError, match="listing broke"):
        await collect(Engine(backend, FixedPlan([Caption()], backend)), sources())


async def test_error_objects_and_ready_items_pass_through_as_sources(tmp_path):
    [path] = photos(tmp_path, 1)
    item = MediaItem.from_pil(Image.new("RGB", (20, 20), (200, 30, 30)), source="<red>")
    error = InputError("cannot fetch it", source="http://example.invalid/x.png")
    backend = GateBackend()
    outcomes = await collect(Engine(backend, FixedPlan([Caption()], backend), ordered=True), [item, error, path])
    assert sources_of(outcomes) == ["<red>", "http://example.invalid/x.png", path]
    assert isinstance(outcomes[1], Failure) and outcomes[1].error is error
    assert "red" in outcomes[0].results[0].text


# -- early exits -----------------------------------------------------------------------------------


async def test_closing_the_run_early_cancels_what_is_in_flight(tmp_path):
    paths = photos(tmp_path, 12)
    cancelled: list[str] = []

    async def hold(request, backend):
        if request.item.source != paths[0]:
            try:
                await asyncio.sleep(DEADLOCK)
            except asyncio.CancelledError:
                cancelled.append(request.item.source)
                raise

    backend = GateBackend(window=3, hold=hold)
    run = Engine(backend, FixedPlan([Caption()], backend)).run(paths)
    first = await run.__anext__()
    assert first.item.source == paths[0]
    await wait_for(lambda: backend.in_flight == 3, backend)  # the window filled with stuck requests
    assert not backend.gave_up
    started = time.monotonic()
    await run.aclose()
    # by the time aclose returns, what was in flight was cancelled (not left for the loop
    # to finalize later), without waiting for the stuck requests
    assert len(cancelled) == 3 and backend.in_flight == 0
    assert time.monotonic() - started < DEADLOCK / 2


def test_early_break_leaves_no_threads_behind(tmp_path):
    paths = photos(tmp_path, 12)
    before = threads()

    async def main():
        backend = FakeBackend(batch_size=1, delay=0.02)
        run = Engine(backend, FixedPlan([Caption()], backend)).run(paths)
        async for _ in run:
            break
        await run.aclose()
        return backend.calls

    calls = asyncio.run(main())
    assert 1 <= calls < 12
    assert settled(before)


def threads() -> int:
    """Live threads, less tqdm's process-wide monitor (started once by any progress bar)."""
    return sum(1 for t in threading.enumerate() if t.name != "tqdm_monitor")


def settled(before: int, within: float = 5.0) -> bool:
    """True once no thread started since ``before`` is left (a short wait for joins)."""
    deadline = time.monotonic() + within
    while threads() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return threads() <= before


# -- progress -------------------------------------------------------------------------------------


async def test_progress_total_is_known_up_front_for_files(tmp_path):
    photos(tmp_path / "folder", 5)
    totals: list[tuple[int | None, int]] = []
    progress = Progress(on_change=lambda p: totals.append((p.total, p.done)))
    backend = GateBackend()
    await collect(Engine(backend, FixedPlan([Caption()], backend), progress=progress), [str(tmp_path / "folder")])
    assert progress.files_total == 5
    assert totals[0] == (5, 0)  # known when the first item was read, and never changed
    assert {t for t, _ in totals} == {5}
    assert progress.done == 5 and progress.failed == 0


async def test_progress_of_a_one_shot_iterator_is_unknown(tmp_path):
    paths = photos(tmp_path, 2)
    assert count_sources(iter(paths)) is None
    assert count_sources(paths) == 2 and count_sources(str(tmp_path)) == 2
    progress = Progress()
    backend = GateBackend()
    await collect(Engine(backend, FixedPlan([Caption()], backend), progress=progress), iter(paths))
    assert progress.total is None and progress.done == 2


async def test_progress_is_refined_by_the_slide_count_of_a_deck(tmp_path):
    from molmo_rag.testing import samples

    paths = photos(tmp_path, 2)
    deck = samples.make_pdf(tmp_path / "deck.pdf", [["One"], ["Two"], ["Three"], ["Four"]])
    totals: list[tuple[int | None, int]] = []
    progress = Progress(on_change=lambda p: totals.append((p.total, p.done)))
    backend = GateBackend()
    await collect(Engine(backend, FixedPlan([Caption()], backend), progress=progress, ordered=True), [str(deck), *paths])
    assert progress.files_total == 3
    assert totals[0] == (6, 0)  # the deck's first slide says it has four: 4 + 2 photos
    assert all(total == 6 for total, _ in totals)
    assert progress.done == 6


@pytest.fixture(scope="module")
def video_two_shots(tmp_path_factory):
    """14 s with one hard cut at 3.5 s: two segments of very different lengths."""
    from molmo_rag.testing import samples

    shots = [samples.Shot("astronaut", 3.5, "static"), samples.Shot("coffee", 10.5, "static")]
    return samples.make_video(tmp_path_factory.mktemp("video") / "two.mp4", shots, size=(96, 64), fps=10)


async def test_progress_is_refined_by_the_duration_of_a_video(video_two_shots):
    totals: list[tuple[int | None, int]] = []
    progress = Progress(on_change=lambda p: totals.append((p.total, p.done)))
    backend = GateBackend()
    outcomes = await collect(
        Engine(backend, FixedPlan([Caption()], backend), progress=progress, ordered=True), [str(video_two_shots.path)]
    )
    segments = len(outcomes)
    assert segments == 2 and all(isinstance(o, EnrichedItem) for o in outcomes)
    assert progress.files_total == 1
    assert totals[0] == (4, 0)  # 14 s of video in segments like the first (3.5 s): about four
    assert progress.total == segments == progress.done  # refined to what it turned out to be
