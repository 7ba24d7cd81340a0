"""Reliability under faults (issue 12): the ``index`` command against a WaveSpeed loopback
with every fault on at realistic rates, run twice.

N small generated photos (and, with ``--videos``, a few short videos for the video
endpoints) go through the real CLI in a subprocess::

    python -m molmo_rag index FOLDER --backend wavespeed --db DB --cache-dir CACHE --concurrency 16 --json

with ``WAVESPEED_BASE_URL`` pointing at a loopback WaveSpeed server in this process
(outputs as URLs, job latency lognormal around ``--latency``) whose faults are on at the
rates of ``RATES`` (seeded, reproducible), and ``WAVESPEED_API_KEY`` a sentinel key. Then
the same command runs again (``--runs``, default 2) on the same index, cache and server.
First (unless ``--no-baseline``) the command runs once against a server without faults,
on an index and cache of its own: the wall time and requests the faults are measured
against.

Reported (markdown tables):

* per run: wall time, results computed and cached, points written, failures, cost the CLI
  counted, requests the server received by route, jobs created and how they ended, faults
  applied (with the rates seen);
* failures left after each run by ``error_code`` / ``retryable``: after the second run only
  permanent causes (content policy) should remain, plus what the protocol cannot settle
  (``submission_unconfirmed``: a submission whose answer never came; the job may exist, so
  it is not sent again in that run);
* the index: every photo indexed exactly once (points per source, no duplicates, no
  strays), indexed + failed = all;
* jobs vs requests: jobs per request (an item's task), failed jobs (refunded) resubmitted,
  requests with two or more *completed* jobs (paid twice) and why (the submission's answer
  was lost to a connection reset or an unreadable body, or the output URL answered 404),
  billed (completed jobs x price) vs the cost the CLI counted;
* the sentinel key: occurrences in stdout, stderr, the cache folder's and the Qdrant
  folder's bytes (must all be 0).

Never-finishing jobs are not part of this bench: the CLI has no poll timeout option (the
backend's default is 600 s); ``tests/testing/test_loopback_faults.py`` covers them.

    .venv/bin/python bench/reliability.py                      # 1,000 photos, baseline + 2 runs, ~2 minutes on 2 cores
    .venv/bin/python bench/reliability.py --photos 200 --videos 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from molmo_rag.testing.loopback import RATED_FAULTS, WaveSpeedServer

SENTINEL = "sk-SENTINEL-reliability-5f0c9e27b1d4a8"
IMAGE_USD, VIDEO_USD = 0.002, 0.005  # published prices; bench videos are <= 5 s a segment

RATES = {
    "upstream_failed": 0.10,  # prediction failed, transient: resubmitted (refunded)
    "content_policy": 0.04,  # prediction failed, permanent (sticky per media)
    "submit_503": 0.15,  # submission refused, no job: sent again
    "rate_limit": 0.10,  # 429 + Retry-After 1 on submissions and polls
    "reset_before_read": 0.02,  # TCP reset before the server read the request
    "reset_after_read": 0.01,  # TCP reset after the job was accepted
    "malformed": 0.02,  # poll answered with truncated JSON
    "output_404": 0.01,  # output URL answered 404
    "poll_502": 0.02,  # poll answered 502
    "slow_body": 0.02,  # poll answer trickles over 0.5 s
}


def make_photos(folder: Path, n: int, seed: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = 40 + i % 24, 30 + (i // 24) % 24
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = folder / f"photo-{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def make_videos(folder: Path, n: int) -> list[Path]:
    from molmo_rag.testing.samples import PHOTOS, Shot, make_video

    names = list(PHOTOS)
    paths = []
    for i in range(n):
        path = folder / f"clip-{i:02d}.mp4"
        shots = [Shot(names[i % len(names)], 3.0, "static"), Shot(names[(i + 1) % len(names)], 3.0, "pan")]
        make_video(path, shots, size=(160, 90), fps=10)
        paths.append(path)
    return paths


def run_cli(folder: Path, db: Path, cache: Path, env: dict, concurrency: int, timeout: float) -> dict:
    cmd = [
        sys.executable, "-m", "molmo_rag", "index", str(folder), "--backend", "wavespeed",
        "--db", str(db), "--cache-dir", str(cache), "--concurrency", str(concurrency), "--json",
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    records, failures, summary = [], [], None
    for line in proc.stdout.decode(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "summary" in obj:
            summary = obj["summary"]
        elif "error" in obj:
            failures.append(obj)
        else:
            records.append(obj)
    if summary is None:
        raise SystemExit(f"the CLI printed no summary (exit {proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return {
        "cmd": cmd, "rc": proc.returncode, "wall": wall, "stdout": proc.stdout, "stderr": proc.stderr,
        "records": records, "failures": failures, "summary": summary,
    }


def qdrant_points(db: Path) -> list[dict]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(db))
    try:
        if not client.collection_exists("molmo_rag"):
            return []
        found, offset = [], None
        while True:  # bounded by the points there are
            batch, offset = client.scroll("molmo_rag", limit=1000, offset=offset, with_payload=["source", "media_id", "kind"])
            found += [{"id": str(p.id), **(p.payload or {})} for p in batch]
            if offset is None:
                return found
    finally:
        client.close()


def bytes_under(folder: Path) -> list[tuple[Path, bytes]]:
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out.append((path, path.read_bytes()))
    return out


def flagged_for_content_policy(source: str, seed: int) -> bool:
    """Whether the loopback's sticky content-policy fault hits the bytes the CLI sends for
    ``source`` (a photo; the server keys it by the sha256 of the media it received)."""
    import hashlib

    from molmo_rag.media import read

    items = [item for item in read([source]) if hasattr(item, "image_bytes")]
    if len(items) != 1 or items[0].model_input != "image":
        return False
    sha = hashlib.sha256(items[0].image_bytes()[0]).hexdigest()
    probe = WaveSpeedServer(api_key=None).faults(RATES, seed=seed)
    return probe.draw_fault("job", sticky=True, key=sha) == "content_policy"


def request_key(job) -> tuple:
    """What a job was asked: its media (as the server read it), endpoint and other inputs."""
    inputs = {k: v for k, v in job.inputs.items() if k not in ("image", "video", "enable_sync_mode")}
    sha = getattr(job.media, "sha256", None)
    return (sha, job.kind, json.dumps(inputs, sort_keys=True))


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=0, help="short videos (two 3 s shots each) for the video endpoints")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.1, help="median job latency (s)")
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900, help="limit for one CLI run (s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without faults (fresh index and cache) first")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="molmo-rag-reliability-"))
    media, db, cache = work / "media", work / "qdrant", work / "cache"
    t0 = time.perf_counter()
    photos = make_photos(media, args.photos, args.seed)
    videos = make_videos(media, args.videos) if args.videos else []
    print(f"made {len(photos)} photos and {len(videos)} videos in {time.perf_counter() - t0:.1f} s under {work}", file=sys.stderr)

    server = WaveSpeedServer(
        api_key=SENTINEL, latency=args.latency, latency_sigma=args.latency_sigma, seed=args.seed,
        output_mode="url", fault_rates=RATES, fault_seed=args.seed,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOLMO_RAG_", "WAVESPEED_", "OPENAI_", "OPENOCTOPUS_"))}
    baseline = None
    if not args.no_baseline:  # the same command without faults, on its own index and cache
        with WaveSpeedServer(api_key=SENTINEL, latency=args.latency, latency_sigma=args.latency_sigma, seed=args.seed, output_mode="url") as clean:
            base_env = {**env, "WAVESPEED_BASE_URL": clean.base_url, "WAVESPEED_API_KEY": SENTINEL, "PYTHONUNBUFFERED": "1"}
            baseline = run_cli(media, work / "base-qdrant", work / "base-cache", base_env, args.concurrency, args.timeout)
            baseline["stats"] = clean.stats
            print(f"baseline (no faults): exit {baseline['rc']}, {baseline['wall']:.1f} s", file=sys.stderr)
    runs = []
    with server:
        env.update({"WAVESPEED_BASE_URL": server.base_url, "WAVESPEED_API_KEY": SENTINEL, "PYTHONUNBUFFERED": "1"})
        for k in range(args.runs):
            server.reset_stats()
            result = run_cli(media, db, cache, env, args.concurrency, args.timeout)
            result["stats"] = server.stats
            runs.append(result)
            s = result["summary"]
            print(f"run {k + 1}: exit {result['rc']}, {result['wall']:.1f} s, {s['done']} fresh, {s['cached']} cached, "
                  f"{len(s['failed'])} failed", file=sys.stderr)
        all_jobs = dict(server.jobs)
    report(args, work, photos, videos, runs, all_jobs, db, cache, baseline)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def report(args, work, photos, videos, runs, all_jobs, db, cache, baseline=None) -> None:
    sources = {str(p.resolve()) for p in photos + videos}
    photo_sources = {str(p.resolve()) for p in photos}
    cmd = " ".join(Path(c).name if i == 0 else (c.replace(str(work), "$WORK")) for i, c in enumerate(runs[0]["cmd"]))
    print(f"## Reliability under faults: {len(photos)} photos" + (f", {len(videos)} videos" if videos else "") + f", {len(runs)} runs\n")
    print(f"Command (each run): `{cmd}`; loopback WaveSpeed, outputs as URLs, job latency lognormal "
          f"median {args.latency:g} s sigma {args.latency_sigma:g}, seed {args.seed}.\n")
    print("Fault rates: " + ", ".join(f"`{k}={v:g}`" for k, v in RATES.items()) + "\n")

    # -- per run --------------------------------------------------------------------------
    rows = []
    labelled = [("no faults", baseline)] if baseline else []
    labelled += [(str(k), r) for k, r in enumerate(runs, 1)]
    for k, r in labelled:
        s, st = r["summary"], r["stats"]
        ended = Counter(j.status for j in st.jobs)
        rows.append([
            k, f"{r['wall']:.1f}", r["rc"], s["done"], s["cached"], s["indexed"], s["unchanged"], len(s["failed"]),
            f"{s['cost_usd']:.3f}", st.requests,
            " ".join(f"{route} {n}" for route, n in sorted(st.by_route.items())),
            st.jobs_created, f"{ended['completed']} / {ended['failed']} / {ended['running']}",
        ])
    print(table(["run", "wall s", "exit", "fresh results", "cached", "points written", "unchanged", "failed",
                 "cost counted $", "requests", "by route", "jobs", "completed / failed / running"], rows))
    print()

    # -- faults -------------------------------------------------------------------------
    rows = []
    for name, rate in RATES.items():
        spec = RATED_FAULTS[name]
        applied = [r["stats"].faults_applied[name] for r in runs]
        draws = [sum(r["stats"].fault_draws[route] for route in spec.routes) for r in runs]
        seen = sum(applied) / max(1, sum(draws))
        how = "drawn"
        if spec.sticky and spec.routes == ("job",):  # decided per media: the share of distinct media hit
            media = {getattr(j.media, "sha256", None) for j in all_jobs.values()}
            hit = {getattr(j.media, "sha256", None) for j in all_jobs.values() if j.fault == name}
            seen, how = len(hit) / max(1, len(media)), f"per media ({len(hit)} of {len(media)})"
        rows.append([f"`{name}`", ",".join(spec.routes), how, f"{rate:g}", " + ".join(map(str, applied)), " + ".join(map(str, draws)), f"{seen:.3f}"])
    print(table(["fault", "routes", "how", "rate", "applied (per run)", "requests/jobs drawn", "rate seen"], rows))
    print("\n(Drawn faults: one draw per request on the route, split by rate, so a request gets one"
          " fault at most. Sticky faults are decided by the media, the same in every run; the rate seen is"
          " the share of distinct media hit.)\n")

    # -- failures after each run ----------------------------------------------------------
    rows = []
    codes = sorted({(f.get("error_code"), f.get("retryable"), f["error_type"]) for r in runs for f in r["summary"]["failed"]}, key=str)
    for code in codes:
        counts = [sum(1 for f in r["summary"]["failed"] if (f.get("error_code"), f.get("retryable"), f["error_type"]) == code) for r in runs]
        rows.append([f"`{code[0]}`", code[1], code[2], *counts])
    print(table(["error_code", "retryable", "error_type", *[f"after run {k}" for k in range(1, len(runs) + 1)]], rows))
    print()
    last_failed = {f["source"] for f in runs[-1]["summary"]["failed"]}
    unconfirmed = [f["source"] for f in runs[-1]["summary"]["failed"] if f.get("error_code") == "submission_unconfirmed"]
    flagged = sum(1 for source in unconfirmed if flagged_for_content_policy(source, args.seed))
    print(f"After the last run, {len(unconfirmed)} item(s) are `submission_unconfirmed` (the answer to their submission "
          f"never came: a reset before or after the server read it; the protocol has no idempotency key, so the item is "
          f"not sent again in that run); {flagged} of them are media the server flags for content policy (their next "
          f"run fails permanently).\n")
    policy = [f["source"] for f in runs[-1]["summary"]["failed"] if f.get("error_code") == "content_policy_violation"]
    check = sum(1 for source in policy if source in photo_sources and flagged_for_content_policy(source, args.seed))
    print(f"(Check of that mapping: {check} of the {sum(1 for x in policy if x in photo_sources)} photos failed for "
          "content policy are flagged by it.)\n")

    # -- the index ----------------------------------------------------------------------
    points = qdrant_points(db)
    per_source = Counter(p["source"] for p in points)
    per_media = Counter((p["source"], p["media_id"]) for p in points)
    ids = Counter(p["id"] for p in points)
    strays = [s for s in per_source if s not in sources]
    indexed_photos = {s for s in per_source if s in photo_sources}
    rows = [
        ["photos", len(photos)],
        ["points", len(points)],
        ["photos with exactly one point", sum(1 for s in photo_sources if per_source.get(s) == 1)],
        ["photos with more than one point (duplicates)", sum(1 for s in photo_sources if per_source.get(s, 0) > 1)],
        ["(source, media_id) pairs with more than one point", sum(1 for n in per_media.values() if n > 1)],
        ["point ids seen twice", sum(1 for n in ids.values() if n > 1)],
        ["points of unknown sources", len(strays)],
        ["photos failed after the last run", len(last_failed & photo_sources)],
        ["photos neither indexed nor failed", len(photo_sources - indexed_photos - last_failed)],
        ["photos both indexed and failed", len(indexed_photos & last_failed)],
    ]
    if videos:
        vids = {str(v.resolve()) for v in videos}
        rows.append(["video segments indexed (points of videos)", sum(per_source[v] for v in vids)])
    print(table(["index check", "count"], rows))
    print()

    # -- jobs vs requests -----------------------------------------------------------------
    output_404 = {path.rsplit("/", 1)[-1].removesuffix(".txt") for r in runs for name, _, path in r["stats"].fault_log if name == "output_404"}
    by_key: dict[tuple, list] = defaultdict(list)
    for job in sorted(all_jobs.values(), key=lambda j: j.created):
        by_key[request_key(job)].append(job)
    completed = [j for j in all_jobs.values() if j.status == "completed"]
    unused = Counter()  # completed (paid) jobs whose output was never fetched, by cause
    for job in completed:
        if job.served:
            continue
        if job.lost:
            unused[f"the submission's answer was lost ({job.lost})"] += 1
        elif job.id in output_404:
            unused["its output URL answered 404 every time"] += 1
        else:
            unused["no cause known"] += 1
    used = len(completed) - sum(unused.values())
    fresh = sum(r["summary"]["done"] for r in runs)
    dup_keys = {k: js for k, js in by_key.items() if sum(1 for j in js if j.status == "completed") > 1}
    explained = sum(1 for js in dup_keys.values() if sum(1 for j in js if j.status == "completed" and j.served) <= 1)
    resumed_404 = sum(1 for j in completed if j.id in output_404 and j.served)
    price = lambda j: IMAGE_USD if j.kind == "image-captioner" else VIDEO_USD
    billed = sum(price(j) for j in completed)
    counted = sum(r["summary"]["cost_usd"] for r in runs)
    failed_jobs = [j for j in all_jobs.values() if j.status == "failed"]
    resubmitted = sum(1 for js in by_key.values() if any(j.status == "failed" for j in js) and len(js) > 1)
    rows = [
        ["requests (item x task) that reached the server as jobs", len(by_key)],
        ["jobs created (all runs)", len(all_jobs)],
        ["requests with one job", sum(1 for js in by_key.values() if len(js) == 1)],
        ["requests with two or more jobs", sum(1 for js in by_key.values() if len(js) > 1)],
        ["failed jobs (refunded): " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(j.fault for j in failed_jobs).items(), key=str)), len(failed_jobs)],
        ["requests submitted anew after a failed job", resubmitted],
        ["completed jobs", len(completed)],
        ["completed jobs whose answer was used", used],
        ["fresh results the CLI counted (all runs)", fresh],
        ["... of those whose output first answered 404 (fetched again later)", resumed_404],
        *[[f"completed jobs never used: {k}", v] for k, v in sorted(unused.items())],
        ["requests with two or more completed jobs (paid twice)", len(dup_keys)],
        ["... of those with one job used and the others never used (answer lost)", explained],
        ["billed (completed jobs x price) $", f"{billed:.3f}"],
        ["cost the CLI counted (all runs) $", f"{counted:.3f}"],
    ]
    print(table(["jobs", "count"], rows))
    print()

    # -- the sentinel key ---------------------------------------------------------------
    key = SENTINEL.encode()
    rows = [
        ["stdout (all runs)", sum(len(r["stdout"]) for r in runs), sum(r["stdout"].count(key) for r in runs)],
        ["stderr (all runs)", sum(len(r["stderr"]) for r in runs), sum(r["stderr"].count(key) for r in runs)],
    ]
    folders = [("cache folder", cache), ("Qdrant folder", db)]
    if baseline:
        rows[0][1:] = [rows[0][1] + len(baseline["stdout"]), rows[0][2] + baseline["stdout"].count(key)]
        rows[1][1:] = [rows[1][1] + len(baseline["stderr"]), rows[1][2] + baseline["stderr"].count(key)]
        folders += [("no-faults cache folder", work / "base-cache"), ("no-faults Qdrant folder", work / "base-qdrant")]
    for label, folder in folders:
        files = bytes_under(folder)
        rows.append([f"{label} ({len(files)} files)", sum(len(b) for _, b in files), sum(b.count(key) for _, b in files)])
    print(table(["where", "bytes", "sentinel key occurrences"], rows))
    print()
    if any(row[2] for row in rows):
        raise SystemExit("the API key leaked")


if __name__ == "__main__":
    main()
