"""WaveSpeedBackend against the loopback WaveSpeed server, and that server against the
official ``wavespeed`` SDK (so the server is known to speak the real protocol)."""

from __future__ import annotations

import hashlib

import pytest
from rest_helpers import KEY, backend, images, png_sha, run, video_item

from molmo_rag.backends.wavespeed import endpoint_for, parse_prediction
from molmo_rag.errors import BackendError, MediaTooLargeError, ResponseFormatError, UnsupportedTaskError
from molmo_rag.testing.loopback import WaveSpeedServer
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask


@pytest.fixture
def ws():
    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        yield server


def _inputs(server) -> list[dict]:
    return [job.inputs for job in server.jobs.values()]


# -- pure mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "media", "expected"),
    [
        (Caption(detail="high"), "image", ("image-captioner", "image", {"detail_level": "high"})),
        (Caption(detail="low"), "video", ("video-captioner", "video", {"detail_level": "low"})),
        (VideoTask(task="summary"), "video", ("video-understanding", "video", {"task": "summary"})),
        (VideoTask(task="analysis", text="focus on cars"), "video", ("video-understanding", "video", {"task": "analysis", "text": "focus on cars"})),
        (Count(target="people"), "video", ("video-understanding", "video", {"task": "counting", "text": "people"})),
        (Scene(), "video", ("video-understanding", "video", {"task": "scene_description"})),
        (Ask(question="Who waves?"), "video", ("video-understanding", "video", {"task": "general", "text": "Who waves?"})),
    ],
)
def test_endpoint_mapping(task, media, expected):
    assert endpoint_for(task, media) == expected


def test_parse_prediction_rejects_bad_envelopes():
    with pytest.raises(ResponseFormatError):
        parse_prediction({"code": 200, "message": "ok"})
    with pytest.raises(ResponseFormatError):
        parse_prediction({"code": 200, "data": {"status": "completed"}})
    with pytest.raises(BackendError, match="code 400"):
        parse_prediction({"code": 400, "message": "bad", "data": {}})
    p = parse_prediction({"code": 200, "data": {"id": "a1", "status": "completed", "outputs": ["hi"], "timings": {"inference": 12}}})
    assert (p.id, p.done, p.outputs, p.inference_ms) == ("a1", True, ["hi"], 12)


# -- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("output_mode", ["text", "url"])
def test_image_captions_text_or_url_outputs(output_mode):
    with WaveSpeedServer(api_key=KEY, latency=0.05, output_mode=output_mode) as server:
        items = images(3)
        results = run(backend("wavespeed", server), items, Caption(detail="high"))
        for item, result in zip(items, results):
            assert not isinstance(result, Exception), result
            assert png_sha(item) in result.text and "high detail" in result.text
            assert result.fields["caption"] == result.text and result.fields["detail"] == "high"
            assert result.cost_usd == 0.002 and result.model == "wavespeed-ai/molmo2/image-captioner"
        assert server.stats.by_route["output"] == (3 if output_mode == "url" else 0)
        assert {i["detail_level"] for i in _inputs(server)} == {"high"}
        assert all(i["image"].startswith("data:image/png;base64,") for i in _inputs(server))


