"""Small media and collection readers shared by the Ray tests (tests/ray)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CORRUPT = "broken.png"
RUNNER = Path(__file__).with_name("_cli_runner.py")
"""Runs ``molmo_rag.cli.main(argv)`` with the fake backend registered as ``fake``."""


def start_cluster(nodes: int = 2, cpus: int = 2):
    """A real Ray cluster on 127.0.0.1: a head node and ``nodes - 1`` worker nodes, each
    with ``cpus`` logical CPUs (``cluster.address`` to join it; ``cluster.shutdown()``)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    return cluster


def small_photo(name: str, side: int = 96):
    from molmo_rag.testing import samples

    image = samples.photo(name)
    image.thumbnail((side, side))
    return image


def library(root: Path, *, photos: tuple[str, ...] = PHOTOS, video: bool = True, deck: bool = True, corrupt: bool = True) -> Path:
    """A folder of a few small photos, one short video, a two-slide deck and a corrupt PNG."""
    from molmo_rag.testing import samples

    root.mkdir(parents=True, exist_ok=True)
    for name in photos:
        small_photo(name).save(root / f"{name}.jpg")
    if video:
        samples.make_video(root / "clip.mp4", samples.random_shots(14, min_seconds=4, max_seconds=8, seed=3), size=(320, 180))
    if deck:
        samples.make_deck(root / "deck.pptx", [samples.SlideSpec(title="Quarterly numbers"), samples.SlideSpec(title="Growth", chart=True)])
    if corrupt:
        (root / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    return root


def many_photos(root: Path, n: int) -> Path:
    """``n`` distinct tiny photos (crops of the sample photos)."""
    from molmo_rag.testing import samples

    root.mkdir(parents=True, exist_ok=True)
    names = samples.PHOTOS
    for i in range(n):
        image = small_photo(names[i % len(names)], side=72 + 2 * (i // len(names)))
        image.save(root / f"p{i:03d}.png")
    return root


def points(db: Path | str) -> dict[str, tuple[dict, Any]]:
    """point id -> (payload, vector) of every point of an embedded folder."""
    from molmo_rag.index.store import QdrantIndex

    if not Path(db).exists():
        return {}
    out: dict[str, tuple[dict, Any]] = {}
    with QdrantIndex(db, create=False) as store:
        offset = None
        while True:
            found, offset = store.scroll(limit=256, offset=offset, with_vectors=True)
            for p in found:
                out[str(p.id)] = (dict(p.payload or {}), p.vector)
            if offset is None:
                break
    return out


def payloads(db: Path | str) -> dict[str, dict]:
    return {pid: payload for pid, (payload, _) in points(db).items()}


def counts(summary) -> dict[str, Any]:
    """What two runs of the same sources must agree on (not timings, not the location)."""
    data = summary if isinstance(summary, dict) else summary.to_json()
    return {
        "items": data["items"],
        "indexed": data["indexed"],
        "unchanged": data["unchanged"],
        "pruned": data["pruned"],
        "done": data["done"] + data["cached"],
        "failed_sent": data["failed_sent"] + data["failed_cached"],
        "failed": sorted((f["source"], f["error_type"]) for f in data["failed"]),
        "skipped": sorted(data["skipped"]),
    }


def cli_env(cache: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOLMO_RAG_", "WAVESPEED_", "OPENAI_", "RAY_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if cache is not None:
        env["MOLMO_RAG_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(RUNNER), *args]


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def ledger_lines(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split("\t")) for line in path.read_text().splitlines() if line]
