"""Segments follow the frames that exist (issue 17, item 7).

A 2 KB Matroska file with two frames ten days apart (a camera that records on motion, two
clips joined, a damaged timestamp) was cut into 14,401 windows of 60 s: a $1,728 estimate,
28,798 error lines (every window but two held no frame) and 600 MB. A stretch without
frames is a gap, not footage: no segment covers it, in either segment mode, and a video
without gaps keeps exactly the segments it had (tests/media/test_video.py). An estimate
with more segments than the file has frames (each segment must hold one: windows shorter
than a frame, say) is refused for that file with one line.

Real files made with PyAV, the ``molmo-rag`` command in a subprocess (peak memory read
from its VmHWM), the pixel-statistics backend and embedded Qdrant.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from molmo_rag.media import MediaItem, ReaderOptions, read

av = pytest.importorskip("av")
pytest.importorskip("qdrant_client")

TESTS = Path(__file__).resolve().parents[1]
TEN_DAYS = 10 * 86400
FPS = 25
MODES = ["fixed", "scenes"]


def _picture(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A flat colour (one per seed) with a little noise: easy to tell apart when decoded."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(30, 225, 3)
    noise = rng.integers(-8, 8, (size[1], size[0], 3))
    return (colour + noise).clip(0, 255).astype(np.uint8)


def _write(path: Path, times: list[Fraction], fmt: str, seeds: list[int] | None = None, rate: Fraction = Fraction(FPS)) -> Path:
    """An H.264 video with a frame at each of ``times`` (seconds), in a 1 ms time base."""
    time_base = Fraction(1, 1000)
    seeds = seeds or list(range(len(times)))
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast", "crf": "30", "g": "50", "threads": "1"}
        for t, seed in zip(times, seeds):
            frame = av.VideoFrame.from_ndarray(_picture(seed), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = int(t / time_base), time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def ten_days(tmp_path_factory) -> Path:
    path = _write(tmp_path_factory.mktemp("gaps") / "motion-camera.mkv", [Fraction(0), Fraction(TEN_DAYS)], "matroska")
    assert path.stat().st_size < 4096
    return path


@pytest.fixture(scope="module")
def hour_apart(tmp_path_factory) -> Path:
    """The same in an MP4, whose average frame rate counts the gap: 1/1800 fps."""
    return _write(tmp_path_factory.mktemp("gaps") / "doorbell.mp4", [Fraction(0), Fraction(3600)], "mp4")


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory) -> Path:
    """10 s of footage, 90 s of nothing, 10 s of footage: a new picture every second."""
    times = [Fraction(i, FPS) for i in range(10 * FPS)] + [Fraction(100) + Fraction(i, FPS) for i in range(10 * FPS)]
    seeds = [i // FPS for i in range(len(times))]
    return _write(tmp_path_factory.mktemp("gaps") / "two-clips.mp4", times, "mp4", seeds)


@pytest.fixture(scope="module")
def slideshow(tmp_path_factory) -> Path:
    """Ten pictures, one every 2 s (0.5 fps): 20 s of footage in ten frames."""
    times = [Fraction(2 * i) for i in range(10)]
    return _write(tmp_path_factory.mktemp("gaps") / "slideshow.mp4", times, "mp4", rate=Fraction(1, 2))


def _items(source: Path, options: ReaderOptions) -> list[MediaItem]:
    results = list(read(source, options))
    assert not [r for r in results if isinstance(r, Exception)], results
    return results


def _shows(item: MediaItem, seed_at) -> None:
    """The segment's frames decode, each showing the picture of ``seed_at(its time)``."""
    frames = item.frames(8, 2.0)
    assert len(frames) >= 1
    for t, picture in zip(frames.timestamps, frames.frames):
        want = _picture(seed_at(item.start + t)).mean(axis=(0, 1))
        assert np.abs(picture.astype(int).mean(axis=(0, 1)) - want).max() < 12, (item, t)


# --- the reader ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("video", "apart"), [("ten_days", TEN_DAYS), ("hour_apart", 3600)])
def test_two_frames_days_or_an_hour_apart_are_two_segments(request, video, apart, mode):
    path = request.getfixturevalue(video)
    items = _items(path, ReaderOptions(segment_mode=mode))
    assert [(i.start, i.end) for i in items] == [
        pytest.approx((0.0, 1 / FPS), abs=1e-3),
        pytest.approx((apart, apart + 1 / FPS), abs=1e-3),
    ]
    assert [i.extra["boundary"] for i in items] == ["start", "gap"]
    assert items[-1].extra["video_frames"] == 2 and items[-1].extra["fps"] == pytest.approx(FPS)
    for item in items:
        _shows(item, lambda t: 0 if t < 1 else 1)
        with av.open(io.BytesIO(item.clip()[0])) as clip:  # what a hosted backend is sent
            assert len(list(clip.decode(video=0))) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_gap_between_two_clips_is_left_out(two_clips, mode):
    options = ReaderOptions(segment_mode=mode, segment_seconds=30.0, min_segment_seconds=1.0)
    items = _items(two_clips, options)
    before = [i for i in items if i.start < 50]
    after = [i for i in items if i.start >= 50]
    assert before[0].start == 0.0 and before[-1].end == pytest.approx(10.0, abs=1e-3)
    assert after[0].start == pytest.approx(100.0, abs=1e-3) and after[-1].end == pytest.approx(110.0, abs=0.05)
    assert after[0].extra["boundary"] == "gap"
    for part in (before, after):  # each side covered without gaps of its own
        assert all(a.end == b.start for a, b in zip(part, part[1:]))
    assert items[-1].extra["video_frames"] == 20 * FPS
    for item in items:  # no segment without footage, each frame the picture of its second
        _shows(item, lambda t: int(t + 1e-6) if t < 50 else int(t + 1e-6) - 90)


