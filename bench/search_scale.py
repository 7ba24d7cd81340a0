"""Search at scale: every embedded engine side by side on the same data, one run.

The data (``bench/_scale_data.py``) has the project's payload layout and vector size: the
points an index run writes (:meth:`MediaRecord.point_payload`: images, slides, video
segments; counts with realistic spreads, slide numbers, start/end, sources under a few
folders, captions, 128 px thumbnails), 256-d unit vectors in clusters, seeded; made once
per size and read by every engine. Queries: a fixed seeded set, each run three ways:
plain, filtered (kind slide AND count.person>=2, :class:`SearchFilter` as the product
builds it) and a time range (video segments overlapping [a, a+60 s]).

Engines:

* ``edge``: molmo-rag's ``QdrantIndex`` on Qdrant Edge (the default for a new folder):
  ``upsert_points`` then ``settle()``; ``QdrantIndex.search`` with the product's filter;
* ``local``: ``QdrantIndex(storage="local")``, qdrant-client's local mode (the previous
  default), searched three ways: the either-layout filter search used before this issue
  ("today"), the one-layout filter it uses now, and raw ``client.query_points``;
* ``rawedge``: ``qdrant_edge`` itself with the same config and payload indexes (what our
  layer costs on top);
* ``lancedb``: LanceDB with an IVF_HNSW_SQ index and scalar indexes (skipped with a note
  when not installed); defaults, and a variant with more probes and a refine step;
* ``numpy``: exact search over an array, no payload store: the floor, and the ground
  truth of recall@10.

Each engine writes in its own process and is searched in another fresh one (so RSS is
its own: peak RSS, VmHWM); open-to-first-answer is that fresh process's wall
time from spawn to its first (filtered) answer. ``molmo-rag search "..." --where
count.person>=2`` end to end is a fresh CLI process, median of ``--e2e-runs``, for the
molmo-rag engines, also at ``--e2e-base`` points to show how it grows.

    .venv/bin/python bench/search_scale.py [--sizes 10000,100000,1000000] [--quick]
        [--engines numpy,edge,rawedge,lancedb,local] [--max-local 100000] [--queries 50]

Prints markdown tables (and ``--json PATH`` the raw figures). The machine is shared:
read the ratios more than the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

import _scale_data as data  # noqa: E402

ENGINES = ("numpy", "edge", "rawedge", "lancedb", "local")
MODES = ("plain", "filtered", "time")
COLLECTION = "molmo_rag"
CLI_QUERY = "two people next to a whiteboard"
TARGETS = {
    "filtered_ratio": 3.0, "filtered_ms": 20.0, "e2e_s": 1.5, "e2e_growth": 1.5, "write_100k_s": 227.0,
    "recall": 0.99, "rss_mb": 1024.0,
}


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: its own memory since exec; getrusage's ru_maxrss
    would also count what the parent held when it forked this process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk_mb(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


def _filters() -> tuple[Any, Any]:
    from molmo_rag.index.filters import SearchFilter

    return SearchFilter(kind=["slide"], where=["count.person>=2"]), SearchFilter


# -- writing (one process per engine) ------------------------------------------------------
def _embedder_name() -> str:
    from molmo_rag.index.embeddings import get_embedder

    return get_embedder().name  # loaded before any timer: the CLI needs the name recorded


def build_molmo(storage: str, folder: Path, src: Path, batch: int, thumbnails: bool) -> dict:
    from molmo_rag.index.store import QdrantIndex

    name = _embedder_name()
    writing = 0.0
    with QdrantIndex(folder, storage=storage) as store:
        store.ensure((name, data.DIM))
        for chunk in data.points(src, name, thumbnails=thumbnails, batch=batch):
            started = time.perf_counter()
            store.upsert_points(chunk)
            writing += time.perf_counter() - started
        started = time.perf_counter()
        store.settle()
        settling = time.perf_counter() - started
        started = time.perf_counter()
    closing = time.perf_counter() - started
    return {"write_s": writing, "build_s": settling + closing}


def build_rawedge(folder: Path, src: Path, batch: int, thumbnails: bool) -> dict:
    import qdrant_edge as q

    from molmo_rag.index.edge import EdgeStorage
    from molmo_rag.index.store import INDEXED_FIELDS

    name = _embedder_name()
    folder.mkdir(parents=True, exist_ok=True)
    made = EdgeStorage(folder, create=True)  # the shard and indexes molmo-rag makes; from here on qdrant_edge alone
    made.create(COLLECTION, {"text-dense": data.DIM}, {})
    for key, schema in {**INDEXED_FIELDS, "counts.person": "integer", "counts.car": "integer", "counts.chart": "integer"}.items():
        made.index_field(COLLECTION, key, schema)
    made.close()
    shard = q.EdgeShard.load(str(folder / "edge" / COLLECTION))
    writing = 0.0
    for chunk in data.points(src, name, thumbnails=thumbnails, batch=batch):
        started = time.perf_counter()
        shard.update(q.UpdateOperation.upsert_points([q.Point(id=pid, vector={"text-dense": vec.tolist()}, payload=payload)
                                                      for pid, vec, payload in chunk]))
        writing += time.perf_counter() - started
    started = time.perf_counter()
    shard.optimize()
    shard.flush()
    shard.close()
    return {"write_s": writing, "build_s": time.perf_counter() - started}


def _lance_rows(chunk: list, pa: Any) -> Any:
    payloads = [payload for _, _, payload in chunk]
    return pa.table({
        "id": [pid for pid, _, _ in chunk],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.stack([v for _, v, _ in chunk]).ravel()), data.DIM),
        "kind": [p["kind"] for p in payloads],
        "source": [p["source"] for p in payloads],
        "counts_person": pa.array([p["counts"].get("person") for p in payloads], pa.int32()),
        "slide": pa.array([p.get("slide") for p in payloads], pa.int32()),
        "seg_start": pa.array([p.get("start") for p in payloads], pa.float64()),
        "seg_end": pa.array([p.get("end") for p in payloads], pa.float64()),
        "text": [p["text"] for p in payloads],
        "payload": [json.dumps(p) for p in payloads],
    })


def build_lancedb(folder: Path, src: Path, batch: int, thumbnails: bool) -> dict:
    import lancedb
    import pyarrow as pa

    name = _embedder_name()
    db = lancedb.connect(str(folder))
    table = None
    writing = 0.0
    for chunk in data.points(src, name, thumbnails=thumbnails, batch=max(batch, 10_000)):
        rows = _lance_rows(chunk, pa)
        started = time.perf_counter()
        if table is None:
            table = db.create_table(COLLECTION, data=rows)
        else:
            table.add(rows)
        writing += time.perf_counter() - started
    started = time.perf_counter()
    table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
    table.create_scalar_index("kind", index_type="BITMAP")
    for column in ("counts_person", "slide", "seg_start", "seg_end"):
        table.create_scalar_index(column, index_type="BTREE")
    return {"write_s": writing, "build_s": time.perf_counter() - started}


def build_numpy(folder: Path, src: Path) -> dict:
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "vectors.npy", folder / "vectors.npy")
    shutil.copy(src / "columns.npz", folder / "columns.npz")
    shutil.copy(src / "ids.npy", folder / "ids.npy")
    return {"write_s": time.perf_counter() - started, "build_s": 0.0}


def worker_build(engine: str, folder: Path, src: Path, batch: int, thumbnails: bool) -> dict:
    if engine in ("edge", "local"):
        out = build_molmo(engine, folder, src, batch, thumbnails)
    elif engine == "rawedge":
        out = build_rawedge(folder, src, batch, thumbnails)
    elif engine == "lancedb":
        out = build_lancedb(folder, src, batch, thumbnails)
    else:
        out = build_numpy(folder, src)
    return {**out, "rss_mb": _peak_rss_mb()}


# -- searching (a fresh process per engine) ------------------------------------------------
class Searcher:
    """One engine opened on its folder: ``variants`` maps a row name to a function
    ``(mode, vector, after, before) -> ids``."""

    def __init__(self, engine: str, folder: Path):
        self.engine, self.folder = engine, folder
        self.variants: dict[str, Any] = {}
        getattr(self, f"_open_{engine}")()

    def _open_edge(self) -> None:
        from molmo_rag.index.filters import filter_of
        from molmo_rag.index.store import QdrantIndex

        slides, make = _filters()
        store = QdrantIndex(self.folder, create=False)
        self.store = store

        def search(mode: str, vector: Any, after: float, before: float) -> list[str]:
            flt = None if mode == "plain" else filter_of(slides if mode == "filtered" else make(after=after, before=before))
            return [h.id for h in store.search(vector, flt, 10)]

        self.variants["molmo-rag Edge (QdrantIndex.search)"] = search

    def _open_local(self) -> None:
        from molmo_rag.index.filters import build_filter, filter_of
        from molmo_rag.index.store import QdrantIndex
        from molmo_rag.pipeline import _either_layout

        slides, make = _filters()
        store = QdrantIndex(self.folder, create=False)
        self.store = store

        def by(filter_for: Any) -> Any:
            def search(mode: str, vector: Any, after: float, before: float) -> list[str]:
                flt = None if mode == "plain" else filter_for(slides if mode == "filtered" else make(after=after, before=before))
                return [h.id for h in store.search(vector, flt, 10)]

            return search

        def raw(mode: str, vector: Any, after: float, before: float) -> list[str]:
            flt = None if mode == "plain" else build_filter(slides if mode == "filtered" else make(after=after, before=before))
            points = store.client.query_points(COLLECTION, query=[float(x) for x in vector], using="text-dense",
                                               query_filter=flt, limit=10, with_payload=True).points
            return [str(p.id) for p in points]

        self.variants["molmo-rag local mode, today (either-layout filter)"] = by(_either_layout)
        self.variants["molmo-rag local mode, one-layout filter (this issue)"] = by(filter_of)
        self.variants["qdrant-client local mode, raw query_points"] = raw

    def _open_rawedge(self) -> None:
        import qdrant_edge as q

        from molmo_rag.index.edge import EXACT_UP_TO, HNSW_EF, to_edge_filter
        from molmo_rag.index.filters import filter_of

        slides, make = _filters()
        shard = q.EdgeShard.load(str(self.folder / "edge" / COLLECTION))
        self.store = shard
        slide_filter = to_edge_filter(filter_of(slides), q)

        def search(mode: str, vector: Any, after: float, before: float) -> list[str]:
            flt = None if mode == "plain" else slide_filter if mode == "filtered" else to_edge_filter(filter_of(make(after=after, before=before)), q)
            exact = shard.count(q.CountRequest(exact=False, filter=flt)) <= EXACT_UP_TO  # molmo-rag's rule
            params = q.SearchParams(exact=True) if exact else q.SearchParams(hnsw_ef=HNSW_EF)
            request = q.QueryRequest(limit=10, query=q.Query.Nearest(vector.tolist(), using="text-dense"), filter=flt,
                                     params=params, with_payload=True)
            return [str(p.id) for p in shard.query(request)]

        self.variants["qdrant-edge raw + payload indexes"] = search

    def _open_lancedb(self) -> None:
        import lancedb

        table = lancedb.connect(str(self.folder)).open_table(COLLECTION)
        self.store = table

        def tuned(nprobes: int | None, refine: int | None) -> Any:
            def search(mode: str, vector: Any, after: float, before: float) -> list[str]:
                query = table.search(vector, vector_column_name="vector").distance_type("cosine")
                if nprobes:
                    query = query.nprobes(nprobes)
                if refine:
                    query = query.refine_factor(refine)
                if mode == "filtered":
                    query = query.where("kind = 'slide' AND counts_person >= 2", prefilter=True)
                elif mode == "time":
                    query = query.where(f"seg_end > {after} AND seg_start < {before}", prefilter=True)
                return query.limit(10).select(["id", "payload", "_distance"]).to_arrow().column("id").to_pylist()

            return search

        self.variants["LanceDB IVF_HNSW_SQ (defaults)"] = tuned(None, None)
        self.variants["LanceDB IVF_HNSW_SQ (nprobes 64, refine 10)"] = tuned(64, 10)

    def _open_numpy(self) -> None:
        vectors = np.load(self.folder / "vectors.npy")
        columns = data.load_columns(self.folder)
        ids = np.load(self.folder / "ids.npy")
        self.store = None

        def search(mode: str, vector: Any, after: float, before: float) -> list[str]:
            mask = None if mode == "plain" else data.filtered_mask(columns) if mode == "filtered" else data.time_mask(columns, after, before)
            return [str(ids[i]) for i in data.exact_top(vectors, vector, mask)]

        self.variants["numpy exact, no payload store (floor)"] = search

    def close(self) -> None:
        closing = getattr(self.store, "close", None)
        if closing is not None:
            closing()


def worker_search(engine: str, folder: Path, src: Path, count: int) -> dict:
    started = time.perf_counter()
    searcher = Searcher(engine, folder)
    opened = time.perf_counter() - started
    qs = data.queries(src)
    first_variant = next(iter(searcher.variants.values()))
    first_variant("filtered", qs["vectors"][0], float(qs["after"][0]), float(qs["before"][0]))
    print("FIRST", flush=True)
    first = time.perf_counter() - started - opened
    out: dict = {"open_s": opened, "first_query_s": first, "variants": {}}
    for name, search in searcher.variants.items():
        rows: dict = {}
        for mode in MODES:
            search(mode, qs["vectors"][-1], float(qs["after"][-1]), float(qs["before"][-1]))  # warm up, untimed
            times, hits = [], []
            for i in range(count):
                t = time.perf_counter()
                hits.append(search(mode, qs["vectors"][i], float(qs["after"][i]), float(qs["before"][i])))
                times.append(time.perf_counter() - t)
            rows[mode] = {"times": times, "hits": hits}
        out["variants"][name] = rows
    searcher.close()
    out["rss_mb"] = _peak_rss_mb()
    return out


# -- the parent: run each engine in its own processes -------------------------------------
def _worker(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"worker {args[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _search_process(args: list[str]) -> dict:
    """Run the search worker; open-to-first-answer is the wall time from spawn to its
    ``FIRST`` line (interpreter start and imports included, like a user's process)."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a chatty engine cannot fill it and stall
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=errors, text=True, cwd=ROOT)
        first = None
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "FIRST" and first is None:
                first = time.perf_counter() - started
            else:
                lines.append(line)
        if proc.wait():
            errors.seek(0)
            raise RuntimeError(f"search worker {args[:3]} failed:\n{errors.read()[-3000:]}")
    out = json.loads(lines[-1])
    out["first_answer_s"] = first
    return out


