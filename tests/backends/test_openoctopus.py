"""OpenOctopusBackend against the loopback OpenOctopus server: requests, output shapes and
the retry rules of the OpenOctopus error table in docs/hosted-apis.md."""

from __future__ import annotations

import pytest
from rest_helpers import KEY, backend, images, png_sha, run, video_item

from molmo_rag.backends.openoctopus import ERROR_TABLE, MODEL, build_body, task_text
from molmo_rag.errors import AuthenticationError, BackendError, UnsupportedTaskError
from molmo_rag.testing.loopback import OpenOctopusServer
from molmo_rag.tasks import Ask, Caption, Count, Scene


@pytest.fixture
def oo():
    with OpenOctopusServer(api_key=KEY, latency=0.05) as server:
        yield server


def _bodies(server) -> list[dict]:
    return [job.inputs for job in server.jobs.values()]


def test_error_table_follows_the_seed():
    assert len(ERROR_TABLE) == 31
    retryable = {code for code, spec in ERROR_TABLE.items() if spec.retryable}
    assert {"provider_offline", "upstream_failed", "upstream_timeout", "internal_error", "api_key_touch_failed"} <= retryable
    assert not retryable & {"invalid_request", "insufficient_balance", "content_policy_violation", "model_billing_not_configured", "provider_pricing_not_configured", "task_not_found"}
    assert ERROR_TABLE["upstream_timeout"].http == 504 and ERROR_TABLE["insufficient_balance"].http == 402


def test_task_text_is_tolerant():
    assert task_text({"output_payload": {"assets": [{"type": "text", "text": "hi"}]}}) == "hi"
    assert task_text({"output_payload": {"assets": [{"type": "text", "url": "https://x/y.txt"}]}}) == "https://x/y.txt"
    assert task_text({"output_payload": {"assets": ["plain"]}}) == "plain"
    assert task_text({"output_payload": {"assets": [], "raw": {"outputs": ["from raw"]}}}) == "from raw"
    assert task_text({"output_payload": {"raw": {"outputs": "single"}}}) == "single"
    assert task_text({"output_payload": {"assets": []}}) is None
    assert build_body("p", "u", None) == {"model": MODEL, "prompt": "p", "input": {"image": "u"}}


@pytest.mark.parametrize("output_mode", ["asset_text", "asset_url", "raw"])
def test_captions_in_every_output_shape(output_mode):
    with OpenOctopusServer(api_key=KEY, latency=0.05, output_mode=output_mode) as server:
        items = images(3)
        results = run(backend("openoctopus", server), items, Caption(detail="high"))
        for item, result in zip(items, results):
            assert not isinstance(result, Exception), result
            assert png_sha(item) in result.text and "high detail" in result.text
            assert result.cost_usd == 0.002 and result.model == MODEL
        for body in _bodies(server):
            assert body["model"] == MODEL and body["prompt"] == Caption(detail="high").prompt("image")
            assert body["input"]["detail_level"] == "high"
            assert body["input"]["image"].startswith("data:image/png;base64,")
        assert server.stats.by_route["output"] == (3 if output_mode == "asset_url" else 0)


def test_prompt_driven_tasks_on_images(oo):
    item = images(1)[0]
    [count] = run(backend("openoctopus", oo), [item], Count(target="cups"))
    assert count.fields["count"] == len(count.fields["points"]) >= 1
    assert all(p["t"] is None and 0 < p["x"] < 1 for p in count.fields["points"])
    [ask] = run(backend("openoctopus", oo), [item], Ask(question="Is there a cup?"))
    assert "Is there a cup?" in ask.text
    [scene] = run(backend("openoctopus", oo), [item], Scene())
    assert scene.fields["scene"].startswith("The scene")
    assert all("detail_level" not in b["input"] for b in _bodies(oo))


def test_video_is_not_supported(oo):
    [result] = run(backend("openoctopus", oo), [video_item()], Caption())
    assert isinstance(result, UnsupportedTaskError) and "wavespeed" in str(result)


