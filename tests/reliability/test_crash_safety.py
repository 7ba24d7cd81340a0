"""Crash safety of ``molmo-rag index``: real processes, real SIGKILL, real embedded Qdrant,
the OpenAI-compatible backend against its loopback server.

* killed with SIGKILL at seeded random moments, several times, then run to the end: the
  same points as an uninterrupted run (ids and ``record_hash``, payloads, vectors), and the
  last run asks the backend only for what no killed run had finished;
* a second process on the same embedded index: one line, exit 1, no backend call, and the
  first run's index intact;
* a read-only ``--db`` and a full disk: one line naming the folder and the cause, exit 1, the
  result cache intact (readable, and a re-run into a writable folder calls nothing). With
  mount rights (root, CAP_SYS_ADMIN: each command runs in its own mount namespace, so nothing
  is left mounted) the file system is really read-only or really full; the same code paths
  are also driven in-process by injected OSError/SQLite errors, which needs no rights.

Reproduce one by hand: ``python -m molmo_rag.testing.loopback openai --latency 0.2`` in one
shell; in another, the printed exports, then ``molmo-rag index FOLDER --backend openai
--concurrency 2 --db /tmp/db --cache-dir /tmp/cache`` and ``kill -9`` it; or
``unshare -m sh -c 'mount -t tmpfs -o size=64k tmpfs /mnt && molmo-rag index FOLDER
--backend openai --db /mnt/db'``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")

from molmo_rag.testing.loopback import OpenAIServer, WaveSpeedServer

SEED = int(os.environ.get("MOLMO_RAG_CRASH_SEED", "20261128"))  # another seed: other kill moments
KEY = "loopback-key"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "colorwheel", "camera", "coins", "moon")
TASKS = {"openai": 2, "wavespeed": 1}  # an image's default plan: caption and scene; WaveSpeed captions only
TOTAL = TASKS["openai"] * len(PHOTOS)
CLI = [sys.executable, "-m", "molmo_rag"]
DEADLINE = 120.0  # bounds a wait that should take seconds; never an assertion on speed


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("library")
    for name in PHOTOS:
        image = samples.photo(name)
        image.thumbnail((64, 64))
        image.save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(api_key=KEY, latency=0.15) as srv:
        yield srv


@pytest.fixture(scope="module")
def job_server():
    """WaveSpeed's protocol: jobs submitted, then polled (the pending-jobs journal's case)."""
    with WaveSpeedServer(api_key=KEY, latency=0.3) as srv:
        yield srv


def env_for(srv: OpenAIServer | WaveSpeedServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOLMO_RAG_", "OPENAI_", "WAVESPEED_"))}
    prefix = "WAVESPEED" if isinstance(srv, WaveSpeedServer) else "OPENAI"
    env.update({f"{prefix}_BASE_URL": srv.base_url, f"{prefix}_API_KEY": KEY, "PYTHONUNBUFFERED": "1"})
    return env


def index_args(library: Path, db: Path, cache: Path, *extra: str, backend: str = "openai") -> list[str]:
    return ["index", str(library), "--backend", backend, "--concurrency", "2", "--db", str(db), "--cache-dir", str(cache), "--quiet", *extra]


def cli(args: list[str], env: dict[str, str], prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *CLI, *args], check=False, env=env, capture_output=True, text=True, timeout=DEADLINE)


def points(db: Path) -> dict[str, tuple[str, dict, list[float]]]:
    """id -> (record_hash, payload, vector rounded), read through the storage that wrote the folder."""
    from molmo_rag.index.store import QdrantIndex

    if not db.exists():
        return {}
    with QdrantIndex(db, create=False) as store:
        found, _ = store.scroll(limit=10_000, with_vectors=True)
        return {str(p.id): (p.payload["record_hash"], p.payload, [round(x, 5) for x in p.vector["text-dense"]]) for p in found}


def cached_rows(cache: Path) -> int:
    """Results in the cache; 0 while it does not exist yet. Raises if it cannot be read."""
    path = cache / "results.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        conn.close()


def pending_jobs(cache: Path) -> int:
    """Jobs a killed run submitted and journaled, whose answers are not cached yet."""
    path = cache / "results.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM pending_jobs WHERE key NOT IN (SELECT key FROM results)").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        conn.close()


def cache_contents(cache: Path) -> list[tuple]:
    """Every stored result, and proof the file is sound (integrity_check)."""
    conn = sqlite3.connect(cache / "results.sqlite3", timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return sorted(conn.execute("SELECT key, media_id, task, text, fields FROM results").fetchall())
    finally:
        conn.close()


def wait_until(condition, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if proc is not None and proc.poll() is not None:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the run made no progress")
        time.sleep(0.02)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed with exit 1 and exactly one line on stderr, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("molmo-rag: error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@dataclass
class Reference:
    root: Path
    points: dict

    @property
    def db(self) -> Path:
        return self.root / "db"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def uninterrupted(library: Path, srv, root: Path, backend: str) -> Reference:
    total = TASKS[backend] * len(PHOTOS)
    srv.reset_stats()
    proc = cli(index_args(library, root / "db", root / "cache", backend=backend), env_for(srv))
    assert proc.returncode == 0, proc.stderr
    assert srv.stats.jobs_created == total and cached_rows(root / "cache") == total
    found = points(root / "db")
    assert len(found) == len(PHOTOS)
    return Reference(root, found)


@pytest.fixture(scope="module")
def reference(library, server, tmp_path_factory) -> Reference:
    """An uninterrupted run: the points every other run must end with, and a full cache."""
    return uninterrupted(library, server, tmp_path_factory.mktemp("reference"), "openai")


# -- SIGKILL at random moments, then resume ----------------------------------------------------
@pytest.mark.parametrize("backend", ["openai", "wavespeed"])
def test_sigkill_at_random_moments_then_a_full_run_gives_the_uninterrupted_points(library, server, job_server, reference, backend, tmp_path):
    """openai: a request is its answer; wavespeed: a job is submitted, journaled, polled, so a
    kill leaves jobs in flight that the next run polls instead of paying for them again."""
    srv = server if backend == "openai" else job_server
    expected = reference if backend == "openai" else uninterrupted(library, srv, tmp_path / "reference", backend)
    total = TASKS[backend] * len(PHOTOS)
    rng = random.Random(f"{SEED}-{backend}")
    db, cache = tmp_path / "db", tmp_path / "cache"
    env = env_for(srv)
    args = index_args(library, db, cache, backend=backend)
    # Each kill: wait until the cache holds at least `goal` results, then a seeded pause (0: a
    # seeded pause that may end in start-up, while the collection is made, or at the first new
    # result at the latest), then SIGKILL.
    goals = [0, *sorted(rng.sample(range(1, total // 2 + 1), 3))]  # kills wait for half the results at most
    killed_at = []
    srv.reset_stats()
    for goal in goals:
        before = cached_rows(cache)
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if goal:
                wait_until(lambda goal=goal: cached_rows(cache) >= goal, proc)
                time.sleep(rng.uniform(0.0, 0.3))
            else:  # a seeded moment, cut short by the run's first new result so a fast run is still caught mid-way
                until = time.monotonic() + rng.uniform(0.5, 4.0)
                wait_until(lambda until=until, before=before: time.monotonic() >= until or cached_rows(cache) > before, proc)
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
            stderr = proc.stderr.read().decode()
            proc.stderr.close()
        assert code == -signal.SIGKILL, f"the run ended by itself before the kill: {stderr}"
        assert "Traceback" not in stderr
        killed_at.append((before, cached_rows(cache)))
        # whatever a kill interrupted, the index opens and holds only finished, correct points
        now = points(db)
        assert set(now) <= set(expected.points)
        assert all(now[pid][0] == expected.points[pid][0] for pid in now)

    assert killed_at[-1][1] > killed_at[0][0]  # the killed runs got somewhere
    done, pending = cached_rows(cache), pending_jobs(cache)
    # usually some work is left; a kill that lands after the last result (a fast machine) is
    # legal too: the final run must then re-use everything and buy nothing
    assert done <= total
    # a kill can land between a job's creation and its journal entry: at most the jobs in
    # flight (--concurrency 2) per kill are paid twice, never more
    assert srv.stats.jobs_created <= done + pending + 2 * len(goals)
    srv.reset_stats()
    proc = cli([*args, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    # every result a killed run cached is re-used, every journaled job polled, not bought again
    assert (summary["cached"], summary["done"], summary["failed"]) == (done, total - done, [])
    assert srv.stats.jobs_created == total - done - pending
    final = points(db)
    assert {pid: h for pid, (h, _, _) in final.items()} == {pid: h for pid, (h, _, _) in expected.points.items()}
    assert final == expected.points  # payloads (thumbnails included) and vectors too


# -- two processes on one embedded index -------------------------------------------------------
class GatedServer(OpenAIServer):
    """Answers the first ``open_first`` chats, then holds every other one until ``gate`` is
    set: the run that talks to it keeps its index open exactly as long as the test needs."""

    def __init__(self, open_first: int, **kw):
        self.open_first, self.gate, self._served = open_first, threading.Event(), 0
        super().__init__(**kw)

    def _chat(self, req, match):
        with self._lock:
            n, self._served = self._served, self._served + 1
        if n >= self.open_first:
            self.gate.wait(DEADLINE)
        return super()._chat(req, match)


def test_a_second_process_on_the_same_index_is_refused_and_the_index_stays_whole(library, reference, tmp_path):
    db = tmp_path / "db"
    with GatedServer(open_first=3, api_key=KEY) as first, OpenAIServer(api_key=KEY) as second:
        holder = subprocess.Popen(
            [*CLI, *index_args(library, db, tmp_path / "cache")], env=env_for(first),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_until(lambda: cached_rows(tmp_path / "cache") >= 2, holder)
            assert holder.poll() is None, holder.communicate()
            env = env_for(second)
            for args in (
                index_args(library, db, tmp_path / "other-cache"),
                ["search", "a cup of coffee", "--db", str(db)],
            ):
                line = one_error_line(cli(args, env))
                assert f"the index at {db} is in use by another process" in line, line
            assert second.stats.requests == 0  # refused before anything was sent
            assert holder.poll() is None
        finally:
            first.gate.set()
            _, err = holder.communicate(timeout=DEADLINE)
        assert holder.returncode == 0, err
    assert points(db) == reference.points


# -- a read-only --db, a full disk ----------------------------------------------------------------
def _mount_probe() -> str | None:
    """None when this process may make private mounts (unshare -m + mount), else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "no unshare/mount command"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=16k tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s'],
        check=False, capture_output=True, text=True,
    )
    return None if probe.returncode == 0 else f"cannot make a private mount here ({probe.stderr.strip() or probe.returncode})"


