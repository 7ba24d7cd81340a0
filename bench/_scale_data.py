"""Synthetic index data for ``bench/search_scale.py``: the project's point payloads and
256-d vectors, made once per size (seeded) and read by every engine.

A data folder holds ``vectors.npy`` (float32, unit length, clustered so that the nearest
neighbours of a query are few and ANN recall means something), ``columns.npz`` (what each
point's payload is made from: kind, counts, slide, start/end, folder, cluster),
``ids.npy`` (the product's point ids, :meth:`MediaRecord.id`) and ``queries.npz`` (query
vectors drawn from the same clusters, and the time range of each time-range query).
Payloads are made from the columns, chunk by chunk, the same way for every engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DIM = 256
CHUNK = 1000
KINDS = ("image", "slide", "video_segment")
KIND_SHARE = (0.5, 0.3, 0.2)
FOLDERS = {
    "image": ("/data/photos/2019", "/data/photos/2021/holiday", "/data/photos/2023/family", "/mnt/phone/DCIM/Camera"),
    "slide": ("/data/decks/sales", "/data/decks/2023/q3-review", "/home/ana/talks"),
    "video_segment": ("/data/videos/meetings", "/data/videos/2022/trip", "/mnt/nas/recordings"),
}
SLIDES_PER_DECK = 24
SEGMENTS_PER_VIDEO = 90  # 15 minutes in 10 s segments
SEGMENT_SECONDS = 10.0
CLUSTERS = 1024
SPREAD = 0.9
"""Distance of a point from its cluster centre, relative to the centre's (unit) length."""
BACKEND, MODEL = "transformers", "allenai/Molmo2-4B"
_ADJ = ("bright", "dim", "crowded", "quiet", "sunny", "rainy", "busy", "empty", "colourful", "grey", "wide", "close-up")
_THING = ("a kitchen table", "a parked car", "a bar chart", "a whiteboard", "a beach", "a city street", "a garden",
          "a conference room", "a birthday cake", "a mountain trail", "a laptop", "a bicycle", "a dog", "a stage")
_PLACE = ("at home", "in an office", "outdoors", "in a park", "at a station", "in a classroom", "by the sea", "at night")
_TOPIC = ("Quarterly revenue", "Roadmap", "Hiring plan", "Customer survey", "Architecture", "Risks", "Timeline", "Budget")


