"""The shared HTTP client of REST backends (``RestClient``) against real HTTP servers on
127.0.0.1: concurrency, retries, Retry-After, no duplicate submissions, timeouts, error translation, key hygiene."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from rest_helpers import FAST, KEY, backend, images, run

from molmo_rag.backends.base import Request, get_backend
from molmo_rag.backends.rest import RestClient, data_uri, error_code_and_message, is_http_url, parse_retry_after
from molmo_rag.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    ConfigurationError,
    RateLimitError,
    ResponseFormatError,
)
from molmo_rag.testing.loopback import OpenOctopusServer, WaveSpeedServer
from molmo_rag.tasks import Caption

CAPTION = Caption(detail="medium")


@pytest.fixture
def ws():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        yield server


# -- pure helpers ----------------------------------------------------------------------------


def test_parse_retry_after_seconds_and_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_error_code_and_message_reads_each_vendor_shape():
    assert error_code_and_message({"error": {"code": "upstream_failed", "message": "m"}}) == ("upstream_failed", "m")
    assert error_code_and_message({"error": {"type": "BadRequestError", "message": "m"}}) == ("BadRequestError", "m")
    assert error_code_and_message({"code": 401, "message": "Unauthorized", "data": None}) == ("401", "Unauthorized")
    assert error_code_and_message({"error": "plain"}) == (None, "plain")
    assert error_code_and_message("not json") == (None, None)


def test_data_uri_and_url_detection():
    assert data_uri(b"abc", "image/png") == "data:image/png;base64,YWJj"
    assert is_http_url("https://x.y/z.txt") and is_http_url("http://127.0.0.1:1/a")
    assert not is_http_url("A caption mentioning https://x.y") and not is_http_url("data:x")


# -- concurrency -----------------------------------------------------------------------------


def test_concurrency_bound_is_respected(ws):
    ws.inject("slow", times=-1, delay=0.03)
    b = backend("wavespeed", ws, concurrency=3)
    results = run(b, images(12), CAPTION)
    assert all(not isinstance(r, Exception) for r in results)
    assert ws.stats.max_in_flight <= 3
    assert ws.stats.max_in_flight >= 2  # it did run in parallel


def test_max_jobs_bounds_jobs_in_flight():
    with WaveSpeedServer(api_key=KEY, latency=0.15) as server:
        b = backend("wavespeed", server, max_jobs=2)
        results = run(b, images(4), CAPTION)
        assert all(not isinstance(r, Exception) for r in results)
        created = sorted(job.created for job in server.jobs.values())
        # The third job could only be submitted once one of the first two had finished.
        assert created[2] - created[0] >= 0.15


def test_each_item_gets_its_own_answer(ws):
    items = images(6)
    results = run(backend("wavespeed", ws), items, CAPTION)
    texts = [r.text for r in results]
    assert len(set(texts)) == 6
    for item, text in zip(items, texts):
        assert f"{item.width}x{item.height}" in text


# -- retries ---------------------------------------------------------------------------------


def test_429_retry_after_is_honoured_and_post_resent(ws):
    ws.inject("rate_limit", route="submit", times=2, retry_after=0.05)
    b = backend("wavespeed", ws)
    [result] = run(b, images(1), CAPTION)
    assert not isinstance(result, Exception), result
    assert ws.stats.by_route["submit"] == 3  # a 429 means "not accepted": re-sending is safe
    assert ws.stats.jobs_created == 1
    assert b.last_stats.retries == 2


def test_429_that_never_ends_is_a_rate_limit_error(ws):
    ws.inject("rate_limit", route="submit", times=-1, retry_after=0.01)
    [result] = run(backend("wavespeed", ws, max_retries=2), images(1), CAPTION)
    assert isinstance(result, RateLimitError)
    assert result.status == 429 and result.retry_after == pytest.approx(0.01)
    assert ws.stats.by_route["submit"] == 3 and ws.stats.jobs_created == 0


def test_retry_after_longer_than_allowed_fails_fast(ws):
    ws.inject("rate_limit", route="submit", times=-1, retry_after=3600)
    [result] = run(backend("wavespeed", ws, max_retry_after=5), images(1), CAPTION)
    assert isinstance(result, RateLimitError) and result.retry_after == 3600
    assert ws.stats.by_route["submit"] == 1
    assert "Retry-After 3600 s is longer than max_retry_after 5 s" in str(result)


def test_5xx_burst_on_polls_is_retried(ws):
    ws.inject("server_error", route="poll", times=3, status=502)
    b = backend("wavespeed", ws)
    [result] = run(b, images(1), CAPTION)
    assert not isinstance(result, Exception), result
    assert ws.stats.jobs_created == 1 and b.last_stats.retries >= 3


def test_5xx_on_submit_is_not_resent(ws):
    ws.inject("server_error", route="submit", times=1, status=500)
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert isinstance(result, BackendError) and result.status == 500 and result.retryable
    assert ws.stats.by_route["submit"] == 1


def test_503_on_submit_is_resent(ws):
    # 503 says the server did not handle the request: no job exists, so sending it again is safe.
    ws.inject("server_error", route="submit", times=2, status=503)
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert not isinstance(result, Exception), result
    assert ws.stats.by_route["submit"] == 3 and ws.stats.jobs_created == 1


def test_html_error_page_is_summarised(ws):
    page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502</h1><hr>nginx</body></html>"
    ws.inject("reply", route="submit", times=1, status=502, body=page, content_type="text/html")
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert isinstance(result, BackendError) and result.status == 502
    assert str(result) == "wavespeed: HTTP 502: 502 Bad Gateway"


def test_poll_answers_of_the_wrong_shape_are_fetched_again(ws):
    ws.inject("reply", route="poll", times=1, body={"code": 200, "message": "success"})
    ws.inject("reply", route="poll", times=1, body={"code": 500, "message": "internal error", "data": None})
    b = backend("wavespeed", ws)
    [result] = run(b, images(1), CAPTION)
    assert not isinstance(result, Exception), result
    assert ws.stats.jobs_created == 1 and b.last_stats.retries >= 2


def test_dropped_post_is_never_submitted_twice(ws):
    ws.inject("drop", route="submit", times=1)
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert isinstance(result, BackendError)
    assert result.code == "submission_unconfirmed"
    assert ws.stats.by_route["submit"] == 1
    assert ws.stats.jobs_created == 1  # the server did accept it: a re-send would duplicate it


def test_read_timeout_on_post_is_not_resent(ws):
    ws.inject("slow", route="submit", times=1, delay=0.6)
    [result] = run(backend("wavespeed", ws, request_timeout=0.2), images(1), CAPTION)
    assert isinstance(result, BackendError) and result.code == "submission_unconfirmed"
    assert ws.stats.by_route["submit"] == 1


def test_dropped_and_slow_polls_are_retried(ws):
    ws.inject("drop", route="poll", times=1)
    ws.inject("slow", route="poll", times=1, delay=0.5)
    [result] = run(backend("wavespeed", ws, request_timeout=0.2), images(1), CAPTION)
    assert not isinstance(result, Exception), result
    assert ws.stats.jobs_created == 1


def test_connect_errors_are_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = get_backend("wavespeed", api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=2, **FAST)
    [result] = run(b, images(1), CAPTION)
    assert isinstance(result, BackendError) and result.code == "connection_error" and result.retryable
    assert b.last_stats.requests == 3  # nothing was sent, so the POST could be tried again


# -- malformed bodies ------------------------------------------------------------------------


def test_malformed_poll_body_is_retried(ws):
    ws.inject("malformed", route="poll", times=1)
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert not isinstance(result, Exception), result


def test_malformed_submit_body_is_a_format_error_and_not_resent(ws):
    ws.inject("malformed", route="submit", times=1)
    [result] = run(backend("wavespeed", ws), images(1), CAPTION)
    assert isinstance(result, ResponseFormatError)
    assert ws.stats.by_route["submit"] == 1


def test_persistently_malformed_polls_give_a_format_error(ws):
    ws.inject("malformed", route="poll", times=-1)
    [result] = run(backend("wavespeed", ws, max_retries=1), images(1), CAPTION)
    assert isinstance(result, ResponseFormatError)
    assert isinstance(result.__cause__, ValueError)


# -- timeouts --------------------------------------------------------------------------------


def test_poll_timeout_is_a_backend_timeout(ws):
    ws.inject("slow_job", times=1, latency=30)
    [result] = run(backend("wavespeed", ws, poll_timeout=0.3), images(1), CAPTION)
    assert isinstance(result, BackendTimeout) and result.code == "timeout"


def test_overall_item_timeout(ws):
    ws.inject("slow", route="poll", times=-1, delay=0.3)
    [result] = run(backend("wavespeed", ws, timeout=0.25), images(1), CAPTION)
    assert isinstance(result, BackendTimeout)


def test_one_bad_item_does_not_sink_the_batch(ws):
    ws.inject("fail_job", times=1, error="content rejected")
    results = run(backend("wavespeed", ws), images(4), CAPTION)
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], BackendError)
    assert "content rejected" in str(failures[0])


# -- keys ------------------------------------------------------------------------------------


def test_wrong_key_is_an_authentication_error(ws):
    b = backend("wavespeed", ws, api_key="sk-WRONG-key-987654321")
    [result] = run(b, images(1), CAPTION)
    assert isinstance(result, AuthenticationError) and result.status == 401
    assert "sk-WRONG-key-987654321" not in str(result)


def test_refused_key_is_not_sent_again_in_the_same_run(ws):
    b = backend("wavespeed", ws, api_key="sk-WRONG-key-987654321", concurrency=1)
    results = run(b, images(5), CAPTION)
    assert all(isinstance(r, AuthenticationError) and r.status == 401 for r in results)
    assert ws.stats.unauthorized == 1  # one refusal is enough to know
    assert "invalid or missing API key" in str(results[-1]) and "not sent" in str(results[-1])


def test_base_url_must_be_an_http_url(monkeypatch):
    with pytest.raises(ConfigurationError, match="not an http"):
        get_backend("wavespeed", api_key=KEY, base_url="api.wavespeed.ai")
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8000/v1")
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        get_backend("openai")


def test_keys_never_leak(ws, caplog):
    caplog.set_level(logging.DEBUG)
    ws.inject("rate_limit", route="submit", times=1, retry_after=0.01)
    ws.inject("server_error", route="poll", times=1, message=f"upstream said Bearer {KEY}")
    ws.inject("drop", route="submit", times=1)
    b = backend("wavespeed", ws, max_retries=2)
    results = run(b, images(3), CAPTION)
    wrong = backend("wavespeed", ws, api_key=KEY + "x")
    results += run(wrong, images(1), CAPTION)
    with pytest.raises(ConfigurationError) as bad_option:
        get_backend("wavespeed", api_key=KEY, base_url=ws.base_url, concurrency=0)
    texts = [repr(b), str(b), repr(b.options), repr(wrong), str(bad_option.value), caplog.text]
    for r in results:
        texts.append(repr(r))
        err, seen = (r if isinstance(r, BaseException) else None), set()
        while err is not None and id(err) not in seen:
            seen.add(id(err))
            texts += [str(err), repr(err)]
            err = err.__cause__ or err.__context__
    assert any(isinstance(r, Exception) for r in results)
    for text in texts:
        assert KEY not in text


def test_key_is_sent_only_to_the_backend_origin():
    b = get_backend("wavespeed", api_key=KEY, base_url="http://127.0.0.1:9/")
    client = RestClient(b, httpx.AsyncClient())
    assert client._auth_headers("http://127.0.0.1:9/api/v3/x") == {"Authorization": f"Bearer {KEY}"}
    assert client._auth_headers("https://cdn.example.com/output.txt") == {}
    assert client._auth_headers("http://127.0.0.1:10/api") == {}


def test_missing_key_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    monkeypatch.delenv("OPENOCTOPUS_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="WAVESPEED_API_KEY"):
        get_backend("wavespeed")
    with pytest.raises(ConfigurationError, match="OPENOCTOPUS_API_KEY"):
        get_backend("openoctopus")


def test_environment_configures_key_and_url(monkeypatch, ws):
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", ws.base_url)
    b = get_backend("wavespeed", **FAST)
    assert b.base_url == ws.base_url
    [result] = run(b, images(1), CAPTION)
    assert not isinstance(result, Exception), result


def test_lead_constructor_keywords(ws):
    b = get_backend("wavespeed", model=None, api_key=KEY, base_url=ws.base_url, concurrency=4)
    assert b.options.concurrency == 4 and b.model == "wavespeed-ai/molmo2"
    with OpenOctopusServer(api_key=KEY) as oo:
        b2 = get_backend("openoctopus", model=None, api_key=KEY, base_url=oo.base_url, concurrency=2)
        assert b2.options.poll_interval == 1.8 and b2.options.poll_timeout == 180


def test_sync_api_works_inside_a_running_loop(ws):
    import asyncio

    async def inside():
        return backend("wavespeed", ws).run([Request(images(1)[0], CAPTION)])

    [result] = asyncio.run(inside())
    assert not isinstance(result, Exception), result
