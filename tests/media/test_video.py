from __future__ import annotations

import hashlib
import io
import random
from fractions import Fraction

import av
import numpy as np
import pytest

from molmo_rag.errors import CorruptMediaError, MediaTooLargeError, UnsupportedMediaError
from molmo_rag.media import MediaItem, ReaderOptions, read
from molmo_rag.testing import samples
from molmo_rag.media.options import MAX_SEGMENT_SECONDS
from molmo_rag.media.sources import Blob
from molmo_rag.media.video import clips as video_clips
from molmo_rag.media.video import (
    REMUX_MAX_BYTES_PER_SECOND,
    clip_limits,
    detect_cuts,
    plan_segments,
    probe,
    sample_times,
)

SCENES = ReaderOptions(segment_mode="scenes", min_segment_seconds=1.0, max_segment_seconds=60)


def _items(source, options) -> list[MediaItem]:
    results = list(read(source, options))
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def _assert_covers(items, duration):
    assert items[0].start == 0.0
    for a, b in zip(items, items[1:]):
        assert a.end == b.start  # no gap, no overlap
    assert items[-1].end == pytest.approx(duration, abs=1e-6)
    assert all(0 < i.end - i.start <= MAX_SEGMENT_SECONDS for i in items)


# --- probing and cutting -------------------------------------------------------------------------
def test_probe(cuts_video, ntsc_video, pal_half_video, rotated_video):
    info = probe(Blob(source="x", path=cuts_video.path))
    assert info.duration == pytest.approx(12.0, abs=1e-3)
    assert info.fps == pytest.approx(25.0)
    assert (info.width, info.height, info.rotation, info.has_audio) == (192, 108, 0, True)
    assert probe(Blob(source="x", path=ntsc_video.path)).fps == pytest.approx(29.97, abs=1e-3)
    assert probe(Blob(source="x", path=pal_half_video.path)).fps == pytest.approx(12.5)
    rotated = probe(Blob(source="x", path=rotated_video.path))
    assert rotated.rotation == 90 and (rotated.width, rotated.height) == (96, 160)


def test_scene_cuts_found_within_half_a_second(cuts_video, ntsc_video, pal_half_video):
    for video in (cuts_video, ntsc_video, pal_half_video):
        found = detect_cuts(Blob(source="x", path=video.path))
        assert len(found) == len(video.cuts), (video.path.name, found, video.cuts)
        for truth, got in zip(video.cuts, found):
            assert abs(truth - got) <= 0.5


def test_scene_segments_start_at_the_cuts(cuts_video):
    items = _items(cuts_video.path, SCENES)
    _assert_covers(items, cuts_video.duration)
    assert len(items) == 3
    for cut, item in zip(cuts_video.cuts, items[1:]):
        assert abs(item.start - cut) <= 0.5
        assert item.extra["boundary"] == "scene"
    sha = hashlib.sha256(cuts_video.path.read_bytes()).hexdigest()
    assert items[1].media_id == f"{sha}#t={items[1].start:.3f}-{items[1].end:.3f}"
    assert all(i.kind == "video_segment" and i.content_hash == sha for i in items)


def test_min_and_max_segment_length_in_scene_mode(cuts_video):
    merged = _items(cuts_video.path, ReaderOptions(min_segment_seconds=3.5, max_segment_seconds=60))
    _assert_covers(merged, cuts_video.duration)
    assert len(merged) == 2  # the 3 s middle shot merged into the next one
    assert all(i.end - i.start >= 3.5 for i in merged)
    split = _items(cuts_video.path, ReaderOptions(min_segment_seconds=1.0, max_segment_seconds=2.0))
    _assert_covers(split, cuts_video.duration)
    assert all(i.end - i.start <= 2.0 + 1e-9 for i in split)
    assert {i.extra["boundary"] for i in split} == {"start", "scene", "split"}


def test_fixed_windows(ntsc_video):
    items = _items(ntsc_video.path, ReaderOptions(segment_mode="fixed", segment_seconds=2.0, min_segment_seconds=0.5))
    _assert_covers(items, ntsc_video.duration)
    assert [round(i.start, 3) for i in items] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("mode", ["fixed", "scenes"])
