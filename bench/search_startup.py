"""What one `molmo-rag search` costs end to end, and where the time goes.

Each measurement is a fresh process (what a user's shell runs). Variants, interleaved run by
run so that the machine's noise hits them alike:

* ``this tree``: the CLI of the working tree;
* ``baseline``: the CLI at an earlier commit (``--baseline REV``, default the commit before
  issue 8's changes), checked out in a temporary git worktree, on the same index.

Then a breakdown of one process of this tree: importing the CLI, importing qdrant-client,
opening the embedded index, loading the embedder, embedding the query, the query itself.

    .venv/bin/python bench/search_startup.py [--runs 9] [--baseline f541103]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
import molmo_rag.cli as cli; cli._register_commands(); t.append(time.perf_counter())
import qdrant_client; t.append(time.perf_counter())
from molmo_rag.pipeline import embedder_for, open_index
store = open_index(sys.argv[1], create=False); t.append(time.perf_counter())
embedder = embedder_for(store, None); t.append(time.perf_counter())
vector = embedder.embed_query("a cup of coffee"); t.append(time.perf_counter())
store.ensure(embedder); hits = store.search(vector, None, 10); t.append(time.perf_counter())
store.close()
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""
PHASE_NAMES = ["import the CLI (and register commands)", "import qdrant-client", "open the embedded index",
               "load the embedder (wordllama)", "embed the query", "query Qdrant"]


def make_index(db: Path) -> None:
    from molmo_rag import pipeline
    from molmo_rag.testing import FakeBackend

    summary = pipeline.index([str(ROOT / "examples" / "media")], backend=FakeBackend(), db=db, cache=False)
    print(f"index: {summary.indexed} points at {db}", file=sys.stderr)


def cli_seconds(pythonpath: Path, db: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = "import sys; from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "search", "a cup of coffee", "--db", str(db)],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline", default="f541103", help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="molmo-rag-bench-") as tmp:
        db = Path(tmp) / "db"
        make_index(db)
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline], check=True)
        try:
            variants = {"this tree": ROOT, f"baseline ({args.baseline})": base}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for name, path in variants.items():  # warm the OS caches once, untimed
                cli_seconds(path, db)
            for _ in range(args.runs):
                for name, path in variants.items():
                    times[name].append(cli_seconds(path, db))
            phases = [json.loads(subprocess.run([sys.executable, "-c", PHASES, str(db)], check=True,
                                                capture_output=True, text=True, cwd=ROOT).stdout)
                      for _ in range(args.runs)]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    base_median = statistics.median(times[f"baseline ({args.baseline})"])
    print(f"\n`molmo-rag search` end to end, median of {args.runs} fresh processes each (interleaved):\n")
    print("| CLI | median (s) | min (s) | vs baseline |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {min(values):.3f} | {median / base_median:.2f}x |")
    medians = [statistics.median(p[i] for p in phases) for i in range(len(PHASE_NAMES))]
    total = sum(medians)
    print(f"\nWhere the time goes in this tree (median of {args.runs} processes, in-process timers):\n")
    print("| phase | median (s) | share |")
    print("|---|---:|---:|")
    for name, value in zip(PHASE_NAMES, medians):
        print(f"| {name} | {value:.3f} | {value / total:.0%} |")
    print(f"| total (after interpreter start) | {total:.3f} | 100% |")


if __name__ == "__main__":
    main()
