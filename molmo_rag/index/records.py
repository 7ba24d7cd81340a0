"""Records: one per image, slide or video segment, built from its task results.

A record holds the metadata payload of ``docs/architecture.md`` and the text that gets embedded.
:meth:`MediaRecord.point_payload` lays it out so that three readers can open the same
Qdrant point: molmo-rag (keys at the root), LlamaIndex (root keys + ``text``) and LangChain
(``page_content`` + ``metadata``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .filters import label_key, source_prefixes

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Result
    from ..media.items import MediaItem

__all__ = [
    "COUNT_PREFIX",
    "FILE_KEYS",
    "LAYOUT_KEYS",
    "MediaRecord",
    "PAYLOAD_KEYS",
    "build_record",
    "count_key",
    "flat_counts",
    "make_thumbnail",
    "point_id",
    "public_keys",
]

PAYLOAD_KEYS = (
    "kind",
    "source",
    "media_id",
    "caption",
    "detail",
    "scene",
    "counts",
    "points",
    "answers",
    "slide",
    "title",
    "slide_text",
    "notes",
    "start",
    "end",
    "thumbnail",
    "backend",
    "model",
    "image_path",
    "image_url",
    "frame_paths",
)
"""Public metadata keys (the payload root and LangChain's ``metadata`` copy); beside them
the flat count keys, ``count_<label>`` (:func:`public_keys`)."""

LAYOUT_KEYS = ("text", "page_content", "metadata", "source_prefixes", "record_hash", "plan_key")
"""Keys of a point's payload beside the metadata: the text under LlamaIndex's and
LangChain's names, LangChain's ``metadata`` copy, the folder prefixes source filters read,
and the index's own bookkeeping (``record_hash``, ``plan_key``). Never a document's metadata."""

FILE_KEYS = ("thumbnail", "image_path", "image_url", "frame_paths")
"""Keys that show the media rather than say something about it: left out of a record's
fingerprint (they follow the media and the machine's cache folder)."""

COUNT_PREFIX = "count_"
"""Flat count keys: ``count_person: 3`` beside ``counts: {"person": 3}``, one scalar per
label, so the frameworks' own filters (LlamaIndex's ``SimpleVectorStore``, LangChain's
``InMemoryVectorStore``, ``filter_complex_metadata``) work on counts in any store."""


def count_key(label: str) -> str:
    """The flat metadata key of a count label's payload key (``person`` -> ``count_person``)."""
    return f"{COUNT_PREFIX}{label}"


def flat_counts(counts: dict[str, int]) -> dict[str, int]:
    """``{"count_person": 3, ...}`` of a ``counts`` mapping."""
    return {count_key(label): n for label, n in counts.items()}


def public_keys(payload: dict) -> list[str]:
    """The keys of ``payload`` a document's metadata carries: :data:`PAYLOAD_KEYS` and
    the flat count keys, in that order."""
    return [k for k in PAYLOAD_KEYS if k in payload] + [k for k in payload if k.startswith(COUNT_PREFIX)]

_NAMESPACE = uuid.UUID("5b0f6a3e-8a52-4f0e-9a57-6d6f6c6d6f32")


def point_id(media_id: str, source: str | None = None) -> str:
    """The Qdrant point id of a media item: the same media at the same source gives the
    same id in every run. The source is part of it so that two copies of one file (same
    content hash) are two points, each findable by its own path. ``source`` is the stored
    form (:func:`molmo_rag.media.door.absolute_source`); this is the one place the id is made."""
    return str(uuid.uuid5(_NAMESPACE, media_id if source is None else f"{source}\n{media_id}"))


def make_thumbnail(item: "MediaItem", size: int = 128, quality: int = 70) -> str | None:
    """A small JPEG data URI (longest side ``size`` px, a few kB), or None if unavailable."""
    if size <= 0:
        return None
    try:
        image = item.thumbnail().copy()
    except Exception:  # a thumbnail is a nicety: never fail a record over it
        return None
    image.thumbnail((size, size))
    from ..media.items import encode_image

    data, mime = encode_image(image, "JPEG", quality=quality)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@dataclass
class MediaRecord:
    """Metadata of one indexed item and the text its vector is made from."""

    payload: dict
    text: str
    item: "MediaItem | None" = field(default=None, repr=False)
    plan_key: str | None = None
    """The digest of the plan whose every answer this record holds (see
    :meth:`molmo_rag.enrich.Enricher.plan_key`); None when a task failed: a re-run must
    ask again. Stored beside ``record_hash`` (not part of it: a point a framework store wrote
    from the same document is the same point), so the collection is the record of what is done."""

    @property
    def media_id(self) -> str:
        return self.payload["media_id"]

    @property
    def id(self) -> str:
        return point_id(self.media_id, self.payload.get("source"))

    def fingerprint(self, embedder: str) -> str:
        """Changes whenever the stored point would change (:data:`FILE_KEYS` aside: they
        follow the media)."""
        body = {k: v for k, v in self.payload.items() if k not in FILE_KEYS}
        blob = json.dumps([body, self.text, embedder], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def point_payload(self, embedder: str) -> dict:
        metadata = {k: self.payload[k] for k in public_keys(self.payload)}
        return {
            **metadata,
            "text": self.text,
            "page_content": self.text,
            "metadata": dict(metadata),
            "source_prefixes": source_prefixes(self.payload["source"]),
            "record_hash": self.fingerprint(embedder),
            **({"plan_key": self.plan_key} if self.plan_key else {}),
        }


def _record_text(p: dict) -> str:
    lines: list[str] = []
    if p.get("title"):
        lines.append(f"Slide title: {p['title']}")
    for key in ("caption", "scene"):
        if p.get(key):
            lines.append(p[key])
    if p.get("slide_text"):
        lines.append(f"Slide text: {p['slide_text']}")
    if p.get("notes"):
        lines.append(f"Speaker notes: {p['notes']}")
    present = [f"{n} {label.replace('_', ' ')}" for label, n in sorted(p.get("counts", {}).items()) if n]
    if present:
        lines.append("Counted: " + ", ".join(present) + ".")
    for qa in p.get("answers", []):
        lines.append(f"Q: {qa['question']} A: {qa['answer']}")
    return "\n".join(lines)


def build_record(item: "MediaItem", results: Sequence["Result"]) -> MediaRecord | None:
    """Merge the results of one item into a record; None when there is nothing to index
    (no result and no text of its own)."""
    p: dict[str, Any] = item.describe()
    counts: dict[str, int] = {}
    points: list[dict] = []
    answers: list[dict] = []
    backends: list[str] = []
    models: list[str] = []
    for result in results:
        f = result.fields
        backends.append(result.backend)
        models.append(result.model)
        name = result.task.name
        video_task = f.get("task") if name == "video" else None
        if name == "caption":
            p["caption"] = f.get("caption", "")
            p["detail"] = f.get("detail")
        elif name == "scene" or video_task == "scene_description":
            p["scene"] = f.get("scene", f.get("answer", ""))
        elif name == "count" or video_task == "counting":
            target = f.get("target") or getattr(result.task, "target", None) or getattr(result.task, "text", "")
            if isinstance(f.get("count"), int):
                counts[label_key(target)] = f["count"]
            points.extend({**pt, "label": target} for pt in f.get("points") or [])
        else:  # a question, or a video task with its own text
            question = f.get("question") or f.get("text") or video_task or name
            answers.append({"question": question, "answer": f.get("answer", "")})
            points.extend(f.get("points") or [])
    if not results and not (item.title or item.slide_text or item.notes):
        return None
    p["counts"] = counts
    p.update(flat_counts(counts))
    p["points"] = points
    p["answers"] = answers
    if backends:
        p["backend"] = "+".join(dict.fromkeys(backends))
        p["model"] = "+".join(dict.fromkeys(models))
    return MediaRecord(payload=p, text=_record_text(p), item=item)
