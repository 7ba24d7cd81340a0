"""WaveSpeed's hosted Molmo2 endpoints (see docs/hosted-apis.md).

* image ``Caption`` -> ``image-captioner`` (``image``, ``detail_level``)
* video ``Caption`` -> ``video-captioner`` (``video``, ``detail_level``)
* video ``VideoTask`` -> ``video-understanding`` (``video``, ``task``, ``text``); also
  ``Count`` -> ``task=counting, text=target``, ``Scene`` -> ``scene_description``,
  ``Ask`` -> ``general, text=question``.

Submit ``POST {base}/api/v3/wavespeed-ai/molmo2/{endpoint}``, poll
``GET {base}/api/v3/predictions/{id}/result`` (envelope ``{code, message, data: {id,
status, outputs, error, ...}}``, status ``created | processing | completed | failed``).
Media: ``item.remote_url`` is passed through; local media under ``inline_max_bytes`` goes
as a data URI, larger media is uploaded like the official SDK does (``POST
/api/v3/media/uploads`` for a ticket, ``PUT`` the bytes, send the ``download_url``).
``outputs[0]`` is either the text or an http(s) URL to it (then fetched).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from .. import cost
from ..errors import BackendError, ResponseFormatError, UnsupportedTaskError
from ..media.items import MediaItem
from ..tasks import Ask, Caption, Count, ModelInput, Scene, Task, VideoTask
from .base import Answer, Request
from .rest import JobFailedError, RestBackend, RestEngine, RestOptions, data_uri, is_http_url, media_payload

__all__ = ["WaveSpeedOptions", "WaveSpeedBackend", "Prediction", "endpoint_for", "parse_prediction", "parse_upload_ticket"]

TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


class WaveSpeedOptions(RestOptions):
    what: ClassVar[str] = "wavespeed backend option"

    poll_interval: float = Field(1.0, gt=0, description="First wait before polling a prediction (s); the SDK polls every 1 s.")
    poll_max_interval: float = Field(5.0, gt=0, description="Longest wait between polls (s).")
    enable_sync_mode: bool = Field(False, description="Ask the POST itself to wait for the result (one request per job; a dropped connection then loses the answer).")
    inline_max_bytes: int = Field(256_000, ge=0, description="Local media up to this size goes as a data URI; larger is uploaded (0: always upload).")


@dataclass(frozen=True)
class Prediction:
    id: str
    status: str
    outputs: list
    error: str | None = None
    inference_ms: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


def endpoint_for(task: Task, media: ModelInput) -> tuple[str, str, dict]:
    """(endpoint, media field, other inputs) for a task: the whole task mapping, pure."""
    if media == "image":
        if isinstance(task, Caption):
            return "image-captioner", "image", {"detail_level": task.detail}
    else:
        if isinstance(task, Caption):
            return "video-captioner", "video", {"detail_level": task.detail}
        if isinstance(task, VideoTask):
            return "video-understanding", "video", _drop_none({"task": task.task, "text": task.text})
        if isinstance(task, Count):
            return "video-understanding", "video", {"task": "counting", "text": task.target}
        if isinstance(task, Scene):
            return "video-understanding", "video", {"task": "scene_description"}
        if isinstance(task, Ask):
            return "video-understanding", "video", {"task": "general", "text": task.question}
    raise UnsupportedTaskError(f"{task.name} on {media}", "wavespeed")


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _envelope_data(body: Any, what: str) -> dict:
    code = body.get("code") if isinstance(body, dict) else None
    if code not in (None, 200, "200"):
        # An error envelope inside an HTTP 200: its code is an HTTP-like status.
        status = int(code) if str(code).isdigit() else None
        raise BackendError(
            f"wavespeed: {what} failed: code {code}: {body.get('message') or 'no message'}",
            backend="wavespeed",
            code=str(code),
            status=status,
            retryable=status is not None and (status >= 500 or status == 429),
        )
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ResponseFormatError(f"wavespeed: {what} answer has no 'data' object", backend="wavespeed")
    return body["data"]


def parse_prediction(body: Any) -> Prediction:
    """The prediction in a submit or result envelope."""
    data = _envelope_data(body, "prediction")
    pid, status = data.get("id"), data.get("status")
    if not isinstance(pid, str) or not pid or not isinstance(status, str):
        raise ResponseFormatError("wavespeed: prediction without id or status", backend="wavespeed")
    outputs = data.get("outputs") or []
    if not isinstance(outputs, list):
        raise ResponseFormatError("wavespeed: 'outputs' is not a list", backend="wavespeed")
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    error = data.get("error")
    return Prediction(
        id=pid,
        status=status,
        outputs=outputs,
        error=str(error) if error else None,
        inference_ms=timings.get("inference"),
    )


def parse_upload_ticket(body: Any) -> tuple[str, dict[str, str], str]:
    """(PUT url, headers, download_url) from a media-upload ticket, as the SDK reads it."""
    data = _envelope_data(body, "upload ticket")
    instruction = data.get("upload") if isinstance(data.get("upload"), dict) else {}
    if str(instruction.get("method", "")).upper() != "PUT" or not instruction.get("url") or not data.get("download_url"):
        raise ResponseFormatError("wavespeed: invalid upload instruction", backend="wavespeed")
    return instruction["url"], dict(instruction.get("headers") or {}), data["download_url"]


class WaveSpeedBackend(RestBackend):
    """Molmo2 on WaveSpeed. Options: :class:`WaveSpeedOptions`."""

    name: ClassVar[str] = "wavespeed"
    capabilities: ClassVar[dict] = {
        "image": frozenset({"caption"}),
        "video": frozenset({"caption", "ask", "count", "scene", "video"}),
    }
    default_model: ClassVar[str] = "wavespeed-ai/molmo2"
    Options: ClassVar[type[RestOptions]] = WaveSpeedOptions
    api_key_env: ClassVar[str] = "WAVESPEED_API_KEY"
    base_url_env: ClassVar[str] = "WAVESPEED_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.wavespeed.ai"

    options: WaveSpeedOptions

    def check(self, request: Request) -> None:
        super().check(request)
        cost.call_cost(self.name, request.item, request.task)  # a too-long video fails here, before any call

    def estimate_cost(self, request: Request) -> float:
        return cost.call_cost(self.name, request.item, request.task)

    def submit_url(self, endpoint: str) -> str:
        return f"{self.base_url}/api/v3/{self.model}/{endpoint}"

    def result_url(self, prediction_id: str) -> str:
        return f"{self.base_url}/api/v3/predictions/{prediction_id}/result"

    async def call(self, request: Request, engine: RestEngine) -> Answer:
        item, task = request.item, request.task
        price = cost.call_cost(self.name, item, task)
        endpoint, media_field, inputs = endpoint_for(task, item.model_input)
        body = {media_field: await self.media_input(item, engine), **inputs}
        if self.options.enable_sync_mode:
            body["enable_sync_mode"] = True

        async def one_job() -> Prediction:
            return await self._run_prediction(endpoint, body, engine)

        prediction = await engine.run_job(one_job)
        text = await self._output_text(prediction, engine)
        return Answer(
            text=text,
            cost_usd=price,
            model=f"{self.model}/{endpoint}",
            meta={"job_id": prediction.id, "endpoint": endpoint, "inference_ms": prediction.inference_ms},
        )

    async def _run_prediction(self, endpoint: str, body: dict, engine: RestEngine) -> Prediction:
        sync = bool(body.get("enable_sync_mode"))
        answer = await engine.post_json(self.submit_url(endpoint), body, timeout=self.options.timeout if sync else None)
        prediction = parse_prediction(answer)
        if not prediction.done:
            prediction = await engine.poll(
                lambda: self._fetch(prediction.id, engine),
                lambda p: p.done,
                key=endpoint,
                job=prediction.id,
            )
        if prediction.status != "completed":
            error = prediction.error or "no reason given"
            # The SDK's rule: a failure caused by a transient upstream error may run again.
            transient = "HTTP 5" in error or "HTTP 429" in error
            raise JobFailedError(
                f"wavespeed: prediction {prediction.id} {prediction.status}: {self.redact(error)}",
                backend=self.name,
                code=f"prediction_{prediction.status}",
                resubmit=transient and prediction.status == "failed",
            )
        return prediction

    async def _fetch(self, prediction_id: str, engine: RestEngine) -> Prediction:
        return await engine.get_json(self.result_url(prediction_id), parse=parse_prediction)

    async def _output_text(self, prediction: Prediction, engine: RestEngine) -> str:
        if not prediction.outputs or not isinstance(prediction.outputs[0], str):
            raise ResponseFormatError(f"wavespeed: prediction {prediction.id} completed without a text output", backend=self.name)
        first = prediction.outputs[0]
        if not is_http_url(first):
            return first
        return await engine.get_text(first, what=f"fetching the output of prediction {prediction.id}")

    async def media_input(self, item: MediaItem, engine: RestEngine) -> str:
        """What goes in the ``image`` / ``video`` field: the item's URL, a data URI, or
        the download URL of an upload."""
        if item.remote_url:
            return item.remote_url
        data, mime = await media_payload(item)
        if len(data) <= self.options.inline_max_bytes:
            return data_uri(data, mime)
        return await self.upload(data, mime, engine, stem=item.content_hash[:16] or "media")

    async def upload(self, data: bytes, mime: str, engine: RestEngine, stem: str = "media") -> str:
        """Upload bytes the way the official SDK does; returns the download URL."""
        filename = stem + (mimetypes.guess_extension(mime) or "")
        ticket = await engine.post_json(
            f"{self.base_url}/api/v3/media/uploads",
            {"filename": filename, "size": len(data), "content_type": mime},
            resend_safe=True,  # a ticket is not a job: asking twice costs nothing
        )
        put_url, headers, download_url = parse_upload_ticket(ticket)
        await engine.upload(put_url, data, headers=headers)
        return download_url