def cli_seconds(folder: Path, runs: int) -> list[float]:
    cli = Path(sys.executable).parent / "molmo-rag"
    command = [str(cli), "search", CLI_QUERY, "--db", str(folder), "--where", "count.person>=2"]
    times = []
    for run in range(runs + 1):  # the first warms the OS caches, untimed
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if run:
            times.append(time.perf_counter() - started)
        if done.returncode:
            raise RuntimeError(f"molmo-rag search failed ({done.returncode}): {done.stderr[-2000:]}")
    return times


def truth(src: Path, count: int) -> dict[str, list[set[str]]]:
    vectors = np.load(src / "vectors.npy")
    columns = data.load_columns(src)
    ids = np.load(src / "ids.npy")
    qs = data.queries(src)
    slides = data.filtered_mask(columns)
    out: dict[str, list[set[str]]] = {mode: [] for mode in MODES}
    for i in range(count):
        v = qs["vectors"][i]
        masks = {"plain": None, "filtered": slides, "time": data.time_mask(columns, float(qs["after"][i]), float(qs["before"][i]))}
        for mode, mask in masks.items():
            out[mode].append({str(ids[j]) for j in data.exact_top(vectors, v, mask)})
    return out


def recall(hits: list[list[str]], expected: list[set[str]]) -> float:
    found = sum(len(set(h) & e) for h, e in zip(hits, expected))
    return found / max(1, sum(len(e) for e in expected))


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def measure(engine: str, size: int, src: Path, work: Path, args: argparse.Namespace, expected: dict) -> list[dict]:
    folder = work / f"{engine}-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    count = args.queries if engine != "local" or size <= 10_000 else min(args.queries, args.local_queries)
    common = ["--data", str(src), "--folder", str(folder)]
    print(f"[{size}] {engine}: writing", file=sys.stderr, flush=True)
    built = _worker(["--worker", "build", "--engine", engine, *common, "--batch", str(args.batch),
                     *(["--no-thumbnails"] if args.no_thumbnails else [])])
    print(f"[{size}] {engine}: written in {built['write_s']:.1f} s + {built['build_s']:.1f} s; searching", file=sys.stderr, flush=True)
    found = _search_process(["--worker", "search", "--engine", engine, *common, "--count", str(count)])
    disk = _disk_mb(folder)
    e2e = cli_seconds(folder, args.e2e_runs) if engine in ("edge", "local") else None
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for name, modes in found["variants"].items():
        label = name if count == args.queries else f"{name} ({count} queries)"
        row = {"size": size, "engine": engine, "name": label, "queries": count, "write_s": built["write_s"], "build_s": built["build_s"],
               "write_rss_mb": built["rss_mb"], "rss_mb": found["rss_mb"], "open_s": found["open_s"],
               "first_answer_s": found["first_answer_s"], "disk_mb": disk, "e2e_s": e2e}
        for mode in MODES:
            times = modes[mode]["times"]
            row[f"{mode}_p50"], row[f"{mode}_p95"] = ms(times, 50), ms(times, 95)
            row[f"{mode}_recall"] = recall(modes[mode]["hits"], expected[mode][:count])
        rows.append(row)
    return rows


