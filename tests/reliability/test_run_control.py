"""Run control (issue 17, items 17, 19 and 20), through the ``molmo-rag`` command against
real parts: the loopback WaveSpeed server over HTTP, the tiny offline Molmo2 checkpoint
through transformers, embedded Qdrant, the SQLite result cache.

* **Ctrl-C** stops a run at once (a hang fails the test: the process must be gone 10 s
  after SIGINT), says what was kept and that the same command resumes, and the re-run pays
  only for what is missing (jobs in flight are polled, not submitted again); a local batch
  that is generating stops at its next token instead of running to its end;
* **the model loads on the first cache miss only**: a fully cached ``caption`` or
  ``index`` runs with the checkpoint deleted, a run whose only source is down never loads
  it, and a model that cannot load ends the run with one line instead of one per item;
* **permanent failures are remembered**: an item refused for content policy is not
  submitted again on a re-run (it is reported again, ``cached: true``), every submission is
  counted in the summary, and ``--retry-failed`` sends those again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from molmo_rag.cache import ResultCache, is_permanent_failure
from molmo_rag.errors import AuthenticationError, BackendError, BackendTimeout, RateLimitError
from molmo_rag.testing import WaveSpeedServer

pytest.importorskip("qdrant_client")

KEY = "ws-run-control-0123456789"
CLI = [sys.executable, "-c", "import sys; from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))"]
GONE_WITHIN = 10.0  # seconds after SIGINT: generous, only a hang fails


def photos(folder: Path, n: int, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size + i, size - 10 + i), ((37 * i) % 256, 90 + i, 200 - 5 * i)).save(folder / f"p{i:02d}.png")
    return folder


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def cached_results(cache_dir: Path) -> int:
    path = cache_dir / "results.sqlite3"
    if not path.exists():
        return 0
    try:
        return sqlite3.connect(path).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def wait_for(condition, proc: subprocess.Popen, within: float = 180.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGINT once, then the process must be gone within GONE_WITHIN seconds."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=GONE_WITHIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {GONE_WITHIN:g} s after Ctrl-C")


def env_for(server: WaveSpeedServer, cache_dir: Path) -> dict[str, str]:
    env = {**os.environ, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": server.base_url, "MOLMO_RAG_CACHE_DIR": str(cache_dir)}
    env.pop("MOLMO_RAG_BACKEND", None)
    return env


# -- item 17: Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_during_index_stops_says_what_was_kept_and_the_rerun_pays_only_for_the_rest(tmp_path):
    folder = photos(tmp_path / "photos", 24)
    cache_dir = tmp_path / "cache"
    with WaveSpeedServer(api_key=KEY, latency=1.0) as server:
        env = env_for(server, cache_dir)
        command = [*CLI, "index", str(folder), "--backend", "wavespeed", "--concurrency", "4", "--db", str(tmp_path / "db")]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: cached_results(cache_dir) >= 2, proc)  # results are arriving
        out, err = interrupt(proc)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and KEY not in out + err
        [line] = [line for line in err.splitlines() if "interrupted" in line]
        assert "result(s) in the cache" in line and "in the index" in line and "run the same command again" in line
        kept = cached_results(cache_dir)
        with ResultCache(cache_dir) as cache:
            journaled = len(cache.pending_jobs("wavespeed"))
        assert 2 <= kept < 24 and journaled >= 1  # jobs in flight stayed in the journal

        server.reset_stats()
        done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = jsonl(done.stdout)[-1]["summary"]
        assert summary["items"] == 24 and summary["indexed"] + summary["unchanged"] == 24 and not summary["failed"]
        # only what was missing is paid for: neither the kept results nor the jobs in flight again
        assert server.stats.jobs_created == 24 - kept - journaled
        assert (summary["cached"], summary["done"]) == (kept, 24 - kept)


SLOW_POST = 1.5  # s a submission takes to be answered: a Ctrl-C surely lands in the middle of one


def test_ctrl_c_while_submissions_are_in_flight_pays_for_no_item_twice(tmp_path):
    # A submission cut by Ctrl-C may already be a job the server accepted (and bills): its POST
    # is let finish (for a bounded time) and the job journaled, so the re-run polls it.
    folder = photos(tmp_path / "photos", 12)
    cache_dir = tmp_path / "cache"
    with WaveSpeedServer(api_key=KEY, latency=0.2) as server:
        server.inject("slow", route="submit", times=-1, delay=SLOW_POST)  # every submission answers late
        env = env_for(server, cache_dir)
        command = [*CLI, "index", str(folder), "--backend", "wavespeed", "--concurrency", "4", "--db", str(tmp_path / "db")]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: server.stats.by_route["submit"] >= 5, proc)  # the 5th POST has just been sent
        sent = time.monotonic()
        out, err = interrupt(proc)
        stopped_in = time.monotonic() - sent
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert stopped_in < GONE_WITHIN, stopped_in
        time.sleep(SLOW_POST + 0.5)  # the server ends every submission it got (each makes a job)
        first = server.stats.jobs_created
        with ResultCache(cache_dir) as cache:
            journaled = len(cache.pending_jobs("wavespeed"))
        assert first >= 5 and journaled >= 1, (first, journaled)

        server.clear_faults()
        server.reset_stats()
        done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = jsonl(done.stdout)[-1]["summary"]
        assert summary["items"] == 12 and not summary["failed"]
        assert first + server.stats.jobs_created == 12  # no item paid for twice


class _Journal:
    """A pending-jobs journal that only records what was submitted."""

    def __init__(self):
        self.jobs: list[str] = []

    def pending(self, backend=None):
        return None

    def submitted(self, backend, job_id):
        self.jobs.append(job_id)

    def finished(self, job_id=None):
        pass


def _cancel_one(server: WaveSpeedServer, ready, **options) -> tuple[Any, _Journal, float]:
    """One caption request on the loopback WaveSpeed, cancelled once ``ready()`` holds (checked
    every 10 ms, a 60 s limit): (what the request ended with, its journal, seconds from the
    cancel to its end)."""
    from molmo_rag.backends.base import Request, get_backend
    from molmo_rag.media.items import MediaItem
    from molmo_rag.tasks import Caption

    backend = get_backend("wavespeed", api_key=KEY, base_url=server.base_url, poll_interval=0.02, **options)
    journal = _Journal()
    request = Request(MediaItem.from_pil(Image.new("RGB", (40, 30), (20, 90, 200))), Caption(), journal=journal)

    async def main():
        async with backend.session() as session:
            task = asyncio.ensure_future(session.answer(request))
            async with asyncio.timeout(60):
                while not ready() and not task.done():
                    await asyncio.sleep(0.01)
            task.cancel()
            cancelled = time.monotonic()
            try:
                outcome = await task
            except asyncio.CancelledError as exc:
                outcome = exc
            return outcome, journal, time.monotonic() - cancelled

    return asyncio.run(main())


def test_a_cancel_during_a_submission_lets_it_finish_journals_its_job_then_stops_polling():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        server.inject("slow", route="submit", times=1, delay=SLOW_POST)
        outcome, journal, took = _cancel_one(server, lambda: server.stats.by_route["submit"] >= 1)
        assert isinstance(outcome, asyncio.CancelledError)
        assert journal.jobs == list(server.jobs) and server.stats.jobs_created == 1  # the job is kept
        assert server.stats.by_route["poll"] == 0  # then cancelled at once: the next run polls it
        assert took < SLOW_POST + 2.0


def test_a_submission_that_outlasts_the_grace_is_abandoned_and_the_cancel_is_quick():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        server.inject("slow", route="submit", times=1, delay=6.0)
        outcome, journal, took = _cancel_one(server, lambda: server.stats.by_route["submit"] >= 1, submit_grace=0.3)
        assert isinstance(outcome, asyncio.CancelledError) and journal.jobs == []
        assert took < 3.0  # the grace (0.3 s), far from the answer's 6 s


def test_a_cancel_in_a_retry_back_off_is_immediate():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        server.inject("rate_limit", route="submit", times=-1, retry_after=60)  # then a 60 s back-off
        outcome, journal, took = _cancel_one(server, lambda: server.stats.faults_applied["rate_limit"] >= 1)
        assert isinstance(outcome, asyncio.CancelledError) and journal.jobs == []
        assert server.stats.jobs_created == 0
        assert took < 1.0


def test_an_item_timeout_during_a_submission_journals_the_job_and_is_a_timeout():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        server.inject("slow", route="submit", times=1, delay=1.0)
        outcome, journal, _ = _cancel_one(server, lambda: False, timeout=0.3)  # never cancelled: it times out
        assert isinstance(outcome, BackendTimeout) and outcome.code == "timeout", outcome
        assert journal.jobs == list(server.jobs) and len(journal.jobs) == 1


def test_ctrl_c_during_caption_stops_and_says_how_to_resume(tmp_path):
    folder = photos(tmp_path / "photos", 12)
    with WaveSpeedServer(api_key=KEY, latency=1.0) as server:
        env = env_for(server, tmp_path / "cache")
        command = [*CLI, "caption", str(folder), "--backend", "wavespeed", "--concurrency", "2", "--json"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(proc.stdout.readline())  # results are arriving
        out, err = interrupt(proc)
        assert proc.returncode == 130 and "Traceback" not in err, err
        printed = 1 + len(jsonl(out))
        [line] = [line for line in err.splitlines() if "interrupted" in line]
        assert "line(s)" in line and "result(s) in the cache" in line and "run the same command again" in line, line
        server.reset_stats()
        rest = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rest.returncode == 0, rest.stderr[-3000:]
        assert first in jsonl(rest.stdout) and len(jsonl(rest.stdout)) == 12
        assert server.stats.jobs_created <= 12 - printed  # what was printed is not asked for again


LOCAL_SCRIPT = textwrap.dedent(
    """
    import sys
    from molmo_rag import pipeline
    from molmo_rag.backends.local import LocalBackend

    class Announcing(LocalBackend):
        def generate_prepared(self, requests, prepared):
            print("generating", flush=True)
            return super().generate_prepared(requests, prepared)

    model, photos, db, cache, tokens = sys.argv[1:]
    # a batch that runs for minutes unless it is stopped
    backend = Announcing(model, device="cpu", batch_size=2, min_new_tokens=int(tokens), max_new_tokens=int(tokens))
    backend.load()
    try:
        pipeline.index([photos], backend=backend, db=db, cache=cache, progress=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


def test_ctrl_c_stops_a_local_batch_at_its_next_token(tmp_path, tiny_molmo2_path):
    folder = photos(tmp_path / "photos", 4)
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCAL_SCRIPT, str(tiny_molmo2_path), str(folder), str(tmp_path / "db"), str(tmp_path / "cache"), "3500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "generating", proc.communicate()[1][-3000:]
    time.sleep(0.5)  # into the batch's tokens
    out, err = interrupt(proc)
    assert proc.returncode == 130 and "interrupted" in out, err[-3000:]
    assert cached_results(tmp_path / "cache") == 0  # a batch cut short is not an answer


# -- item 19: the model loads on the first cache miss ------------------------------------------------


def test_a_fully_cached_caption_or_index_never_loads_the_model(tmp_path, tiny_molmo2_path):
    folder = photos(tmp_path / "photos", 3)
    model = tmp_path / "model"
    shutil.copytree(tiny_molmo2_path, model)
    env = {**os.environ, "MOLMO_RAG_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MOLMO_RAG_BACKEND", None)
    caption = [*CLI, "caption", str(folder), "--model", str(model), "--detail", "low", "--json"]
    index = [*CLI, "index", str(folder), "--model", str(model), "--db", str(tmp_path / "db"), "--quiet"]
    first = subprocess.run(caption, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert subprocess.run(index, env=env, capture_output=True, text=True, timeout=600).returncode == 0
    shutil.rmtree(model)  # from now on, loading the model can only fail

    again = subprocess.run(caption, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [(r["source"], r["caption"]) for r in jsonl(again.stdout)] == [(r["source"], r["caption"]) for r in jsonl(first.stdout)]
    assert "0 result(s) from local, 3 from cache" in again.stderr
    indexed = subprocess.run(index, env=env, capture_output=True, text=True, timeout=600)
    assert indexed.returncode == 0, indexed.stderr[-3000:]
    assert "0 result(s) from local, 6 from cache" in indexed.stdout


def test_a_run_whose_only_source_is_down_never_loads_the_model(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/photo.jpg"
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail, and say so
    env = {**os.environ, "MOLMO_RAG_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MOLMO_RAG_BACKEND", None)
    for args in (["caption", url], ["index", url, "--db", str(tmp_path / "db"), "--quiet"]):
        proc = subprocess.run([*CLI, *args, "--model", missing_model], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        assert "UnreachableSourceError" in proc.stdout + proc.stderr and "does not exist" not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_model_that_cannot_load_ends_the_run_with_one_line(tmp_path):
    folder = photos(tmp_path / "photos", 5)
    env = {**os.environ, "MOLMO_RAG_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MOLMO_RAG_BACKEND", None)
    missing_model = str(tmp_path / "no-such-model")
    for args in (["caption", str(folder)], ["index", str(folder), "--db", str(tmp_path / "db"), "--quiet"]):
        proc = subprocess.run([*CLI, *args, "--model", missing_model], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not exist" in lines[0] and "run stopped" in lines[0], proc.stderr


# -- item 20: permanent failures are remembered ------------------------------------------------------


def test_a_content_policy_failure_is_not_submitted_again_and_every_submission_is_counted(tmp_path):
    folder = photos(tmp_path / "photos", 8)
    cache_dir = tmp_path / "cache"
    with WaveSpeedServer(api_key=KEY, latency=0.05, fault_rates={"content_policy": 0.5}, fault_seed=7) as server:
        env = env_for(server, cache_dir)
        command = [*CLI, "index", str(folder), "--backend", "wavespeed", "--db", str(tmp_path / "db")]

        def run(*extra: str) -> tuple[subprocess.CompletedProcess, list[dict], dict]:
            server.reset_stats()
            proc = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
            lines = jsonl(proc.stdout)
            return proc, [line for line in lines if "error" in line], lines[-1].get("summary", {}) if lines else {}

        _, failures, summary = run("--json")
        flagged = {f["source"] for f in failures}
        assert 1 <= len(flagged) < 8 and all(f["error_code"] == "content_policy_violation" for f in failures)
        assert server.stats.jobs_created == 8 and not any(f.get("cached") for f in failures)
        assert (summary["done"], summary["failed_sent"], summary["cached"], summary["failed_cached"]) == (8 - len(flagged), len(flagged), 0, 0)

        # the same run again: nothing at all is submitted; the flagged items fail again, from the cache
        _, again, summary = run("--json")
        assert server.stats.by_route["submit"] == 0 and server.stats.jobs_created == 0
        def same(lines: list[dict]) -> list[dict]:
            return sorted(({**f, "cached": None} for f in lines), key=lambda f: f["source"])

        assert same(again) == same(failures)  # the same fields, plus cached: true
        assert all(f["cached"] is True for f in again)
        assert (summary["done"], summary["failed_sent"], summary["cached"], summary["failed_cached"]) == (0, 0, 8 - len(flagged), len(flagged))

        proc, _, _ = run()  # the human summary says where every request went
        assert f"0 result(s) from wavespeed, {8 - len(flagged)} from cache, {len(flagged)} failed in an earlier run" in proc.stdout
        assert "--retry-failed" in proc.stdout and "remembered from an earlier run" in proc.stderr

        # --retry-failed sends exactly those again (the content filter still says no)
        _, retried, summary = run("--json", "--retry-failed")
        assert server.stats.jobs_created == len(flagged) and {f["source"] for f in retried} == flagged
        assert not any(f.get("cached") for f in retried)
        assert (summary["done"], summary["failed_sent"], summary["cached"]) == (0, len(flagged), 8 - len(flagged))

        # caption shares the cache: the flagged photos are not sent from there either
        server.reset_stats()
        proc = subprocess.run([*CLI, "caption", str(folder), "--backend", "wavespeed", "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and server.stats.by_route["submit"] == 0
        assert {line["source"] for line in jsonl(proc.stdout) if line.get("cached") and "error" in line} == flagged
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_submission_refused_for_content_policy_is_remembered_too(tmp_path):
    folder = photos(tmp_path / "photos", 2)
    with WaveSpeedServer(api_key=KEY, fault_rates={"submit_content_policy": 1.0}) as server:
        env = env_for(server, tmp_path / "cache")
        command = [*CLI, "caption", str(folder), "--backend", "wavespeed", "--json"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert server.stats.by_route["submit"] == 2
        assert [line["error_code"] for line in jsonl(first.stdout)] == ["content_policy_violation"] * 2
        server.reset_stats()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 1 and server.stats.by_route["submit"] == 0
        assert all(line["cached"] is True and line["error_status"] == 400 for line in jsonl(again.stdout))
        assert "2 failed in an earlier run" in again.stderr


def test_a_refused_key_is_never_remembered(tmp_path):
    folder = photos(tmp_path / "photos", 2)
    with WaveSpeedServer(api_key="the-right-key-123") as server:
        env = env_for(server, tmp_path / "cache")
        for _ in range(2):
            server.reset_stats()
            proc = subprocess.run([*CLI, "caption", str(folder), "--backend", "wavespeed"], env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 1 and "HTTP 401" in proc.stderr
            assert server.stats.unauthorized >= 1  # asked again: the key may have been fixed
    with ResultCache(tmp_path / "cache") as cache:
        assert cache.failure_count() == 0


@pytest.mark.parametrize(
    ("error", "remembered"),
    [
        (BackendError("flagged", code="content_policy_violation"), True),
        (BackendError("HTTP 400: content_policy_violation: flagged", code="content_policy_violation", status=400), True),
        (BackendError("could not decode", code="invalid_input", status=400), True),
        (BackendError("answer is no text", code="malformed_answer"), True),
        (BackendError("provider error", code="upstream_failed", retryable=True), False),
        (BackendError("HTTP 400: image is required", code="400", status=400), False),  # no vendor code
        (BackendError("no such model", code="model_not_available", status=404), False),
        (BackendError("HTTP 404", code="not_found", status=404), False),
        (BackendError("cancelled", code="prediction_cancelled"), False),
        (BackendError("Molmo2 generation failed: out of memory"), False),
        (AuthenticationError("HTTP 401", code="unauthorized", status=401), False),
        (RateLimitError("HTTP 429", code="rate_limited", status=429), False),
    ],
)
def test_which_failures_are_remembered(error, remembered):
    assert is_permanent_failure(error) is remembered


def test_an_account_error_marked_fatal_is_never_remembered():
    balance = BackendError("prediction failed: insufficient credits", code="credits_exhausted")
    balance.fatal = True
    assert not is_permanent_failure(balance)


def test_a_remembered_failure_comes_back_as_it_was_until_a_result_replaces_it(tmp_path):
    from molmo_rag.errors import MalformedAnswerError
    from molmo_rag.results import Failure

    paid = MalformedAnswerError("wavespeed: prediction 1f completed, but its output is a number, not text", backend="wavespeed", cost_usd=0.002)
    with ResultCache(tmp_path) as cache:
        cache.put_failure("k", media_id="m", backend="wavespeed", model="wavespeed-ai/molmo2", task="caption(detail=medium)", error=paid)
        again = cache.failures_many(["k"])["k"].error()
        assert type(again) is MalformedAnswerError and again.cached and not again.retryable
        assert (str(again), again.code, again.cost_usd) == (str(paid), "malformed_answer", 0.002)
        fresh, remembered = Failure(source="a.jpg", error=paid).to_json(), Failure(source="a.jpg", error=again, cached=True).to_json()
        assert remembered == {**fresh, "cached": True}
        cache.retry_failed = True
        assert cache.failures_many(["k"]) == {}  # --retry-failed looks past it
        cache.retry_failed = False
        cache.put("k", media_id="m", backend="wavespeed", model="wavespeed-ai/molmo2", task="caption(detail=medium)", text="A cat.", fields={"caption": "A cat."})
        assert cache.failures_many(["k"]) == {} and cache.failure_count() == 0
