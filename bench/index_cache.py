"""Index cold vs warm (cached), and embed + upsert throughput without backend time.

Cold: 200 image files indexed through the OpenAI-compatible REST backend against its
loopback server on 127.0.0.1, which answers each request after a fixed latency (the
default plan: caption + scene, so 400 requests). Warm: the same command again: every
result comes from the cache, every point is already up to date. Then the records of the
run are embedded (wordllama) and upserted into a fresh embedded-Qdrant collection with no
backend in the loop.

    .venv/bin/python bench/index_cache.py [--items 200] [--latency 1.0] [--concurrency 16]

Prints a markdown table. Targets: warm makes zero backend calls and takes < 5% of cold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, n: int) -> None:
    """n distinct 320x240 crops of the bundled photographs, as PNG files."""
    from molmo_rag.testing import samples

    photos = [samples.photo(name).convert("RGB") for name in ("astronaut", "coffee", "chelsea", "rocket")]
    for i in range(n):
        image = photos[i % len(photos)]
        x, y = (i * 7) % (image.width - 320), (i * 5) % (image.height - 240)
        crop = image.crop((x, y, x + 320, y + 240))
        crop.putpixel((0, 0), (i % 256, i // 256, 7))  # distinct content even where crops repeat
        crop.save(folder / f"img_{i:04d}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the loopback server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from molmo_rag import pipeline
    from molmo_rag.backends.base import get_backend
    from molmo_rag.index.embeddings import get_embedder
    from molmo_rag.index.store import QdrantIndex
    from molmo_rag.testing.loopback import OpenAIServer

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "images").mkdir()
        make_images(tmp / "images", args.items)
        get_embedder()  # load once, outside the timings (both runs pay it equally otherwise)

        rows = []
        records = []
        with OpenAIServer(api_key="bench-key", latency=args.latency) as server:
            backend = get_backend("openai", base_url=server.base_url, api_key="bench-key", concurrency=args.concurrency)
            for label in ("cold", "warm (cached)"):
                server.reset_stats()
                start = time.perf_counter()
                summary = pipeline.index(
                    tmp / "images", backend=backend, db=tmp / "db", cache=tmp / "cache",
                    on_record=(lambda r, s: records.append(r)) if label == "cold" else None,
                )
                elapsed = time.perf_counter() - start
                assert not summary.failed, summary.failed[:3]
                rows.append((label, elapsed, server.stats.requests, summary))
            backend.close()

        cold_s = rows[0][1]
        embedder = get_embedder()
        texts = [r.text for r in records]
        start = time.perf_counter()
        vectors = embedder.embed(texts)
        embed_s = time.perf_counter() - start
        with QdrantIndex(tmp / "db2", collection="throughput") as store:
            store.ensure(embedder)
            start = time.perf_counter()
            for i in range(0, len(records), 16):  # the pipeline's chunk size
                store.upsert(records[i : i + 16], vectors[i : i + 16], embedder)
            upsert_s = time.perf_counter() - start
            assert store.count() == len(records)

    n = args.items
    print(f"Index {n} images via the OpenAI-compatible REST backend, loopback server latency {args.latency} s/request, "
          f"concurrency {args.concurrency}; default plan (caption + scene).\n")
    print("| run | wall time (s) | backend requests | items/s | vs cold |")
    print("|---|---:|---:|---:|---:|")
    for label, elapsed, requests, summary in rows:
        print(f"| {label} | {elapsed:.2f} | {requests} | {n / elapsed:.0f} | {100 * elapsed / cold_s:.1f}% |")
    print(f"| embed only (wordllama, {n} records) | {embed_s:.3f} | 0 | {n / embed_s:.0f} | |")
    print(f"| upsert only (embedded Qdrant, chunks of 16) | {upsert_s:.3f} | 0 | {n / upsert_s:.0f} | |")
    print(f"| embed + upsert | {embed_s + upsert_s:.3f} | 0 | {n / (embed_s + upsert_s):.0f} | |")
    warm = rows[1]
    ok = warm[2] == 0 and warm[1] < 0.05 * cold_s
    print(f"\nwarm run: {warm[2]} backend requests, {100 * warm[1] / cold_s:.1f}% of cold "
          f"({'meets' if ok else 'MISSES'} the target: 0 requests and < 5%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
