"""What hosted calls cost (price lists: docs/hosted-apis.md), computed before any call.

* WaveSpeed image captioner: $0.002 per image (docs/hosted-apis.md).
* WaveSpeed video captioner and video understanding: $0.005 per started 5 s of video, 5 s
  minimum, at most 120 s per call (docs/hosted-apis.md); a longer segment raises
  :class:`~molmo_rag.errors.MediaTooLargeError` (split it into shorter segments).
* OpenOctopus image captioner: its API pages give no separate price; it serves the same
  WaveSpeed Molmo2 model, so the same $0.002 per image is used as the estimate.
* ``local`` and ``openai`` (self-hosted, e.g. vLLM): $0 here (your own hardware).

An estimate out of all proportion to a video file is refused for that file (one
:class:`~molmo_rag.errors.MediaTooLargeError`, its segments cost nothing): more segments
than the frames the file holds (``video_frames``, counted by the reader) cannot all be
footage, since each segment needs a frame of its own; the rest would show a frame already
paid for, or none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from .errors import ConfigurationError, MediaTooLargeError, MolmoRagError
from .media.items import MediaItem
from .tasks import Task

__all__ = [
    "WAVESPEED_IMAGE_USD",
    "WAVESPEED_VIDEO_USD_PER_5S",
    "WAVESPEED_VIDEO_MIN_S",
    "WAVESPEED_VIDEO_MAX_S",
    "OPENOCTOPUS_IMAGE_USD",
    "wavespeed_video_cost",
    "call_cost",
    "ItemEstimate",
    "Estimate",
    "estimate",
    "out_of_proportion",
]

WAVESPEED_IMAGE_USD = 0.002
WAVESPEED_VIDEO_USD_PER_5S = 0.005
WAVESPEED_VIDEO_MIN_S = 5.0
WAVESPEED_VIDEO_MAX_S = 120.0
OPENOCTOPUS_IMAGE_USD = 0.002
FREE_BACKENDS = frozenset({"local", "openai"})


def wavespeed_video_cost(duration: float | None, source: str | None = None) -> float:
    """$0.005 per started 5 s, 5 s minimum; over 120 s raises MediaTooLargeError."""
    seconds = WAVESPEED_VIDEO_MIN_S if duration is None else max(float(duration), 0.0)
    if seconds > WAVESPEED_VIDEO_MAX_S + 1e-6:
        raise MediaTooLargeError(
            f"video segment of {seconds:.1f} s is longer than the {WAVESPEED_VIDEO_MAX_S:.0f} s "
            "WaveSpeed accepts per call; split the video into shorter segments",
            source=source,
        )
    # A hair of tolerance so 10.0000001 s (float noise from start/end) bills as 10 s.
    blocks = max(1, math.ceil(seconds / 5.0 - 1e-6))
    return round(blocks * WAVESPEED_VIDEO_USD_PER_5S, 6)


def call_cost(backend: str, item: MediaItem, task: Task | None = None) -> float:
    """What one call for ``item`` costs on ``backend`` (USD); raises for a too-long video."""
    if backend in FREE_BACKENDS:
        return 0.0
    if backend == "wavespeed":
        if item.model_input == "video":
            return wavespeed_video_cost(item.duration, item.source)
        return WAVESPEED_IMAGE_USD
    if backend == "openoctopus":
        return OPENOCTOPUS_IMAGE_USD
    raise ConfigurationError(f"no price list for backend {backend!r}")


@dataclass
class ItemEstimate:
    source: str
    media_id: str
    kind: str
    calls: int = 0
    cost_usd: float = 0.0
    skipped_tasks: list[str] = field(default_factory=list)
    """Tasks this backend cannot run on this item (they would be skipped)."""
    error: str | None = None
    """Why this item cannot be sent at all (e.g. a video longer than the backend accepts)."""
    refusal: int | None = None
    """Index in ``Estimate.refused`` of the refusal of this item's whole file, if refused."""


