"""A hosted backend (WaveSpeed's protocol, on its loopback) on the cluster, with faults at
seeded rates: every good item is indexed, no request is paid twice beyond what a failed
job forces (a failed job is refunded and submitted again; a refused submission creates
none), and the hosted concurrency is split between the model actors, so the requests in
flight at once never exceed the total asked for."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

pytest.importorskip("ray")

from _ray_media import CORRUPT, many_photos, points  # noqa: E402

from molmo_rag.testing.loopback import WaveSpeedServer  # noqa: E402

KEY = "sk-ray-loopback-0123456789abcdef"
FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)
PATIENT = dict(FAST, max_resubmits=8)  # a request failed 9 times in a row at these rates: never
RATES = {"submit_503": 0.2, "poll_503": 0.1, "upstream_failed": 0.2}
TOTAL = 4  # --concurrency: the account-wide requests in flight


def _request_key(job) -> tuple:
    """What a job was asked: its media (as the server read it), endpoint and other inputs."""
    inputs = {k: v for k, v in job.inputs.items() if k not in ("image", "video", "enable_sync_mode")}
    return (getattr(job.media, "sha256", None), job.kind, json.dumps(inputs, sort_keys=True))


def _check_jobs(jobs) -> int:
    """No double payment: per request, one completed job, and one more job per failed one;
    the number of requests that reached the server."""
    by_key: dict[tuple, list] = defaultdict(list)
    for job in jobs:
        by_key[_request_key(job)].append(job)
    for key, jobs in by_key.items():
        statuses = [j.status for j in jobs]
        assert statuses.count("completed") == 1, (key, statuses)
        assert statuses.count("failed") == len(jobs) - 1, (key, statuses)
    return len(by_key)


def _most_jobs_outstanding(jobs) -> int:
    """The most jobs at once between their creation and the moment a client learnt their
    end: what the backend's concurrency bounds for a submit-and-poll protocol."""
    events = sorted([(j.created, 1) for j in jobs] + [(j.delivered if j.delivered is not None else float("inf"), -1) for j in jobs],
                    key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def library(media, tmp_path):
    """The session's media (photos, a video, a deck, a corrupt file) and twelve more
    photos, so both actors keep their share of the concurrency busy."""
    folder = many_photos(tmp_path / "more", 12)
    return [str(media), str(folder)]


@pytest.mark.timeout(400)
def test_faults_at_rates_on_the_cluster_pay_each_request_once_and_keep_the_total_concurrency(ray_cluster, library, pool, tmp_path, monkeypatch):
    from molmo_rag import RunOptions
    from molmo_rag.ray import index as ray_index

    with WaveSpeedServer(api_key=KEY, latency=0.3).faults(RATES, seed=11) as server:
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
        options = RunOptions(backend="wavespeed", concurrency=TOTAL, backend_options=PATIENT, cache=str(tmp_path / "cache"))
        summary = ray_index(library, options, ray=ray_cluster.address, pool=pool, db=str(tmp_path / "db"))
        stats, jobs = server.stats, list(server.jobs.values())

    got = points(tmp_path / "db")
    assert [(f.source.endswith(CORRUPT), f.to_json()["error_type"]) for f in summary.failed] == [(True, "CorruptMediaError")]
    kinds = {payload["kind"] for payload, _ in got.values()}
    assert {"image", "slide", "video_segment"} <= kinds, kinds
    assert summary.items == len(got) == summary.indexed
    assert all(payload.get("caption") for payload, _ in got.values())

    requests = _check_jobs(jobs)
    assert requests == summary.done  # one paid job per result, nothing else
    assert stats.faults_applied["upstream_failed"] + stats.faults_applied["submit_503"] > 0  # the faults were met
    assert stats.unauthorized == 0
    # the total split between the actors: never more than TOTAL jobs outstanding, nor HTTP
    # requests in flight (and more than one actor's share: both were busy)
    assert TOTAL // 2 < _most_jobs_outstanding(jobs) <= TOTAL, _most_jobs_outstanding(jobs)
    assert stats.max_in_flight <= TOTAL, stats.max_in_flight


@pytest.mark.timeout(400)
def test_a_ready_hosted_backend_instance_keeps_the_total_concurrency_too(ray_cluster, library, pool, tmp_path):
    """``RunOptions(backend=WaveSpeedBackend(concurrency=4))`` on two actors: the instance is
    rebuilt in each actor with its own four requests in flight unless the pool splits it."""
    from molmo_rag import RunOptions
    from molmo_rag.backends.base import get_backend
    from molmo_rag.ray import index as ray_index

    with WaveSpeedServer(api_key=KEY, latency=0.5) as server:
        backend = get_backend("wavespeed", base_url=server.base_url, api_key=KEY, concurrency=TOTAL, **FAST)
        summary = ray_index(library, RunOptions(backend=backend, cache=str(tmp_path / "cache")), ray=ray_cluster.address,
                            pool=pool, db=str(tmp_path / "db"))
        stats, jobs = server.stats, list(server.jobs.values())

    assert summary.items == summary.indexed > 0
    assert _check_jobs(jobs) == summary.done
    outstanding = _most_jobs_outstanding(jobs)
    assert outstanding <= TOTAL, f"{outstanding} jobs outstanding at once with concurrency={TOTAL} on {pool.actors} actors"
    assert stats.max_in_flight <= TOTAL, stats.max_in_flight


@pytest.mark.parametrize("given", ["by name", "as an instance"])
def test_each_actor_gets_its_share_of_the_hosted_concurrency(ray_cluster, given, tmp_path, monkeypatch):
    """What each model actor's backend is made with: ``concurrency`` split between the
    actors, whether the backend was named or given ready-made (checked without a run)."""
    from molmo_rag import RunOptions
    from molmo_rag.backends.base import get_backend
    from molmo_rag.ray import PoolOptions
    from molmo_rag.ray.pipeline import _pool_size, _resolved_options
    from molmo_rag.run import Run

    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    if given == "by name":
        options = RunOptions(backend="wavespeed", concurrency=TOTAL, cache=False)
    else:
        options = RunOptions(backend=get_backend("wavespeed", base_url="http://127.0.0.1:9", api_key=KEY, concurrency=TOTAL), cache=False)
    with Run(options) as live:
        actor_options, actors = _pool_size(live, _resolved_options(live), PoolOptions(actors=2))
    assert actors == 2
    with Run(actor_options) as actor:  # what ModelStage makes in each actor
        each = actor.backend.options.concurrency
    assert each * actors <= TOTAL, f"{actors} actors x {each} requests in flight each, asked for {TOTAL} in all"
