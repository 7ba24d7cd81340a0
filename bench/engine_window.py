"""The streaming engine (issue 9) against the chunked processing it replaced, side by side.

1. **Hosted API, heavy-tailed jobs.** A loopback WaveSpeed server whose jobs take a
   lognormal time (median 0.5 s, sigma 0.8, fixed seed: the n-th job created gets the same
   latency in every variant). ``caption`` and ``index`` over N small PNG photos at
   concurrency 16, each two ways:

   * *chunked (old)*: the code before the engine, reproduced here: read a chunk (32 items
     for caption; 16 items, the old ``chunk_size`` default, for index), send every request
     of the chunk at once through a fresh session (the old ``_execute``: all chunk jobs in
     flight, ``concurrency`` HTTP slots), wait for the slowest, next chunk; index stores
     chunk N (embed + upsert, one writer thread) while chunk N+1 is enriched, as it did;
   * *engine*: ``analyze(...)`` and ``pipeline.index(...)`` as they are now (a sliding
     window of ``concurrency`` jobs);
   * a diagnostic row for caption (left out with ``--quick``): the engine with
     ``enable_sync_mode`` (the POST waits for the job: no polling, so what is left is the
     window itself).

   The server runs in a process of its own and records every job (created, latency, when
   a poll first said it was done).
   From those, the **ideal schedule**: list scheduling of the very same latencies, in the
   order the jobs were created, on P slots (each job starts the instant a slot frees, and
   the client learns of each end at once). "span" is the server's first job creation to
   last job end; span / ideal at the client's own P is the figure of merit (target for
   the engine: <= 1.15x).

2. **Local model.** The tiny random Molmo2 (``build_tiny_molmo2``, the real transformers
   code path) captioning real photos at batch 8: share of wall time the model is busy
   through ``analyze`` (pixels decoded in worker threads while the model generates) vs the
   old way (``generate_batch`` on chunks, decoding inside it, batches in sequence).

3. **Memory.** Peak RSS of ``analyze`` over 400 vs 1,600 photos (FakeBackend, each size in
   a fresh subprocess): flat means the 1,600 run needs about what the 400 run needs.

Prints markdown tables with ratios.

    .venv/bin/python bench/engine_window.py            # 320 photos, ~6 minutes on 2 busy cores
    .venv/bin/python bench/engine_window.py --quick    # ~1 minute
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP workers that spin while waiting steal the CPU from the ones
# working when other processes share the cores; on this shared 2-core machine the same
# tiny-model batch took 0.7 s to 8 s with the default policy (and 10x more in the main
# thread). PASSIVE makes the local section measure the engine, not the spinning; both
# variants run under it. Pass OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import heapq
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path

KEY = "bench-key-0123456789"
CACHE_DIR = Path(tempfile.gettempdir()) / "molmo-rag-bench"


# -- shared helpers ------------------------------------------------------------------------------


def chunks(iterable: Iterable, size: int) -> Iterator[list]:
    it = iter(iterable)
    while chunk := list(islice(it, size)):
        yield chunk


def make_small_photos(folder: Path, n: int, side: int = 64) -> list[Path]:
    """n distinct small PNG photos of varied colours (a gradient and a block per image)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    paths = []
    for i in range(n):
        base = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53 + 80) % 256], dtype=np.float32)
        pixels = base * (0.5 + 0.5 * ramp[:, None, None]) * (0.6 + 0.4 * ramp[None, :, None])
        x = (i * 7) % (side // 2)
        pixels[x : x + side // 4, x : x + side // 4] = 255 - base
        path = folder / f"photo_{i:05d}.png"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def make_real_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """n distinct JPEG files made from the bundled photographs, resized to ``size`` (a real
    decode per file; a pixel per file differs, so no two share a cache key)."""
    from PIL import Image, ImageOps

    from molmo_rag.testing.samples import PHOTOS, photo

    folder.mkdir(parents=True, exist_ok=True)
    bases = [photo(name).convert("RGB").resize(size, Image.BILINEAR) for name in PHOTOS]
    paths = []
    for i in range(n):
        image = bases[i % len(bases)]
        if (i // len(bases)) % 2:
            image = ImageOps.mirror(image)
        image = image.copy()
        image.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
        path = folder / f"photo_{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


# -- the ideal schedule --------------------------------------------------------------------------


def list_schedule(durations: Sequence[float], slots: int) -> float:
    """Makespan of jobs started in the given order, each the moment one of ``slots`` frees."""
    free = [0.0] * max(1, slots)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + duration)
        end = max(end, start + duration)
    return end


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def job_figures(records: list) -> dict:
    """Span, ideal schedules and poll lag from the server's own record of the jobs."""
    records = sorted(records, key=lambda r: r.created)
    latencies = [r.latency for r in records]
    first = records[0].created
    ends = [r.delivered if r.delivered is not None else r.done_at for r in records]
    lags = [e - r.done_at for e, r in zip(ends, records)]
    return {
        "jobs": len(records),
        "span": max(r.done_at for r in records) - first,
        "span_delivered": max(ends) - first,
        "ideal16": list_schedule(latencies, 16),
        "ideal32": list_schedule(latencies, 32),
        "in_flight": max_overlap([(r.created, e) for r, e in zip(records, ends)]),
        "lag_mean": statistics.fmean(lags),
        "lag_p90": sorted(lags)[int(0.9 * (len(lags) - 1))],
        "work": sum(latencies),
        "occupancy": [e - r.created for e, r in zip(ends, records)],
    }


# -- 1. hosted API: chunked vs engine ------------------------------------------------------------


async def old_arun(backend, requests):
    """The old ``RestBackend._execute``: one session (one httpx client, one RestClient) per
    call, every request of it sent at once (jobs capped by ``max_jobs`` = 64, HTTP requests
    by ``concurrency``), all awaited together."""
    async with backend.session() as session:
        return list(await asyncio.gather(*(session.answer(r) for r in requests)))


def caption_old(backend, folder: Path, chunk_size: int = 32) -> int:
    """The old ``analyze``: read ``chunk_size`` items, send all, wait for all, next chunk."""
    from molmo_rag.backends.base import Request
    from molmo_rag.media import read
    from molmo_rag.media.items import MediaItem
    from molmo_rag.results import Result
    from molmo_rag.syncio import run_sync
    from molmo_rag.tasks import Caption

    ok = 0
    for chunk in chunks(read([str(folder)]), chunk_size):
        requests = [Request(e, Caption()) for e in chunk if isinstance(e, MediaItem)]
        outcomes = run_sync(old_arun(backend, requests)) if requests else []
        ok += sum(isinstance(o, Result) for o in outcomes)
    return ok


def caption_engine(backend, folder: Path) -> int:
    from molmo_rag.analyze import analyze
    from molmo_rag.results import Result
    from molmo_rag.tasks import Caption

    return sum(isinstance(r, Result) for r in analyze([str(folder)], [Caption()], backend, cache=False))


def index_old(backend, folder: Path, db: Path, chunk_size: int = 16) -> int:
    """The old ``pipeline.index``: chunks of ``chunk_size`` items through the enricher (all
    their requests at once, as above), then the chunk is stored (thumbnails, embed, upsert)
    in one writer thread while the next chunk is enriched."""
    from molmo_rag.backends.base import Request
    from molmo_rag.documents import MediaDocument, document_of
    from molmo_rag.engine import EnrichedItem, read_entries
    from molmo_rag.media.items import MediaItem
    from molmo_rag.pipeline import RunSummary, _embedder_for, _Writer, open_index
    from molmo_rag.results import Failure, Result
    from molmo_rag.run import Run
    from molmo_rag.syncio import run_sync

    store = open_index(db)
    run = Run(backend=backend, cache=False, on_warning=lambda message: None)
    summary = RunSummary()
    try:
        vectors = _embedder_for(store, None)
        store.ensure(vectors)
        writer = _Writer(store, vectors, summary, 128, None, chunk_size, 1.0)
        pool = ThreadPoolExecutor(1, thread_name_prefix="old-index-writer")
        pending: Future | None = None
        enricher = run.planner
        for chunk in chunks(read_entries(str(folder), absolute=True), chunk_size):
            items = [e for e in chunk if isinstance(e, MediaItem)]
            wanted = [(item, task) for item in items for task in enricher.plan(item)]
            outcomes = run_sync(old_arun(backend, [Request(i, t) for i, t in wanted])) if wanted else []
            enriched = {id(item): EnrichedItem(item) for item in items}
            for (item, task), outcome in zip(wanted, outcomes):
                if isinstance(outcome, Result):
                    enriched[id(item)].results.append(outcome)
                else:
                    enriched[id(item)].failures.append(Failure(source=item.source, error=outcome, task=task, item=item))
            documents = [d for d in (document_of(e, thumbnail_size=0) for e in enriched.values()) if isinstance(d, MediaDocument)]
            if pending is not None:
                pending.result()
            pending = pool.submit(writer._write, documents)
        if pending is not None:
            pending.result()
        pool.shutdown()
        return summary.indexed
    finally:
        run.close()
        store.close()


def index_engine(backend, folder: Path, db: Path) -> int:
    from molmo_rag import pipeline

    summary = pipeline.index(str(folder), backend=backend, db=db, cache=False, on_warning=lambda m: None)
    assert not summary.failed, summary.failed[:3]
    return summary.indexed


class ServerProcess:
    """The loopback WaveSpeed server in a process of its own (as a hosted API is), so its
    request handling does not compete with the client for this process's GIL. Commands go
    over a pipe; job times are ``time.monotonic()``, one clock for both processes."""

    def __init__(self, **options):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, options), daemon=True)
        self._process.start()
        self.base_url = self._conn.recv()

    def call(self, command: str):
        self._conn.send(command)
        return self._conn.recv()

    def close(self) -> None:
        self.call("stop")
        self._process.join(10)