_WHY_NO_MOUNT = _mount_probe()
needs_mount = pytest.mark.skipif(
    _WHY_NO_MOUNT is not None,
    reason=f"a real read-only or full file system needs mount rights: {_WHY_NO_MOUNT}; "
    "test_injected_* drive the same code paths without them",
)


def read_only(folder: Path) -> list[str]:
    """A command prefix: run in a private mount namespace where ``folder`` is read-only."""
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', str(folder)]


def full_disk(folder: Path, size: str = "64k") -> list[str]:
    """A command prefix: run in a private mount namespace with a ``size`` tmpfs on ``folder``."""
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"', str(folder)]


def copy_cache(reference: Reference, to: Path) -> Path:
    shutil.copytree(reference.cache, to)
    assert cached_rows(to) == TOTAL
    return to


@needs_mount
def test_read_only_db_and_full_disk_are_one_line_and_the_cache_survives(library, server, reference, tmp_path):
    ro, full = tmp_path / "ro", tmp_path / "full"
    shutil.copytree(reference.db, ro / "index")
    full.mkdir()
    cache = copy_cache(reference, tmp_path / "cache")
    before = cache_contents(cache)
    env = env_for(server)
    server.reset_stats()
    # an existing index and a folder still to be made, on a read-only file system
    for db in (ro / "index", ro / "new"):
        line = one_error_line(cli(index_args(library, db, cache), env, prefix=read_only(ro)))
        assert line.startswith(f"molmo-rag: error: cannot write the index at {db}: the file system is read-only"), line
    line = one_error_line(cli(["search", "coffee", "--db", str(ro / "index")], env, prefix=read_only(ro)))
    assert line.startswith(f"molmo-rag: error: cannot open the index at {ro / 'index'}: the file system is read-only"), line
    # a 64 KiB file system: the folder, meta.json and the collection are made, the points do not fit
    line = one_error_line(cli(index_args(library, full / "db", cache), env, prefix=full_disk(full)))
    assert line.startswith(f"molmo-rag: error: cannot write the index at {full / 'db'}: no space left on the device"), line
    assert server.stats.requests == 0  # every result came from the cache
    assert cache_contents(cache) == before  # the cache is untouched and sound
    assert points(ro / "index") == reference.points

    proc = cli([*index_args(library, tmp_path / "db", cache), "--json"], env)  # a writable folder
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["summary"]["cached"] == TOTAL
    assert server.stats.requests == 0
    assert points(tmp_path / "db") == reference.points