def test_planned_segments_always_cover_without_gaps(mode):
    rng = random.Random(3)
    for _ in range(300):
        duration = rng.uniform(0.2, 900)
        cuts = sorted(rng.uniform(0, duration) for _ in range(rng.randint(0, 40)))
        max_len = rng.uniform(2, 120)
        options = ReaderOptions(
            segment_mode=mode,
            segment_seconds=rng.uniform(1, 120),
            min_segment_seconds=rng.uniform(0, max_len / 2),
            max_segment_seconds=max_len,
        )
        fps = rng.choice([None, 12.5, 30000 / 1001, 60.0])
        segments = plan_segments(duration, cuts, options, fps)
        assert segments[0].start == 0 and segments[-1].end == pytest.approx(duration)
        assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
        assert all(0 < s.end - s.start <= MAX_SEGMENT_SECONDS + 1e-9 for s in segments)
        if mode == "scenes":
            assert all(s.end - s.start <= options.max_segment_seconds + 1e-9 for s in segments)
            if len(segments) > 1:
                assert all(s.end - s.start >= options.min_segment_seconds - 1e-9 for s in segments)


def test_sample_times():
    assert sample_times(3.0, 64, 2.0, 25.0) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert sample_times(100.0, 4, 2.0, 25.0) == [0.0, 25.0, 50.0, 75.0]
    assert sample_times(1.0, 64, 50.0, 12.5) == [i / 12.5 for i in range(13)]


# --- loading ------------------------------------------------------------------------------------
def test_frames_in_clip_time(cuts_video):
    items = _items(cuts_video.path, SCENES)
    second = items[1]  # the 3 s zoom on the coffee photo
    frames = second.frames(num_frames=64, max_fps=2.0)
    assert frames.frames.dtype == np.uint8 and frames.frames.shape[1:] == (108, 192, 3)
    assert len(frames) == 6
    assert frames.timestamps[0] == pytest.approx(0.0, abs=0.05)
    assert all(b > a for a, b in zip(frames.timestamps, frames.timestamps[1:]))
    assert all(0 <= t < second.duration for t in frames.timestamps)
    for target, got in zip(sample_times(second.duration, 64, 2.0, 25.0), frames.timestamps):
        assert abs(target - got) <= 2 / 25  # the nearest decodable frame
    assert frames.fps == pytest.approx(25.0) and frames.total_frames == round(second.duration * 25)
    assert frames.indices == [round(t * 25) for t in frames.timestamps]
    # Every frame shows the coffee shot (warm), none the astronaut or the deep field.
    coffee = np.asarray(samples.photo("coffee")).astype(float).mean(axis=(0, 1))
    for frame in frames.frames:
        mean = frame.reshape(-1, 3).mean(axis=0)
        assert mean[0] > mean[2] + 15 and np.abs(mean - coffee).max() < 45
    few = second.frames(num_frames=3, max_fps=2.0)
    assert len(few) == 3 and few.timestamps[1] == pytest.approx(1.0, abs=0.05)


def test_frames_at_odd_frame_rates(ntsc_video, pal_half_video):
    for video in (ntsc_video, pal_half_video):
        fps = float(video.fps)
        for item in _items(video.path, ReaderOptions(segment_mode="fixed", segment_seconds=2.5, min_segment_seconds=0.1)):
            frames = item.frames(16, 4.0)
            for t, index in zip(frames.timestamps, frames.indices):
                # clip timestamps sit on the source frame grid, shifted to the segment start
                assert abs((item.start + t) * fps - round((item.start + t) * fps)) < 0.02
                assert abs(t * fps - index) <= 0.51
            assert frames.timestamps[-1] < item.duration


def test_thumbnail_and_clip(cuts_video):
    items = _items(cuts_video.path, SCENES)
    last = items[2]
    thumb = last.thumbnail()
    assert thumb.size == (192, 108) and last.image().size == (192, 108)
    data, mime = last.clip()
    assert mime == "video/mp4"
    with av.open(io.BytesIO(data)) as clip:
        assert not clip.streams.audio
        stream = clip.streams.video[0]
        decoded = [f for f in clip.decode(stream)]
        assert abs(len(decoded) / 25.0 - last.duration) <= 0.1
        assert (decoded[0].width, decoded[0].height) == (192, 108)
        assert decoded[0].time == pytest.approx(0.0, abs=0.05)


def _clip_stream(data):
    """(width, height, frame rate, frame times, decoded RGB frames) of a clip."""
    with av.open(io.BytesIO(data)) as clip:
        assert not clip.streams.audio
        stream = clip.streams.video[0]
        frames = list(clip.decode(stream))
        return (
            stream.width,
            stream.height,
            float(stream.average_rate),
            [float(f.time) for f in frames],
            [f.to_ndarray(format="rgb24") for f in frames],
        )


