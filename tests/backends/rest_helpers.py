"""Shared pieces of the REST backend tests: media, fast options, result helpers."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from molmo_rag.backends.base import Request, get_backend
from molmo_rag.media.items import MediaItem, VideoFrames

KEY = "sk-live-SECRET-0123456789abcdef"
FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)


def images(n: int = 4) -> list[MediaItem]:
    """Distinct small images (different sizes and colours)."""
    return [MediaItem.from_pil(Image.new("RGB", (32 + i, 24 + 2 * i), (40 * i % 256, 90, 200))) for i in range(n)]


def png_sha(item: MediaItem) -> str:
    return hashlib.sha256(item.image_bytes()[0]).hexdigest()[:12]


def make_mp4(n_frames: int = 8, fps: int = 4, size: tuple[int, int] = (64, 48), seed: int = 0) -> tuple[bytes, np.ndarray]:
    import av

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, size=(n_frames, size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue(), frames


def video_item(start: float = 10.0, seed: int = 0, duration: float | None = None) -> MediaItem:
    """A real small mp4 clip as a video segment starting at ``start`` s of its video."""
    clip, frames = make_mp4(seed=seed)
    fps = 4
    meta = VideoFrames(
        frames=frames,
        timestamps=[i / fps for i in range(len(frames))],
        fps=fps,
        width=frames.shape[2],
        height=frames.shape[1],
        duration=duration if duration is not None else len(frames) / fps,
        total_frames=len(frames),
        indices=list(range(len(frames))),
    )
    return MediaItem.from_frames(meta, source=f"clip{seed}.mp4", start=start, clip=clip)


def backend(name: str, server, **options):
    opts = {**FAST, **options}
    if "api_key" not in opts and server.api_key is not None:
        opts["api_key"] = server.api_key
    return get_backend(name, base_url=server.base_url, **opts)


def run(backend_, items, task):
    return backend_.run([Request(item, task) for item in items])