# -- the same code paths, faults injected in-process (no rights needed) ---------------------------
@pytest.fixture
def run_cli(capsys, monkeypatch, server):
    from molmo_rag.cli import main

    for name in list(os.environ):
        if name.startswith(("MOLMO_RAG_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def _one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("molmo-rag: error: "), (code, err)
    return lines[0]


def test_injected_read_only_folder(library, server, reference, tmp_path, monkeypatch, run_cli):
    """What a non-root user gets from ``chmod a-w`` (root writes anyway; see the mount test)."""
    cache = copy_cache(reference, tmp_path / "cache")
    before = cache_contents(cache)
    ro = tmp_path / "ro"
    shutil.copytree(reference.db, ro)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro and mode & os.W_OK else real_access(p, mode, **kw))
    server.reset_stats()
    code, _, err = run_cli(*index_args(library, ro, cache))
    line = _one_line(code, err)
    assert line == f"molmo-rag: error: cannot write the index at {ro}: permission denied (the folder is not writable)"

    # a folder that passes the check but whose files refuse writes (the lock file)
    from molmo_rag.index import edge

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(path, ".lock"))

    monkeypatch.setattr(os, "access", real_access)
    monkeypatch.setattr(edge, "_lock_folder", refuse)
    code, _, err = run_cli(*index_args(library, ro, cache))
    line = _one_line(code, err)
    assert line == f"molmo-rag: error: cannot write the index at {ro}: permission denied (Permission denied: {ro / '.lock'})"
    assert server.stats.requests == 0
    assert cache_contents(cache) == before