def _assert_clip_duration(times, rate, duration):
    # evenly spaced from 0, as long as the segment give or take one frame
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert all(b - a == pytest.approx(1 / rate, abs=2e-3) for a, b in zip(times, times[1:]))
    assert abs(len(times) / rate - duration) <= 1 / rate + 1e-6


def test_clip_encoded_at_the_size_and_rate_the_model_reads(tmp_path):
    # 1280x720 at 25 fps: bigger than the caps, so re-encoded at 640x360 and 4 fps (Molmo2
    # samples at most 2 frames a second and looks at 378 px), each frame the source frame
    # nearest its time. Before: 854x480 at 25 fps, every frame encoded.
    video = _write_video(tmp_path / "wide.mp4", 6, fps=25, size=(1280, 720), gop=25)
    options = ReaderOptions(segment_mode="fixed", segment_seconds=2.5, min_segment_seconds=0.5)
    assert clip_limits(options) == (640, 480, 4.0)
    items = _items(video, options)
    assert [round(i.start, 2) for i in items] == [0.0, 2.48, 5.0]
    for item in items:
        width, height, rate, times, pictures = _clip_stream(item.clip()[0])
        assert item.loader.clip_method == "encode"
        assert (width, height, rate) == (640, 360, 4.0)
        _assert_clip_duration(times, rate, item.duration)
        for t, picture in zip(times, pictures):
            if abs((item.start + t) % 1.0 - 0.5) < 0.45:  # clear of a colour change
                assert np.abs(picture[5, 5].astype(int) - _colour_at(item.start + t)).max() < 40, (item.start, t)
    frames = items[0].frames(4, 2.0)
    assert frames.frames.shape[1:] == (432, 768, 3)  # max_frame_side


def test_clip_caps_set_in_options_apply(tmp_path):
    video = _write_video(tmp_path / "wide.mp4", 2, fps=25, size=(1280, 720), gop=25)
    options = ReaderOptions(segment_mode="fixed", clip_max_side=854, clip_max_fps=10)
    assert clip_limits(options) == (854, 480, 10.0)
    item = _items(video, options)[0]
    width, height, rate, times, _ = _clip_stream(item.clip()[0])
    assert (width, height, rate) == (854, 480, 10.0)
    _assert_clip_duration(times, rate, item.duration)


