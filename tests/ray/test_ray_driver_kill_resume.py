"""The driver killed (SIGKILL) mid-run, the cluster's nodes changed, the run started
again with a fresh result cache: the collection is the record of what is done, so the
second run asks the backend only for the items whose points were missing, and the
collection ends as an undisturbed run's (every item indexed exactly once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

pytest.importorskip("ray")

from _ray_media import cli_command, cli_env, json_lines, ledger_lines, many_photos, points, start_cluster  # noqa: E402

PHOTOS = 30
GUARD = 240.0  # bounds a wait that takes seconds when the code behaves; never a timing assertion


def _fake_env(cache, ledger, delay):
    return cli_env(cache, MOLMO_RAG_FAKE_OPTIONS=json.dumps({"ledger": str(ledger), "delay": delay, "batch_size": 2}))


@pytest.mark.own_cluster
@pytest.mark.timeout(600)
def test_a_killed_driver_resumed_on_other_nodes_asks_only_for_what_is_missing(tmp_path):
    from molmo_rag import RunOptions
    from molmo_rag.pipeline import index
    from molmo_rag.testing.fake_backend import FakeBackend

    folder = many_photos(tmp_path / "photos", PHOTOS)
    undisturbed = index(str(folder), RunOptions(backend=FakeBackend(), cache=str(tmp_path / "ref-cache")), db=str(tmp_path / "ref"))
    want = points(tmp_path / "ref")
    assert undisturbed.items == len(want) == PHOTOS and not undisturbed.failed

    db = tmp_path / "db"
    args = ["index", str(folder), "--backend", "fake", "--db", str(db), "--json", "--ray-actors", "2", "--ray-actor-cpus", "0.5"]
    cluster = start_cluster()
    try:
        # the first driver: killed once some points are written
        first_ledger = tmp_path / "ledger-1"
        driver = subprocess.Popen(
            cli_command(*args, "--ray", cluster.address, "--cache-dir", str(tmp_path / "cache-1")),
            env=_fake_env(tmp_path / "cache-1", first_ledger, 1.0), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        try:
            written, deadline = 0, time.monotonic() + GUARD
            while written < 4 and time.monotonic() < deadline and driver.poll() is None:
                line = driver.stdout.readline()
                if line.startswith("{") and '"status"' in line:
                    written += 1
            assert driver.poll() is None, f"the run ended before it could be killed: {driver.stderr.read()[-3000:]}"
            assert written >= 4, "no points were written in time"
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=60)
            driver.stdout.close()
            driver.stderr.close()

        time.sleep(2.0)  # let the cluster notice the driver is gone (its job's actors end)
        kept = points(db)  # the collection, read now: the record of what is done
        assert 4 <= len(kept) < PHOTOS, len(kept)
        for pid, (payload, vector) in kept.items():
            assert want[pid][0] == payload and want[pid][1] == vector, pid  # a point written is whole

        # the cluster changes under the run: a new node joins, the old worker node leaves
        [old] = list(cluster.worker_nodes)
        cluster.add_node(num_cpus=2)
        cluster.remove_node(old)
        cluster.wait_for_nodes()

        # the second driver, with a fresh cache: it pays only for what is missing
        second_ledger = tmp_path / "ledger-2"
        again = subprocess.run(
            cli_command(*args, "--ray", cluster.address, "--cache-dir", str(tmp_path / "cache-2")),
            env=_fake_env(tmp_path / "cache-2", second_ledger, 0.0), capture_output=True, text=True, timeout=GUARD,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        summary = json_lines(again.stdout)[-1]["summary"]
    finally:
        cluster.shutdown()

    got = points(db)
    assert sorted(got) == sorted(want)
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload and got[pid][1] == vector, pid
    missing = {payload["media_id"] for pid, (payload, _) in want.items() if pid not in kept}
    asked = ledger_lines(second_ledger)
    assert len(asked) == len(set(asked))  # no request asked twice
    assert {media_id for media_id, _ in asked} == missing
    assert ledger_lines(tmp_path / "ledger-1")  # the killed driver's actors did ask
    assert len(asked) == len(missing) * (undisturbed.done // PHOTOS)  # every task of each missing item, once
    assert summary["items"] == PHOTOS and summary["unchanged"] == len(kept) and summary["indexed"] == PHOTOS - len(kept)
    assert summary["done"] == len(asked) and summary["cached"] == 0 and not summary["failed"]