def test_output_file_errors_name_the_prediction():
    with WaveSpeedServer(api_key=KEY, latency=0.05, output_mode="url") as server:
        server.inject("reply", route="output", times=-1, status=404, body="<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        [result] = run(backend("wavespeed", server), images(1), Caption())
        assert isinstance(result, BackendError) and result.status == 404
        assert str(result).startswith("wavespeed: fetching the output of prediction ")
        assert str(result).endswith(": HTTP 404: <Error><Code>NoSuchKey</Code></Error>")


def test_error_messages_do_not_repeat_the_status(ws):
    [wrong] = run(backend("wavespeed", ws, api_key="sk-other-key-1234"), images(1), Caption())
    assert str(wrong) == "wavespeed: HTTP 401: Unauthorized: invalid or missing API key"


def test_large_media_is_uploaded_like_the_sdk(ws):
    items = images(2)
    results = run(backend("wavespeed", ws, inline_max_bytes=0), items, Caption())
    for item, result in zip(items, results):
        assert png_sha(item) in result.text  # the uploaded bytes are what the model saw
    assert ws.stats.by_route["upload"] == 2 and ws.stats.by_route["put"] == 2
    assert all(i["image"].startswith(ws.root_url + "/media/") for i in _inputs(ws))


def test_remote_url_is_passed_through(ws):
    item = images(1)[0]
    item.remote_url = "https://example.com/cat.jpg"
    [result] = run(backend("wavespeed", ws), [item], Caption())
    assert not isinstance(result, Exception), result
    assert _inputs(ws)[0]["image"] == "https://example.com/cat.jpg"
    assert hashlib.sha256(b"https://example.com/cat.jpg").hexdigest()[:12] in result.text


def test_sync_mode_is_one_request_per_job(ws):
    results = run(backend("wavespeed", ws, enable_sync_mode=True), images(3), Caption())
    assert all(not isinstance(r, Exception) for r in results)
    assert ws.stats.requests == 3 and ws.stats.by_route["poll"] == 0
    assert all(i["enable_sync_mode"] is True for i in _inputs(ws))


def test_count_on_images_is_not_supported_and_names_capable_backends(ws):
    [result] = run(backend("wavespeed", ws), images(1), Count(target="cups"))
    assert isinstance(result, UnsupportedTaskError)
    assert "openoctopus" in str(result) and "wavespeed" not in result.capable
    assert ws.stats.requests == 0


# -- video -----------------------------------------------------------------------------------


def test_video_caption_uploads_the_clip(ws):
    clip = video_item(start=10.0)
    [result] = run(backend("wavespeed", ws, inline_max_bytes=1000), [clip], Caption(detail="low"))
    assert not isinstance(result, Exception), result
    assert hashlib.sha256(clip.clip()[0]).hexdigest()[:12] in result.text
    assert result.cost_usd == 0.005 and result.model == "wavespeed-ai/molmo2/video-captioner"
    assert ws.stats.by_route["put"] == 1


def test_video_counting_points_are_in_video_time(ws):
    clip = video_item(start=10.0, seed=1)
    [result] = run(backend("wavespeed", ws), [clip], Count(target="people"))
    assert not isinstance(result, Exception), result
    inputs = _inputs(ws)[0]
    assert (inputs["task"], inputs["text"]) == ("counting", "people")
    assert result.fields["count"] == len(result.fields["points"]) >= 1
    assert all(p["t"] >= 10.0 for p in result.fields["points"])  # clip time shifted by start


@pytest.mark.parametrize(
    ("task", "wire"),
    [
        (VideoTask(task="summary"), {"task": "summary"}),
        (Scene(), {"task": "scene_description"}),
        (Ask(question="What moves?"), {"task": "general", "text": "What moves?"}),
    ],
)
def test_video_understanding_tasks(ws, task, wire):
    [result] = run(backend("wavespeed", ws), [video_item(seed=2)], task)
    assert not isinstance(result, Exception), result
    inputs = _inputs(ws)[0]
    assert {k: inputs[k] for k in wire} == wire


def test_too_long_video_fails_before_any_call(ws):
    clip = video_item(duration=130.0)
    [result] = run(backend("wavespeed", ws), [clip], Caption())
    assert isinstance(result, MediaTooLargeError) and "120" in str(result)
    assert ws.stats.requests == 0


# -- failed jobs -----------------------------------------------------------------------------


def test_transient_failed_prediction_is_resubmitted(ws):
    ws.inject("fail_job", times=1, error="HTTP 503: upstream busy")
    b = backend("wavespeed", ws)
    [result] = run(b, images(1), Caption())
    assert not isinstance(result, Exception), result
    assert ws.stats.jobs_created == 2 and b.last_stats.resubmits == 1


def test_permanent_failed_prediction_is_reported_not_resubmitted(ws):
    ws.inject("fail_job", times=1, error="image could not be decoded")
    [result] = run(backend("wavespeed", ws), images(1), Caption())
    assert isinstance(result, BackendError) and result.code == "invalid_input" and not result.retryable
    assert "could not be decoded" in str(result) and ws.stats.jobs_created == 1


def test_unrecognised_failed_prediction_is_resubmitted(ws):
    # WaveSpeed refunds failed predictions and says temporary issues may resolve on retry
    ws.inject("fail_job", times=1, error="something went wrong")
    b = backend("wavespeed", ws)
    [result] = run(b, images(1), Caption())
    assert not isinstance(result, Exception), result
    assert ws.stats.jobs_created == 2 and b.last_stats.resubmits == 1


# -- the official SDK against the loopback server --------------------------------------------


def test_official_sdk_runs_against_the_loopback_server(tmp_path):
    import wavespeed

    with WaveSpeedServer(api_key=KEY, latency=0.05) as server:
        client = wavespeed.Client(api_key=KEY, base_url=server.base_url)
        out = client.run("wavespeed-ai/molmo2/image-captioner", {"image": "https://example.com/a.jpg", "detail_level": "low"}, poll_interval=0.02)
        assert out["outputs"][0].startswith("A image")  # low detail names the kind and hash

        path = tmp_path / "frame.png"
        images(1)[0].image().save(path)
        url = client.upload(str(path))
        assert url.startswith(server.root_url + "/media/")
        out = client.run("wavespeed-ai/molmo2/image-captioner", {"image": url}, enable_sync_mode=True)
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] in out["outputs"][0]

        out = client.run("wavespeed-ai/molmo2/video-understanding", {"video": url, "task": "counting", "text": "dogs"}, poll_interval=0.02)
        assert "<points coords=" in out["outputs"][0] and "dogs</points>" in out["outputs"][0]

        server.inject("fail_job", times=1, error="HTTP 500: boom")
        with pytest.raises(RuntimeError, match="failed"):
            client.run("wavespeed-ai/molmo2/image-captioner", {"image": url}, poll_interval=0.02)
        assert client.get_result(next(iter(server.jobs)))["data"]["status"] == "completed"

    bad = wavespeed.Client(api_key="wrong", base_url=server.base_url)
    with WaveSpeedServer(api_key=KEY) as server:
        bad.base_url = server.base_url
        with pytest.raises(RuntimeError, match="HTTP 401"):
            bad.run("wavespeed-ai/molmo2/image-captioner", {"image": "https://example.com/a.jpg"})