def _chmod_stops_writes() -> bool:
    """False for root (and any process with CAP_DAC_OVERRIDE): it writes through chmod a-w."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            open(os.path.join(folder, "probe"), "w").close()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


@pytest.mark.skipif(
    not _chmod_stops_writes(),
    reason="this user (root) writes through chmod a-w; the read-only mount test and test_injected_read_only_folder cover it",
)
def test_chmod_a_w_db_for_a_user(library, server, reference, tmp_path, run_cli):
    cache = copy_cache(reference, tmp_path / "cache")
    before = cache_contents(cache)
    db = tmp_path / "db"
    shutil.copytree(reference.db, db)
    db.chmod(0o555)
    try:
        server.reset_stats()
        code, _, err = run_cli(*index_args(library, db, cache))
        assert _one_line(code, err) == f"molmo-rag: error: cannot write the index at {db}: permission denied (the folder is not writable)"
    finally:
        db.chmod(0o755)
    assert server.stats.requests == 0 and cache_contents(cache) == before


@pytest.mark.parametrize("where", ["edge", "points", "meta.json"])
def test_injected_full_disk(library, server, reference, tmp_path, monkeypatch, run_cli, where):
    """A disk without room: Qdrant Edge (the default) checks before each write, since a
    mapped page the disk cannot back would kill the process; local mode (``points``,
    ``meta.json``: ``--storage local``) turns what SQLite and the OS say into one line."""
    from qdrant_client.local import persistence, qdrant_local

    from molmo_rag.index import edge

    cache = copy_cache(reference, tmp_path / "cache")
    before = cache_contents(cache)
    db = tmp_path / "db"
    storage = ("--storage", "edge" if where == "edge" else "local")
    if where == "edge":
        monkeypatch.setattr(edge, "RESERVE_BYTES", 2**62)
        cause = "no space left on the device ("
    elif where == "points":  # what SQLite says when storage.sqlite cannot grow
        def full(self, point):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(persistence.CollectionPersistence, "persist", full)
        cause = "no space left on the device (database or disk is full)"
    else:  # what the OS says when meta.json cannot be written
        def full(self, *a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.location, "meta.json.tmp"))

        monkeypatch.setattr(qdrant_local.QdrantLocal, "_save", full)
        cause = f"no space left on the device (No space left on device: {db / 'meta.json.tmp'})"
    server.reset_stats()
    code, _, err = run_cli(*index_args(library, db, cache, *storage))
    line = _one_line(code, err)
    assert line.startswith(f"molmo-rag: error: cannot write the index at {db}: {cause}"), line
    assert where == "edge" or line == f"molmo-rag: error: cannot write the index at {db}: {cause}"
    assert server.stats.requests == 0 and cache_contents(cache) == before
    monkeypatch.undo()  # the disk has room again: the same folder, the same command
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, out, err = run_cli(*index_args(library, db, cache, *storage))
    assert code == 0, err
    assert f"0 result(s) from openai, {TOTAL} from cache" in out
    assert server.stats.requests == 0
    assert points(db) == reference.points


def test_a_kill_while_a_new_edge_collection_was_being_made(library, server, reference, tmp_path, run_cli):
    """Edge's shard is made before the marker lists it: a SIGKILL between the two leaves a
    shard no point was written to (made here, since the window is too narrow to hit). The
    next run makes the collection again; a damaged marker is one line, never a traceback."""
    import qdrant_edge

    from molmo_rag.index.edge import MARKER

    db = tmp_path / "db"
    db.mkdir()
    (db / MARKER).write_text(json.dumps({"storage": "qdrant-edge", "format": 1, "collections": {}}))
    config = qdrant_edge.EdgeConfig(vectors={"text-dense": qdrant_edge.EdgeVectorParams(size=8, distance=qdrant_edge.Distance.Cosine)})
    qdrant_edge.EdgeShard.create(str(db / "edge" / "molmo_rag"), config).close()
    cache = copy_cache(reference, tmp_path / "cache")
    server.reset_stats()
    code, _, err = run_cli(*index_args(library, db, cache))
    assert code == 0, err
    assert server.stats.requests == 0 and points(db) == reference.points
    (db / MARKER).write_text('{"storage": "qdrant-edge", "collections": {"molmo_rag": ')
    code, _, err = run_cli("search", "coffee", "--db", db)
    assert _one_line(code, err).startswith(f"molmo-rag: error: cannot open the index at {db}: its {MARKER} is damaged")


def test_a_kill_while_a_new_index_folder_was_being_made(library, server, reference, tmp_path, run_cli):
    """qdrant-client writes a new folder's meta.json in place: a SIGKILL between its open
    and its write leaves an empty file (too narrow a window to hit by chance, so that state
    is made here). The next run must take it for an empty index, not fail on it forever.
    (Local mode, ``--storage local``: Edge writes its marker whole, by rename.)"""
    db = tmp_path / "db"
    db.mkdir()
    (db / "meta.json").write_bytes(b"")
    cache = copy_cache(reference, tmp_path / "cache")
    server.reset_stats()
    code, _, err = run_cli(*index_args(library, db, cache, "--storage", "local"))
    assert code == 0, err
    assert server.stats.requests == 0 and points(db) == reference.points
    # a meta.json damaged some other way, next to a collection, is one line, never a traceback
    (db / "meta.json").write_text('{"collections": {"molmo_rag": ')
    code, _, err = run_cli("search", "coffee", "--db", db)
    assert _one_line(code, err).startswith(f"molmo-rag: error: cannot open the index at {db}: its meta.json is damaged")
