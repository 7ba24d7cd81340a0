"""The fault-injection harness of the loopback servers (issue 12): faults at set rates,
seeded and reproducible, each fault kind as the protocol says, over real HTTP on
127.0.0.1; and what molmo-rag's backends make of the faults the CLI bench cannot cover
(jobs that never finish, outputs that 404, unreadable submission answers)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import Counter

import httpx
import pytest
from PIL import Image

from molmo_rag.analyze import analyze
from molmo_rag.backends.base import Request, get_backend
from molmo_rag.errors import BackendError, BackendTimeout, ResponseFormatError
from molmo_rag.media.items import MediaItem
from molmo_rag.results import Failure, Result
from molmo_rag.tasks import Caption
from molmo_rag.testing.loopback import (
    RATED_FAULTS,
    OpenAIServer,
    OpenOctopusServer,
    WaveSpeedServer,
    parse_rates,
)
from molmo_rag.testing.loopback.__main__ import parse_fault_params

KEY = "loop-fault-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)
IMAGE = "data:image/png;base64,iVBORw0KGgo="
ALL = {  # every drawn fault of each route, rates adding up to less than 1 per route
    "submit_503": 0.15, "submit_502": 0.05, "rate_limit": 0.1, "reset_before_read": 0.02, "reset_after_read": 0.01,
    "malformed_submit": 0.01, "poll_503": 0.05, "poll_502": 0.02, "malformed": 0.02, "slow_body": 0.02,
    "output_404": 0.01, "upstream_failed": 0.1, "never_finish": 0.01,
}


def ws_submit(server, image: str = IMAGE, client=httpx):
    return client.post(f"{server.base_url}/api/v3/wavespeed-ai/molmo2/image-captioner", json={"image": image}, headers=AUTH)


def ws_poll(server, job_id: str, client=httpx):
    return client.get(f"{server.base_url}/api/v3/predictions/{job_id}/result", headers=AUTH)


def oo_submit(server, image: str = IMAGE):
    body = {"model": "openoctopus/image-captioner-molmo2", "prompt": "Describe this image.", "input": {"image": image}}
    return httpx.post(f"{server.base_url}/v1/images/recognitions", json=body, headers=AUTH)


def images(n: int) -> list[MediaItem]:
    return [MediaItem.from_pil(Image.new("RGB", (24 + i % 17, 16 + i // 17), ((37 * i) % 256, 90, 160))) for i in range(n)]


# -- rates, seeds, validation ------------------------------------------------------------------


def test_drawn_rates_are_honoured_over_many_draws():
    server = WaveSpeedServer(api_key=KEY).faults(ALL, seed=7)
    n = 20_000
    for route in ("submit", "poll", "output", "job"):
        seen = Counter(server.draw_fault(route) for _ in range(n))
        on_route = {name: rate for name, rate in ALL.items() if route in RATED_FAULTS[name].routes}
        for name, rate in on_route.items():
            sd = math.sqrt(n * rate * (1 - rate))
            assert abs(seen[name] - n * rate) <= 5 * sd, (route, name, seen[name], n * rate)
        assert set(seen) <= set(on_route) | {None}
        assert server.stats.fault_draws[route] == n


def test_sticky_faults_follow_the_input_in_every_run():
    rates = {"content_policy": 0.04, "invalid_input": 0.03, "submit_content_policy": 0.02}
    a = WaveSpeedServer(api_key=KEY).faults(rates, seed=3)
    b = WaveSpeedServer(api_key=KEY).faults(rates, seed=3)
    keys = [f"media-{i}" for i in range(20_000)]
    first = [a.draw_fault("job", sticky=True, key=k) for k in keys]
    assert first == [a.draw_fault("job", sticky=True, key=k) for k in keys]  # the same input, the same fault
    assert first == [b.draw_fault("job", sticky=True, key=k) for k in reversed(keys)][::-1]  # whatever the order
    hit = sum(1 for f in first if f == "content_policy")
    assert abs(hit - 800) <= 5 * math.sqrt(20_000 * 0.04 * 0.96)
    submit = Counter(a.draw_fault("submit", sticky=True, key=k) for k in keys)
    assert abs(submit["invalid_input"] - 600) <= 5 * math.sqrt(20_000 * 0.03 * 0.97)
    assert abs(submit["submit_content_policy"] - 400) <= 5 * math.sqrt(20_000 * 0.02 * 0.98)
    other = WaveSpeedServer(api_key=KEY).faults(rates, seed=4)
    assert first != [other.draw_fault("job", sticky=True, key=k) for k in keys]


def test_the_same_seed_gives_the_same_faults_over_http():
    def sequence(seed: int) -> list[tuple[int, str]]:
        with WaveSpeedServer(api_key=KEY, fault_rates={"poll_503": 0.2, "rate_limit": 0.2, "poll_502": 0.1}, fault_seed=seed) as s:
            with httpx.Client() as client:
                return [(r.status_code, r.headers.get("Retry-After", "")) for r in (ws_poll(s, "ab", client) for _ in range(60))]

    one = sequence(11)
    assert one == sequence(11)
    assert one != sequence(12)
    assert {code for code, _ in one} == {404, 429, 502, 503}  # faults, and the protocol's answer for an unknown job


def test_bad_fault_settings_are_refused():
    server = WaveSpeedServer(api_key=KEY)
    with pytest.raises(ValueError, match="unknown fault"):
        server.faults({"gremlins": 0.1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        server.faults({"submit_503": 1.5})
    with pytest.raises(ValueError, match="add up to"):
        server.faults({"submit_503": 0.6, "rate_limit": 0.5})
    with pytest.raises(ValueError, match="unknown fault"):
        server.faults({}, params={"nope": {"x": 1}})
    assert parse_rates("upstream_failed=0.1, rate_limit=0.05,") == {"upstream_failed": 0.1, "rate_limit": 0.05}
    with pytest.raises(ValueError):
        parse_rates("upstream_failed")
    assert parse_fault_params(["rate_limit.retry_after=2", "slow_body.seconds=0.1"]) == {
        "rate_limit": {"retry_after": 2}, "slow_body": {"seconds": 0.1}}
    assert server.faults({"submit_503": 0.0}).fault_rates == {}


def test_injected_faults_go_first_and_inject_still_works():
    with WaveSpeedServer(api_key=KEY, fault_rates={"submit_503": 1.0}) as s:
        s.inject("server_error", route="submit", times=1, status=500)
        assert ws_submit(s).status_code == 500
        assert ws_submit(s).status_code == 503
        s.faults(None)
        assert ws_submit(s).status_code == 200
        assert s.stats.faults_applied == Counter({"server_error": 1, "submit_503": 1})
        assert s.stats.fault_log == [("submit_503", "submit", "/api/v3/wavespeed-ai/molmo2/image-captioner")]


# -- each fault as the protocol says -------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "ws_message", "oo_code"),
    [
        ("submit_503", 503, "service temporarily unavailable", "service_unavailable"),
        ("submit_502", 502, "bad gateway", "provider_submit_failed"),
        ("invalid_input", 400, "invalid_input:", "invalid_request"),
        ("submit_content_policy", 400, "content_policy_violation:", "content_policy_violation"),
    ],
)
def test_submission_errors(fault, status, ws_message, oo_code):
    with WaveSpeedServer(api_key=KEY, fault_rates={fault: 1.0}) as ws:
        answer = ws_submit(ws)
        assert answer.status_code == status and answer.json()["code"] == status
        assert answer.json()["message"].startswith(ws_message)
        assert ws.stats.jobs_created == 0
    with OpenOctopusServer(api_key=KEY, fault_rates={fault: 1.0}) as oo:
        answer = oo_submit(oo)
        assert answer.status_code == status and answer.json()["error"]["code"] == oo_code
        assert oo.stats.jobs_created == 0


def test_rate_limit_says_when_to_come_back():
    with WaveSpeedServer(api_key=KEY, fault_rates={"rate_limit": 1.0}) as s:
        answer = ws_submit(s)
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
        s.faults({"rate_limit": 1.0}, params={"rate_limit": {"retry_after": 3}})
        assert ws_poll(s, "ab").headers["Retry-After"] == "3"
        assert s.stats.jobs_created == 0
    with OpenAIServer(api_key=None, fault_rates={"rate_limit": 1.0}) as vllm:
        answer = httpx.post(f"{vllm.base_url}/chat/completions", json={})
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"


def test_poll_errors_malformed_and_trickling_bodies():
    with WaveSpeedServer(api_key=KEY) as s:
        job = ws_submit(s).json()["data"]["id"]
        for fault, status in (("poll_503", 503), ("poll_502", 502)):
            s.faults({fault: 1.0})
            assert ws_poll(s, job).status_code == status
        s.faults({"malformed": 1.0})
        broken = ws_poll(s, job)
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()
        s.faults({"slow_body": 1.0}, params={"slow_body": {"seconds": 0.05, "chunks": 4}})
        assert ws_poll(s, job).json()["data"]["id"] == job  # slow, but whole
        assert s.stats.faults_applied["slow_body"] == 1


def test_connection_resets_before_and_after_the_server_read_the_request():
    with WaveSpeedServer(api_key=KEY, fault_rates={"reset_before_read": 1.0}) as s:
        with pytest.raises(httpx.TransportError):
            ws_submit(s)
        assert s.stats.jobs_created == 0  # nothing was read, nothing done
        s.faults({"reset_after_read": 1.0})
        with pytest.raises(httpx.TransportError):
            ws_submit(s)
        [job] = s.jobs.values()  # the job exists; the client never learnt its id
        assert job.lost == "reset_after_read"
        s.faults({"malformed_submit": 1.0})
        with pytest.raises(ValueError):
            ws_submit(s).json()
        assert s.stats.jobs_created == 2 and sum(1 for j in s.jobs.values() if j.lost) == 2


def test_failed_and_never_finishing_jobs():
    with WaveSpeedServer(api_key=KEY, fault_rates={"upstream_failed": 1.0}) as s:
        job = ws_submit(s).json()["data"]
        done = ws_poll(s, job["id"]).json()["data"]
        assert done["status"] == "failed" and done["error"] == "upstream_failed: provider error, please retry"
        s.faults({"content_policy": 1.0})
        job = ws_submit(s).json()["data"]
        assert ws_poll(s, job["id"]).json()["data"]["error"].startswith("content_policy_violation:")
        s.faults({"never_finish": 1.0})
        job = ws_submit(s).json()["data"]
        assert ws_poll(s, job["id"]).json()["data"]["status"] == "created"
        assert s.jobs[job["id"]].status == "running" and s.jobs[job["id"]].fault == "never_finish"
    with OpenOctopusServer(api_key=KEY, fault_rates={"content_policy": 1.0}) as oo:
        task = oo_submit(oo).json()
        failed = httpx.get(f"{oo.base_url}/v1/tasks/{task['id']}", headers=AUTH).json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "content_policy_violation"


def test_output_urls_that_404():
    with WaveSpeedServer(api_key=KEY, output_mode="url", fault_rates={"output_404": 1.0}) as s:
        job = ws_submit(s).json()["data"]
        url = ws_poll(s, job["id"]).json()["data"]["outputs"][0]
        assert httpx.get(url).status_code == 404
        s.faults(None)
        assert httpx.get(url).status_code == 200 and s.jobs[job["id"]].served == 1
        assert s.stats.fault_log == [("output_404", "output", f"/outputs/{job['id']}.txt")]


def test_a_sync_job_that_never_finishes_is_let_go_when_the_server_stops():
    s = OpenAIServer(api_key=None, fault_rates={"never_finish": 1.0}).start()
    body = {"model": "allenai/Molmo2-4B", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": IMAGE}}, {"type": "text", "text": "Describe this image."}]}]}
    with httpx.Client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{s.base_url}/chat/completions", json=body)
    s.stop()  # wakes the handler waiting on the job (bounded: no thread left sleeping for ever)
    [job] = s.jobs.values()
    assert job.status == "running" and job.stop.is_set()


def test_command_line_serves_with_faults():
    listed = subprocess.run([sys.executable, "-m", "molmo_rag.testing.loopback", "--list-faults"], capture_output=True, text=True, check=True)
    assert all(name in listed.stdout for name in RATED_FAULTS)
    bad = subprocess.run([sys.executable, "-m", "molmo_rag.testing.loopback", "wavespeed", "--faults", "gremlins=0.1"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown fault" in bad.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "molmo_rag.testing.loopback", "wavespeed", "--faults", "submit_503=1", "--seed", "1", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        base = lines[0].strip().split("=", 1)[1]
        assert lines[2].startswith("faults: submit_503=1 (seed 1)")
        answer = httpx.post(f"{base}/api/v3/wavespeed-ai/molmo2/image-captioner", json={"image": IMAGE}, headers=AUTH, timeout=30)
        assert answer.status_code == 503
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "'submit_503': 1" in err and KEY not in err


# -- what the backends make of them ---------------------------------------------------------


def ws_backend(server, **options):
    return get_backend("wavespeed", base_url=server.base_url, api_key=KEY, **{**FAST, **options})


def one(backend, item=None):
    [outcome] = backend.run([Request(item or images(1)[0], Caption())])
    return outcome


def test_a_job_that_never_finishes_times_out_and_is_not_paid_twice():
    with WaveSpeedServer(api_key=KEY, fault_rates={"never_finish": 1.0}) as s:
        result = one(ws_backend(s, poll_timeout=0.3))
        assert isinstance(result, BackendTimeout) and result.code == "timeout" and result.retryable
        assert s.stats.jobs_created == 1


def test_an_output_url_that_404s_once_is_fetched_again():
    with WaveSpeedServer(api_key=KEY, output_mode="url") as s:
        s.inject("server_error", route="output", times=1, status=404, message="object not found")
        result = one(ws_backend(s))
        assert not isinstance(result, Exception), result
        assert s.stats.by_route["output"] == 2 and s.stats.jobs_created == 1


def test_an_output_url_that_keeps_404ing_fails_retryable():
    # the job is paid and stays journaled: a later run polls it and fetches again, no new job
    with WaveSpeedServer(api_key=KEY, output_mode="url", fault_rates={"output_404": 1.0}) as s:
        result = one(ws_backend(s, max_retries=2))
        assert isinstance(result, BackendError) and result.status == 404 and result.retryable
        assert s.stats.by_route["output"] == 3 and s.stats.jobs_created == 1


def test_an_unreadable_submission_answer_is_unconfirmed_not_resent():
    with WaveSpeedServer(api_key=KEY, fault_rates={"malformed_submit": 1.0}) as s:
        result = one(ws_backend(s))
        assert isinstance(result, ResponseFormatError)
        assert result.code == "submission_unconfirmed" and result.retryable
        assert s.stats.by_route["submit"] == 1 and s.stats.jobs_created == 1


def test_every_item_is_answered_or_fails_with_a_cause_under_all_faults():
    items = images(60)
    rates = {**ALL, "content_policy": 0.05}
    with WaveSpeedServer(api_key=KEY, output_mode="url", latency=0.02, fault_rates=rates, fault_seed=5) as s:
        s.faults(rates, seed=5, params={"rate_limit": {"retry_after": 0.02}, "slow_body": {"seconds": 0.05}})
        backend = ws_backend(s, poll_timeout=0.5, concurrency=8)
        outcomes = list(analyze(items, [Caption()], backend))
        assert len(outcomes) == len(items)
        failures = [o for o in outcomes if isinstance(o, Failure)]
        codes = Counter(f.error.code for f in failures)
        # 5xx, 429, resets (connection_error) and broken JSON (no code) only when a poll met
        # faults on every one of its attempts (rare, and which poll does depends on timing)
        expected = {"content_policy_violation", "submission_unconfirmed", "timeout", "upstream_failed", "503", "502", "429", "404", "connection_error", None}
        assert set(codes) <= expected, [f.to_json() for f in failures]
        mislabelled = [f.to_json() for f in failures if f.to_json()["retryable"] is (f.error.code == "content_policy_violation")]
        assert not mislabelled
        results = [o for o in outcomes if isinstance(o, Result)]
        assert sum(r.cost_usd for r in results) == pytest.approx(0.002 * len(results))
        # a completed job per answer; each completed job not used had its answer lost, or its
        # item gave up polling it (the poll timeout, or faults on every attempt of a poll:
        # on a loaded machine a job can finish after its item timed out)
        completed = [j for j in s.jobs.values() if j.status == "completed"]
        assert sum(1 for j in completed if j.served) == len(results)
        unexplained = [
            j for j in completed
            if not j.served and not j.lost and not any(p.endswith(f"/{j.id}.txt") for _, _, p in s.stats.fault_log)
        ]
        gave_up_polling = sum(codes[c] for c in ("timeout", "503", "502", "429", "404", "connection_error", None))
        assert len(unexplained) <= gave_up_polling, (len(unexplained), codes)
        assert json.dumps([f.to_json() for f in failures]).count(KEY) == 0


def test_polls_that_fail_on_every_attempt_leave_a_retryable_failure():
    # the job may be done and stays journaled: a later run polls it again
    with WaveSpeedServer(api_key=KEY, latency=0.05, fault_rates={"malformed": 1.0}) as s:
        result = one(ws_backend(s, max_retries=1))
        assert isinstance(result, ResponseFormatError) and result.retryable
    with WaveSpeedServer(api_key=KEY, latency=0.05) as s:
        s.inject("reset", route="poll", times=-1)
        result = one(ws_backend(s, max_retries=1))
        assert isinstance(result, BackendError) and result.code == "connection_error" and result.retryable
        assert s.stats.jobs_created == 1
