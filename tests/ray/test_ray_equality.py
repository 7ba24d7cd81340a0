"""A Ray run and a single-machine run of the same sources make the same collection: the
same point ids, payloads (every key) and vectors, and the same summary; through the
Python API and through the CLI (``molmo-rag index ... --ray ADDRESS --json``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ray")

from _ray_media import CORRUPT, cli_command, cli_env, counts, json_lines, points  # noqa: E402

from molmo_rag import RunOptions  # noqa: E402
from molmo_rag.testing.fake_backend import FakeBackend  # noqa: E402


def _same_collections(a: dict, b: dict) -> None:
    assert a, "the single-machine run wrote nothing"
    assert sorted(a) == sorted(b)
    for pid in a:
        pa, pb = a[pid][0], b[pid][0]
        assert set(pa) == set(pb), (pid, set(pa) ^ set(pb))
        diff = {k: (pa[k], pb[k]) for k in pa if pa[k] != pb[k]}
        assert not diff, (pid, diff)
        assert a[pid][1] == b[pid][1], pid


@pytest.mark.timeout(300)
def test_ray_and_single_machine_make_the_same_collection(ray_cluster, media, pool, tmp_path):
    from molmo_rag.pipeline import index
    from molmo_rag.ray import index as ray_index

    cache = tmp_path / "cache"
    options = dict(backend=FakeBackend(), count=["person"], cache=str(cache))
    single = index(str(media), RunOptions(**options), db=str(tmp_path / "single"))
    spread = ray_index(str(media), RunOptions(**options, no_cache=True), ray=ray_cluster.address, pool=pool, db=str(tmp_path / "ray"))

    a, b = points(tmp_path / "single"), points(tmp_path / "ray")
    kinds = {payload["kind"] for payload, _ in a.values()}
    assert {"image", "slide", "video_segment"} <= kinds, kinds  # every kind of item went through
    _same_collections(a, b)

    assert counts(spread) == counts(single)
    assert spread.items == single.items == len(a)
    assert spread.indexed == len(a) and spread.cached == 0 and spread.done == single.done > 0  # no_cache: really computed

    # the corrupt file is reported, typed, and the rest went on
    broken = [f for f in spread.failed if f.source.endswith(CORRUPT)]
    assert len(broken) == 1 and broken[0].to_json()["error_type"] == "CorruptMediaError"
    assert all(f.source.endswith(CORRUPT) for f in spread.failed)
    assert not any(payload["source"].endswith(CORRUPT) for payload, _ in b.values())

    # pictures of slides and video segments live under the shared cache folder (a photo's
    # is the file itself): the Ray run's paths are the driver's, and the files are there
    made = [payload["image_path"] for payload, _ in b.values() if payload["kind"] != "image"]
    assert made and all(path.startswith(str(cache.resolve()) + "/") and Path(path).is_file() for path in made), made


@pytest.mark.timeout(300)
def test_a_second_ray_run_finds_everything_done_and_asks_nothing(ray_cluster, media, pool, tmp_path):
    """The collection is the record of what is done: a run into a collection that holds
    every point with this plan asks the backend nothing, even with a fresh cache."""
    from molmo_rag.ray import index as ray_index

    ledger = tmp_path / "ledger"
    db = str(tmp_path / "db")
    first = ray_index(str(media), RunOptions(backend=FakeBackend(ledger=str(ledger)), cache=str(tmp_path / "c1")),
                      ray=ray_cluster.address, pool=pool, db=db)
    asked = ledger.read_text().splitlines()
    before = points(db)
    assert first.indexed == len(before) > 0 and len(asked) == first.done

    again = ray_index(str(media), RunOptions(backend=FakeBackend(ledger=str(ledger)), cache=str(tmp_path / "c2")),
                      ray=ray_cluster.address, pool=pool, db=db)
    assert ledger.read_text().splitlines() == asked  # nothing asked again
    assert (again.done, again.cached, again.indexed, again.pruned) == (0, 0, 0, 0)
    assert again.items == first.items and again.unchanged == first.items
    assert points(db) == before
    assert [f.source for f in again.failed] == [f.source for f in first.failed]  # the bad file, again


@pytest.mark.timeout(400)
def test_the_cli_with_ray_prints_the_summary_of_the_single_machine_cli(ray_cluster, media, tmp_path):
    cache = tmp_path / "cache"
    env = cli_env(cache)
    common = ["index", str(media), "--backend", "fake", "--count", "person", "--cache-dir", str(cache), "--json"]
    single = subprocess.run(cli_command(*common, "--db", str(tmp_path / "single")), env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    spread = subprocess.run(
        cli_command(*common, "--no-cache", "--db", str(tmp_path / "ray"), "--ray", ray_cluster.address,
                    "--ray-actors", "2", "--ray-actor-cpus", "0.5"),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert spread.returncode == 0, spread.stderr[-3000:]
    assert "Traceback" not in spread.stderr, spread.stderr[-3000:]

    one, two = json_lines(single.stdout), json_lines(spread.stdout)
    s1, s2 = one[-1]["summary"], two[-1]["summary"]
    assert counts(s2) == counts(s1)
    assert s2["cached"] == 0 and s2["done"] == s1["done"] + s1["cached"] > 0
    assert [f["error_type"] for f in s2["failed"]] == ["CorruptMediaError"]

    # the same per-item lines: every record once, and the failure line
    def records(lines):
        return sorted((line["id"], line["status"], line["text"]) for line in lines if "status" in line and "id" in line)

    def failures(lines):
        return sorted((line["source"], line["error_type"]) for line in lines if "error_type" in line)

    assert records(two) == records(one) and len(records(two)) == s2["items"]
    assert failures(two) == failures(one) == [(str(media / CORRUPT), "CorruptMediaError")]
    _same_collections(points(tmp_path / "single"), points(tmp_path / "ray"))
