"""The loopback servers themselves, spoken to with plain httpx."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest

from molmo_rag.testing.loopback import OpenAIServer, OpenOctopusServer, WaveSpeedServer

KEY = "loop-key-123456"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_start_stop_and_context_manager():
    server = WaveSpeedServer(api_key=KEY).start()
    url = server.base_url
    assert httpx.get(f"{url}/api/v3/predictions/00/result", headers=AUTH).status_code == 404
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v3/predictions/00/result", headers=AUTH, timeout=1)
    with OpenAIServer(api_key=None) as vllm:
        assert vllm.base_url.endswith("/v1")
        assert httpx.get(f"{vllm.base_url}/models").json()["data"][0]["id"] == "allenai/Molmo2-4B"


def test_wavespeed_job_lifecycle_and_validation():
    with WaveSpeedServer(api_key=KEY, latency=0.2) as s:
        url = f"{s.base_url}/api/v3/wavespeed-ai/molmo2/image-captioner"
        assert httpx.post(url, json={"detail_level": "low"}, headers=AUTH).status_code == 400
        assert httpx.post(url, json={"image": "https://e.com/a.jpg", "detail_level": "max"}, headers=AUTH).status_code == 400
        assert httpx.post(f"{s.base_url}/api/v3/wavespeed-ai/molmo2/nope", json={}, headers=AUTH).status_code == 404
        unauth = httpx.post(url, json={"image": "x"})
        assert unauth.status_code == 401 and unauth.json()["code"] == 401
        data = httpx.post(url, json={"image": "https://e.com/a.jpg"}, headers=AUTH).json()["data"]
        assert data["status"] == "created" and data["outputs"] == []
        result_url = data["urls"]["get"]
        s.jobs[data["id"]].latency = 0.0
        done = httpx.get(result_url, headers=AUTH).json()["data"]
        assert done["status"] == "completed" and done["outputs"][0].startswith("A ")
        assert s.stats.jobs_created == 1 and s.stats.unauthorized == 1


def test_faults_are_consumed_per_route():
    with WaveSpeedServer(api_key=KEY) as s:
        s.inject("rate_limit", route="poll", times=1, retry_after=2)
        s.inject("server_error", route="poll", times=1, status=502)
        s.inject("malformed", route="poll", times=1)
        s.inject("drop", route="poll", times=1)
        url = f"{s.base_url}/api/v3/predictions/abc/result"
        limited = httpx.get(url, headers=AUTH)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert httpx.get(url, headers=AUTH).status_code == 502
        with pytest.raises(ValueError):
            httpx.get(url, headers=AUTH).json()
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url, headers=AUTH)
        assert httpx.get(url, headers=AUTH).status_code == 404  # faults used up
        assert sum(s.stats.faults_applied.values()) == 4
        with pytest.raises(ValueError):
            s.inject("gremlins")


def test_in_flight_is_counted():
    with OpenAIServer(api_key=None, latency=0.2) as s:
        body = {"model": "allenai/Molmo2-4B", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://e.com/a.jpg"}}, {"type": "text", "text": "Describe this image."}]}]}
        threads = [threading.Thread(target=httpx.post, args=(f"{s.base_url}/chat/completions",), kwargs={"json": body}) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.stats.max_in_flight == 3 and s.stats.by_route["chat"] == 3


def test_openoctopus_errors_follow_the_gateway_shape():
    with OpenOctopusServer(api_key=KEY) as s:
        url = f"{s.base_url}/v1/images/recognitions"
        assert httpx.post(url, json={}).json()["error"]["code"] == "unauthorized"
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}).json()["error"]["code"] == "invalid_api_key"
        wrong_model = httpx.post(url, json={"model": "x", "prompt": "p", "input": {"image": "u"}}, headers=AUTH)
        assert wrong_model.status_code == 404 and wrong_model.json()["error"]["code"] == "model_not_available"
        s.inject("server_error", route="submit", code="upstream_timeout")
        timed_out = httpx.post(url, json={}, headers=AUTH)
        assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "upstream_timeout"
        missing = httpx.get(f"{s.base_url}/v1/tasks/0123", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"


def test_command_line_help():
    out = subprocess.run([sys.executable, "-m", "molmo_rag.testing.loopback", "--help"], capture_output=True, text=True, check=True)
    assert "wavespeed" in out.stdout and "--latency" in out.stdout
