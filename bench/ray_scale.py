"""Scale-out on Ray Data: the same index run single-process and on Ray with 1 and 2 workers.

Run:  .venv/bin/python bench/ray_scale.py [--videos 4 --seconds 40] [--photos 300] [--repeat 1]

Two sets, generated once from ``molmo_rag.testing.samples`` and cached (not timed):

* **video** (decode-bound): ``--videos`` H.264 videos of ``--seconds`` each (640x360, 30 fps,
  real photos with pans, zooms and hard cuts), the default reader (scene-aware segments),
  ``FakeBackend(delay=0)``: the model costs nothing, so reading, cutting, frame sampling,
  thumbnails and pictures are the run.
* **photo**: ``--photos`` distinct 640x480 JPEGs (the bundled photos, each crop shifted so
  every media id differs), ``FakeBackend(delay=--photo-delay)``.

Each run indexes its set into a **fresh** embedded Edge folder with a **fresh** result
cache, in a fresh process (imports are not timed, anything a run loads itself is):

* ``single``: ``molmo_rag.pipeline.index(sources, RunOptions(...), db=folder)``.
* ``ray, 1 worker``: ``connect("local", num_cpus=1)`` then ``molmo_rag.ray.index(...,
  pool=PoolOptions(actors=1, actor_cpus=0))``: one CPU slot for reading/cutting tasks and
  one model actor (reserving no CPU, so it does not take the only slot).
* ``ray, 2 workers``: ``num_cpus=2``, ``actors=2, actor_cpus=0``.
* ``ray, CLI default`` (``--cli-default``): what ``molmo-rag index --ray local`` does on
  this machine: Ray's own CPU count, ``PoolOptions()`` (one actor reserving 1 CPU).

``ray.init`` is timed on its own ("Ray start s"); "index s" is the ``index`` call (listing,
the Ray Data run with its worker and actor start-up, writing, pruning, settling). A
``ray, 1 worker, 1 item`` run indexes one photo the same way: the fixed cost of a Ray Data
run beside ``ray.init``. Every Ray collection is checked against the single-process one:
the same point count, the same point ids and the same ``record_hash`` and ``plan_key`` per
point (the payload's fingerprint; file paths under the cache root are left out of it).

"CPU s" is the CPU time of the run's process and all its descendants (Ray's daemons,
workers and actors), sampled from ``/proc``: on a shared machine it is steadier than wall
time, and CPU ms per item is what sizes a cluster. ``--repeat N`` runs every variant N
times, interleaved (reversed every other round), and keeps the fastest index time (and the
fastest Ray start). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "single": {"label": "single process (`pipeline.index`)"},
    "ray1": {"label": "ray, 1 worker (num_cpus=1, actors=1)", "num_cpus": 1, "actors": 1, "actor_cpus": 0.0},
    "ray2": {"label": "ray, 2 workers (num_cpus=2, actors=2)", "num_cpus": 2, "actors": 2, "actor_cpus": 0.0},
    "raydefault": {"label": "ray, CLI default (`--ray local`: Ray's CPUs, PoolOptions())", "num_cpus": None, "actors": None, "actor_cpus": 1.0},
}


# -- media (made once, cached) ----------------------------------------------------------------


def make_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    from molmo_rag.testing import samples

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"video-{seconds:g}s-{i:02d}.mp4"
        if not path.exists():
            print(f"generating {path} (once; not timed) ...", file=sys.stderr, flush=True)
            shots = samples.random_shots(seconds, min_seconds=2.0, max_seconds=12.0, seed=100 + i)
            video = samples.make_video(path.with_suffix(".tmp.mp4"), shots, size=(640, 360), fps=30, crf=23)
            os.replace(video.path, path)
        paths.append(path)
    return paths


def make_photos(folder: Path, count: int) -> list[Path]:
    from molmo_rag.testing import samples

    folder.mkdir(parents=True, exist_ok=True)
    paths, missing = [], []
    for i in range(count):
        path = folder / f"photo-{i:04d}.jpg"
        paths.append(path)
        if not path.exists():
            missing.append((i, path))
    if missing:
        print(f"generating {len(missing)} photos in {folder} (once; not timed) ...", file=sys.stderr, flush=True)
    for i, path in missing:
        image = samples.photo(samples.PHOTOS[i % len(samples.PHOTOS)]).convert("RGB")
        w, h = image.size
        shift = (i // len(samples.PHOTOS)) % max(1, min(w, h) // 4)  # every crop differs: every media id differs
        image = image.crop((shift, shift // 2, w - (shift // 3), h)).resize((640, 480))
        image.save(path.with_suffix(".tmp.jpg"), quality=90)
        os.replace(path.with_suffix(".tmp.jpg"), path)
    return paths


# -- one run (a child process) ------------------------------------------------------------------


class TreeCPU:
    """CPU seconds of this process and every descendant (Ray's daemons, workers, actors),
    sampled from /proc every 0.2 s (a process's last sample counts once it is gone)."""

    def __init__(self):
        import threading

        self.root, self.seen, self.stop = os.getpid(), {}, threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        parent, cpu = {}, {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(name)] = int(fields[1])
            cpu[int(name)] = (int(fields[11]) + int(fields[12])) / self.tick
        for pid, value in cpu.items():
            p, hops = pid, 0
            while p not in (0, 1, self.root) and hops < 64:
                p, hops = parent.get(p, 0), hops + 1
            if p == self.root:
                self.seen[pid] = max(self.seen.get(pid, 0.0), value)

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self._sample()

    def __enter__(self) -> "TreeCPU":
        self._sample()
        self.start = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()
        self.seconds = sum(v - self.start.get(pid, 0.0) for pid, v in self.seen.items())


def child(spec: dict) -> dict:
    """Index ``spec["sources"]`` the way ``spec["variant"]`` says; time it; fingerprint the collection."""
    from molmo_rag.index.store import QdrantIndex
    from molmo_rag.run import RunOptions
    from molmo_rag.testing.fake_backend import FakeBackend

    work = Path(spec["work"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db, cache = work / "qdrant", work / "cache"
    options = RunOptions(backend=FakeBackend(delay=spec["delay"]), cache=cache)
    variant = VARIANTS[spec["variant"].split("@")[0]]
    init_s, left = None, 0
    if spec["variant"] == "single":
        from molmo_rag.pipeline import index

        with TreeCPU() as cpu:
            t0 = time.perf_counter()
            summary = index(spec["sources"], options, db=str(db))
            index_s = time.perf_counter() - t0
    else:
        import ray
        import ray.data

        from molmo_rag.ray import PoolOptions, connect
        from molmo_rag.ray import index as ray_index

        t0 = time.perf_counter()
        connect("local", num_cpus=variant["num_cpus"])
        init_s = time.perf_counter() - t0
        pool = PoolOptions(actors=variant["actors"], actor_cpus=variant["actor_cpus"])
        session = Path(ray._private.worker._global_node.get_session_dir_path()).name
        try:
            with TreeCPU() as cpu:
                t0 = time.perf_counter()
                summary = ray_index(spec["sources"], options, ray="local", pool=pool, db=str(db))
                index_s = time.perf_counter() - t0
        finally:
            ray.shutdown()
            left = stop_leftovers(session)  # reported in the progress line
    if summary.failed:
        raise SystemExit(f"{spec['variant']}: {len(summary.failed)} failure(s), first: {summary.failed[0]}")
    store = QdrantIndex(str(db), create=False)
    try:
        points: dict[str, list[str]] = {}
        offset = None
        while True:
            page, offset = store.scroll(limit=1024, offset=offset)
            for p in page:
                payload = p.payload or {}
                points[str(p.id)] = [payload.get("record_hash", ""), payload.get("plan_key", "")]
            if offset is None:
                break
        count = store.count()
    finally:
        store.close()
    digest = hashlib.sha256(json.dumps(sorted(points.items())).encode()).hexdigest()
    shutil.rmtree(work, ignore_errors=True)
    return {"init_s": init_s, "index_s": index_s, "cpu_s": cpu.seconds, "left": left, "items": summary.items, "points": count, "digest": digest,
            "ids": hashlib.sha256(json.dumps(sorted(points)).encode()).hexdigest()}


def stop_leftovers(session: str, wait: float = 3.0) -> int:
    """SIGTERM the processes that still hold files of this Ray session ``wait`` s after
    ``ray.shutdown()`` (model actors were seen to outlive it, re-parented to init)."""
    import signal

    time.sleep(wait)
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if any(session in os.readlink(f"/proc/{name}/fd/{fd}") for fd in os.listdir(f"/proc/{name}/fd")):
                left.append(int(name))
        except OSError:
            continue
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    return len(left)


def run_child(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, RAY_DISABLE_IMPORT_WARNING="1", RAY_ACCEPT_CLOUD_STORAGE_WARNING="1",
               RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{spec['set']}/{spec['variant']} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the table ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="videos in the video set (0: no video set)")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each video (s)")
    parser.add_argument("--photos", type=int, default=300, help="photos in the photo set (0: no photo set)")
    parser.add_argument("--photo-delay", type=float, default=0.0, help="FakeBackend sleep per batch on the photo set (s)")
    parser.add_argument("--repeat", type=int, default=1, help="run every variant N times, interleaved; keep the fastest")
    parser.add_argument("--cli-default", action="store_true", help="add the `--ray local` default pool shape")
    parser.add_argument("--no-fixed", action="store_true", help="leave out the one-photo Ray run (fixed cost)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "molmo-rag-bench" / "ray-scale")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    sets: list[tuple[str, list[str], float, float | None]] = []  # name, sources, delay, media seconds
    if args.videos:
        videos = make_videos(args.cache / "videos", args.videos, args.seconds)
        sets.append((f"video: {args.videos} x {args.seconds:g} s, scenes, delay 0", [str(p) for p in videos], 0.0,
                     args.videos * args.seconds))
    if args.photos:
        photos = make_photos(args.cache / f"photos-{args.photos}", args.photos)
        sets.append((f"photo: {args.photos} JPEGs 640x480, delay {args.photo_delay:g}", [str(photos[0].parent)],
                     args.photo_delay, None))
    variants = ["single", "ray1", "ray2"] + (["raydefault"] if args.cli_default else [])
    work = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    best: dict[tuple[str, str], dict] = {}
    load = []
    started = time.perf_counter()
    try:
        for rnd in range(args.repeat):
            for name, sources, delay, _ in sets:
                order = variants if rnd % 2 == 0 else variants[::-1]
                for variant in order:
                    spec = {"variant": variant, "set": name, "sources": sources, "delay": delay, "work": str(work / "run")}
                    result = run_child(spec, args.timeout)
                    print(f"[{rnd + 1}/{args.repeat}] {name} | {variant}: index {result['index_s']:.2f} s"
                          + (f", ray.init {result['init_s']:.2f} s" if result["init_s"] is not None else "")
                          + f", CPU {result['cpu_s']:.1f} s, {result['items']} items, {result['points']} points"
                          + (f"; {result['left']} Ray process(es) outlived ray.shutdown() (stopped)" if result["left"] else ""),
                          file=sys.stderr, flush=True)
                    key = (name, variant)
                    if key not in best or result["index_s"] < best[key]["index_s"]:
                        init = min(result["init_s"], best[key]["init_s"]) if key in best and result["init_s"] is not None else result["init_s"]
                        best[key] = dict(result, init_s=init)
                    elif result["init_s"] is not None:
                        best[key]["init_s"] = min(best[key]["init_s"], result["init_s"])
                    load.append(os.getloadavg()[0])
        fixed = None
        if not args.no_fixed and args.photos:
            one = [str(photos[0])]
            fixed = min((run_child({"variant": "ray1", "set": "one", "sources": one, "delay": 0.0, "work": str(work / "run")}, args.timeout)
                         for _ in range(args.repeat)), key=lambda r: r["index_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{len(sets)} set(s), {args.repeat} round(s), {time.perf_counter() - started:.0f} s in all; "
          f"load average (1 min) during the runs {min(load):.1f}-{max(load):.1f}; {os.cpu_count()} CPUs\n")
    print("| set | run | Ray start s | index s | items | items/s | x realtime | index time vs single | items/s vs single "
          "| with Ray start vs single | CPU s (all processes) | CPU ms/item | points (same as single) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, _, _, media_s in sets:
        base = best[(name, "single")]
        for variant in variants:
            r = best[(name, variant)]
            rate = r["items"] / r["index_s"]
            realtime = f"{media_s / r['index_s']:.1f}x" if media_s else "-"
            init = f"{r['init_s']:.2f}" if r["init_s"] is not None else "-"
            with_init = (r["index_s"] + (r["init_s"] or 0.0)) / base["index_s"]
            same = "yes" if (r["points"] == base["points"] and r["digest"] == base["digest"]) else (
                "ids only" if r["ids"] == base["ids"] else "NO")
            label = VARIANTS[variant]["label"]
            print(f"| {name} | {label} | {init} | {r['index_s']:.2f} | {r['items']} | {rate:.2f} | {realtime} "
                  f"| {r['index_s'] / base['index_s']:.2f}x | {rate / (base['items'] / base['index_s']):.2f}x | {with_init:.2f}x "
                  f"| {r['cpu_s']:.1f} | {1000 * r['cpu_s'] / max(1, r['items']):.0f} | {r['points']} ({same}) |")
    if fixed is not None:
        print(f"\nFixed cost of a Ray Data run (ray, 1 worker, 1 photo): Ray start {fixed['init_s']:.2f} s, "
              f"index {fixed['index_s']:.2f} s, CPU {fixed['cpu_s']:.1f} s.")
    for name, _, _, _ in sets:
        base, one = best[(name, "single")], best[(name, "ray1")]
        per_item = (one["index_s"] - base["index_s"] - (fixed["index_s"] if fixed else 0.0)) / max(1, base["items"]) * 1000
        print(f"{name}: Ray at 1 worker costs {one['index_s'] - base['index_s']:+.2f} s over single"
              + (f" ({per_item:+.1f} ms per item beyond the one-item run's fixed cost)" if fixed else "")
              + f"; 2 workers / 1 worker: {one['index_s'] / best[(name, 'ray2')]['index_s']:.2f}x.")


if __name__ == "__main__":
    main()
