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

A failed prediction is read by :func:`classify_failure`: WaveSpeed refunds failed
predictions and says temporary issues may resolve on retry, so a failure is submitted
anew (at most ``max_resubmits`` times) unless its message names a permanent cause:
content policy / moderation / NSFW, invalid or unsupported input, input too large or too
long, authentication, or an empty balance (which also ends the run). The failure's
``code`` is the vendor's own code when the message starts with one (``upstream_failed:
...``), else the class read from the message (``content_policy_violation``,
``invalid_input``, ``input_too_large``, ``unauthorized``, ``insufficient_balance``,
``rate_limited``, ``upstream_timeout``, ``upstream_failed``), or ``prediction_failed`` when
nothing is recognised (retried: failed predictions are refunded).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from pydantic import Field

from ..cost import Price
from ..errors import (
    AuthenticationError,
    BackendError,
    InsufficientBalanceError,
    JobFailedError,
    MalformedAnswerError,
    ResponseFormatError,
    UnsupportedTaskError,
)
from ..media.items import MediaItem
from ..tasks import Ask, Caption, Count, ModelInput, Scene, Task, VideoTask
from .answers import kind_of
from .base import Answer, BackendEnv, Request
from .jobs import SubmitAndPoll
from .http import RestClient, data_uri, error_code_and_message, is_balance_error, media_payload
from .rest import RestOptions

__all__ = [
    "WaveSpeedOptions",
    "WaveSpeedBackend",
    "Prediction",
    "FailureClass",
    "classify_failure",
    "endpoint_for",
    "parse_prediction",
    "parse_upload_ticket",
]

TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


PRICE = Price(
    image_usd=0.002, video_usd_per_block=0.005, video_block_s=5.0, video_min_s=5.0, video_max_s=120.0, backend="WaveSpeed"
)
"""The image captioner: $0.002 per image; the video captioner and video understanding:
$0.005 per started 5 s, 5 s minimum, at most 120 s per call (docs/hosted-apis.md)."""


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


class FailureClass(NamedTuple):
    """What a failed prediction's error message says: ``code`` (the vendor's own, or the
    class read from the words), whether a new submission may succeed, and whether the
    account itself is the problem (the run should end)."""

    code: str
    retryable: bool
    fatal: bool = False


_PERMANENT_CODES = {
    "content_policy_violation": FailureClass("content_policy_violation", False),
    "nsfw_content": FailureClass("nsfw_content", False),
    "invalid_request": FailureClass("invalid_request", False),
    "invalid_input": FailureClass("invalid_input", False),
    "invalid_parameter": FailureClass("invalid_parameter", False),
    "unsupported_input": FailureClass("unsupported_input", False),
    "input_too_large": FailureClass("input_too_large", False),
    "unauthorized": FailureClass("unauthorized", False),
    "invalid_api_key": FailureClass("invalid_api_key", False),
    "insufficient_balance": FailureClass("insufficient_balance", False, True),
    "insufficient_credits": FailureClass("insufficient_credits", False, True),
    "model_not_available": FailureClass("model_not_available", False),
}
_RETRYABLE_CODES = frozenset(
    {
        "upstream_failed", "upstream_timeout", "upstream_result_missing", "provider_error",
        "provider_submit_failed", "provider_poll_failed", "provider_offline", "internal_error",
        "service_unavailable", "queue_unavailable", "timeout", "rate_limited", "server_busy",
    }
)
_VENDOR_CODE = re.compile(r"^\s*([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*(?::|-\s|$)")
_RULES: list[tuple[re.Pattern, FailureClass]] = [
    (re.compile(r"(?i)nsfw|content[ _-]?polic|moderat|safety|inappropriate|prohibited|sensitive content|flagged|"
                r"content\s+(?:was\s+)?(?:rejected|blocked|refused)"), FailureClass("content_policy_violation", False)),
    (re.compile(r"(?i)\bHTTP\s*429\b|rate[ _-]?limit|too many requests"), FailureClass("rate_limited", True)),
    (re.compile(r"(?i)\bHTTP\s*5\d\d\b"), FailureClass("upstream_failed", True)),
    (re.compile(r"(?i)too\s+(?:large|long|big)|exceed(?:s|ed|ing)?\s+(?:the\s+)?(?:max|limit|allowed)|maximum\s+(?:size|duration|length)|\bHTTP\s*413\b|longer than"),
     FailureClass("input_too_large", False)),
    (re.compile(r"(?i)unauthori[sz]ed|forbidden|api[ _-]?key|permission denied|\bHTTP\s*40[13]\b"), FailureClass("unauthorized", False)),
    (re.compile(r"(?i)invalid|unsupported|not supported|malformed|corrupt|bad request|unprocessable|\bHTTP\s*(?:400|404|415|422)\b|"
                r"(?:could not|cannot|can't|unable to|failed to)\s+(?:be\s+)?(?:decod|read|open|load|pars|download|fetch)|"
                r"is required|missing required"), FailureClass("invalid_input", False)),
    (re.compile(r"(?i)time[sd]?[ _-]?out|deadline"), FailureClass("upstream_timeout", True)),
    (re.compile(r"(?i)upstream|provider|internal|overload|unavailable|busy|capacity|retry|try again|temporar|server error|"
                r"out of memory|\boom\b|cuda"), FailureClass("upstream_failed", True)),
]