class _Record:
    __slots__ = ("created", "delivered", "done_at", "latency")

    def __init__(self, created: float, latency: float, delivered: float | None):
        self.created, self.latency, self.delivered = created, latency, delivered
        self.done_at = created + latency


def _serve(conn, options) -> None:
    from molmo_rag.testing.loopback import WaveSpeedServer

    server = WaveSpeedServer(**options).start()
    conn.send(server.base_url)
    while True:
        command = conn.recv()
        if command == "reset":  # every variant gets the same latencies, job by job
            server.reseed()
            server.reset_stats()
            server.jobs.clear()
            conn.send(None)
        elif command == "stats":
            jobs = [(r.created, r.latency, r.delivered) for r in server.stats.jobs]
            conn.send({"jobs": jobs, "requests": server.stats.requests, "max_in_flight": server.stats.max_in_flight})
        elif command == "stop":
            server.stop()
            conn.send(None)
            return


def rest_section(args, tmp: Path) -> list[dict]:
    from molmo_rag.backends.base import get_backend
    from molmo_rag.index.embeddings import get_embedder

    n = args.photos
    folder = tmp / "small"
    make_small_photos(folder, n)
    warm = tmp / "warm"
    make_small_photos(warm, 2)
    get_embedder()  # loaded once, outside the timings
    server = ServerProcess(api_key=KEY, latency=args.median, latency_sigma=args.sigma, seed=args.seed)
    rows = []
    try:
        def backend(**options):
            return get_backend("wavespeed", api_key=KEY, base_url=server.base_url, concurrency=args.concurrency, **options)

        default = backend()
        sync = backend(enable_sync_mode=True)
        for client in (default, sync):
            caption_engine(client, warm)  # untimed warm-up: imports, first connections
        w = default.window
        variants = [
            ("caption", "chunked (old): 32 items, all sent, wait for all", 32, lambda: caption_old(default, folder)),
            ("caption", f"engine: analyze(), window {w}", w, lambda: caption_engine(default, folder)),
            ("caption", "engine, enable_sync_mode (no polling)", w, lambda: caption_engine(sync, folder)),
            ("index", "chunked (old): 16 items, all sent, wait for all, store", 16, lambda: index_old(default, folder, tmp / "db-old")),
            ("index", f"engine: pipeline.index(), window {w}", w, lambda: index_engine(default, folder, tmp / "db-engine")),
        ]
        if args.quick:
            variants = [v for v in variants if "sync" not in v[1]]
        for command, name, parallel, run in variants:
            server.call("reset")
            started, cpu = time.perf_counter(), time.process_time()
            done = run()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert done == n, f"{command} {name}: {done} of {n} done"
            stats = server.call("stats")
            records = [_Record(*job) for job in stats["jobs"]]
            figures = job_figures(records)
            figures["ideal_own"] = list_schedule([r.latency for r in sorted(records, key=lambda r: r.created)], parallel)
            figures["refill"] = list_schedule(figures.pop("occupancy"), parallel)
            rows.append({
                "command": command, "name": name, "parallel": parallel, "wall": wall, "cpu": cpu,
                "requests_per_job": stats["requests"] / max(1, figures["jobs"]), **figures,
            })
            print(f"  {command:8s} {name}: {wall:.1f} s", file=sys.stderr, flush=True)
        for client in (default, sync):
            client.close()
    finally:
        server.close()
    return rows


