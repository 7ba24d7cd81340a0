"""Search at scale: every embedded engine side by side on the same points.

The points have the project's payload layout (``MediaRecord.point_payload``: kinds, counts,
slides, segment times, sources under a few folders, captions; no thumbnails) and 256-d
vectors around 200 seeded cluster centres, so that approximate search has something to
get wrong. Engines, each size and engine in a fresh process (clean RSS):

* ``molmo-rag edge``: ``QdrantIndex`` on Qdrant Edge, the embedded default (writes in
  batches of 256 through ``upsert_points``, then ``settle()``; search through
  ``QdrantIndex.search`` with the one-layout filter, what ``molmo-rag search`` runs);
* ``molmo-rag local, before``: qdrant-client local mode with the filter of both layouts,
  what search ran on every collection before issue 19;
* ``molmo-rag local``: the same folder with the one-layout filter (what local mode gets now);
* ``lancedb``: LanceDB with an IVF_HNSW_SQ index and scalar indexes (when installed:
  ``pip install lancedb``), metadata in flat columns;
* ``numpy exact``: brute force over an in-memory matrix and boolean masks: the floor, and
  the ground truth of recall@10.

Queries (``--queries``, seeded): plain, filtered (slides with ``count.person>=2``, the
product's filter) and a time range (video segments overlapping a minute). Figures: write
rate (index build included, embedding excluded), p50/p95, recall@10 against numpy exact,
open-to-first-answer (a fresh process opening the folder and answering one filtered
query), disk, peak RSS, and ``molmo-rag search`` end to end (a fresh CLI process with a
``--where``; at the smallest and the largest size, for the growth ratio).

    .venv/bin/python bench/search_scale.py [--sizes 1000,10000,100000] [--queries 50]
        [--local-queries 10] [--max-local 100000] [--engines edge,local,lancedb,numpy] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 256
EMBEDDER = "wordllama/l2_supercat-256"  # recorded, so the CLI embeds its query with it
KINDS = ("image", "slide", "video_segment")
FOLDERS = ("/archive/photos", "/archive/decks", "/archive/videos", "/shared/team")


# -- data -------------------------------------------------------------------------------------
def make_data(n: int, folder: Path, seed: int = 7) -> None:
    """``vectors.npy`` (float32, unit length) and ``payloads.jsonl`` for ``n`` points."""
    from molmo_rag.index.records import MediaRecord

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, DIM))
    vectors = centres[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(folder / "vectors.npy", vectors.astype(np.float32))
    words = ["people", "a chart", "cars", "a whiteboard", "trees", "a stage", "a kitchen", "slides", "a dog", "the sea"]
    with open(folder / "payloads.jsonl", "w") as out:
        for i in range(n):
            kind = KINDS[i % 3]
            counts = {"person": int(rng.integers(0, 6)), "car": int(rng.integers(0, 3))}
            if kind == "slide":
                counts["chart"] = int(rng.integers(0, 4))
            payload = {
                "kind": kind,
                "source": f"{FOLDERS[i % 4]}/{i // 40:05d}/{i}.{('jpg', 'pptx', 'mp4')[i % 3]}",
                "media_id": f"sha256:{i:064x}",
                "caption": f"A picture of {words[i % 10]} and {words[(i * 7) % 10]}.",
                "detail": "medium",
                "counts": counts,
                "backend": "local",
                "model": "allenai/Molmo2-4B",
            }
            if kind == "slide":
                payload.update(slide=i % 30 + 1, title=f"Slide {i % 30 + 1}")
            if kind == "video_segment":
                start = float(rng.integers(0, 36_000))
                payload.update(start=start, end=start + 10.0)
            record = MediaRecord(payload=payload, text=payload["caption"])
            out.write(json.dumps({"id": record.id, "payload": record.point_payload(EMBEDDER)}) + "\n")


def load(folder: Path) -> tuple[np.ndarray, list[dict]]:
    vectors = np.load(folder / "vectors.npy")
    rows = [json.loads(line) for line in open(folder / "payloads.jsonl")]
    return vectors, rows


def queries(count: int, seed: int = 11) -> tuple[np.ndarray, list[float]]:
    """The first ``k`` of any count are the same queries (each stream drawn on its own)."""
    q = np.random.default_rng(seed).normal(size=(count, DIM))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    starts = np.random.default_rng(seed + 1).integers(0, 36_000 - 60, count)
    return q.astype(np.float32), [float(x) for x in starts]


def search_filter(kind: str, at: float = 0.0):
    from molmo_rag.index.filters import SearchFilter

    if kind == "filtered":
        return SearchFilter(kind=["slide"], where=["count.person>=2"])
    if kind == "range":
        return SearchFilter(kind=["video"], after=at, before=at + 60)
    return SearchFilter()


# -- engines (each in its own process) --------------------------------------------------------
def numpy_worker(data: Path, args: argparse.Namespace) -> dict:
    vectors, rows = load(data)
    kind = np.array([r["payload"]["kind"] for r in rows])
    person = np.array([r["payload"]["counts"]["person"] for r in rows])
    start = np.array([r["payload"].get("start", np.nan) for r in rows])
    end = np.array([r["payload"].get("end", np.nan) for r in rows])
    ids = np.array([r["id"] for r in rows])
    qs, ats = queries(args.queries)
    out: dict = {"truth": {}}
    for which in ("plain", "filtered", "range"):
        times, truth = [], []
        for q, at in zip(qs, ats):
            t = time.perf_counter()
            if which == "plain":
                mask = None
            elif which == "filtered":
                mask = (kind == "slide") & (person >= 2)
            else:
                mask = (kind == "video_segment") & (end > at) & (start < at + 60)
            scores = vectors @ q
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            top = np.argpartition(-scores, 10)[:10]
            top = top[np.argsort(-scores[top])]
            top = top[np.isfinite(scores[top])]
            times.append(time.perf_counter() - t)
            truth.append(ids[top].tolist())
        out[which] = times
        out["truth"][which] = truth
    return out


def molmo_worker(data: Path, folder: Path, storage: str, args: argparse.Namespace, n_queries: int) -> dict:
    from molmo_rag.index.filters import either_layout, filter_of
    from molmo_rag.index.store import QdrantIndex

    vectors, rows = load(data)
    t = time.perf_counter()
    with QdrantIndex(folder, storage=storage) as store:
        store.ensure((EMBEDDER, DIM))
        for i in range(0, len(rows), 256):
            store.upsert_points([(r["id"], v, r["payload"]) for r, v in zip(rows[i : i + 256], vectors[i : i + 256].tolist())])
        store.settle()
    write_s = time.perf_counter() - t
    del vectors, rows
    qs, ats = queries(n_queries)
    out: dict = {"write_s": write_s, "hits": {}}
    variants = {"": filter_of} if storage == "edge" else {"": filter_of, "before ": either_layout}
    with QdrantIndex(folder, create=False) as store:
        for name, make in variants.items():
            for which in ("plain", "filtered", "range"):
                times, hits = [], []
                for q, at in zip(qs, ats):
                    flt = make(search_filter(which, at))
                    started = time.perf_counter()
                    found = store.search(q.tolist(), flt, 10)
                    times.append(time.perf_counter() - started)
                    hits.append([h.id for h in found])
                out[name + which] = times
                out["hits"][name + which] = hits
    return out


def lancedb_worker(data: Path, folder: Path, args: argparse.Namespace) -> dict:
    import lancedb
    import pyarrow as pa

    vectors, rows = load(data)
    t = time.perf_counter()
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
            "kind": [r["payload"]["kind"] for r in rows],
            "person": [r["payload"]["counts"]["person"] for r in rows],
            "start": [r["payload"].get("start") for r in rows],
            "end": [r["payload"].get("end") for r in rows],
            "payload": [json.dumps(r["payload"]) for r in rows],
        }
    )
    db = lancedb.connect(str(folder))
    tbl = db.create_table("media", table)
    if len(rows) >= 5000:
        tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
    for column in ("kind", "person", "start", "end"):
        tbl.create_scalar_index(column)
    write_s = time.perf_counter() - t
    del vectors, rows, table
    qs, ats = queries(args.queries)
    wheres = {"plain": lambda at: None, "filtered": lambda at: "kind = 'slide' AND person >= 2",
              "range": lambda at: f"kind = 'video_segment' AND \"end\" > {at} AND start < {at + 60}"}
    out: dict = {"write_s": write_s, "hits": {}}
    tbl = lancedb.connect(str(folder)).open_table("media")
    for which, where in wheres.items():
        times, hits = [], []
        for q, at in zip(qs, ats):
            started = time.perf_counter()
            query = tbl.search(q.tolist()).metric("cosine").limit(10)
            if where(at):
                query = query.where(where(at), prefilter=True)
            found = query.select(["id"]).to_list()
            times.append(time.perf_counter() - started)
            hits.append([row["id"] for row in found])
        out[which] = times
        out["hits"][which] = hits
    return out


FIRST_ANSWER = r"""
import sys, time
t = time.perf_counter()
kind, folder = sys.argv[1], sys.argv[2]
import numpy as np
q = np.ones(256, dtype=np.float32) / 16
if kind == "lancedb":
    import lancedb
    tbl = lancedb.connect(folder).open_table("media")
    tbl.search(q.tolist()).metric("cosine").where("kind = 'slide' AND person >= 2", prefilter=True).limit(10).to_list()