def classify_failure(message: str | None) -> FailureClass:
    """Read a failed prediction's error message (pure): permanent causes (content policy,
    invalid or too large input, auth, balance) are not retried; transient ones (upstream,
    provider, timeout, internal, overloaded, "please retry", HTTP 5xx/429) and anything
    not recognised are (WaveSpeed refunds failed predictions)."""
    text = (message or "").strip()
    vendor = _VENDOR_CODE.match(text)
    code = vendor.group(1) if vendor else None
    if code in _PERMANENT_CODES:
        return _PERMANENT_CODES[code]
    if code in _RETRYABLE_CODES:
        return FailureClass(code, True)
    if is_balance_error(None, code, text):
        return FailureClass(code or "insufficient_balance", False, True)
    for pattern, found in _RULES:
        if pattern.search(text):
            return found._replace(code=code) if code else found
    return FailureClass(code or "prediction_failed", True)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _envelope_data(body: Any, what: str) -> dict:
    code = body.get("code") if isinstance(body, dict) else None
    if code not in (None, 200, "200"):
        # An error envelope inside an HTTP 200: its code is an HTTP-like status.
        status = int(code) if str(code).isdigit() else None
        message = body.get("message") or "no message"
        text = f"wavespeed: {what} failed: code {code}: {message}"
        kw: dict[str, Any] = {"backend": "wavespeed", "code": str(code), "status": status}
        if status in (401, 403):
            raise AuthenticationError(text, **kw)
        if status != 429 and (status is None or status < 500) and is_balance_error(status, None, str(message)):
            raise InsufficientBalanceError(text, **{**kw, "code": "insufficient_balance"})
        raise BackendError(text, retryable=status is not None and (status >= 500 or status == 429), **kw)
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
    inference = timings.get("inference")
    error = data.get("error")
    return Prediction(
        id=pid,
        status=status,
        outputs=outputs,
        error=str(error) if error else None,
        # a timing that is not a number (or is absurd) is ignored: it only tunes polling
        inference_ms=float(inference) if _is_duration_ms(inference) else None,
    )