def _cell(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_size(size: int, rows: list[dict], skipped: list[str]) -> None:
    print(f"\n### {size:,} points\n")
    print("| engine | write points/s (write + build s) | p50 / p95 plain ms | p50 / p95 filtered ms | p50 / p95 time range ms "
          "| recall@10 plain / filtered / time | open to first answer s | disk MB | RSS search / write MB | `molmo-rag search` s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        total = r["write_s"] + r["build_s"]
        write = "-" if r["engine"] == "numpy" else f"{size / total:,.0f} ({r['write_s']:.1f} + {r['build_s']:.1f})"
        e2e = f"{statistics.median(r['e2e_s']):.2f}" if r["e2e_s"] else "-"
        print(f"| {r['name']} | {write} "
              f"| {r['plain_p50']:,.1f} / {r['plain_p95']:,.1f} | {r['filtered_p50']:,.1f} / {r['filtered_p95']:,.1f} "
              f"| {r['time_p50']:,.1f} / {r['time_p95']:,.1f} "
              f"| {r['plain_recall']:.3f} / {r['filtered_recall']:.3f} / {r['time_recall']:.3f} "
              f"| {r['first_answer_s']:.2f} | {r['disk_mb']:,.0f} | {r['rss_mb']:,.0f} / {r['write_rss_mb']:,.0f} | {e2e} |")
    for note in skipped:
        print(f"\n_{note}_")


def print_targets(rows: list[dict], base: dict[str, float]) -> None:
    edge = [r for r in rows if r["engine"] == "edge"]
    if not edge:
        return
    t = TARGETS
    print("\n### Targets (molmo-rag on Edge)\n")
    print("| size | filtered p50 / plain p50 (target < 3x) | filtered p50 ms (< 20) | time range p50 ms | recall@10 plain / filtered (>= 0.99) "
          "| write + build s (100k: < 227) | RSS search MB (< 1024) | `molmo-rag search` s (< 1.5) | growth vs base (< 1.5x) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in edge:
        e2e = statistics.median(r["e2e_s"]) if r["e2e_s"] else None
        growth = e2e / base["edge"] if e2e and base.get("edge") else None

        def mark(ok: bool) -> str:
            return "" if ok else " **(miss)**"

        ratio = r["filtered_p50"] / r["plain_p50"]
        total = r["write_s"] + r["build_s"]
        write_ok = total <= t["write_100k_s"] * r["size"] / 100_000
        print(f"| {r['size']:,} | {ratio:.2f}x{mark(ratio < t['filtered_ratio'])} | {r['filtered_p50']:.1f}{mark(r['filtered_p50'] < t['filtered_ms'])} "
              f"| {r['time_p50']:.1f} | {r['plain_recall']:.3f} / {r['filtered_recall']:.3f}{mark(min(r['plain_recall'], r['filtered_recall']) >= t['recall'])} "
              f"| {total:.1f}{mark(write_ok)} | {r['rss_mb']:,.0f}{mark(r['rss_mb'] < t['rss_mb'])} "
              f"| {_cell(e2e, '{:.2f}')}{'' if e2e is None else mark(e2e < t['e2e_s'])} | {_cell(growth, '{:.2f}x')}{'' if growth is None else mark(growth < t['e2e_growth'])} |")


def e2e_base(size: int, work: Path, args: argparse.Namespace, engines: list[str]) -> dict[str, float]:
    """``molmo-rag search`` end to end on a small index (what the growth is measured from)."""
    src = data.make(work / f"data-{size}", size, args.seed, args.queries)
    base = {}
    for engine in [e for e in ("edge", "local") if e in engines]:
        folder = work / f"e2e-{engine}-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        _worker(["--worker", "build", "--engine", engine, "--data", str(src), "--folder", str(folder), "--batch", str(args.batch),
                 *(["--no-thumbnails"] if args.no_thumbnails else [])])
        base[engine] = statistics.median(cli_seconds(folder, args.e2e_runs))
        shutil.rmtree(folder, ignore_errors=True)
    return base


def _memory_gb() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated point counts")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 points, 10 queries, e2e base 500")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--max-local", type=int, default=100_000, help="largest size local mode runs at (it keeps every point in Python)")
    parser.add_argument("--local-queries", type=int, default=10, help="queries for local mode past 10,000 points (seconds each)")
    parser.add_argument("--batch", type=int, default=256, help="points per upsert")
    parser.add_argument("--e2e-base", type=int, default=1000, help="small size `molmo-rag search` growth is measured from (0: none)")
    parser.add_argument("--e2e-runs", type=int, default=3)
    parser.add_argument("--no-thumbnails", action="store_true", help="payloads without the 128 px thumbnail")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--work", type=Path, help="folder for data and indexes (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep each engine's folder")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--worker", choices=("build", "search"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "build":
        print(json.dumps(worker_build(args.engine, args.folder, args.data, args.batch, not args.no_thumbnails)))
        return 0
    if args.worker == "search":
        print(json.dumps(worker_search(args.engine, args.folder, args.data, args.count)))
        return 0

    if args.quick:
        args.sizes, args.queries, args.e2e_base = "2000", min(args.queries, 10), 500
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    notes: list[str] = []
    if "lancedb" in engines:
        try:
            import lancedb  # noqa: F401
        except ImportError:
            engines.remove("lancedb")
            notes.append("LanceDB skipped: not installed (pip install lancedb)")
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="molmo-rag-scale-")
        args.work = Path(tmp.name)
    args.work.mkdir(parents=True, exist_ok=True)
    all_rows: list[dict] = []
    try:
        base = e2e_base(args.e2e_base, args.work, args, engines) if args.e2e_base else {}
        print(f"# Search at scale ({', '.join(f'{s:,}' for s in sizes)} points; {args.queries} queries; "
              f"{'no thumbnails' if args.no_thumbnails else 'payloads with thumbnails'}; batches of {args.batch})")
        if base:
            print(f"\n`molmo-rag search` at {args.e2e_base:,} points (growth base): "
                  + ", ".join(f"{engine} {seconds:.2f} s" for engine, seconds in base.items()))
        for note in notes:
            print(f"\n_{note}_")
        for size in sizes:
            free = _memory_gb()
            print(f"[{size}] making data ({free:.1f} GB of memory available)", file=sys.stderr, flush=True)
            src = data.make(args.work / f"data-{size}", size, args.seed, args.queries)
            expected = truth(src, args.queries)
            rows, skipped = [], []
            for engine in engines:
                if engine == "local" and size > args.max_local:
                    skipped.append(f"local mode skipped at {size:,} points (> --max-local {args.max_local:,}): it holds every "
                                   "point in Python and scans them (3.7 GB and seconds a filtered query at 100k)")
                    continue
                rows.extend(measure(engine, size, src, args.work, args, expected))
            print_size(size, rows, skipped)
            sys.stdout.flush()
            all_rows.extend(rows)
            if not args.keep:
                shutil.rmtree(src, ignore_errors=True)
        print_targets(all_rows, base)
        if args.json:
            args.json.write_text(json.dumps({"base_e2e_s": base, "rows": all_rows}, indent=1))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
