"""Where the index and the cache live, and what the index summary says (issue 17, items
5, 12 and 14): the ``molmo-rag`` command in this process (``molmo_rag.cli.main``) or in a
subprocess, the pixel-statistics backend, real embedded Qdrant.

* a collection name Qdrant would refuse (``a/b``, 300 characters, ``.hidden``) is a usage
  error on every door: one line naming ``--collection`` and the names allowed, exit 2,
  before anything is read or asked; from Python a :class:`UsageError`;
* ``--db`` at a file (or under one) and a cache folder that is a file, under a file or on
  a read-only file system (a real read-only bind mount, where this process may mount) are
  one line each that names the path, says what it is and what to do;
* "indexed N item(s)" counts distinct points: many images and segments (whose objects
  come and go, so object identities are reused), a file listed twice (two objects for one
  point) and a re-run with everything cached all print the number of points in the
  collection, the same in two identical runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("qdrant_client")
pytest.importorskip("av")

import _pixel_backend
from molmo_rag.cli import main
from molmo_rag.errors import UsageError

TESTS = Path(__file__).resolve().parents[1]
PIXELS_CLI = [
    sys.executable,
    "-c",
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import _pixel_backend; _pixel_backend.register(); "
    "from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))",
    str(TESTS),
]
PHOTOS = 150
"""Enough items that the objects of finished ones are freed and their identities reused
while the run goes on."""


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("library")
    (root / "photos").mkdir()
    rng = np.random.default_rng(17)
    for i in range(PHOTOS):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(root / "photos" / f"{i:03}.png")
    samples.make_video(
        root / "clip.mp4",
        [samples.Shot("rocket", 6, "static"), samples.Shot("coffee", 6, "static")],
        size=(96, 64),
        fps=10,
    )
    return root


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("MOLMO_RAG_BACKEND", "MOLMO_RAG_MODEL", "MOLMO_RAG_DB", "MOLMO_RAG_QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    _pixel_backend.register(monkeypatch)

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def one_line(code: int, err: str, status: int) -> str:
    lines = err.strip().splitlines()
    assert code == status and len(lines) == 1 and lines[0].startswith("molmo-rag: error: "), (code, err)
    assert "Traceback" not in err
    return lines[0]


def point_count(db: Path, collection: str = "molmo_rag") -> int:
    from molmo_rag.index.store import QdrantIndex

    if not db.exists():
        return 0
    with QdrantIndex(db, collection=collection, create=False) as store:
        return store.count()


# -- item 5: collection names ------------------------------------------------------------------
BAD_NAMES = ["a/b", "x" * 300, ".hidden", "two words", "a:b", "..", "ünïcode"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["slash", "300-chars", "dot-first", "space", "colon", "dotdot", "non-ascii"])
def test_a_collection_name_qdrant_refuses_is_one_usage_line_on_every_command(library, run, tmp_path, name):
    db = tmp_path / "db"
    photo = library / "photos" / "000.png"
    for args in (
        ("index", photo, "--backend", "pixels", "--db", db, "--quiet"),
        ("search", "red", "--db", db),
        ("remove", photo, "--db", db),
        ("labels", "--db", db),
    ):
        code, out, err = run(*args, "--collection", name)
        line = one_line(code, err, 2)
        assert line.startswith("molmo-rag: error: --collection: "), line
        assert "letters, digits" in line and "255" in line, line  # says which names are allowed
        assert out == ""
    assert point_count(db) == 0 and not (db / "collection").exists()  # nothing was made


def test_collection_names_from_python_are_usage_errors_and_the_longest_allowed_works(library, tmp_path):
    from molmo_rag.pipeline import index, open_index, search
    from molmo_rag.testing import FakeBackend

    backend = FakeBackend()
    for name in ("a/b", "x" * 256, ".x"):
        with pytest.raises(UsageError) as caught:
            open_index(tmp_path / "db", collection=name)
        assert caught.value.option == "collection"
        with pytest.raises(UsageError):
            index([library / "photos" / "000.png"], backend=backend, db=tmp_path / "db", collection=name, cache=False)
        with pytest.raises(UsageError):
            search("red", db=tmp_path / "db", collection=name)
    assert backend.calls == 0

    longest = "A-z_0.9" + "x" * 248  # 255 characters of the allowed ones
    summary = index([library / "photos" / "000.png"], backend=backend, db=tmp_path / "db", collection=longest, cache=False)
    assert summary.indexed == 1
    assert len(search("red", db=tmp_path / "db", collection=longest)) == 1


# -- item 12: --db and the cache folder --------------------------------------------------------
def test_db_at_a_file_is_one_line_naming_it(library, run, tmp_path):
    photo = library / "photos" / "000.png"
    afile = tmp_path / "notes.txt"
    afile.write_text("not an index")
    for db in (afile, afile / "sub"):
        code, _, err = run("index", photo, "--backend", "pixels", "--db", db, "--quiet")
        line = one_line(code, err, 1)
        assert line.startswith(f"molmo-rag: error: cannot write the index at {db}: {afile} is a file, not a folder"), line
        assert "give" in line and "folder" in line and "File exists" not in line and "Not a directory" not in line, line
    code, _, err = run("search", "red", "--db", afile)
    line = one_line(code, err, 1)
    assert line.startswith(f"molmo-rag: error: cannot open the index at {afile}: {afile} is a file, not a folder"), line
    assert "File exists" not in line
    assert afile.read_text() == "not an index"


def test_cache_folder_that_is_a_file_or_under_one_is_one_line_naming_it(library, run, tmp_path):
    photo = library / "photos" / "000.png"
    afile = tmp_path / "cache.txt"
    afile.write_text("not a cache")
    for cache in (afile, afile / "sub"):
        code, _, err = run("index", photo, "--backend", "pixels", "--db", tmp_path / "db", "--cache-dir", cache, "--quiet")
        line = one_line(code, err, 1)
        assert line.startswith(f"molmo-rag: error: cannot open the result cache at {cache}: {afile} is a file, not a folder"), line
        assert "MOLMO_RAG_CACHE_DIR" in line and "Errno" not in line, line
    assert afile.read_text() == "not a cache"
    assert point_count(tmp_path / "db") == 0


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


@pytest.mark.skipif(_WHY_NO_MOUNT is not None, reason=f"a real read-only file system needs mount rights: {_WHY_NO_MOUNT}")
def test_read_only_cache_folder_is_one_line_naming_it(library, tmp_path):
    photo = library / "photos" / "000.png"
    ro = tmp_path / "ro"
    (ro / "empty").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    made = subprocess.run(
        [*PIXELS_CLI, "index", photo, "--backend", "pixels", "--db", tmp_path / "db0", "--cache-dir", ro / "full", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert made.returncode == 0, made.stderr
    read_only = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', str(ro)]
    for cache in (ro / "empty", ro / "full", ro / "new"):
        proc = subprocess.run(
            [*read_only, *PIXELS_CLI, "index", photo, "--backend", "pixels", "--db", tmp_path / "db", "--cache-dir", cache, "--quiet"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        line = one_line(proc.returncode, proc.stderr, 1)
        assert line.startswith(f"molmo-rag: error: cannot open the result cache at {cache}: the file system is read-only"), line
        assert "MOLMO_RAG_CACHE_DIR" in line and "unable to open database file" not in line, line
    assert point_count(tmp_path / "db") == 0


# -- item 14: the summary counts points --------------------------------------------------------
_SUMMARY = re.compile(r"^indexed (\d+) item\(s\) into .*: (\d+) written, (\d+) unchanged, ")


def _summary(out: str) -> tuple[int, int, int]:
    found = [_SUMMARY.match(line) for line in out.splitlines()]
    matched = [m for m in found if m]
    assert len(matched) == 1, out
    return tuple(int(g) for g in matched[0].groups())  # type: ignore[return-value]


def test_index_summary_counts_each_point_once_and_two_identical_runs_agree(library, run, tmp_path):
    db = tmp_path / "db"
    photos = library / "photos"
    # the folder, one of its photos again (spelled another way) and the video of 1 s windows
    args = ("index", library, photos / "." / "007.png", str(photos / "042.png"), "--backend", "pixels", "--db", db,
            "--segment", "fixed", "--segment-seconds", "1", "--quiet")
    code, out, err = run(*args)
    assert code == 0, err
    points = point_count(db)
    assert points > PHOTOS + 5  # the photos and the video's windows
    assert _summary(out) == (points, points, 0)

    code, out, err = run(*args)  # identical, everything cached and unchanged
    assert code == 0, err
    assert _summary(out) == (points, 0, points)
    assert point_count(db) == points

    code, out, err = run(*args, "--json")
    assert code == 0, err
    import json

    summary = json.loads(out.splitlines()[-1])["summary"]
    assert (summary["items"], summary["indexed"], summary["unchanged"]) == (points, 0, points)


def test_two_objects_for_one_point_count_once(tmp_path):
    """Ready MediaItems the caller holds (no identity is reused): two copies of one image
    under one source name are one point, written once."""
    from molmo_rag.media import MediaItem
    from molmo_rag.pipeline import index
    from molmo_rag.testing import FakeBackend, samples

    red, blue = samples.photo("coffee").resize((24, 16)), samples.photo("astronaut").resize((24, 16))
    items = [MediaItem.from_pil(red, source="shelf/red"), MediaItem.from_pil(red, source="shelf/red"), MediaItem.from_pil(blue, source="shelf/blue")]
    summary = index(items, backend=FakeBackend(), db=tmp_path / "db", cache=tmp_path / "cache")
    assert point_count(tmp_path / "db") == 2
    assert (summary.items, summary.indexed, summary.unchanged) == (2, 2, 0)
    again = index(items, backend=FakeBackend(), db=tmp_path / "db", cache=tmp_path / "cache")
    assert (again.items, again.indexed, again.unchanged) == (2, 0, 2)
