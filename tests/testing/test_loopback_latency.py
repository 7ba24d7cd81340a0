"""Heavy-tailed job latency in the loopback servers: lognormal draws reproducible by seed,
and the record of every job (created, done_at, latency, delivered) in ``stats.jobs``.

No timing thresholds: the statistical checks are on the drawn latencies themselves, never
on wall time."""

from __future__ import annotations

import math
import statistics

import httpx
import pytest

from molmo_rag.testing.loopback import OpenAIServer, OpenOctopusServer, WaveSpeedServer

KEY = "loop-key-latency"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_fixed_latency_is_the_default():
    server = WaveSpeedServer(api_key=None, latency=0.25)
    assert [server.draw_latency() for _ in range(5)] == [0.25] * 5
    assert WaveSpeedServer(api_key=None).draw_latency() == 0.0
    # sigma without a median stays at zero (nothing to scale)
    assert WaveSpeedServer(api_key=None, latency=0.0, latency_sigma=0.8, seed=1).draw_latency() == 0.0


def test_draws_are_reproducible_by_seed_and_reseed():
    def draws(seed, n=50):
        server = OpenOctopusServer(api_key=None, latency=0.5, latency_sigma=0.8, seed=seed)
        return [server.draw_latency() for _ in range(n)]

    first = draws(7)
    assert first == draws(7)
    assert first != draws(8)
    assert len(set(first)) == len(first) and all(x > 0 for x in first)

    server = WaveSpeedServer(api_key=None, latency=0.5, latency_sigma=0.8, seed=7)
    assert [server.draw_latency() for _ in range(10)] == first[:10]
    server.reseed()
    assert [server.draw_latency() for _ in range(10)] == first[:10]
    server.reseed(8)
    assert [server.draw_latency() for _ in range(10)] == draws(8, 10)


def test_lognormal_median_and_spread_match_the_settings():
    server = WaveSpeedServer(api_key=None, latency=0.5, latency_sigma=0.8, seed=123)
    draws = [server.draw_latency() for _ in range(20_000)]
    # Median of 20k lognormal draws: standard error ~1% here; the tolerance is 10%.
    assert statistics.median(draws) == pytest.approx(0.5, rel=0.10)
    logs = [math.log(x) for x in draws]
    assert statistics.fmean(logs) == pytest.approx(math.log(0.5), abs=0.05)
    assert statistics.stdev(logs) == pytest.approx(0.8, rel=0.10)
    # Heavy tail: the 99th percentile is several times the median (exp(2.33 * 0.8) ~ 6.4).
    p99 = sorted(draws)[int(0.99 * len(draws))]
    assert 4 < p99 / statistics.median(draws) < 10


def test_rejects_negative_settings():
    with pytest.raises(ValueError):
        WaveSpeedServer(latency=-1)
    with pytest.raises(ValueError):
        WaveSpeedServer(latency=0.5, latency_sigma=-0.1)


def test_jobs_are_recorded_with_their_own_latency_and_delivery():
    with WaveSpeedServer(api_key=KEY, latency=0.5, latency_sigma=0.8, seed=3) as s:
        expected = WaveSpeedServer(api_key=None, latency=0.5, latency_sigma=0.8, seed=3)
        url = f"{s.base_url}/api/v3/wavespeed-ai/molmo2/image-captioner"
        ids = [httpx.post(url, json={"image": f"https://e.com/{i}.jpg"}, headers=AUTH).json()["data"]["id"] for i in range(3)]
        records = s.stats.jobs
        assert s.stats.jobs_created == 3 and [r.id for r in records] == ids
        assert [r.latency for r in records] == [expected.draw_latency() for _ in range(3)]
        for record in records:
            created, done_at, latency = record  # unpacks as a triple
            assert done_at == pytest.approx(created + latency)
            assert record.delivered is None  # nobody was told it finished yet
        assert records[0].created <= records[1].created <= records[2].created

        # The job's end is recorded as delivered when a poll first says so (not before).
        job = s.jobs[ids[0]]
        first = httpx.get(f"{s.base_url}/api/v3/predictions/{job.id}/result", headers=AUTH).json()["data"]
        if first["status"] in ("created", "processing"):
            assert records[0].delivered is None
        job.latency = 0.0  # finish it now; the record follows the job
        assert records[0].done_at == records[0].created
        done = httpx.get(f"{s.base_url}/api/v3/predictions/{job.id}/result", headers=AUTH).json()["data"]
        assert done["status"] == "completed"
        delivered = records[0].delivered
        assert delivered is not None and delivered >= records[0].done_at
        httpx.get(f"{s.base_url}/api/v3/predictions/{job.id}/result", headers=AUTH)
        assert records[0].delivered == delivered  # the first delivery counts

        s.reset_stats()
        assert s.stats.jobs == [] and s.stats.jobs_created == 0


def test_sync_mode_and_inline_servers_record_jobs():
    with WaveSpeedServer(api_key=KEY, latency=0.01, latency_sigma=0.5, seed=1) as s:
        url = f"{s.base_url}/api/v3/wavespeed-ai/molmo2/image-captioner"
        data = httpx.post(url, json={"image": "https://e.com/a.jpg", "enable_sync_mode": True}, headers=AUTH).json()["data"]
        assert data["status"] == "completed"
        (record,) = s.stats.jobs
        assert record.delivered is not None and record.delivered >= record.done_at
        assert data["timings"]["inference"] == int(record.latency * 1000)
    with OpenAIServer(api_key=None, latency=0.01, latency_sigma=0.5, seed=1) as vllm:
        body = {
            "model": "allenai/Molmo2-4B",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://e.com/a.jpg"}},
                {"type": "text", "text": "Describe."},
            ]}],
        }
        assert httpx.post(f"{vllm.base_url}/chat/completions", json=body).status_code == 200
        (record,) = vllm.stats.jobs
        assert record.latency == WaveSpeedServer(api_key=None, latency=0.01, latency_sigma=0.5, seed=1).draw_latency()


def test_slow_job_fault_still_consumes_a_draw():
    with WaveSpeedServer(api_key=KEY, latency=0.5, latency_sigma=0.8, seed=9) as s:
        expected = WaveSpeedServer(api_key=None, latency=0.5, latency_sigma=0.8, seed=9)
        s.inject("slow_job", times=1, latency=30)
        url = f"{s.base_url}/api/v3/wavespeed-ai/molmo2/image-captioner"
        for i in range(3):
            httpx.post(url, json={"image": f"https://e.com/{i}.jpg"}, headers=AUTH)
        draws = [expected.draw_latency() for _ in range(3)]
        assert [r.latency for r in s.stats.jobs] == [30.0, draws[1], draws[2]]
