"""Does every node see what a run needs at the same path? The sources the driver listed and
the result cache folder (answers, the hosted-job journal, slide renders, pictures) must be on
storage every node mounts at one path (docs/scale-out.md). A node that does not see them
reads nothing (its items fail as not found) or keeps files only it can open; this says so
before the run, once, instead of item by item."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["missing_on_nodes", "unseen_paths"]


def unseen_paths(paths: Sequence[str]) -> list[str]:
    """The paths this process cannot see (what runs on each node)."""
    return [path for path in paths if not os.path.exists(path)]


def missing_on_nodes(ray: Any, cache_folder: Path | None, sources: Sequence[Any]) -> list[str]:
    """One line per alive node that cannot see the cache folder or the first local source
    at the driver's path; [] on a one-node cluster or when every node sees them."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..media.door import absolute_path, is_local_path

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return []
    paths: dict[str, str] = {}
    marker = None
    if cache_folder is not None:
        marker = Path(cache_folder) / f".molmo-rag-shared-{secrets.token_hex(8)}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("this run's driver wrote this; every node must see it\n")
        paths[str(marker)] = f"the result cache folder {cache_folder}"
    local = [s for s in sources if is_local_path(s)]
    if local:
        first = absolute_path(local[0])
        paths[first] = f"the sources (e.g. {first})"
    if not paths:
        return []
    check = ray.remote(num_cpus=0)(unseen_paths)
    try:
        refs = [
            (node, check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(list(paths)))
            for node in nodes
        ]
        lines = []
        for node, ref in refs:
            unseen = ray.get(ref, timeout=120)
            if unseen:
                where = f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
                lines.append(f"node {where} cannot see {' nor '.join(paths[p] for p in unseen)} at the driver's path")
        return lines
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
