"""Upload clips of video segments (what REST backends send): before and after, side by side.

Run:  .venv/bin/python bench/video_clips.py [--seconds 120] [--segment 10] [--cache DIR]

H.264 videos of real photos (pans, zooms, stills, hard cuts) are generated once with
``molmo_rag.testing.samples`` and cached (generation is not timed), ``--seconds`` long:

* 1920x1080, 30 fps, x264's defaults (keyframes at shot cuts, at least every 250 frames);
* 640x360, 30 fps, the same;
* that 640x360 video re-encoded with a keyframe every 2 s and none elsewhere (as phones
  and screen recorders write them).

The 1080p and the 2 s-keyframe videos are cut into fixed windows of ``--segment`` seconds,
the other into scene segments (``read``'s default), and every segment's clip is made by
each method in turn (the methods alternate segment by segment, so that a noisy machine
slows them alike):

* **before**: the clip encoder as it was (854x480 at most, the source's frame rate up to
  30 fps, x264 ``veryfast``, crf 28, every frame decoded), reproduced here verbatim.
* **after**: ``MediaItem.clip()`` now: the packets copied when the segment runs from
  keyframe to keyframe in small H.264, else re-encoded at 640 px and 4 fps (x264
  ``veryfast``) from the frames nearest the output times, non-reference frames not decoded.
* **after, ultrafast**: the same re-encode with x264 ``ultrafast`` (the preset not chosen).
* **after, re-encode forced**: on the 360p video, the re-encode path where the copy would
  have been taken.
* **decode floor**: decoding the segment the way the re-encode does (no encoding at all),
  the part no encoder setting can save.

CPU seconds are the process's (decoder and encoder threads included). Prints a markdown
table; the ratios are against "before" on the same video.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402

from molmo_rag.media import ReaderOptions, read  # noqa: E402
from molmo_rag.testing import samples  # noqa: E402
from molmo_rag.media.video import clips as video_module  # noqa: E402
from molmo_rag.media.video.clips import _h264_encoder  # noqa: E402


def make_videos(seconds: float, cache: Path) -> dict[str, Path]:
    """The test videos (made once, cached): 1080p and 360p with x264's defaults (keyframes
    at shot cuts and at least every 250 frames), and the 360p one re-encoded with a keyframe
    every 2 s and none elsewhere (as phones and screen recorders write them)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, size in (("1080p30", (1920, 1080)), ("360p30", (640, 360))):
        path = cache / f"clips-{name}-{seconds:g}s-v1.mp4"
        if not path.exists():
            print(f"generating {path} (once; not timed) ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            shots = samples.random_shots(seconds, min_seconds=3.0, max_seconds=15.0, seed=11)
            made = samples.make_video(path.with_suffix(".tmp.mp4"), shots, size=size, fps=30, crf=23)
            os.replace(made.path, path)
            print(f"generated in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        paths[name] = path
    fixed = cache / f"clips-360p30-gop2s-{seconds:g}s-v1.mp4"
    if not fixed.exists():
        tmp = fixed.with_suffix(".tmp.mp4")
        with av.open(str(paths["360p30"])) as src, av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast", "g": "60", "keyint_min": "60", "sc_threshold": "0"}
            for frame in src.decode(video=0):
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, fixed)
    paths["360p30-gop2s"] = fixed
    return paths


def legacy_clip(loader) -> bytes:
    """The clip encoder before this change (video.py at f541103), unchanged but for names."""
    import numpy as np

    options = loader.options
    width, height = loader.info.width, loader.info.height
    scale = min(1.0, options.clip_short_side / min(width, height), options.clip_max_side / max(width, height))
    out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
    rate = Fraction(min(loader.info.fps, options.clip_max_fps)).limit_denominator(1001)
    with tempfile.TemporaryDirectory(prefix="molmo-rag-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(_h264_encoder(av), rate=rate)
            stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
            stream.options = {"crf": str(options.clip_crf), "preset": "veryfast"}
            last_pts = -1
            for t, frame in loader._clip_frames(0.0):
                pts = round(t * rate)
                if pts <= last_pts:
                    continue
                last_pts = pts
                if loader.info.rotation:
                    rgb = loader._array(frame, max(frame.width, frame.height))
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                frame.pts, frame.time_base = pts, 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return path.read_bytes()


def after(loader) -> bytes:
    return loader.clip()[0]


def after_ultrafast(loader) -> bytes:
    saved = video_module.CLIP_PRESET
    video_module.CLIP_PRESET = "ultrafast"
    try:
        return loader.clip()[0]
    finally:
        video_module.CLIP_PRESET = saved


def forced_encode(loader) -> bytes:
    saved = video_module.REMUX_MAX_BYTES_PER_SECOND
    video_module.REMUX_MAX_BYTES_PER_SECOND = 0
    try:
        return loader.clip()[0]
    finally:
        video_module.REMUX_MAX_BYTES_PER_SECOND = saved


def decode_floor(loader) -> bytes:
    info = loader.info
    rate = min(info.fps, video_module.clip_limits(loader.options)[2])
    for _ in loader._clip_frames(0.0, skip_nonref=info.fps / rate >= 4):
        pass
    return b""


def describe(data: bytes) -> tuple[str, float]:
    """('WxH@fps', seconds) of a clip, decoded in full (checks that it plays)."""
    if not data:
        return "-", 0.0
    with av.open(io.BytesIO(data)) as clip:
        stream = clip.streams.video[0]
        times = [float(f.time) for f in clip.decode(stream)]
        rate = float(stream.average_rate)
        return f"{stream.width}x{stream.height}@{rate:g}", len(times) / rate


def run(video: Path, mode: str, segment: float, methods: dict) -> dict[str, dict]:
    options = ReaderOptions(segment_mode=mode, segment_seconds=segment, min_segment_seconds=1.0)
    items = [i for i in read(video, options)]
    assert not any(isinstance(i, Exception) for i in items), items
    results = {name: {"cpu": [], "wall": [], "bytes": [], "how": {}, "shape": set(), "dur_err": []} for name in methods}
    for item in items:
        for name, method in methods.items():
            c, w = time.process_time(), time.perf_counter()
            data = method(item.loader)
            cpu, wall = time.process_time() - c, time.perf_counter() - w
            r = results[name]
            r["cpu"].append(cpu)
            r["wall"].append(wall)
            r["bytes"].append(len(data))
            how = item.loader.clip_method if method in (after, after_ultrafast, forced_encode) else "-"
            r["how"][how] = r["how"].get(how, 0) + 1
            shape, seconds = describe(data)
            r["shape"].add(shape)
            if data:
                r["dur_err"].append(abs(seconds - item.duration))
    for r in results.values():
        r["segments"] = len(items)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each test video")
    parser.add_argument("--segment", type=float, default=10.0, help="fixed window length")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "molmo-rag-bench")
    args = parser.parse_args()
    videos = make_videos(args.seconds, args.cache)
    t0 = time.perf_counter()
    rows = []
    clip_methods = {"before": legacy_clip, "after": after}
    plans = [
        ("1080p30", "fixed", {**clip_methods, "after, ultrafast": after_ultrafast, "decode floor": decode_floor}),
        ("360p30-gop2s", "fixed", {**clip_methods, "after, re-encode forced": forced_encode, "decode floor": decode_floor}),
        ("360p30", "scenes", clip_methods),
    ]
    for name, mode, methods in plans:
        results = run(videos[name], mode, args.segment, methods)
        base = statistics.fmean(results["before"]["cpu"])
        base_bytes = statistics.fmean(results["before"]["bytes"])
        for method, r in results.items():
            cpu = statistics.fmean(r["cpu"])
            size = statistics.fmean(r["bytes"])
            made_by = ", ".join(f"{how} {n}" for how, n in sorted(r["how"].items()) if how != "-") or "-"
            rows.append(
                [
                    f"{name}, {mode}",
                    method,
                    str(r["segments"]),
                    made_by,
                    ", ".join(sorted(r["shape"])),
                    f"{cpu:.3f}",
                    f"{statistics.fmean(r['wall']):.3f}",
                    f"{size / 1000:.0f}" if size else "-",
                    f"{base / cpu:.1f}x" if cpu else "-",
                    f"{size / base_bytes:.2f}" if size else "-",
                    f"{max(r['dur_err']):.3f}" if r["dur_err"] else "-",
                ]
            )
    header = [
        "video, segments", "method", "segments", "clip made by", "clip size@fps", "CPU s/segment", "wall s/segment",
        "KB/segment", "CPU vs before", "bytes vs before", "max duration error (s)",
    ]
    print(f"\n{args.seconds:g} s videos, {args.segment:g} s windows; bench wall time "
          f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
