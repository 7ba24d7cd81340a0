"""What calls cost, computed before any call, from the price each backend declares.

A backend class declares its :class:`Price` (``Backend.price``; the price lists are in
docs/hosted-apis.md) and prices one request with ``Backend.estimate_cost(request)``, which
reads it; :func:`estimate` prices a plan from the same table. This module knows no backend
by name and imports none: it is handed the backend (class or instance).

An estimate out of all proportion to a video file is refused for that file (one
:class:`~molmo_rag.errors.MediaTooLargeError`, its segments cost nothing): more segments
than the frames the file holds (``video_frames``, counted by the reader) cannot all be
footage, since each segment needs a frame of its own; the rest would show a frame already
paid for, or none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from .errors import MediaTooLargeError, MolmoRagError
from .media.items import MediaItem
from .tasks import ModelInput, Task

__all__ = [
    "Price",
    "FREE",
    "PricedBackend",
    "ItemEstimate",
    "Estimate",
    "estimate",
    "out_of_proportion",
]


@dataclass(frozen=True)
class Price:
    """How a backend bills one call: a flat price per image (slides are images), and per
    started block of video with a minimum length billed and a longest video accepted."""

    image_usd: float = 0.0
    video_usd_per_block: float = 0.0
    video_block_s: float = 5.0
    video_min_s: float = 0.0
    video_max_s: float | None = None
    """Longest video segment one call accepts (a longer one raises MediaTooLargeError); None: any."""
    backend: str = ""
    """Who bills, for the message of a refused video."""

    def video_cost(self, duration: float | None, source: str | None = None) -> float:
        """Per started block, ``video_min_s`` minimum; longer than ``video_max_s`` raises."""
        seconds = self.video_min_s if duration is None else max(float(duration), 0.0)
        if self.video_max_s is not None and seconds > self.video_max_s + 1e-6:
            raise MediaTooLargeError(
                f"video segment of {seconds:.1f} s is longer than the {self.video_max_s:.0f} s "
                f"{self.backend or 'the backend'} accepts per call; split the video into shorter segments",
                source=source,
            )
        if not self.video_usd_per_block:
            return 0.0
        # A hair of tolerance so 10.0000001 s (float noise from start/end) bills as 10 s.
        blocks = max(1, math.ceil(max(seconds, self.video_min_s) / self.video_block_s - 1e-6))
        return round(blocks * self.video_usd_per_block, 6)

    def of(self, item: MediaItem) -> float:
        """What one call for ``item`` costs (USD); raises for a video longer than accepted."""
        if item.model_input == "video":
            return self.video_cost(item.duration, item.source)
        return self.image_usd


FREE = Price()
"""Your own hardware or server: every call $0."""


class PricedBackend(Protocol):
    """What :func:`estimate` reads of a backend (class or instance)."""

    name: str
    price: Price
    supports: Callable[[Task, ModelInput], bool]


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


def estimate(backend: PricedBackend, items: Iterable[MediaItem], tasks: Sequence[Task]) -> Estimate:
    """Calls and cost of running ``tasks`` on ``items`` with ``backend`` (a backend class,
    e.g. ``backend_class("wavespeed")``, or instance), calling nothing: the price of each
    call is the one ``backend.estimate_cost`` gives, read from the backend's ``price``.

    One call per (item, task) the backend can run; tasks it cannot run are listed per item;
    an item that cannot be sent (too long) carries ``error`` and costs nothing. A video file
    whose estimate is out of proportion (:func:`out_of_proportion`) is refused: one error in
    ``refused``, and its segments cost nothing.
    """
    items = list(items)
    per_item: list[ItemEstimate] = []
    for item in items:
        entry = ItemEstimate(source=item.source, media_id=item.media_id, kind=item.kind)
        for task in tasks:
            if not backend.supports(task, item.model_input):
                entry.skipped_tasks.append(task.name)
                continue
            try:
                price = backend.price.of(item)
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
        backend=backend.name,
        calls=sum(e.calls for e in per_item),
        cost_usd=round(sum(e.cost_usd for e in per_item), 6),
        items=per_item,
        refused=refused,
    )