def _is_duration_ms(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 86_400_000


def parse_upload_ticket(body: Any) -> tuple[str, dict[str, str], str]:
    """(PUT url, headers, download_url) from a media-upload ticket, as the SDK reads it."""
    data = _envelope_data(body, "upload ticket")
    instruction = data.get("upload") if isinstance(data.get("upload"), dict) else {}
    if str(instruction.get("method", "")).upper() != "PUT" or not instruction.get("url") or not data.get("download_url"):
        raise ResponseFormatError("wavespeed: invalid upload instruction", backend="wavespeed")
    return instruction["url"], dict(instruction.get("headers") or {}), data["download_url"]


class WaveSpeedBackend(SubmitAndPoll[Prediction]):
    """Molmo2 on WaveSpeed. Options: :class:`WaveSpeedOptions`."""

    name: ClassVar[str] = "wavespeed"
    capabilities: ClassVar[dict] = {
        "image": frozenset({"caption"}),
        "video": frozenset({"caption", "ask", "count", "scene", "video"}),
    }
    default_model: ClassVar[str] = "wavespeed-ai/molmo2"
    price: ClassVar[Price] = PRICE
    env: ClassVar[BackendEnv] = BackendEnv(api_key="WAVESPEED_API_KEY", base_url="WAVESPEED_BASE_URL")
    Options: ClassVar[type[RestOptions]] = WaveSpeedOptions
    default_base_url: ClassVar[str] = "https://api.wavespeed.ai"
    job_noun: ClassVar[str] = "prediction"

    options: WaveSpeedOptions

    def check(self, request: Request) -> None:
        super().check(request)
        self.estimate_cost(request)  # a too-long video fails here, before any call

    # -- the submit-and-poll hooks (jobs.SubmitAndPoll) ---------------------------------
    def submit_url(self, request: Request) -> str:
        endpoint, _, _ = endpoint_for(request.task, request.item.model_input)
        return f"{self.base_url}/api/v3/{self.model}/{endpoint}"

    async def submit_body(self, request: Request, client: RestClient) -> dict:
        item = request.item
        _, media_field, inputs = endpoint_for(request.task, item.model_input)
        body = {media_field: await self.media_input(item, client), **inputs}
        if self.options.enable_sync_mode:
            body["enable_sync_mode"] = True
        return body

    def submit_timeout(self, body: Any) -> float | None:
        return self.options.timeout if body.get("enable_sync_mode") else None

    def parse_job(self, body: Any, job_id: str | None) -> Prediction:
        return parse_prediction(body)

    def job_id(self, job: Prediction) -> str:
        return job.id

    def poll_url(self, job_id: str) -> str:
        return f"{self.base_url}/api/v3/predictions/{job_id}/result"

    def poll_key(self, request: Request) -> str:
        return endpoint_for(request.task, request.item.model_input)[0]

    def run_time(self, job: Prediction) -> float | None:
        return job.inference_ms / 1000 if job.inference_ms else None

    def is_done(self, job: Prediction) -> bool:
        return job.done

    def succeeded(self, job: Prediction) -> bool:
        return job.status == "completed"

    def failure(self, job: Prediction) -> JobFailedError:
        """Read per :func:`classify_failure`; cancelled, deleted, ...: ended on purpose, not
        submitted again."""
        found = classify_failure(job.error) if job.status == "failed" else FailureClass(f"prediction_{job.status}", False)
        return JobFailedError(
            f"wavespeed: prediction {job.id} {job.status}: {self.redact(job.error or 'no reason given')}",
            backend=self.name,
            code=found.code,
            resubmit=found.retryable,
            fatal=found.fatal,
            job_id=job.id,
        )

    def output(self, job: Prediction) -> str:
        if not job.outputs or not isinstance(job.outputs[0], str):
            what = kind_of(job.outputs[0]) if job.outputs else "missing"
            raise MalformedAnswerError(
                f"wavespeed: prediction {job.id} completed, but its output is {what}, not text", backend=self.name
            )
        return job.outputs[0]

    def answer(self, text: str, job: Prediction, request: Request) -> Answer:
        endpoint = self.poll_key(request)
        return Answer(
            text=text,
            cost_usd=self.estimate_cost(request),  # one completed job, once
            model=f"{self.model}/{endpoint}",
            meta={"job_id": job.id, "endpoint": endpoint, "inference_ms": job.inference_ms},
        )

    def error_for(self, status: int, body: Any, text: str, headers: Any = None) -> BackendError:
        """WaveSpeed's envelope ``code`` repeats the HTTP status; the vendor code, when
        there is one, opens the message (``content_policy_violation: ...``): that one is
        the error's ``code``, as for a failed prediction."""
        error = super().error_for(status, body, text, headers)
        if error.code is None or error.code == str(status):
            _, message = error_code_and_message(body)
            vendor = _VENDOR_CODE.match(message or "")
            if vendor:
                error.code = vendor.group(1)
        return error

    # -- media ---------------------------------------------------------------------------
    async def media_input(self, item: MediaItem, client: RestClient) -> str:
        """What goes in the ``image`` / ``video`` field: the item's URL, a data URI, or
        the download URL of an upload."""
        if item.remote_url:
            return item.remote_url
        data, mime = await media_payload(item)
        if len(data) <= self.options.inline_max_bytes:
            return data_uri(data, mime)
        return await self.upload(data, mime, client, stem=item.content_hash[:16] or "media")

    async def upload(self, data: bytes, mime: str, client: RestClient, stem: str = "media") -> str:
        """Upload bytes the way the official SDK does; returns the download URL."""
        filename = stem + (mimetypes.guess_extension(mime) or "")
        put_url, headers, download_url = await client.post_json(
            f"{self.base_url}/api/v3/media/uploads",
            {"filename": filename, "size": len(data), "content_type": mime},
            resend_safe=True,  # a ticket is not a job: asking twice costs nothing
            parse=parse_upload_ticket,
        )
        await client.upload(put_url, data, headers=headers)
        return download_url
