"""Results are handed over as each one arrives, so a run killed midway keeps what finished."""

from __future__ import annotations

import asyncio
import time

from rest_helpers import FAST, images

from molmo_rag import Caption
from molmo_rag.backends.base import Request, Result, get_backend
from molmo_rag.cache import ResultCache
from molmo_rag.enrich import Enricher
from molmo_rag.testing.loopback import WaveSpeedServer


def test_fast_answers_arrive_before_a_slow_one_finishes():
    with WaveSpeedServer(api_key="k-stream", latency=0.05) as server:
        server.inject("slow_job", times=1, latency=3.0)  # the first job submitted is slow
        backend = get_backend("wavespeed", base_url=server.base_url, api_key="k-stream", concurrency=4, **FAST)
        items = images(4)
        seen: list[tuple[int, float]] = []
        started = time.monotonic()

        def on_result(request, outcome):
            assert isinstance(outcome, Result)
            seen.append((items.index(request.item), time.monotonic() - started))

        results = asyncio.run(backend.arun([Request(i, Caption()) for i in items], on_result=on_result))
    assert all(isinstance(r, Result) for r in results)
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3]
    # the three fast ones were handed over while the slow one (3 s) still ran
    assert seen[2][1] < 2.0 <= seen[3][1]


def test_enricher_caches_each_result_before_the_chunk_ends(tmp_path):
    with WaveSpeedServer(api_key="k-stream", latency=0.05) as server:
        server.inject("slow_job", times=1, latency=30.0)
        backend = get_backend("wavespeed", base_url=server.base_url, api_key="k-stream", concurrency=4, **FAST)
        cache = ResultCache(tmp_path / "cache")
        # The default plan: a caption (scene descriptions are skipped on images by WaveSpeed).
        enricher = Enricher(backend, cache=cache, on_warning=lambda message: None)
        items = images(4)

        async def killed_midway():
            task = asyncio.ensure_future(enricher.aenrich(items))
            for _ in range(200):  # until the three fast items are answered
                await asyncio.sleep(0.05)
                if len(cache) >= 3:
                    break
            task.cancel()  # what a kill does to the chunk still in flight

        asyncio.run(killed_midway())
        assert len(cache) == 3  # kept although their chunk never finished
        cached = [enricher.key(item, Caption()) for item in items]
        assert sum(key in cache.get_many(cached) for key in cached) == 3
