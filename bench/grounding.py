"""Grounded retrieval: precision@5 of text-only vs grounded ranking, and the latency that
grounding adds per query at k = 5, 10, 20 (cache cold and warm).

The world (generated, so the right answers are known): pictures with bright spots (what
the queries name) of dark colours, and bright pictures without any, whose captions the text
search likes. FakeBackend (answers from the pixels) captions at index time and counts at
grounding time; the latency rows also run the OpenAI-compatible backend against its
loopback server with a fixed job latency, as a hosted model would be.

    .venv/bin/python bench/grounding.py [--hits 10 --misses 15 --latency 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from molmo_rag import pipeline  # noqa: E402
from molmo_rag.backends.base import get_backend  # noqa: E402
from molmo_rag.grounding import ground  # noqa: E402
from molmo_rag.run import RunOptions  # noqa: E402
from molmo_rag.testing import FakeBackend, OpenAIServer  # noqa: E402

QUERIES = ["bright spots", "white squares", "small light patches", "bright dots on a picture"]


def make_world(folder: Path, hits: int, misses: int, seed: int = 0) -> dict[str, bool]:
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(hits):
        a = np.zeros((96, 192, 3), np.uint8)
        a[:] = rng.integers(10, 90, 3)
        for k in range(int(rng.integers(1, 5))):
            x = 8 + 40 * k
            a[30:46, x : x + 16] = 255
        path = folder / f"spots-{i:02d}.png"
        Image.fromarray(a).save(path)
        truth[str(path)] = True
    for i in range(misses):
        a = np.zeros((96, 192, 3), np.uint8)
        a[:] = (int(rng.integers(180, 235)), int(rng.integers(170, 215)), int(rng.integers(20, 90)))
        path = folder / f"plain-{i:02d}.png"
        Image.fromarray(a).save(path)
        truth[str(path)] = False
    return truth


def precision_at(hits, truth, k: int = 5) -> float:
    return sum(truth[h.source] for h in hits[:k]) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=10)
    parser.add_argument("--misses", type=int, default=15)
    parser.add_argument("--latency", type=float, default=0.3, help="loopback job latency (s)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="molmo-rag-ground-") as tmp:
        folder = Path(tmp) / "world"
        folder.mkdir()
        truth = make_world(folder, args.hits, args.misses)
        db = Path(tmp) / "db"
        pipeline.index([folder], backend=FakeBackend(), db=db, cache=False)

        print(f"\nPrecision@5 over {len(QUERIES)} queries ({args.hits} true hits among {args.hits + args.misses} pictures; "
              "grounding checks the top 20):\n")
        print("| query | true hits in the top 20 | text only | grounded |")
        print("|---|---:|---:|---:|")
        text_p, ground_p = [], []
        checker = RunOptions(backend=FakeBackend(), cache=False)
        for query in QUERIES:
            hits = pipeline.search(query, db=db, top=20)
            grounded = ground(hits, query, checker, top=20)
            text_p.append(precision_at(hits, truth))
            ground_p.append(precision_at(grounded, truth))
            print(f"| {query} | {sum(truth[h.source] for h in hits)} | {text_p[-1]:.2f} | {ground_p[-1]:.2f} |")
        print(f"| **mean** | | **{statistics.mean(text_p):.2f}** | **{statistics.mean(ground_p):.2f}** |")

        print("\nAdded latency per query (s): grounding the top k hits after the search, median over the queries:\n")
        print("| backend | k | search only | + grounding, cold cache | + grounding, warm cache | checks/s cold |")
        print("|---|---:|---:|---:|---:|---:|")
        with OpenAIServer(api_key="bench", latency=args.latency) as server:
            backends = {
                "FakeBackend (in-process, from pixels)": lambda: FakeBackend(),
                f"openai-compatible, loopback, {args.latency:g} s/request": lambda: get_backend(
                    "openai", base_url=server.base_url, api_key="bench", concurrency=args.concurrency,
                    poll_interval=0.05, retry_wait=0.05,
                ),
            }
            for name, make in backends.items():
                for k in (5, 10, 20):
                    searches, colds, warms = [], [], []
                    for n, query in enumerate(QUERIES):
                        cache = Path(tmp) / f"cache-{name[:4]}-{k}-{n}"
                        started = time.perf_counter()
                        hits = pipeline.search(query, db=db, top=k)
                        searches.append(time.perf_counter() - started)
                        for runs in (colds, warms):  # the second run finds every answer cached
                            backend = make()
                            started = time.perf_counter()
                            ground(hits, query, RunOptions(backend=backend, cache=cache), top=k)
                            runs.append(time.perf_counter() - started)
                            backend.close()
                    cold = statistics.median(colds)
                    print(f"| {name} | {k} | {statistics.median(searches):.3f} | {cold:.3f} | "
                          f"{statistics.median(warms):.3f} | {k / cold:.1f} |")


if __name__ == "__main__":
    main()