@dataclass
class Estimate:
    backend: str
    calls: int
    cost_usd: float
    items: list[ItemEstimate]
    refused: list[MolmoRagError] = field(default_factory=list)
    """One error per file whose estimate is out of proportion (see :func:`out_of_proportion`);
    its items carry the index in ``refusal`` and count for nothing in the totals."""

    def to_json(self) -> dict:
        return {
            "backend": self.backend,
            "calls": self.calls,
            "cost_usd": round(self.cost_usd, 6),
            "items": [asdict(i) for i in self.items],
            "refused": [
                {"source": e.source, "error": str(e), "error_type": type(e).__name__} for e in self.refused
            ],
        }


def _supports(backend: str):
    from .backends.base import backend_class

    try:
        cls = backend_class(backend)
    except ImportError:  # the backend's dependencies are missing: assume it runs everything
        return lambda task, media: True
    return cls.supports


def _files(items: Sequence[MediaItem]) -> Iterable[list[int]]:
    """Indices of the items, grouped by the video file they were read from (one run of
    segments per reading: a file listed twice is two)."""
    group: list[int] = []
    for i, item in enumerate(items):
        if item.kind != "video_segment":
            continue
        if group:
            last = items[group[-1]]
            if (item.source, item.content_hash) != (last.source, last.content_hash) or item.extra.get("segment") == 0:
                yield group
                group = []
        group.append(i)
    if group:
        yield group


def out_of_proportion(segments: Sequence[MediaItem], calls: int, cost_usd: float) -> MediaTooLargeError | None:
    """The refusal of one video file's estimate, or None: refused when its segments outnumber
    the frames the file holds (``video_frames``, counted by the reader), since each segment
    needs a frame of its own; the others would show a frame already paid for, or none."""
    counts = [s.extra.get("video_frames") for s in segments]
    frames = max((c for c in counts if isinstance(c, int)), default=None)
    if frames is None or len(segments) <= frames:
        return None
    source = segments[0].source
    return MediaTooLargeError(
        f"{source}: estimate refused: {len(segments):,} segments ({calls:,} call(s), ${cost_usd:,.2f}) for the "
        f"{frames:,} frames the file holds; a segment needs a frame of its own, so the others would pay again "
        "for frames already sent, or for none: use longer segments (--segment-seconds) or check the file's timestamps",
        source=source,
    )


def estimate(backend: str, items: Iterable[MediaItem], tasks: Sequence[Task]) -> Estimate:
    """Calls and cost of running ``tasks`` on ``items`` with ``backend``, calling nothing.

    One call per (item, task) the backend can run; tasks it cannot run are listed per item;
    an item that cannot be sent (too long) carries ``error`` and costs nothing. A video file
    whose estimate is out of proportion (:func:`out_of_proportion`) is refused: one error in
    ``refused``, and its segments cost nothing.
    """
    items = list(items)
    supports = _supports(backend)
    per_item: list[ItemEstimate] = []
    for item in items:
        entry = ItemEstimate(source=item.source, media_id=item.media_id, kind=item.kind)
        for task in tasks:
            if not supports(task, item.model_input):
                entry.skipped_tasks.append(task.name)
                continue
            try:
                price = call_cost(backend, item, task)
            except MolmoRagError as exc:
                entry.error, entry.calls, entry.cost_usd = str(exc), 0, 0.0
                break
            entry.calls += 1
            entry.cost_usd = round(entry.cost_usd + price, 6)
        per_item.append(entry)
    refused: list[MolmoRagError] = []
    for group in _files(items):
        entries = [per_item[i] for i in group]
        calls, cost_usd = sum(e.calls for e in entries), sum(e.cost_usd for e in entries)
        refusal = out_of_proportion([items[i] for i in group], calls, cost_usd)
        if refusal is None:
            continue
        for entry in entries:
            entry.refusal, entry.calls, entry.cost_usd, entry.error = len(refused), 0, 0.0, str(refusal)
        refused.append(refusal)
    return Estimate(
        backend=backend,
        calls=sum(e.calls for e in per_item),
        cost_usd=round(sum(e.cost_usd for e in per_item), 6),
        items=per_item,
        refused=refused,
    )
