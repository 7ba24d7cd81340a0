"""A run that starts its own Ray (``--ray local``) leaves no process behind: its model
actors end with it (their engine's reader thread must not hold them past shutdown)."""

from __future__ import annotations

import subprocess
import sys
import time

import _ray_media
import pytest

psutil = pytest.importorskip("psutil")

SCRIPT = """
import sys
from molmo_rag import RunOptions
from molmo_rag.ray import PoolOptions, index
from molmo_rag.testing.fake_backend import FakeBackend
summary = index(sys.argv[1], RunOptions(backend=FakeBackend(), cache=sys.argv[3]), ray="local",
                pool=PoolOptions(actors=2, actor_cpus=0.25), db=sys.argv[2])
assert summary.indexed == 2, summary
"""


def _ray_processes() -> set[int]:
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("ray::") or "/ray/" in cmdline and ("raylet" in cmdline or "gcs_server" in cmdline):
            found.add(process.info["pid"])
    return found


@pytest.mark.own_cluster
@pytest.mark.timeout(300)
def test_a_run_on_its_own_ray_leaves_no_process_behind(tmp_path):
    media = _ray_media.library(tmp_path / "media", photos=("astronaut", "coffee"), video=False, deck=False, corrupt=False)
    before = _ray_processes()
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(media), str(tmp_path / "db"), str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    deadline = time.monotonic() + 30
    left = _ray_processes() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _ray_processes() - before
    for pid in left:  # do not leave them to the next test either
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    assert not left, f"{len(left)} Ray process(es) outlived the run"