def _packets(data, start=None, end=None):
    """The video packets' payloads (and the stream's extradata) of a file, from ``start`` to
    before ``end`` seconds (presentation times)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        payloads = []
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            t = float(packet.pts * stream.time_base)
            if (start is None or t >= start - 1e-3) and (end is None or t < end - 1e-3):
                payloads.append(bytes(packet))
        return payloads, bytes(stream.codec_context.extradata or b"")


def test_clip_copies_the_packets_when_the_segment_starts_on_a_keyframe(tmp_path):
    # Small H.264 (within the caps), keyframes every second, windows of 2 s: each segment
    # runs from one keyframe to another, so its packets are copied as they are (no decode,
    # no encode), with timestamps from 0, at the source's frame rate.
    video = _write_video(tmp_path / "small.mp4", 5, fps=25, size=(320, 180), gop=25)
    source = video.read_bytes()
    options = ReaderOptions(segment_mode="fixed", segment_seconds=2.0, min_segment_seconds=0.5)
    items = _items(video, options)
    assert [(i.start, i.end) for i in items] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    for item in items:
        data = item.clip()[0]
        assert item.loader.clip_method == "remux"
        assert _packets(data) == _packets(source, item.start, item.end)  # the very same bytes
        width, height, rate, times, pictures = _clip_stream(data)
        assert (width, height, rate) == (320, 180, 25.0)
        _assert_clip_duration(times, rate, item.duration)
        for t, picture in zip(times, pictures):
            if abs((item.start + t) % 1.0 - 0.5) < 0.45:
                assert np.abs(picture[5, 5].astype(int) - _colour_at(item.start + t)).max() < 40
        assert len(data) <= REMUX_MAX_BYTES_PER_SECOND * item.duration


def test_clip_is_encoded_when_packets_cannot_be_copied(tmp_path, monkeypatch, rotated_video):
    video = _write_video(tmp_path / "small.mp4", 5, fps=25, size=(320, 180), gop=25)
    source = video.read_bytes()

    def clip_of(item):
        width, height, rate, times, _ = _clip_stream(item.clip()[0])
        _assert_clip_duration(times, rate, item.duration)
        return item.loader.clip_method, (width, height, rate)

    # segments that start (1.5 s, 4.5 s) or end (1.5 s, 4.5 s) between keyframes
    items = _items(video, ReaderOptions(segment_mode="fixed", segment_seconds=1.5, min_segment_seconds=0.2))
    assert [i.start for i in items] == pytest.approx([0.0, 1.5, 3.0, 4.5], abs=0.05)
    assert [clip_of(i)[0] for i in items] == ["encode", "encode", "encode", "encode"]
    assert clip_of(items[1])[1] == (320, 180, 4.0)
    # rotated: the turn must be applied to the pictures
    rotated = _items(rotated_video.path, ReaderOptions(segment_mode="fixed"))[0]
    assert clip_of(rotated) == ("encode", (96, 160, 4.0))
    # not H.264
    webm = _write_video(tmp_path / "small.webm", 2, fmt="webm", codec="libvpx", fps=25, size=(320, 180), gop=25)
    assert clip_of(_items(webm, ReaderOptions(segment_mode="fixed"))[0])[0] == "encode"
    # over the byte-rate cap
    monkeypatch.setattr(video_clips, "REMUX_MAX_BYTES_PER_SECOND", 1_000)
    whole = _items(video, ReaderOptions(segment_mode="fixed"))[0]
    assert clip_of(whole)[0] == "encode"
    monkeypatch.undo()
    assert clip_of(whole)[0] == "remux"
    assert _packets(whole.clip()[0]) == _packets(source)
    # the last readable segment of a truncated file (its last packet may be cut short)
    cut = tmp_path / "cut.mp4"
    faststart = _write_video(tmp_path / "fast.mp4", 6, fps=25, size=(320, 180), gop=25, faststart=True)
    cut.write_bytes(faststart.read_bytes()[: int(faststart.stat().st_size * 0.6)])
    options = ReaderOptions(segment_mode="fixed", segment_seconds=1.0, min_segment_seconds=0.2)
    *readable, error = list(read(cut, options))
    assert isinstance(error, CorruptMediaError)
    assert clip_of(readable[0])[0] == "remux" and clip_of(readable[-1])[0] == "encode"


def test_rotation_applied(rotated_video):
    item = _items(rotated_video.path, ReaderOptions(segment_mode="fixed"))[0]
    assert (item.width, item.height) == (96, 160)
    frames = item.frames(2, 1.0)
    assert frames.frames.shape[1:] == (160, 96, 3) and (frames.width, frames.height) == (96, 160)
    assert item.thumbnail().size == (96, 160)
    # Turned the right way: the stored frame's left column becomes the displayed bottom row.
    with av.open(str(rotated_video.path)) as c:
        stored = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    shown = frames.frames[0].astype(int)
    assert np.abs(shown[-1, :, :] - stored[:, 0, :]).mean() < 12
    with av.open(io.BytesIO(item.clip()[0])) as clip:
        frame = next(clip.decode(video=0))
        assert (frame.width, frame.height) == (96, 160) and not frame.rotation


def test_single_segment_keeps_remote_url(http_server, http_root, rotated_video):
    (http_root / "clip.mp4").write_bytes(rotated_video.path.read_bytes())
    # the test server is on 127.0.0.1, which no hosted API could reach: opt in to pass it on
    items = _items(f"{http_server}/clip.mp4", ReaderOptions(segment_mode="fixed", pass_private_urls=True))
    assert len(items) == 1 and items[0].remote_url == f"{http_server}/clip.mp4"
    assert items[0].frames(2, 1.0).frames.shape[0] == 2


def test_video_from_bytes(pal_half_video):
    items = _items(pal_half_video.path.read_bytes(), ReaderOptions(segment_mode="fixed", segment_seconds=4))
    assert [i.source for i in items] == ["<bytes>", "<bytes>"]
    assert items[1].duration == pytest.approx(7.04 - 4.0)
    timestamps = items[1].frames(4, 1.0).timestamps
    assert len(timestamps) == 4  # 0, 1, 2, 3 s wanted; the nearest decodable frames come back
    assert all(abs(got - want) <= 2 / 12.5 for got, want in zip(timestamps, [0, 1, 2, 3]))


# --- bad input ------------------------------------------------------------------------------------
def test_zero_length_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert isinstance(next(read(path)), CorruptMediaError)


def _write_video(
    path, seconds, *, fmt="mp4", codec="libx264", fps=10, size=(96, 64), gop=10, faststart=False, live=False
):
    """A real video whose colour changes every second (second i: COLOURS[i % 4]) under a
    moving white bar; keyframes every ``gop`` frames."""
    width, height = size
    options = {"movflags": "+faststart"} if faststart else {"live": "1"} if live else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "preset": "veryfast"}
        else:  # libvpx
            stream.options = {"g": str(gop), "deadline": "realtime", "cpu-used": "8", "b": "200k"}
        for i in range(round(seconds * fps)):
            picture = np.zeros((height, width, 3), np.uint8)
            picture[:] = COLOURS[int(i / fps) % len(COLOURS)]
            x = (i * 3) % (width - 12)
            picture[height // 3 : height // 3 + 12, x : x + 12] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _colour_at(seconds):
    return np.array(COLOURS[int(seconds + 1e-6) % len(COLOURS)])


def _last_decodable(path):
    """End of the last frame PyAV decodes from ``path``, reading to the first error."""
    last = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                last = frame.time
        except av.FFmpegError:
            pass
    return last + 1 / float(stream.average_rate)


def _check_readable_part(results, path, declared):
    """The segments that decode, covering the readable part, then one truncation error."""
    *items, error = results
    assert items and all(isinstance(i, MediaItem) for i in items), results
    assert isinstance(error, CorruptMediaError), results
    assert error.source == str(path)
    readable = items[-1].end
    _assert_covers(items, readable)
    assert readable == pytest.approx(_last_decodable(path), abs=0.35)  # B-frames aside
    assert str(error) == (
        f"{path}: truncated after {readable:.1f} s of {declared:.1f} s; "
        f"segments after {readable:.1f} s could not be read; re-export or re-download it for the rest"
    )
    for item in items:  # every segment yields its frames, the right ones, and a clip
        frames = item.frames(8, 1.0)
        for t, picture in zip(frames.timestamps, frames.frames):
            if abs((item.start + t) % 1.0 - 0.5) < 0.4:  # clear of a colour change
                assert np.abs(picture[2, 2].astype(int) - _colour_at(item.start + t)).max() < 40
        with av.open(io.BytesIO(item.clip()[0])) as clip:
            assert len(list(clip.decode(video=0))) > 0
    return items


@pytest.mark.parametrize("fraction", [0.4, 0.7])
@pytest.mark.parametrize("mode", ["fixed", "scenes"])
def test_truncated_webm_yields_its_readable_segments_then_the_error(tmp_path, mode, fraction):
    # WebM keeps its length in the header: a file cut mid-cluster still says 40 s while its
    # frames stop early. Before: the first seconds came back as if they were the whole video.
    whole = _write_video(tmp_path / "whole.webm", 40, fmt="webm", codec="libvpx")
    data = whole.read_bytes()
    cut = tmp_path / f"cut-{fraction}.webm"
    cut.write_bytes(data[: int(len(data) * fraction)])
    options = ReaderOptions(segment_mode=mode, segment_seconds=10, min_segment_seconds=1.0)
    items = _check_readable_part(list(read(cut, options)), cut, 40.0)
    assert 2 < items[-1].end < 40 * fraction + 2
    assert all(i.remote_url is None for i in items)
    assert items[-1].extra["video_duration"] == pytest.approx(40.0)
    whole_items = list(read(whole, options))  # the whole file: no error, all 40 s
    assert not any(isinstance(r, Exception) for r in whole_items)
    _assert_covers(whole_items, 40.0)


@pytest.mark.parametrize("mode", ["fixed", "scenes"])
def test_truncated_faststart_mp4_yields_its_readable_segments_then_the_error(tmp_path, mode):
    # moov first (as streaming files are), then the media data cut short: the frames up to
    # the cut are kept. Before: one error, and no segment at all.
    whole = _write_video(tmp_path / "fast.mp4", 40, faststart=True)
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    for fraction in (0.4, 0.7):
        cut = tmp_path / f"fast-{fraction}.mp4"
        cut.write_bytes(data[: int(len(data) * fraction)])
        options = ReaderOptions(segment_mode=mode, segment_seconds=10, min_segment_seconds=1.0)
        items = _check_readable_part(list(read(cut, options)), cut, 40.0)
        assert 2 < items[-1].end < 40 * fraction + 2


def test_truncated_video_in_a_batch(tmp_path, pal_half_video):
    # The readable part and the error of a cut file, then the next file as usual.
    whole = _write_video(tmp_path / "whole.webm", 20, fmt="webm", codec="libvpx")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.5)])
    results = list(read([cut, pal_half_video.path], ReaderOptions(segment_mode="fixed", segment_seconds=4)))
    kinds = [(r.source, type(r).__name__) for r in results]
    error = next(i for i, r in enumerate(results) if isinstance(r, Exception))
    assert all(source == str(cut) and kind == "MediaItem" for source, kind in kinds[:error])
    assert error >= 1 and kinds[error] == (str(cut), "CorruptMediaError")
    assert [k for k in kinds[error + 1 :]] == [(str(pal_half_video.path), "MediaItem")] * 2


def test_probe_of_a_truncated_video(tmp_path):
    whole = _write_video(tmp_path / "whole.webm", 20, fmt="webm", codec="libvpx")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.5)])
    info = probe(Blob(source="x", path=cut))
    assert info.truncated and info.declared_duration == pytest.approx(20.0)
    assert info.duration == pytest.approx(_last_decodable(cut), abs=0.35)
    assert not probe(Blob(source="x", path=whole)).truncated
    # A live WebM (as browsers record them) declares no length: a cut one cannot be told
    # from a short one, and reads as the part that is there.
    live = _write_video(tmp_path / "live.webm", 20, fmt="webm", codec="libvpx", live=True)
    live_cut = tmp_path / "live-cut.webm"
    live_cut.write_bytes(live.read_bytes()[: int(live.stat().st_size * 0.5)])
    info = probe(Blob(source="x", path=live_cut))
    assert info.declared_duration is None and not info.truncated
    assert info.duration == pytest.approx(_last_decodable(live_cut), abs=0.35)


def test_mp4_cut_before_its_index(tmp_path, cuts_video):
    # Index ('moov') at the end, as encoders write it: cut anywhere in the media data, nothing
    # tells where the frames are. One clear error, nothing else.
    data = cuts_video.path.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    for fraction in (0.5, 0.9):
        path = tmp_path / f"cut-{fraction}.mp4"
        path.write_bytes(data[: int(len(data) * fraction)])
        for mode in ("fixed", "scenes"):
            results = list(read(path, ReaderOptions(segment_mode=mode)))
            assert len(results) == 1 and isinstance(results[0], CorruptMediaError), (fraction, mode, results)
            assert results[0].source == str(path)
            assert "truncated or damaged" in str(results[0])


def test_mp4_cut_inside_its_index_is_corrupt_not_unsupported(tmp_path, cuts_video):
    # The container still opens, but without its whole 'moov' no stream is usable: that is a
    # damaged file (CorruptMediaError), not a file of a kind we do not read.
    data = cuts_video.path.read_bytes()
    moov = data.find(b"moov")
    assert moov > data.find(b"mdat")  # index at the end, as encoders write it
    cut = tmp_path / "cut-in-moov.mp4"
    cut.write_bytes(data[: moov + 100])
    result = next(read(cut))
    assert isinstance(result, CorruptMediaError), result
    assert "truncated or damaged" in str(result)


def test_ffmpeg_errors_say_what_the_file_is_and_what_to_do(tmp_path, cuts_video):
    # Before: "... (truncated or damaged): [Errno 1094995529] Invalid data found when
    # processing input: '...'", FFmpeg's AVERROR_INVALIDDATA as PyAV words it.
    data = cuts_video.path.read_bytes()
    cut = tmp_path / "download.mp4"
    cut.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 20)
    results = list(read([cut, garbage]))
    assert [type(r) for r in results] == [CorruptMediaError] * 2
    for result in results:
        text = str(result)
        assert "Errno" not in text and "1094995529" not in text and text.count(result.source) == 1
        assert text.startswith(f"{result.source}: truncated or damaged video") and text.endswith("; re-export or re-download it")
    assert "the MP4 ends before its index (moov)" in str(results[0])
    assert "(FFmpeg: invalid data found when processing input)" in str(results[1])


def test_video_starting_after_a_lost_keyframe_keeps_the_stream_clock(tmp_path):
    # Cut out of a longer stream: the first packets (the keyframe among them) are gone, so
    # nothing decodes until the next keyframe at 2 s. Times still count from the stream's
    # start, as players and ffmpeg do, and no segment is left without a frame.
    shots = [samples.Shot("astronaut", 3.0, "pan"), samples.Shot("coffee", 3.0, "static")]
    whole = samples.make_video(tmp_path / "whole.mp4", shots, size=(96, 64), fps=25, gop=50)
    cut = tmp_path / "cut.mp4"
    with av.open(str(whole.path)) as src, av.open(str(cut), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        packets = [p for p in src.demux(src.streams.video[0]) if p.dts is not None]
        assert packets[0].is_keyframe and not packets[1].is_keyframe
        for packet in packets[1:]:
            packet.stream = out
            dst.mux(packet)
    with av.open(str(cut)) as c:
        stream = c.streams.video[0]
        declared_start = float(stream.start_time * stream.time_base)
        declared_end = declared_start + float(stream.duration * stream.time_base)
    info = probe(Blob(source="x", path=cut))
    assert info.start_time == pytest.approx(declared_start)
    assert info.first_frame == pytest.approx(2.0 - declared_start, abs=0.05)
    assert info.duration == pytest.approx(declared_end - declared_start, abs=0.05)
    for options in (ReaderOptions(segment_mode="fixed", segment_seconds=1.0, min_segment_seconds=0.5), SCENES):
        items = _items(cut, options)
        _assert_covers(items, info.duration)
        assert items[0].end > info.first_frame  # windows before the first frame joined the next
        for item in items:
            frames = item.frames(8, 4.0)
            for t in frames.timestamps:  # every time is a real frame's time in the stream clock
                stamp = (item.start + t + info.start_time) * 25
                assert stamp == pytest.approx(round(stamp), abs=0.01)
        assert items[0].frames(8, 4.0).timestamps[0] == pytest.approx(info.first_frame, abs=0.05)
        with av.open(io.BytesIO(items[0].clip()[0])) as clip:
            assert len(list(clip.decode(video=0))) > 0


def test_mpeg_ts_seeks_land_on_the_wanted_frames(tmp_path):
    # FFmpeg seeks in MPEG-TS (no index) can land on a later keyframe, or past the last one.
    # Every window must still show its own frames, from its own start.
    path = tmp_path / "camcorder.mts"
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]  # one per 2 s
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"g": "100", "preset": "veryfast"}  # keyframes 4 s apart
        for i in range(200):
            picture = np.zeros((64, 96, 3), np.uint8)
            picture[:] = colours[i // 50]
            picture[20:40, i % 80 : i % 80 + 16] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    items = _items(path, ReaderOptions(segment_mode="fixed", segment_seconds=2.0, min_segment_seconds=0.5))
    _assert_covers(items, 8.0)
    assert len(items) == 4
    for item, colour in zip(items, colours):
        frames = item.frames(4, 2.0)
        assert frames.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.1)  # B-frames skipped
        for picture in frames.frames:
            assert np.abs(picture[5, 5].astype(int) - colour).max() < 40
        assert np.abs(np.asarray(item.thumbnail())[5, 5].astype(int) - colour).max() < 40

def test_garbage_named_mp4(tmp_path):
    path = tmp_path / "movie.mp4"
    path.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 20)
    assert isinstance(next(read(path)), CorruptMediaError)


def test_audio_only(tmp_path):
    path = samples.make_audio(tmp_path / "tone.m4a")
    result = next(read(path))
    assert isinstance(result, UnsupportedMediaError) and "audio only" in str(result)


def test_too_long_video(cuts_video):
    result = next(read(cuts_video.path, ReaderOptions(max_video_seconds=5)))
    assert isinstance(result, MediaTooLargeError)


def test_scene_scan_stops_when_the_caller_stops(cuts_video):
    import threading

    stream = read(cuts_video.path, SCENES)
    first = next(stream)
    assert first.start == 0.0
    stream.close()
    assert not any(t.name == "molmo-rag-scene-scan" for t in threading.enumerate())


def test_segments_stream_while_the_scan_goes_on(cuts_video):
    # Sampling a segment as soon as it is yielded (the scan still running) gives the same
    # frames as sampling after the whole scan.
    streamed = [(i.media_id, i.frames(8, 2.0).timestamps) for i in read(cuts_video.path, SCENES)]
    after = [(i.media_id, i.frames(8, 2.0).timestamps) for i in _items(cuts_video.path, SCENES)]
    assert streamed == after
