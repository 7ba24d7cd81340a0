"""Failed jobs and account errors (issue 12), against the loopback servers over real HTTP:
transient failures are submitted anew (bounded, cost counted once), permanent ones are not,
the failure JSON says which (``error_code``, ``retryable``), and a refused key or an empty
balance ends the run with one error instead of failing every item."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from molmo_rag.analyze import analyze
from molmo_rag.backends.base import Request, get_backend
from molmo_rag.backends.rest import InsufficientBalanceError, JobFailedError
from molmo_rag.backends.wavespeed import classify_failure, parse_prediction
from molmo_rag.errors import AuthenticationError, BackendError, MolmoRagError
from molmo_rag.media.items import MediaItem
from molmo_rag.results import Failure, Result
from molmo_rag.tasks import Caption
from molmo_rag.testing import OpenOctopusServer, WaveSpeedServer

KEY = "sk-live-RELIABILITY-0123456789"
FAST = dict(poll_interval=0.02, poll_max_interval=0.05, retry_wait=0.01, retry_wait_max=0.02)
BALANCE = {"code": 402, "message": "Insufficient balance: please top up your account", "data": None}


def images(n: int) -> list[MediaItem]:
    return [MediaItem.from_pil(Image.new("RGB", (30 + i, 20 + i), (50 * i % 256, 120, 90))) for i in range(n)]


def photos(folder, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.png"
        Image.new("RGB", (30 + i, 20 + i), ((41 * i) % 256, 100, 200 - 7 * i)).save(path)
        paths.append(str(path))
    return paths


def rest(name: str, server, **options):
    return get_backend(name, base_url=server.base_url, api_key=options.pop("api_key", KEY), **{**FAST, **options})


def one(backend, item=None):
    [outcome] = backend.run([Request(item or images(1)[0], Caption())])
    return outcome


def run_analyze(sources, backend) -> tuple[list, BaseException | None]:
    """Every outcome analyze hands out before it ends, and the error it ended with."""
    outcomes: list = []
    try:
        for outcome in analyze(sources, [Caption()], backend):
            outcomes.append(outcome)
    except MolmoRagError as exc:
        return outcomes, exc
    return outcomes, None


# -- reading WaveSpeed failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "retryable"),
    [
        ("upstream_failed: provider error, please retry", "upstream_failed", True),
        ("HTTP 503: upstream busy", "upstream_failed", True),
        ("HTTP 429: too many requests upstream", "rate_limited", True),
        ("inference timed out", "upstream_timeout", True),
        ("model overloaded, try again later", "upstream_failed", True),
        ("something nobody expected", "prediction_failed", True),  # unknown: refunded, so retried (bounded)
        (None, "prediction_failed", True),
        ("content_policy_violation: rejected by the safety filter", "content_policy_violation", False),
        ("NSFW content detected in the input", "content_policy_violation", False),
        ("content rejected", "content_policy_violation", False),
        ("image could not be decoded", "invalid_input", False),
        ("Unsupported video format", "invalid_input", False),
        ("invalid_input: detail_level must be low, medium or high", "invalid_input", False),
        ("Video duration exceeds the maximum of 120 seconds", "input_too_large", False),
        ("image too large", "input_too_large", False),
        ("Unauthorized: invalid API key", "unauthorized", False),
    ],
)
def test_wavespeed_failure_messages_are_classified(message, code, retryable):
    found = classify_failure(message)
    assert (found.code, found.retryable, found.fatal) == (code, retryable, False)


@pytest.mark.parametrize("message", ["Insufficient balance", "insufficient credits to run this model", "insufficient_balance: top up"])
def test_a_balance_failure_is_permanent_and_fatal(message):
    found = classify_failure(message)
    assert found.code == "insufficient_balance" and not found.retryable and found.fatal


def test_error_envelopes_inside_http_200_are_typed():
    with pytest.raises(InsufficientBalanceError) as balance:
        parse_prediction(BALANCE)
    assert balance.value.code == "insufficient_balance" and balance.value.fatal and not balance.value.retryable
    with pytest.raises(AuthenticationError):
        parse_prediction({"code": 401, "message": "Unauthorized", "data": None})


# -- WaveSpeed: submitted anew, or not ---------------------------------------------------------


def test_transient_failures_are_resubmitted_until_one_completes_and_cost_counts_once():
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=2, error="upstream_failed: provider error, please retry")
        backend = rest("wavespeed", server, max_resubmits=3)
        result = one(backend)
        assert isinstance(result, Result), result
        assert server.stats.jobs_created == 3 and server.stats.by_route["submit"] == 3
        assert backend.last_stats.resubmits == 2
        assert result.cost_usd == pytest.approx(0.002)  # the two failed jobs cost nothing


def test_unknown_failures_are_resubmitted_a_bounded_number_of_times():
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=-1, error="something nobody expected")
        result = one(rest("wavespeed", server, max_resubmits=2))
        assert isinstance(result, JobFailedError) and result.code == "prediction_failed" and result.retryable
        assert server.stats.jobs_created == 3


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("content_policy_violation: rejected by the safety filter", "content_policy_violation"),
        ("NSFW content detected", "content_policy_violation"),
        ("invalid_input: image could not be decoded", "invalid_input"),
        ("video too long for this model", "input_too_large"),
    ],
)
def test_permanent_failures_are_submitted_once(message, code):
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=-1, error=message)
        backend = rest("wavespeed", server, max_resubmits=3)
        result = one(backend)
        assert isinstance(result, JobFailedError) and result.code == code and not result.retryable
        assert server.stats.jobs_created == 1 and backend.last_stats.resubmits == 0


def test_failure_json_carries_the_code_and_whether_to_retry(tmp_path):
    paths = photos(tmp_path / "in", 3)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        # the first job is refused for good; the next ones keep failing upstream
        server.inject("fail_job", times=1, error="content_policy_violation: rejected by the safety filter")
        server.inject("fail_job", times=-1, error="upstream_failed: provider error, please retry")
        backend = rest("wavespeed", server, concurrency=1, max_resubmits=1)
        outcomes, error = run_analyze(paths, backend)
    assert error is None and all(isinstance(o, Failure) for o in outcomes)
    lines = [json.loads(json.dumps(o.to_json())) for o in outcomes]
    assert lines[0]["error_code"] == "content_policy_violation" and lines[0]["retryable"] is False
    assert all(line["error_code"] == "upstream_failed" and line["retryable"] is True for line in lines[1:])
    assert all(line["error_type"] == "JobFailedError" and "cost_usd" not in line for line in lines)
    assert server.stats.jobs_created == 1 + 2 * 2  # one try for the refused item, two for each other
    assert KEY not in json.dumps(lines)


# -- OpenOctopus: the error table decides --------------------------------------------------------


def test_openoctopus_retryable_failed_task_is_resubmitted_and_cost_counts_once():
    with OpenOctopusServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=2, code="provider_poll_failed")
        backend = rest("openoctopus", server, max_resubmits=2)
        result = one(backend)
        assert isinstance(result, Result), result
        assert server.stats.jobs_created == 3 and result.cost_usd == pytest.approx(0.002)


def test_openoctopus_failure_json(tmp_path):
    paths = photos(tmp_path / "in", 2)
    with OpenOctopusServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=1, code="content_policy_violation")
        server.inject("fail_job", times=-1, code="upstream_timeout")
        outcomes, error = run_analyze(paths, rest("openoctopus", server, concurrency=1, max_resubmits=1))
    assert error is None
    lines = [o.to_json() for o in outcomes]
    assert (lines[0]["error_code"], lines[0]["retryable"]) == ("content_policy_violation", False)
    assert (lines[1]["error_code"], lines[1]["retryable"]) == ("upstream_timeout", True)
    assert server.stats.jobs_created == 1 + 2


# -- account errors end the run ------------------------------------------------------------------


def test_refused_key_ends_the_run_with_one_error(tmp_path):
    paths = photos(tmp_path / "in", 6)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        outcomes, error = run_analyze(paths, rest("wavespeed", server, api_key="sk-WRONG-key-55555555", concurrency=1))
    assert outcomes == []  # no item fails on its own: the run fails once
    assert isinstance(error, AuthenticationError) and error.status == 401 and error.fatal
    assert error.not_done + error.not_read == 6  # read and not sent, or never read
    assert f"run stopped: {error.not_done} item(s) not done" in str(error)
    assert server.stats.unauthorized == 1 and server.stats.jobs_created == 0
    assert "sk-WRONG-key-55555555" not in str(error)


def test_empty_balance_ends_the_run_and_running_jobs_still_finish(tmp_path):
    paths = photos(tmp_path / "in", 8)
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        server.inject("slow", route="submit", times=2, delay=0)  # the first two submissions go through
        server.inject("reply", route="submit", times=-1, status=402, body=BALANCE)
        backend = rest("wavespeed", server, concurrency=4)
        outcomes, error = run_analyze(paths, backend)
    # the two accepted jobs were polled to the end after the balance ran out
    assert len(outcomes) == 2 and all(isinstance(o, Result) for o in outcomes)
    assert sum(o.cost_usd for o in outcomes) == pytest.approx(2 * 0.002)
    assert isinstance(error, InsufficientBalanceError) and error.status == 402 and error.fatal
    assert error.code == "insufficient_balance" and error.not_done + error.not_read == 6
    assert str(error).startswith("wavespeed: HTTP 402: Insufficient balance")
    # every refused submission was one the window had already started; none came after
    refused = server.stats.by_route["submit"] - 2
    assert 1 <= refused <= 4 and server.stats.jobs_created == 2


def test_openoctopus_balance_error_ends_the_run(tmp_path):
    paths = photos(tmp_path / "in", 5)
    with OpenOctopusServer(api_key=KEY, latency=0.02) as server:
        server.inject("server_error", route="submit", times=-1, status=402, code="insufficient_balance")
        outcomes, error = run_analyze(paths, rest("openoctopus", server, concurrency=1))
    assert outcomes == [] and isinstance(error, InsufficientBalanceError) and error.not_done + error.not_read == 5
    assert "wallet balance is insufficient" in str(error)
    assert server.stats.by_route["submit"] == 1


def test_a_job_failed_for_lack_of_balance_ends_the_run(tmp_path):
    paths = photos(tmp_path / "in", 4)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("fail_job", times=-1, error="insufficient credits to run this model")
        outcomes, error = run_analyze(paths, rest("wavespeed", server, concurrency=1, max_resubmits=3))
    assert outcomes == [] and isinstance(error, JobFailedError) and error.fatal
    assert error.code == "insufficient_balance" and error.not_done + error.not_read == 4
    assert server.stats.jobs_created == 1  # not resubmitted, and nothing else submitted


def test_an_error_envelope_inside_an_http_200_ends_the_run_redacted(tmp_path):
    paths = photos(tmp_path / "in", 3)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        body = {"code": 401, "message": f"Unauthorized: key {KEY} is not valid", "data": None}
        server.inject("reply", route="submit", times=-1, status=200, body=body)
        outcomes, error = run_analyze(paths, rest("wavespeed", server, concurrency=1))
    assert outcomes == [] and isinstance(error, AuthenticationError) and error.fatal and error.status == 401
    assert KEY not in str(error) and "***" in str(error)
    assert server.stats.by_route["submit"] == 1


def test_errors_of_one_item_do_not_end_the_run(tmp_path):
    paths = photos(tmp_path / "in", 3)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("reply", route="submit", times=1, status=400, body={"code": 400, "message": "image is required", "data": None})
        outcomes, error = run_analyze(paths, rest("wavespeed", server, concurrency=1))
    assert error is None and len(outcomes) == 3
    assert sum(isinstance(o, Failure) for o in outcomes) == 1


def test_index_ends_on_a_refused_key_with_one_error(tmp_path):
    from molmo_rag import pipeline

    paths = photos(tmp_path / "in", 4)
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        backend = rest("wavespeed", server, api_key="sk-WRONG-key-66666666", concurrency=1)
        with pytest.raises(AuthenticationError) as refused:
            pipeline.index(paths, backend=backend, db=tmp_path / "db", cache=tmp_path / "cache", progress=False)
    assert refused.value.not_done + refused.value.not_read == 4 and "run stopped: " in str(refused.value)
    assert server.stats.unauthorized == 1


def test_balance_errors_are_not_authentication_errors():
    with WaveSpeedServer(api_key=KEY, latency=0.02) as server:
        server.inject("reply", route="submit", times=-1, status=402, body=BALANCE)
        backend = rest("wavespeed", server, concurrency=1)
        results = backend.run([Request(item, Caption()) for item in images(3)])
    assert all(isinstance(r, InsufficientBalanceError) and not isinstance(r, AuthenticationError) for r in results)
    assert isinstance(results[0], BackendError) and results[0].status == 402
    assert "not sent" in str(results[-1]) and server.stats.by_route["submit"] == 1
