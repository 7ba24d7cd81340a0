"""What a small index run into a large embedded collection costs: the write, ``settle()``
(Qdrant Edge's optimizer) and the next search's open, at each size.

A collection of N points (``bench/_scale_data.py``, the product's payloads) is written
and settled once; then, ``--rounds`` times, a new process adds ``--add`` points (new
ids, the same kind of payloads) and settles, as ``molmo-rag index`` of a few new files
does, and another fresh process opens the collection and answers one filtered query.

    .venv/bin/python bench/edge_incremental.py [--sizes 10000,100000] [--add 100,2000] [--rounds 3]

Read side by side: the first settle (building the immutable segment) against the later
ones, and the open after each round against the open of the settled collection.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _scale_data as data  # noqa: E402

COLLECTION = "molmo_rag"


def _store(folder: Path):
    from molmo_rag.index.store import QdrantIndex

    return QdrantIndex(folder, collection=COLLECTION)


def build(folder: Path, src: Path) -> dict:
    from molmo_rag.index.embeddings import get_embedder

    name = get_embedder().name
    with _store(folder) as store:
        store.ensure((name, data.DIM))
        started = time.perf_counter()
        for chunk in data.points(src, name, batch=256):
            store.upsert_points(chunk)
        wrote = time.perf_counter() - started
        started = time.perf_counter()
        store.settle()
        return {"write_s": wrote, "settle_s": time.perf_counter() - started}


def add(folder: Path, src: Path, count: int, round_: int) -> dict:
    from molmo_rag.index.embeddings import get_embedder

    name = get_embedder().name
    fresh = []
    for chunk in data.points(src, name, batch=256):
        for pid, vector, payload in chunk:
            fresh.append((str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pid}/{round_}")), vector, payload))
            if len(fresh) == count:
                break
        if len(fresh) == count:
            break
    with _store(folder) as store:
        store.ensure((name, data.DIM))
        started = time.perf_counter()
        store.upsert_points(fresh)
        wrote = time.perf_counter() - started
        started = time.perf_counter()
        store.settle()
        return {"write_s": wrote, "settle_s": time.perf_counter() - started}


def search(folder: Path, src: Path) -> dict:
    started = time.perf_counter()
    from molmo_rag.index.filters import SearchFilter, filter_of

    with _store(folder) as store:
        vector = data.queries(src)["vectors"][0]
        store.search(vector, filter_of(SearchFilter(kind=["slide"], where=["count.person>=2"])), 10)
        segments = _segments(folder)
    return {"open_s": time.perf_counter() - started, "segments": segments}


def _segments(folder: Path) -> int:
    return sum(1 for _ in (folder / "edge" / COLLECTION / "segments").iterdir())


def _in_process(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--add", default="100,2000", help="points each later run adds (comma-separated: one row each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        job, folder, src, *rest = args.worker
        result = {"build": lambda: build(Path(folder), Path(src)),
                  "add": lambda: add(Path(folder), Path(src), int(rest[0]), int(rest[1])),
                  "search": lambda: search(Path(folder), Path(src))}[job]()
        print(json.dumps(result))
        return 0
    print("| points | added per run | first write + settle s | later write s (median) | later settle s (median) | open + query s: settled / after the rounds | segments after |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for size in (int(s) for s in args.sizes.split(",")):
            src = data.make(Path(work) / f"data-{size}", size)
            for count in (int(a) for a in args.add.split(",")):
                folder = Path(work) / f"edge-{size}-{count}"
                first = _in_process("build", str(folder), str(src))
                settled = _in_process("search", str(folder), str(src))
                rounds = [_in_process("add", str(folder), str(src), str(count), str(r)) for r in range(args.rounds)]
                after = _in_process("search", str(folder), str(src))
                print(f"| {size:,} | {count:,} | {first['write_s']:.1f} + {first['settle_s']:.1f} "
                      f"| {statistics.median(r['write_s'] for r in rounds):.2f} | {statistics.median(r['settle_s'] for r in rounds):.2f} "
                      f"| {settled['open_s']:.2f} / {after['open_s']:.2f} | {after['segments']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