else:
    from molmo_rag.index.filters import SearchFilter, filter_of
    from molmo_rag.index.store import QdrantIndex
    with QdrantIndex(folder, create=False) as store:
        store.search(q.tolist(), filter_of(SearchFilter(kind=["slide"], where=["count.person>=2"])), 10)
import resource
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def worker_main(args: argparse.Namespace) -> None:
    engine, data, folder = args.worker
    data, folder = Path(data), Path(folder)
    if engine == "numpy":
        out = numpy_worker(data, args)
    elif engine == "lancedb":
        out = lancedb_worker(data, folder, args)
    else:
        out = molmo_worker(data, folder, engine, args, args.queries if engine == "edge" else args.local_queries)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


# -- the driver --------------------------------------------------------------------------------
def disk_mb(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


def recall(hits: list[list[str]], truth: list[list[str]]) -> float:
    found = sum(len(set(h) & set(t)) for h, t in zip(hits, truth))
    wanted = sum(len(t) for t in truth)
    return found / wanted if wanted else 1.0


def ms(times: list[float], q: float) -> float:
    return 1000 * (statistics.median(times) if q == 0.5 else float(np.quantile(times, q)))


def run(cmd: list[str], timeout: float) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def cli_search(folder: Path, runs: int = 3) -> float:
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        run([sys.executable, "-m", "molmo_rag", "search", "people on a stage", "--db", str(folder), "--where", "count.person>=2", "--top", "10"], 300)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--local-queries", type=int, default=10, help="queries for local mode (seconds each at 100k)")
    parser.add_argument("--max-local", type=int, default=100_000, help="largest size local mode is written at")
    parser.add_argument("--engines", default="edge,local,lancedb,numpy")
    parser.add_argument("--quick", action="store_true", help="2,000 points, 10 queries")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return 0
    if args.quick:
        args.sizes, args.queries, args.local_queries = "2000", 10, 5
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")
    if "lancedb" in engines:
        try:
            import lancedb  # noqa: F401
        except ImportError:
            print("lancedb is not installed (pip install lancedb): left out")
            engines.remove("lancedb")
    names = {"edge": "molmo-rag edge (default)", "local": "molmo-rag local", "lancedb": "LanceDB IVF_HNSW_SQ", "numpy": "numpy exact"}
    rows: list[dict] = []
    cli_walls: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="search-scale-") as tmp:
        for n in sizes:
            data = Path(tmp) / f"data-{n}"
            data.mkdir()
            make_data(n, data)
            common = ["--queries", str(args.queries), "--local-queries", str(args.local_queries)]
            truth = json.loads(run([sys.executable, __file__, "--worker", "numpy", str(data), "-", *common], 3600))
            for engine in engines:
                if engine == "local" and n > args.max_local:
                    print(f"local mode at {n:,} points left out (--max-local {args.max_local:,}: it keeps every point in Python)")
                    continue
                folder = Path(tmp) / f"{engine}-{n}"
                out = truth if engine == "numpy" else json.loads(run([sys.executable, __file__, "--worker", engine, str(data), str(folder), *common], 7200))
                first = search_rss = None
                if engine != "numpy":
                    answers = [run([sys.executable, "-c", FIRST_ANSWER, engine, str(folder)], 600).split() for _ in range(2)]
                    first, search_rss = min(float(a[0]) for a in answers), max(float(a[1]) for a in answers)
                if engine in ("edge", "local") and n in (sizes[0], sizes[-1]):
                    cli_walls[(engine, n)] = cli_search(folder)
                prefixes = [""] if engine != "local" else ["before ", ""]
                for prefix in prefixes:
                    row = {"engine": names[engine] + (", before (filter of both layouts)" if prefix else ""), "n": n}
                    row["write"] = n / out["write_s"] if "write_s" in out else None
                    row["write_s"] = out.get("write_s")
                    for which in ("plain", "filtered", "range"):
                        times = out[prefix + which]
                        row[which] = (ms(times, 0.5), ms(times, 0.95))
                        hits = truth["truth"][which] if engine == "numpy" else out["hits"][prefix + which]
                        row["recall_" + which] = recall(hits, truth["truth"][which][: len(hits)])
                    row["first"] = first
                    row["disk"] = disk_mb(folder) if engine != "numpy" else None
                    row["rss"] = out["rss_mb"]
                    row["search_rss"] = search_rss
                    row["cli"] = cli_walls.get((engine, n)) if not prefix else None
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print()
    print("| engine | points | write (points/s; s) | p50 / p95 plain (ms) | p50 / p95 filtered (ms) | p50 / p95 time range (ms) "
          "| recall@10 plain / filtered / range | open to first answer (s) | disk (MB) | peak RSS: write / open + query (MB) | `molmo-rag search` (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        write = f"{r['write']:,.0f}; {r['write_s']:.1f}" if r["write"] else "-"
        lat = " | ".join(f"{r[w][0]:.1f} / {r[w][1]:.1f}" for w in ("plain", "filtered", "range"))
        rec = " / ".join(f"{r['recall_' + w]:.3f}" for w in ("plain", "filtered", "range"))
        first = f"{r['first']:.2f}" if r["first"] is not None else "-"
        disk = f"{r['disk']:.0f}" if r["disk"] is not None else "-"
        cli = f"{r['cli']:.2f}" if r["cli"] else "-"
        rss = f"{r['rss']:.0f} / {r['search_rss']:.0f}" if r["search_rss"] else f"{r['rss']:.0f}"
        print(f"| {r['engine']} | {r['n']:,} | {write} | {lat} | {rec} | {first} | {disk} | {rss} | {cli} |")
    edge = {r["n"]: r for r in rows if r["engine"].startswith("molmo-rag edge")}
    if edge:
        big = max(edge)
        r = edge[big]
        print(f"\nTargets at {big:,} points (molmo-rag edge): filtered p50 {r['filtered'][0]:.1f} ms = "
              f"{r['filtered'][0] / r['plain'][0]:.2f}x plain (target < 3x and < 20 ms); recall@10 "
              f"{min(r['recall_plain'], r['recall_filtered'], r['recall_range']):.3f} (target >= 0.99); RSS {r['search_rss']:.0f} MB searching, "
              f"{r['rss']:.0f} MB writing (the data itself included) (target < 1 GB); "
              f"write {r['write_s']:.0f} s (today's local mode: 227 s at 100k)")
        small = min(edge)
        if ("edge", small) in cli_walls and ("edge", big) in cli_walls:
            print(f"molmo-rag search end to end: {cli_walls[('edge', small)]:.2f} s at {small:,}, {cli_walls[('edge', big)]:.2f} s at {big:,} "
                  f"({cli_walls[('edge', big)] / cli_walls[('edge', small)]:.2f}x; target < 1.5 s and < 1.5x)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
