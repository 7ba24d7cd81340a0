"""Ctrl-C on a Ray run's driver: what arrived is written before it exits (130), it says
what it kept, and the next run asks only for what is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

pytest.importorskip("ray")

from _ray_media import cli_command, cli_env, json_lines, ledger_lines, many_photos, points  # noqa: E402

PHOTOS = 24
GUARD = 240.0  # bounds a wait that takes seconds when the code behaves; never a timing assertion


@pytest.mark.timeout(600)
def test_ctrl_c_keeps_what_arrived_and_the_next_run_asks_only_for_the_rest(ray_cluster, tmp_path):
    folder = many_photos(tmp_path / "photos", PHOTOS)
    db, cache, ledger = tmp_path / "db", tmp_path / "cache", tmp_path / "ledger"
    env = cli_env(cache, MOLMO_RAG_FAKE_OPTIONS=json.dumps({"ledger": str(ledger), "delay": 0.5, "batch_size": 2}))
    args = cli_command("index", str(folder), "--backend", "fake", "--db", str(db), "--json", "--ray", ray_cluster.address,
                       "--ray-actors", "1", "--ray-actor-cpus", "0.5")
    driver = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + GUARD
    while len(ledger_lines(ledger)) < 8 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert driver.poll() is None, driver.stderr.read()[-3000:]
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=GUARD)
    assert driver.returncode == 130, err[-3000:]
    said = [line for line in err.splitlines() if "interrupted: kept" in line]
    assert said, err[-3000:]
    kept = int(said[0].split("kept ")[1].split(" ")[0])
    written = {r["id"] for r in json_lines(out) if r.get("status") == "indexed"}
    stored = points(db)
    assert len(stored) == kept == len(written) < PHOTOS and set(stored) == written  # what it says it kept is in the index
    kept_ids_media = {payload["media_id"] for payload, _ in stored.values()}
    asked_before = len(ledger_lines(ledger))

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=GUARD)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json_lines(again.stdout)[-1]["summary"]
    assert summary["items"] == PHOTOS and summary["unchanged"] == kept and summary["indexed"] == PHOTOS - kept
    second = ledger_lines(ledger)[asked_before:]
    assert second and len(second) == len(set(second))  # the rest was asked, each request once
    assert not {media_id for media_id, _ in second} & kept_ids_media  # a kept item is done: nothing asked for it
