"""Captioning N images through the WaveSpeed protocol, side by side, on one loopback server
with a fixed job latency:

* molmo-rag's WaveSpeedBackend at its default options (its async HTTP client, ``RestClient``);
* molmo-rag with ``enable_sync_mode`` (one request per job);
* the official ``wavespeed`` SDK called in a loop, as its README shows;
* the same SDK in a thread pool.

Every client captions the same images, given as public URLs (the server hosts them), so
no client uploads anything. Prints a markdown table: wall time, images/s, requests the
server received per job, and ratios.

    .venv/bin/python bench/rest_throughput.py            # 200 images, 0.5 s per job
    .venv/bin/python bench/rest_throughput.py --quick    # CI-sized
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from molmo_rag.backends.base import Request, get_backend
from molmo_rag.testing.loopback import WaveSpeedServer
from molmo_rag.media.items import MediaItem
from molmo_rag.tasks import Caption

KEY = "bench-key-0123456789"
MODEL = "wavespeed-ai/molmo2/image-captioner"


def make_items(server: WaveSpeedServer, n: int) -> list[MediaItem]:
    items = []
    for i in range(n):
        image = Image.new("RGB", (64 + i % 50, 48 + i // 50), ((i * 37) % 256, (i * 91) % 256, 128))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        item = MediaItem.from_pil(image, source=f"img{i}.png")
        item.remote_url = f"{server.root_url}/media/{server.store_blob(buf.getvalue(), 'image/png')}"
        items.append(item)
    return items


def run_ours(server, items, **options) -> list[str]:
    backend = get_backend("wavespeed", api_key=KEY, base_url=server.base_url, **options)
    results = backend.run([Request(item, Caption()) for item in items])
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        raise SystemExit(f"molmo-rag failed on {len(failures)} items: {failures[0]}")
    return [r.text for r in results]


def run_sdk_loop(server, items) -> list[str]:
    import wavespeed

    client = wavespeed.Client(api_key=KEY, base_url=server.base_url)
    return [client.run(MODEL, {"image": item.remote_url, "detail_level": "medium"})["outputs"][0] for item in items]


def run_sdk_pool(server, items, threads: int) -> list[str]:
    import wavespeed

    client = wavespeed.Client(api_key=KEY, base_url=server.base_url)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda it: client.run(MODEL, {"image": it.remote_url, "detail_level": "medium"})["outputs"][0], items))


def measure(server: WaveSpeedServer, name: str, fn) -> dict:
    server.reset_stats()
    server.jobs.clear()
    started = time.perf_counter()
    texts = fn()
    seconds = time.perf_counter() - started
    jobs = server.stats.jobs_created
    return {
        "name": name,
        "seconds": seconds,
        "requests_per_job": server.stats.requests / max(jobs, 1),
        "jobs": jobs,
        "distinct": len(set(texts)),
        "max_in_flight": server.stats.max_in_flight,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds every job takes on the server")
    parser.add_argument("--threads", type=int, default=32, help="thread-pool size for the SDK")
    parser.add_argument("--quick", action="store_true", help="CI-sized: 16 images")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the (slow) SDK loop")
    args = parser.parse_args(argv)
    n = 16 if args.quick else args.images

    with WaveSpeedServer(api_key=KEY, latency=args.latency) as server:
        items = make_items(server, n)
        # Untimed warm-up of each client: imports, TLS context, first connections.
        warm = make_items(server, 1)
        run_ours(server, warm)
        run_sdk_pool(server, warm, 1)
        rows = [
            measure(server, "molmo-rag WaveSpeedBackend (defaults)", lambda: run_ours(server, items)),
            measure(server, "molmo-rag, enable_sync_mode", lambda: run_ours(server, items, enable_sync_mode=True)),
            measure(server, f"wavespeed SDK, {args.threads}-thread pool", lambda: run_sdk_pool(server, items, args.threads)),
        ]
        if not args.skip_loop:
            rows.append(measure(server, "wavespeed SDK, loop (README)", lambda: run_sdk_loop(server, items)))

    loop = next((r for r in rows if "loop" in r["name"]), None)
    pool = next(r for r in rows if "pool" in r["name"])
    print(f"\n{n} images, {args.latency:g} s per job, loopback WaveSpeed server on 127.0.0.1\n")
    print("| client | time (s) | images/s | requests/job | max in flight | vs SDK loop | vs SDK pool |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vs_loop = f"{loop['seconds'] / r['seconds']:.1f}x" if loop else "-"
        vs_pool = f"{pool['seconds'] / r['seconds']:.2f}x"
        print(
            f"| {r['name']} | {r['seconds']:.2f} | {n / r['seconds']:.1f} | {r['requests_per_job']:.2f} | "
            f"{r['max_in_flight']} | {vs_loop} | {vs_pool} |"
        )
        assert r["jobs"] == n and r["distinct"] == n, f"{r['name']}: {r['jobs']} jobs, {r['distinct']} distinct answers"


if __name__ == "__main__":
    main()