@pytest.mark.parametrize("code", ["provider_submit_failed", "queue_unavailable", "internal_error"])
def test_retryable_codes_on_submit_are_resent(oo, code):
    oo.inject("server_error", route="submit", times=2, code=code)
    b = backend("openoctopus", oo)
    [result] = run(b, images(1), Caption())
    assert not isinstance(result, Exception), result
    assert oo.stats.by_route["submit"] == 3 and oo.stats.jobs_created == 1


@pytest.mark.parametrize("code", ["insufficient_balance", "model_billing_not_configured", "content_policy_violation"])
def test_other_codes_on_submit_are_reported(oo, code):
    oo.inject("server_error", route="submit", times=1, code=code)
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert isinstance(result, BackendError) and not isinstance(result, AuthenticationError)
    assert result.code == code and result.status == ERROR_TABLE[code].http and not result.retryable
    assert ERROR_TABLE[code].message in str(result)
    assert oo.stats.by_route["submit"] == 1


def test_non_retryable_code_on_poll_is_not_retried(oo):
    oo.inject("server_error", route="poll", times=1, code="task_not_found")
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert isinstance(result, BackendError) and result.code == "task_not_found"
    assert oo.stats.by_route["poll"] == 1


def test_retryable_code_on_poll_is_retried(oo):
    oo.inject("server_error", route="poll", times=2, code="provider_poll_failed")
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert not isinstance(result, Exception), result


def test_failed_task_with_retryable_code_is_resubmitted(oo):
    oo.inject("fail_job", times=1, code="upstream_timeout")
    b = backend("openoctopus", oo)
    [result] = run(b, images(1), Caption())
    assert not isinstance(result, Exception), result
    assert oo.stats.jobs_created == 2 and b.last_stats.resubmits == 1


def test_failed_task_with_other_code_is_reported(oo):
    oo.inject("fail_job", times=1, code="content_policy_violation")
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert isinstance(result, BackendError) and result.code == "content_policy_violation"
    assert "safety policy" in str(result) and oo.stats.jobs_created == 1


def test_resubmissions_are_bounded(oo):
    oo.inject("fail_job", times=-1, code="upstream_failed")
    [result] = run(backend("openoctopus", oo, max_resubmits=2), images(1), Caption())
    assert isinstance(result, BackendError) and result.code == "upstream_failed" and result.retryable
    assert oo.stats.jobs_created == 3


def test_missing_and_wrong_keys(oo):
    [wrong] = run(backend("openoctopus", oo, api_key="ooq_wrong_key_1234"), images(1), Caption())
    assert isinstance(wrong, AuthenticationError) and wrong.code == "invalid_api_key"
    assert "ooq_wrong_key_1234" not in repr(wrong)
    # The vendor's message survives redaction intact (it once read "*** API key is invalid").
    assert str(wrong) == "openoctopus: HTTP 401 (invalid_api_key): The API key is invalid or inactive."


def test_poll_answer_without_status_is_fetched_again(oo):
    oo.inject("reply", route="poll", times=2, body={"id": "x", "queue": {"position": 1}})
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert not isinstance(result, Exception), result
    assert oo.stats.jobs_created == 1


def test_output_file_errors_name_the_output():
    with OpenOctopusServer(api_key=KEY, latency=0.05, output_mode="asset_url") as server:
        server.inject("reply", route="output", times=-1, status=404, body="gone")
        [result] = run(backend("openoctopus", server), images(1), Caption())
        assert isinstance(result, BackendError) and result.status == 404
        assert "fetching the output of task" in str(result) and server.stats.jobs_created == 1


def test_dropped_submit_is_not_resent(oo):
    oo.inject("drop", route="submit", times=1)
    [result] = run(backend("openoctopus", oo), images(1), Caption())
    assert isinstance(result, BackendError) and result.code == "submission_unconfirmed"
    assert oo.stats.by_route["submit"] == 1 and oo.stats.jobs_created == 1
