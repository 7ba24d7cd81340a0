"""OpenAIBackend against the loopback OpenAI-compatible (vLLM-like) server."""

from __future__ import annotations

import asyncio

import pytest
from rest_helpers import KEY, backend, images, png_sha, run, video_item

from molmo_rag.backends.base import Request
from molmo_rag.backends.openai import build_chat_body, parse_chat_completion
from molmo_rag.backends.rest import RestClient
from molmo_rag.errors import AuthenticationError, BackendError, ResponseFormatError
from molmo_rag.testing.loopback import OpenAIServer
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask


@pytest.fixture
def vllm():
    with OpenAIServer(api_key=None, latency=0.02) as server:
        yield server


def test_chat_body_and_parsing_are_pure():
    body = build_chat_body("m", "video", "data:video/mp4;base64,AA", "Describe.", 64)
    part = body["messages"][0]["content"][0]
    assert part == {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AA"}}
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "Describe."}
    assert body["max_tokens"] == 64 and body["temperature"] == 0
    text, usage, model = parse_chat_completion(
        {"model": "m", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    )
    assert (text, usage["total_tokens"], usage["finish_reason"], model) == ("hi", 4, "stop", "m")
    with pytest.raises(ResponseFormatError):
        parse_chat_completion({"choices": []})


def test_image_tasks_without_a_key(vllm):
    items = images(3)
    b = backend("openai", vllm)
    captions = run(b, items, Caption(detail="low"))
    for item, result in zip(items, captions):
        assert not isinstance(result, Exception), result
        assert png_sha(item) in result.text and result.cost_usd == 0.0 and result.model == "allenai/Molmo2-4B"
    for job in vllm.jobs.values():
        body = job.inputs
        assert body["max_tokens"] == Caption(detail="low").max_new_tokens() and body["temperature"] == 0
        assert body["messages"][0]["content"][0]["type"] == "image_url"
    [count] = run(b, items[:1], Count(target="cups"))
    assert count.fields["count"] == len(count.fields["points"]) >= 1
    [scene] = run(b, items[:1], Scene())
    assert "scene" in scene.fields["scene"]
    [ask] = run(b, items[:1], Ask(question="What colour?"))
    assert "What colour?" in ask.fields["answer"]


def test_usage_goes_into_meta(vllm):
    b = backend("openai", vllm)

    async def one_call():
        async with b.http_client() as http:
            return await b.call(Request(images(1)[0], Caption()), RestClient(b, http))

    answer = asyncio.run(one_call())
    assert answer.meta["prompt_tokens"] > 0 and answer.meta["finish_reason"] == "stop"
    assert answer.meta["total_tokens"] == answer.meta["prompt_tokens"] + answer.meta["completion_tokens"]


def test_video_goes_as_video_url_with_points_in_video_time(vllm):
    clip = video_item(start=5.0)
    [result] = run(backend("openai", vllm), [clip], VideoTask(task="counting", text="people"))
    assert not isinstance(result, Exception), result
    body = next(iter(vllm.jobs.values())).inputs
    assert body["messages"][0]["content"][0]["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert result.fields["count"] >= 1 and all(p["t"] >= 5.0 for p in result.fields["points"])


def test_key_and_model_are_configurable():
    with OpenAIServer(api_key=KEY, model="allenai/Molmo2-8B", latency=0.0) as server:
        [ok] = run(backend("openai", server, model="allenai/Molmo2-8B"), images(1), Caption())
        assert not isinstance(ok, Exception) and ok.model == "allenai/Molmo2-8B"
        [bad] = run(backend("openai", server, api_key="sk-nope-1234567"), images(1), Caption())
        assert isinstance(bad, AuthenticationError) and "sk-nope-1234567" not in str(bad)
        assert str(bad) == "openai: HTTP 401 (invalid_api_key): Incorrect API key provided."
        [missing] = run(backend("openai", server, model="allenai/Molmo2-4B"), images(1), Caption())
        assert isinstance(missing, BackendError) and missing.status == 404


def test_server_errors_dropped_and_unreadable_answers_are_resent(vllm):
    # A chat completion creates no job, so (like the official openai client) every
    # transient failure is sent again and the item still comes back.
    vllm.inject("server_error", route="chat", times=2, status=503)
    [ok] = run(backend("openai", vllm), images(1), Caption())
    assert not isinstance(ok, Exception) and vllm.stats.by_route["chat"] == 3
    vllm.reset_stats()
    vllm.inject("drop", route="chat", times=1)
    vllm.inject("malformed", route="chat", times=1)
    [resent] = run(backend("openai", vllm), images(1), Caption())
    assert not isinstance(resent, Exception), resent
    assert vllm.stats.by_route["chat"] == 3