def print_rest(rows: list[dict], args) -> None:
    first = rows[0]
    print(
        f"\n{args.photos} photos (64x64 PNG), loopback WaveSpeed in its own process, lognormal job latency median "
        f"{args.median:g} s, sigma {args.sigma:g}, seed {args.seed}: every run gets the same {first['jobs']} latencies in "
        f"creation order ({first['work']:.0f} s of work; ideal schedule {first['ideal16']:.2f} s at P=16, "
        f"{first['ideal32']:.2f} s at P=32); concurrency {args.concurrency}\n"
    )
    print(
        "| command | client | P | wall (s) | span (s) | ideal at P (s) | span / ideal at P | span / ideal P=16 "
        "| span / ideal P=32 | max jobs in flight | poll lag mean / p90 (s) | requests/job | client CPU (s) | wall: old / this |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    old = {}
    for r in rows:
        if "old" in r["name"]:
            old[r["command"]] = r
        base = old.get(r["command"])
        print(
            f"| {r['command']} | {r['name']} | {r['parallel']} | {r['wall']:.2f} | {r['span']:.2f} | {r['ideal_own']:.2f} | "
            f"**{r['span'] / r['ideal_own']:.2f}x** | {r['span'] / r['ideal16']:.2f}x | {r['span'] / r['ideal32']:.2f}x | "
            f"{r['in_flight']} | {r['lag_mean']:.2f} / {r['lag_p90']:.2f} | {r['requests_per_job']:.2f} | {r['cpu']:.1f} | "
            f"{base['wall'] / r['wall'] if base else 1:.2f}x |"
        )
    print(
        "\nWhere the time goes (same runs). occupancy = a job's creation to the poll that reported its end; "
        "'occupancy schedule' = list schedule of the occupancies at P (what the run would take if each slot were "
        "refilled the instant the client learnt of an end); span(delivered) = first creation to last reported end.\n"
    )
    print("| command | client | span / ideal at P | occupancy schedule / ideal (polling) | span(delivered) / occupancy schedule (refill, reading, chunk waits) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['command']} | {r['name']} | {r['span'] / r['ideal_own']:.2f}x | {r['refill'] / r['ideal_own']:.2f}x | "
            f"{r['span_delivered'] / r['refill']:.2f}x |"
        )


# -- 2. local model: busy share ------------------------------------------------------------------


def local_section(args, tmp: Path) -> list[dict]:
    from molmo_rag.analyze import analyze
    from molmo_rag.backends.base import Request, get_backend
    from molmo_rag.media import read
    from molmo_rag.media.items import MediaItem
    from molmo_rag.results import Result
    from molmo_rag.syncio import run_sync
    from molmo_rag.tasks import Caption
    from molmo_rag.testing import build_tiny_molmo2

    folder = tmp / "local"
    make_real_photos(folder, args.local_photos, (1600, 1200))
    path = build_tiny_molmo2(CACHE_DIR / "tiny-molmo2")
    backend = get_backend(
        "local", model=str(path), batch_size=8, device="cpu", max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens
    )
    backend.load()
    warm = [e for e in read([str(p) for p in sorted(folder.iterdir())[:8]])]
    # Untimed warm-up, in a worker thread as every variant runs the model (torch's CPU
    # kernels run far slower from the main thread on this shared 2-core machine).
    run_sync(asyncio.to_thread(backend.generate_batch, [Request(item, Caption()) for item in warm]))

    # Time the model's own forward passes too: generate_prepared (what the batcher counts
    # as busy) also runs the processor (resize, crop, normalize, tokenize) before them.
    model = backend._hf_model
    forward = [0.0]
    generate = model.generate

    def timed_generate(*a, **kw):
        t = time.perf_counter()
        try:
            return generate(*a, **kw)
        finally:
            forward[0] += time.perf_counter() - t

    model.generate = timed_generate

    def old_way() -> dict:
        """The old path (``analyze`` + ``BatchedBackend._execute`` before the engine): read
        32 items, then batches of 8 in sequence, each ``generate_batch`` in a worker thread
        decoding its pixels itself; busy = generate_batch minus its decoding."""
        decode = [0.0]
        conversation = backend.conversation

        def timed(request):
            t = time.perf_counter()
            try:
                return conversation(request)
            finally:
                decode[0] += time.perf_counter() - t

        backend.conversation = timed
        busy = 0.0
        batches = ok = 0
        forward[0] = 0.0
        started = time.perf_counter()
        async def old_execute(requests):  # the old BatchedBackend._execute
            nonlocal busy, batches, ok
            for batch in chunks(requests, backend.batch_size):
                t = time.perf_counter()
                answers = await asyncio.to_thread(backend.generate_batch, batch)
                busy += time.perf_counter() - t
                batches += 1
                ok += len(answers)

        try:
            for chunk in chunks(read([str(folder)]), 32):
                requests = [Request(e, Caption()) for e in chunk if isinstance(e, MediaItem)]
                run_sync(old_execute(requests))
        finally:
            del backend.conversation
        wall = time.perf_counter() - started
        return {"name": "old: generate_batch on chunks of 32, decode inside", "wall": wall, "busy": busy - decode[0],
                "forward": forward[0], "decode": decode[0], "open": wall, "batches": batches, "ok": ok}

    def engine_way() -> dict:
        forward[0] = 0.0
        started = time.perf_counter()
        ok = sum(isinstance(r, Result) for r in analyze([str(folder)], [Caption()], backend, cache=False))
        wall = time.perf_counter() - started
        stats = backend.last_stats
        return {"name": "engine: analyze(), decode in prepare threads", "wall": wall, "busy": stats.busy_s,
                "forward": forward[0], "decode": None, "open": stats.open_s, "batches": stats.batches, "ok": ok}

    best: dict[str, dict] = {}
    for _ in range(max(1, args.local_rounds)):  # interleaved rounds; each keeps its fastest
        for run in (old_way, engine_way):
            row = run()
            assert row["ok"] == args.local_photos, row
            print(f"  local    {row['name']}: {row['wall']:.1f} s", file=sys.stderr, flush=True)
            if row["name"] not in best or row["wall"] < best[row["name"]]["wall"]:
                best[row["name"]] = row
    model.generate = generate
    backend.close()
    return list(best.values())


def print_local(rows: list[dict], args) -> None:
    print(
        f"\nTiny random Molmo2 (build_tiny_molmo2, default sizes: 56 px crops), CPU, batch 8, {args.new_tokens} new tokens "
        f"forced; {args.local_photos} JPEG photos of 1600x1200; fastest of {args.local_rounds} interleaved rounds. busy = "
        "time in generate_prepared (processor + model.generate; what BatcherStats counts), forward = model.generate alone\n"
    )
    print(
        "| client | wall (s) | busy (s) | forward (s) | decode on the model's path (s) | batches | **busy / wall** "
        "| forward / wall | busy / session open | images/s | vs old |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0]
    for r in rows:
        decode = f"{r['decode']:.2f}" if r["decode"] is not None else "0 (overlapped)"
        print(
            f"| {r['name']} | {r['wall']:.2f} | {r['busy']:.2f} | {r['forward']:.2f} | {decode} | {r['batches']} | "
            f"**{100 * r['busy'] / r['wall']:.1f}%** | {100 * r['forward'] / r['wall']:.1f}% | {100 * r['busy'] / r['open']:.1f}% | "
            f"{args.local_photos / r['wall']:.2f} | {base['wall'] / r['wall']:.2f}x |"
        )


# -- 3. memory: 400 vs 1,600 photos --------------------------------------------------------------


def _peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: on Linux that keeps the
    parent's peak across fork + exec, so a child of a process that held a model would
    report the parent's memory."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(folder: str, n: int) -> None:
    """In a fresh process: analyze the first n photos of folder on FakeBackend; print JSON."""
    from molmo_rag.analyze import analyze
    from molmo_rag.results import Result
    from molmo_rag.tasks import Caption
    from molmo_rag.testing import FakeBackend

    paths = sorted(str(p) for p in Path(folder).iterdir())[:n]
    backend = FakeBackend(batch_size=8)
    list(analyze(paths[:8], [Caption()], backend, cache=False))  # imports and threads, before the baseline
    base = _peak_rss_kib()
    started = time.perf_counter()
    ok = sum(isinstance(r, Result) for r in analyze(paths, [Caption()], backend, cache=False))
    wall = time.perf_counter() - started
    peak = _peak_rss_kib()
    print(json.dumps({"n": n, "ok": ok, "base_kib": base, "peak_kib": peak, "wall": wall,
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def rss_section(args, tmp: Path) -> list[dict]:
    sizes = [int(s) for s in args.rss_sizes.split(",")]
    folder = tmp / "rss"
    make_real_photos(folder, max(sizes), (640, 480))
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(folder), str(n)], capture_output=True, text=True, check=True
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        assert row["ok"] == n, row
        rows.append(row)
        print(f"  rss      {n} photos: {row['peak_kib'] / 1024:.0f} MiB", file=sys.stderr, flush=True)
    return rows


def print_rss(rows: list[dict]) -> None:
    print(
        "\nanalyze() over distinct 640x480 JPEG photos on FakeBackend (batch 8), each size in a fresh process; peak RSS = "
        "VmHWM of that process; baseline = the peak after imports and an 8-photo warm-up. Holding every decoded photo "
        "would take 0.9 MiB each\n"
    )
    print("| photos | wall (s) | baseline RSS (MiB) | peak RSS (MiB) | growth over baseline (MiB) | peak vs first size |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['wall']:.1f} | {r['base_kib'] / 1024:.0f} | {r['peak_kib'] / 1024:.0f} | "
            f"{(r['peak_kib'] - r['base_kib']) / 1024:.0f} | {r['peak_kib'] / rows[0]['peak_kib']:.2f}x |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=320, help="photos for caption and index on the REST backend")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--median", type=float, default=0.5, help="median job latency (s)")
    parser.add_argument("--sigma", type=float, default=0.8, help="lognormal sigma of the job latency")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--local-photos", type=int, default=64, help="photos captioned by the tiny local model")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--local-rounds", type=int, default=3, help="interleaved rounds of the local section (fastest kept)")
    parser.add_argument("--rss-sizes", default="400,1600")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: rest, local, rss")
    parser.add_argument("--quick", action="store_true", help="96 REST photos, 16 local photos, RSS at 100 vs 400")
    parser.add_argument("--rss-child", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return 0
    if args.quick:
        args.photos, args.local_photos, args.rss_sizes = 96, 16, "100,400"
    skip = set(filter(None, args.skip.split(",")))

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="engine-window-") as tmp_name:
        tmp = Path(tmp_name)
        rest = rest_section(args, tmp) if "rest" not in skip else []
        local = local_section(args, tmp) if "local" not in skip else []
        rss = rss_section(args, tmp) if "rss" not in skip else []
    load = os.getloadavg()[0]
    if rest:
        print_rest(rest, args)
    if local:
        print_local(local, args)
    if rss:
        print_rss(rss)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s; load average {load:.1f} at the end")
    misses = []
    for r in rest:
        if r["name"].startswith("engine:") and r["span"] / r["ideal_own"] > 1.15:
            misses.append(f"{r['command']}: engine span {r['span'] / r['ideal_own']:.2f}x its ideal (target <= 1.15x)")
    for r in local[1:]:
        if r["busy"] / r["wall"] < 0.85:
            misses.append(f"local: model busy {100 * r['busy'] / r['wall']:.1f}% of wall (target >= 85%)")
    for line in misses:
        print(f"MISSES: {line}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