# --- the command line ------------------------------------------------------------------------
_CLI_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    sys.path.insert(0, sys.argv[1])
    import _pixel_backend
    _pixel_backend.register()
    from molmo_rag.cli import main

    def peak_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

    normal, gap, db = sys.argv[2:5]
    run("estimate", normal, "--backend", "wavespeed")  # every reader, codec and store loaded once
    run("index", normal, "--backend", "pixels", "--db", db + "-warm", "--quiet")
    base = peak_bytes()
    estimate = run("estimate", gap, "--backend", "wavespeed")
    index = run("index", gap, "--backend", "pixels", "--db", db)
    print(json.dumps({"base": base, "peak": peak_bytes(), "estimate": estimate, "index": index}))
    """
)
MEMORY_HEADROOM = 40 * 1024**2
"""Peak memory growth allowed over the warmed-up command (14,401 segments took 600 MB)."""


def test_estimate_and_index_of_the_ten_day_file_are_a_few_lines_in_bounded_memory(ten_days, two_clips, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, str(TESTS), str(two_clips), str(ten_days), str(tmp_path / "db")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "MOLMO_RAG_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    estimate, index = report["estimate"], report["index"]

    lines = estimate["out"].splitlines()
    assert estimate["code"] == 0 and not estimate["err"], estimate
    assert len(lines) == 3, lines  # two segments and the total
    assert lines[0].startswith(f"{ten_days} 0.0-0.0s") and lines[1].startswith(f"{ten_days} {TEN_DAYS:.1f}-")
    total = float(lines[-1].rsplit("$", 1)[1].split()[0])
    assert lines[-1].startswith("total: 2 item(s)") and 0 < total <= 0.05  # 5 s billed per call

    assert index["code"] == 0, index
    assert "indexed 2 item(s)" in index["out"] and "failure" not in index["err"], index
    assert len(index["out"].splitlines()) + len(index["err"].splitlines()) <= 3, index

    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"


def test_an_estimate_with_more_segments_than_frames_is_refused_with_one_line(slideshow, capsys):
    from molmo_rag.cli import main

    # Windows of 1 s on a picture every 2 s: every frame would be sent, and paid, twice.
    argv = ["estimate", str(slideshow), "--backend", "wavespeed", "--segment", "fixed", "--segment-seconds", "1"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2, lines  # the refusal and the total
    refusal = lines[0]
    assert refusal.startswith(f"{slideshow}: ERROR MediaTooLargeError: ")
    assert "estimate refused" in refusal and "10 frames" in refusal and "--segment-seconds" in refusal
    assert lines[1].startswith("total: 0 item(s), 0 call(s), $0.0000")

    assert main([*argv, "--json"]) == 1
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objects) == 2
    assert objects[0]["source"] == str(slideshow) and objects[0]["error_type"] == "MediaTooLargeError"
    assert objects[1]["total_calls"] == 0 and objects[1]["total_cost_usd"] == 0

    # The same file in windows of 5 s is estimated as usual.
    assert main(["estimate", str(slideshow), "--backend", "wavespeed", "--segment", "fixed", "--segment-seconds", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and "ERROR" not in "".join(lines)  # four windows (on the frame grid) and the total


def test_with_gaps_turned_off_the_ten_day_estimate_is_refused_for_that_file_alone(ten_days, slideshow):
    from molmo_rag.backends.base import backend_class
    from molmo_rag.cost import estimate
    from molmo_rag.tasks import Caption

    # max_frame_gap_seconds=None: segments span the whole timeline again (14,401 of them);
    # the estimate refuses that file, and the next one is estimated as usual.
    items = list(read([ten_days, slideshow], ReaderOptions(max_frame_gap_seconds=None)))
    assert not [r for r in items if isinstance(r, Exception)]
    assert sum(i.source == str(ten_days) for i in items) == 14_401
    result = estimate(backend_class("wavespeed"), items, [Caption()])
    assert [e.source for e in result.refused] == [str(ten_days)]
    assert "14,401 segments" in str(result.refused[0]) and "the 2 frames the file holds" in str(result.refused[0])
    shows = [e for e in result.items if e.source == str(slideshow)]
    assert all(e.refusal is None and e.calls == 1 for e in shows)
    assert result.calls == len(shows) and result.cost_usd == pytest.approx(sum(e.cost_usd for e in shows))
    assert result.to_json()["refused"][0]["error_type"] == "MediaTooLargeError"
