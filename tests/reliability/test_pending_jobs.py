"""No duplicate paid jobs across runs (issue 12): a job the server accepted is journaled in
the result cache the moment its id is known; a run killed while jobs are in flight leaves
them there, and the next run polls those jobs instead of submitting again (or submits anew
when the server forgot them). A POST with no answer is never re-sent in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from PIL import Image

from molmo_rag.backends.base import get_backend
from molmo_rag.cache import ResultCache
from molmo_rag.engine import Engine, EnrichedItem, FixedPlan
from molmo_rag.errors import AuthenticationError
from molmo_rag.media.items import MediaItem
from molmo_rag.tasks import Caption
from molmo_rag.testing import OpenOctopusServer, WaveSpeedServer

KEY = "sk-live-PENDING-0123456789abcdef"
FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)
GUARD = 400
"""Steps of 0.05 s a test waits for a state it needs before giving up (a guard against a
hang, never reached when the code behaves)."""
SERVERS = {"wavespeed": WaveSpeedServer, "openoctopus": OpenOctopusServer}


def images(n: int) -> list[MediaItem]:
    return [MediaItem.from_pil(Image.new("RGB", (28 + i, 20 + 2 * i), (30 * i % 256, 80, 160))) for i in range(n)]


def rest(name: str, server, **options):
    return get_backend(name, base_url=server.base_url, api_key=KEY, **{**FAST, **options})


def engine(backend, cache) -> Engine:
    return Engine(backend, FixedPlan([Caption()], backend), cache=cache)


async def run_all(backend, cache, items) -> list[EnrichedItem]:
    return [outcome async for outcome in engine(backend, cache).run(items)]


def killed_run(backend, cache, items, until) -> None:
    """Run the engine and cancel it (what a kill does) once ``until()`` holds."""

    async def main():
        async def consume():
            async for _ in engine(backend, cache).run(items):
                pass

        task = asyncio.ensure_future(consume())
        for _ in range(GUARD):
            await asyncio.sleep(0.05)
            if until():
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def answers(outcomes) -> list:
    return [r for o in outcomes for r in o.results]


@pytest.fixture(params=sorted(SERVERS))
def name(request):
    return request.param


def test_a_killed_run_leaves_its_jobs_to_the_next_run(name, tmp_path):
    items = images(3)
    with SERVERS[name](api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        first = rest(name, server, concurrency=4)
        killed_run(first, cache, items, until=lambda: len(cache.pending_jobs()) == 3)
        pending = cache.pending_jobs()
        # journaled the moment each submission was accepted, with the server's own job ids
        assert {p.job_id for p in pending} == set(server.jobs) and len(server.jobs) == 3
        assert {p.backend for p in pending} == {name} and len(cache) == 0
        for job in server.jobs.values():  # the jobs finish while nobody is running
            job.latency = 0.0

        second = rest(name, server, concurrency=4)
        outcomes = asyncio.run(run_all(second, cache, items))
        results = answers(outcomes)
        assert len(results) == 3 and not any(o.failures for o in outcomes)
        assert server.stats.jobs_created == 3 and server.stats.by_route["submit"] == 3  # nothing sent again
        assert second.last_stats.resumed == 3 and second.last_stats.posts == 0
        assert {r.fields["caption"] for r in results} == {job.text for job in server.jobs.values()}
        assert sum(r.cost_usd for r in results) == pytest.approx(3 * 0.002)  # each job paid once
        assert cache.pending_jobs() == [] and len(cache) == 3  # answers kept, journal cleared

        third = rest(name, server)
        asyncio.run(run_all(third, cache, items))
        assert third.last_stats.requests == 0  # all from the cache


def test_a_pending_job_the_server_forgot_is_submitted_anew(name, tmp_path):
    items = images(2)
    with SERVERS[name](api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        killed_run(rest(name, server), cache, items, until=lambda: len(cache.pending_jobs()) == 2)
        forgotten = set(server.jobs)
        server.jobs.clear()  # expired on the server's side
        server.latency = 0.02

        second = rest(name, server)
        outcomes = asyncio.run(run_all(second, cache, items))
        assert len(answers(outcomes)) == 2 and not any(o.failures for o in outcomes)
        assert second.last_stats.forgotten == 2 and server.stats.jobs_created == 4
        assert not forgotten & set(server.jobs) and cache.pending_jobs() == []


def test_a_resumed_job_that_failed_for_a_transient_reason_is_submitted_once_more(tmp_path):
    items = images(2)
    with WaveSpeedServer(api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        killed_run(rest("wavespeed", server), cache, items, until=lambda: len(cache.pending_jobs()) == 2)
        first, second = list(server.jobs.values())
        first.fail = {"error": "upstream_failed: provider error, please retry"}
        second.fail = {"error": "content_policy_violation: rejected by the safety filter"}
        for job in (first, second):
            job.latency = 0.0
        server.latency = 0.02

        backend = rest("wavespeed", server)
        outcomes = asyncio.run(run_all(backend, cache, items))
        results, failures = answers(outcomes), [f for o in outcomes for f in o.failures]
        assert len(results) == 1 and len(failures) == 1
        assert failures[0].to_json()["error_code"] == "content_policy_violation"
        assert failures[0].to_json()["retryable"] is False
        assert server.stats.jobs_created == 3 and backend.last_stats.resubmits == 1
        assert cache.pending_jobs() == []  # both old jobs are over: nothing left to resume


def test_a_job_still_running_when_the_run_ends_stays_pending(tmp_path):
    items = images(1)
    with WaveSpeedServer(api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        outcomes = asyncio.run(run_all(rest("wavespeed", server, poll_timeout=0.3), cache, items))
        assert outcomes[0].failures[0].to_json()["error_code"] == "timeout"
        [pending] = cache.pending_jobs()
        assert pending.job_id in server.jobs and server.stats.jobs_created == 1

        server.jobs[pending.job_id].latency = 0.0
        again = asyncio.run(run_all(rest("wavespeed", server), cache, items))
        assert len(answers(again)) == 1 and server.stats.jobs_created == 1
        assert cache.pending_jobs() == []


def test_a_refused_key_on_resume_keeps_the_job_for_later(tmp_path):
    items = images(1)
    with WaveSpeedServer(api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        killed_run(rest("wavespeed", server), cache, items, until=lambda: len(cache.pending_jobs()) == 1)
        wrong = get_backend("wavespeed", base_url=server.base_url, api_key="sk-WRONG-key-777777777", **FAST)
        with pytest.raises(AuthenticationError) as refused:
            asyncio.run(run_all(wrong, cache, items))
        assert refused.value.status == 401 and refused.value.fatal
        assert len(cache.pending_jobs()) == 1 and server.stats.jobs_created == 1


def test_an_unconfirmed_submission_is_not_resent_and_says_a_rerun_may_pay_twice(name, tmp_path):
    items = images(1)
    with SERVERS[name](api_key=KEY, latency=0.02) as server, ResultCache(tmp_path / "cache") as cache:
        server.inject("drop", route="submit", times=1)  # accepted, but the answer never arrives
        outcomes = asyncio.run(run_all(rest(name, server), cache, items))
        [failure] = outcomes[0].failures
        line = failure.to_json()
        assert line["error_code"] == "submission_unconfirmed" and line["retryable"] is True
        assert "second job" in line["error"]
        assert server.stats.by_route["submit"] == 1 and server.stats.jobs_created == 1
        assert cache.pending_jobs() == []  # no job id: nothing to resume


def test_the_journal_holds_no_secrets(tmp_path):
    items = images(2)
    with WaveSpeedServer(api_key=KEY, latency=120.0) as server, ResultCache(tmp_path / "cache") as cache:
        killed_run(rest("wavespeed", server), cache, items, until=lambda: len(cache.pending_jobs()) == 2)
        rows = json.dumps([p.__dict__ for p in cache.pending_jobs()])
        assert KEY not in rows and "data:" not in rows
    for path in (tmp_path / "cache").iterdir():
        assert KEY.encode() not in path.read_bytes()


def test_without_a_cache_nothing_is_journaled(tmp_path):
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        outcomes = asyncio.run(run_all(rest("wavespeed", server), None, images(2)))
        assert len(answers(outcomes)) == 2
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server, ResultCache(tmp_path / "ro", write=False) as readonly:
        outcomes = asyncio.run(run_all(rest("wavespeed", server), readonly, images(2)))
        assert len(answers(outcomes)) == 2 and readonly.pending_jobs() == []