def _hex(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, centres: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal((len(cluster), DIM), dtype=np.float32) * (SPREAD / np.sqrt(DIM))
    return _unit(centres[cluster] + noise)


def make(folder: Path, n: int, seed: int = 19, queries: int = 50) -> Path:
    """Write the data of ``n`` points under ``folder`` (kept: a second call with the same
    size and seed reuses it)."""
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == {"n": n, "seed": seed, "queries": queries}:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((CLUSTERS, DIM)))
    weights = 1.0 / np.arange(1, CLUSTERS + 1) ** 0.5  # some topics far more common than others
    weights /= weights.sum()
    kind = rng.choice(3, size=n, p=KIND_SHARE).astype(np.int8)
    person = rng.choice(9, size=n, p=(0.42, 0.2, 0.14, 0.09, 0.06, 0.04, 0.025, 0.015, 0.01)).astype(np.int16)
    car = np.where(rng.random(n) < 0.25, rng.integers(1, 6, n), 0).astype(np.int16)
    chart = np.where((kind == 1) & (rng.random(n) < 0.4), rng.integers(1, 4, n), 0).astype(np.int16)
    rank = np.zeros(n, dtype=np.int64)  # position among the points of the same kind
    for k in range(3):
        where = np.flatnonzero(kind == k)
        rank[where] = np.arange(len(where))
    slide = np.where(kind == 1, rank % SLIDES_PER_DECK + 1, 0).astype(np.int32)
    start = np.where(kind == 2, (rank % SEGMENTS_PER_VIDEO) * SEGMENT_SECONDS, np.nan)
    end = start + SEGMENT_SECONDS
    group = np.where(kind == 1, rank // SLIDES_PER_DECK, np.where(kind == 2, rank // SEGMENTS_PER_VIDEO, rank))
    place = rng.integers(0, 1 << 16, n)
    cluster = rng.choice(CLUSTERS, size=n, p=weights).astype(np.int32)
    vectors = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for at in range(0, n, 100_000):
        vectors[at : at + 100_000] = _clustered(rng, centres, cluster[at : at + 100_000])
    vectors.flush()
    del vectors
    np.savez(folder / "columns.npz", kind=kind, person=person, car=car, chart=chart, slide=slide, start=start, end=end,
             group=group, place=place, cluster=cluster)
    qrng = np.random.default_rng([seed, 1])
    qvec = _clustered(qrng, centres, qrng.choice(CLUSTERS, size=queries, p=weights))
    after = qrng.integers(0, SEGMENTS_PER_VIDEO - 6, queries) * SEGMENT_SECONDS + 5.0
    np.savez(folder / "queries.npz", vectors=qvec, after=after, before=after + 60.0)
    columns = load_columns(folder)
    ids = np.array([_record(i, columns, seed).id for i in range(n)], dtype="U36")
    np.save(folder / "ids.npy", ids)
    done.write_text(json.dumps({"n": n, "seed": seed, "queries": queries}))
    return folder


def load_columns(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "columns.npz") as data:
        return {key: data[key] for key in data.files}


def _thumbnails() -> list[str]:
    """Real 128 px JPEG thumbnails (what an index run stores with each point), made from
    crops of the bundled photographs: a few kB each, like the product's."""
    from molmo_rag.index.records import make_thumbnail
    from molmo_rag.media.items import MediaItem
    from molmo_rag.testing import samples

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        photo = samples.photo(name).convert("RGB")
        for i in range(8):
            x, y = (i * 37) % max(1, photo.width // 3), (i * 23) % max(1, photo.height // 3)
            crop = photo.crop((x, y, x + photo.width * 2 // 3, y + photo.height * 2 // 3))
            out.append(make_thumbnail(MediaItem.from_pil(crop)) or "")
    return out


_THUMBS: list[str] | None = None


def _record(i: int, c: dict[str, np.ndarray], seed: int, thumbnails: bool = False):
    from molmo_rag.index.records import MediaRecord, _record_text

    global _THUMBS
    kind = KINDS[int(c["kind"][i])]
    place = int(c["place"][i])
    pick = lambda words, shift=0: words[(place >> shift) % len(words)]  # noqa: E731
    folder = FOLDERS[kind][place % len(FOLDERS[kind])]
    group = int(c["group"][i])
    counts = {"person": int(c["person"][i]), "car": int(c["car"][i])}
    if kind == "slide":
        counts["chart"] = int(c["chart"][i])
    points = [{"x": round(((place >> j) % 97) / 97, 3), "y": round(((place >> (j + 3)) % 89) / 89, 3), "label": "person"}
              for j in range(counts["person"])]
    caption = f"A {pick(_ADJ)} view of {pick(_THING, 4)} {pick(_PLACE, 8)}"
    if counts["person"]:
        caption += f", with {counts['person']} {'person' if counts['person'] == 1 else 'people'}"
    caption += "."
    p: dict = {"kind": kind, "counts": counts, "points": points, "answers": [], "backend": BACKEND, "model": MODEL}
    if kind == "image":
        p["source"] = f"{folder}/IMG_{group:07d}.jpg"
        p["media_id"] = _hex(seed, "image", group)
        p["caption"] = caption
        p["detail"] = f"{caption} The picture is {pick(_ADJ, 5)} and {pick(_ADJ, 9)}; {pick(_THING, 12)} is in the background."
    elif kind == "slide":
        n = int(c["slide"][i])
        topic = pick(_TOPIC, 2)
        p["source"] = f"{folder}/deck_{group:05d}.pptx"
        p["media_id"] = f"{_hex(seed, 'deck', group)}#slide={n}"
        p.update(slide=n, title=f"{topic} ({n})", slide_text=f"{topic}: {pick(_THING, 6)}, {pick(_PLACE, 10)}; figures for slide {n}.",
                 notes=f"Speak to {topic.lower()} for two minutes." if place % 3 else None, caption=caption)
        if p["notes"] is None:
            del p["notes"]
    else:
        start, end = float(c["start"][i]), float(c["end"][i])
        p["source"] = f"{folder}/video_{group:05d}.mp4"
        p["media_id"] = f"{_hex(seed, 'video', group)}#t={start:g},{end:g}"
        p.update(start=start, end=end, scene=f"{caption} The camera pans {pick(('left', 'right', 'slowly', 'quickly'), 7)}.")
    if thumbnails:
        if _THUMBS is None:
            _THUMBS = _thumbnails()
        p["thumbnail"] = _THUMBS[place % len(_THUMBS)]
    return MediaRecord(payload=p, text=_record_text(p))


def points(folder: Path, embedder_name: str, *, thumbnails: bool = True, seed: int = 19, batch: int = CHUNK,
           ) -> Iterator[list[tuple[str, np.ndarray, dict]]]:
    """The points, ``batch`` at a time: ``(id, vector, point payload)`` as the product
    writes them (:meth:`MediaRecord.point_payload`)."""
    columns = load_columns(folder)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    for at in range(0, len(vectors), batch):
        chunk = []
        for i in range(at, min(at + batch, len(vectors))):
            record = _record(i, columns, seed, thumbnails)
            chunk.append((record.id, vectors[i], record.point_payload(embedder_name)))
        yield chunk


def queries(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "queries.npz") as data:
        return {key: data[key] for key in data.files}


# -- the filters of the queries, as numpy masks (ground truth and the numpy engine) ------
def filtered_mask(c: dict[str, np.ndarray]) -> np.ndarray:
    """kind slide AND counts.person >= 2."""
    return (c["kind"] == 1) & (c["person"] >= 2)


def time_mask(c: dict[str, np.ndarray], after: float, before: float) -> np.ndarray:
    """Video segments overlapping (after, before): end > after and start < before."""
    return (c["end"] > after) & (c["start"] < before)


def exact_top(vectors: np.ndarray, query: np.ndarray, mask: np.ndarray | None = None, top: int = 10) -> np.ndarray:
    """Indices of the ``top`` points nearest ``query`` (cosine: the vectors are unit length)
    among those ``mask`` keeps, best first."""
    where = np.flatnonzero(mask) if mask is not None else None
    scores = (vectors if where is None else vectors[where]) @ query
    k = min(top, len(scores))
    best = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=np.int64)
    best = best[np.argsort(-scores[best])]
    return best if where is None else where[best]
