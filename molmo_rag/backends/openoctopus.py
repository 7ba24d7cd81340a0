"""OpenOctopus's hosted Molmo2 image captioner (see docs/hosted-apis.md).

``POST {base}/v1/images/recognitions`` with ``{"model": "openoctopus/image-captioner-molmo2",
"prompt": ..., "input": {"image": url-or-data-uri, "detail_level": ...}}`` -> ``{id,
status: "queued"}``; poll ``GET {base}/v1/tasks/{id}`` (1.8 s for up to 180 s by default)
until ``succeeded | failed | cancelled``. Prompts are free text, so captions, questions,
counts and scene descriptions all run on images.

The error table in docs/hosted-apis.md drives retries: an HTTP error or a failed task whose
``error.code`` is marked retryable is tried again (a failed task is over, so that means a
new submission, at most ``max_resubmits`` times); every other code is reported with its
code and message. Codes not in the table fall back to the HTTP status (429 and, for
GETs, 5xx are retried; a POST's unknown 5xx is not, since the job may exist). A failed
task with ``insufficient_balance`` ends the run like the HTTP 402 does.

Each accepted task's id goes into the request's journal; a later run polls that task
(:meth:`OpenOctopusBackend.resume`) instead of submitting again, and submits anew when the
gateway answers ``task_not_found``.

Where the answer text is read from, in order (tolerant, since the text-output shape of
this recognition model is not documented):

1. ``output_payload.assets[]``: the first asset that is a string, or an object with a
   string ``text`` / ``content`` / ``value``, or with a ``url`` / ``uri`` (fetched);
2. ``output_payload.raw.outputs`` (a string or the first string of a list);
3. ``output_payload.text`` / ``output_payload.output``, then ``output`` / ``outputs`` at the
   top level.

A string that is a bare http(s) URL is fetched and its body is the text.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from pydantic import Field

from ..cost import Price
from ..errors import JobFailedError, MalformedAnswerError, ResponseFormatError
from ..tasks import Caption
from .base import Answer, BackendEnv, Request
from .jobs import SubmitAndPoll
from .http import RestClient, data_uri, error_code_and_message, is_balance_error, media_payload
from .rest import RestOptions

__all__ = ["OpenOctopusOptions", "OpenOctopusBackend", "ERROR_TABLE", "ErrorSpec", "build_body", "task_text"]

MODEL = "openoctopus/image-captioner-molmo2"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class ErrorSpec(NamedTuple):
    http: int
    retryable: bool
    message: str


_T = "The selected model is temporarily unavailable. Please retry later."
_S = "The service is temporarily unavailable for this model. Please retry later."
_INCOMPLETE = "The generation provider returned an incomplete result. Please retry shortly."

ERROR_TABLE: dict[str, ErrorSpec] = {
    "invalid_request": ErrorSpec(400, False, "The request payload is invalid. Check the required fields and try again."),
    "unauthorized": ErrorSpec(401, False, "Authentication is required for this request."),
    "invalid_api_key": ErrorSpec(401, False, "The API key is invalid or inactive."),
    "insufficient_balance": ErrorSpec(402, False, "Your wallet balance is insufficient. Please top up and try again."),
    "model_not_available": ErrorSpec(404, False, "The requested model is currently unavailable."),
    "task_not_found": ErrorSpec(404, False, "The requested task could not be found."),
    "file_not_found": ErrorSpec(404, False, "The requested generated file is not available."),
    "provider_offline": ErrorSpec(503, True, _T),
    "provider_model_inactive": ErrorSpec(503, True, _T),
    "provider_credential_missing": ErrorSpec(503, True, _S),
    "provider_credential_incomplete": ErrorSpec(503, True, _S),
    "provider_credential_unusable": ErrorSpec(503, True, _S),
    "provider_credential_legacy": ErrorSpec(503, True, _S),
    "provider_credential_unavailable": ErrorSpec(503, True, _S),
    "provider_credential_decrypt_failed": ErrorSpec(503, True, _S),
    "model_billing_not_configured": ErrorSpec(503, False, _T),
    "provider_pricing_not_configured": ErrorSpec(503, False, _T),
    "database_operation_failed": ErrorSpec(503, True, "The service could not access required internal records. Please retry later."),
    "billing_resolution_failed": ErrorSpec(503, True, "The selected model pricing could not be evaluated. Please retry later."),
    "request_record_write_failed": ErrorSpec(503, True, "The request could not be recorded internally. Please retry later."),
    "api_key_touch_failed": ErrorSpec(503, True, "The request was accepted but internal key tracking failed. Please retry later."),
    "queue_unavailable": ErrorSpec(503, True, "The internal job queue is temporarily unavailable. Please retry later."),
    "provider_submit_failed": ErrorSpec(502, True, "The generation provider could not accept the request. Please retry shortly."),
    "provider_poll_failed": ErrorSpec(502, True, "The generation provider could not complete the request. Please retry shortly."),
    "upstream_failed": ErrorSpec(502, True, "The generation provider failed to complete the request. Please retry shortly."),
    "content_policy_violation": ErrorSpec(400, False, "The prompt or image was rejected by the provider safety policy. Please adjust the content and try again."),
    "upstream_timeout": ErrorSpec(504, True, "The generation request timed out. Please retry shortly."),
    "upstream_result_missing": ErrorSpec(502, True, _INCOMPLETE),
    "video_output_missing": ErrorSpec(502, True, _INCOMPLETE),
    "service_unavailable": ErrorSpec(503, True, "The service is temporarily unavailable. Please retry later."),
    "internal_error": ErrorSpec(500, True, "The service encountered an unexpected error. Please retry later."),
}
"""The gateway error table of docs/hosted-apis.md: code -> (HTTP status, retryable, message)."""


class OpenOctopusOptions(RestOptions):
    what: ClassVar[str] = "openoctopus backend option"

    poll_interval: float = Field(1.8, gt=0, description="First wait before polling a task (s); the documented interval.")
    poll_max_interval: float = Field(5.0, gt=0, description="Longest wait between polls (s).")
    poll_timeout: float = Field(180.0, gt=0, description="Longest time a task is polled (s); the documented limit.")


def build_body(prompt: str, image: str, detail: str | None, model: str = MODEL) -> dict:
    """The recognition request (pure)."""
    inputs: dict[str, Any] = {"image": image}
    if detail:
        inputs["detail_level"] = detail
    return {"model": model, "prompt": prompt, "input": inputs}


def _text_of(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list):
        for entry in value:
            text = _text_of(entry)
            if text is not None:
                return text
        return None
    if isinstance(value, dict):
        for key in ("text", "content", "value", "url", "uri"):
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key]
    return None


def task_text(task: dict) -> str | None:
    """The answer in a succeeded task (text, or a URL to it); None when there is none.
    See the module docstring for the places looked at."""
    payload = task.get("output_payload") if isinstance(task.get("output_payload"), dict) else {}
    raw = payload.get("raw") if isinstance(payload.get("raw"), dict) else {}
    for candidate in (
        payload.get("assets"),
        raw.get("outputs"),
        payload.get("text"),
        payload.get("output"),
        task.get("output"),
        task.get("outputs"),
    ):
        text = _text_of(candidate)
        if text is not None:
            return text
    return None


class OpenOctopusBackend(SubmitAndPoll[dict]):
    """Molmo2 image captioning and questions on OpenOctopus. Options: :class:`OpenOctopusOptions`."""

    name: ClassVar[str] = "openoctopus"
    capabilities: ClassVar[dict] = {"image": frozenset({"caption", "ask", "count", "scene"})}
    default_model: ClassVar[str] = MODEL
    price: ClassVar[Price] = Price(image_usd=0.002, backend="OpenOctopus")
    """Its API pages give no separate price; it serves the same WaveSpeed Molmo2 model, so
    WaveSpeed's $0.002 per image is the estimate."""
    env: ClassVar[BackendEnv] = BackendEnv(api_key="OPENOCTOPUS_API_KEY", base_url="OPENOCTOPUS_BASE_URL")
    Options: ClassVar[type[RestOptions]] = OpenOctopusOptions
    default_base_url: ClassVar[str] = "https://api.openoctopus.com"
    job_noun: ClassVar[str] = "task"
    server_noun: ClassVar[str] = "gateway"

    # -- protocol ------------------------------------------------------------------------
    def should_retry(self, method: str, status: int, body: Any, *, idempotent: bool) -> bool:
        code, _ = error_code_and_message(body)
        spec = ERROR_TABLE.get(code or "")
        if spec is not None:
            # The table says whether the request was refused in a way worth repeating;
            # a refused POST created no task, so sending it again is safe.
            return spec.retryable
        return super().should_retry(method, status, body, idempotent=idempotent)

    def error_for(self, status: int, body: Any, text: str, headers: Any = None):
        error = super().error_for(status, body, text, headers)
        spec = ERROR_TABLE.get(error.code or "")
        if spec is not None:
            error.retryable = spec.retryable
        return error

    # -- the submit-and-poll hooks (jobs.SubmitAndPoll) ---------------------------------
    def submit_url(self, request: Request) -> str:
        return f"{self.base_url}/v1/images/recognitions"

    async def submit_body(self, request: Request, client: RestClient) -> dict:
        item, task = request.item, request.task
        if item.remote_url:
            image = item.remote_url
        else:
            data, mime = await media_payload(item)
            image = data_uri(data, mime)
        detail = task.detail if isinstance(task, Caption) else None
        return build_body(task.prompt("image"), image, detail, self.model)

    def parse_job(self, body: Any, job_id: str | None) -> dict:
        if job_id is None:
            if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
                raise ResponseFormatError("openoctopus: create answer has no task id", backend=self.name)
        elif not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise ResponseFormatError(f"openoctopus: task {job_id} answer has no status", backend=self.name)
        return body

    def job_id(self, job: dict) -> str:
        return job["id"]

    def poll_url(self, job_id: str) -> str:
        return f"{self.base_url}/v1/tasks/{job_id}"

    def poll_key(self, request: Request) -> str:
        return "recognition"

    def is_done(self, job: dict) -> bool:
        return job.get("status") in TERMINAL

    def succeeded(self, job: dict) -> bool:
        return job.get("status") == "succeeded"

    def failure(self, job: dict) -> JobFailedError:
        """``resubmit`` when the error table marks the task's code retryable."""
        task_id, status = job.get("id"), job.get("status")
        code, message = error_code_and_message(job)
        code = code or ("cancelled" if status == "cancelled" else None)
        spec = ERROR_TABLE.get(code or "")
        message = message or (spec.message if spec else None) or job.get("error_message") or "no reason given"
        return JobFailedError(
            self.redact(f"openoctopus: task {task_id} {status}{f' ({code})' if code else ''}: {message}"),
            backend=self.name,
            code=code,
            resubmit=status == "failed" and spec is not None and spec.retryable,
            fatal=status == "failed" and is_balance_error(None, code, None),
            job_id=task_id,
        )

    def output(self, job: dict) -> str:
        text = task_text(job)
        if text is None:
            # the task succeeded (and was paid for): its answer cannot be used
            raise MalformedAnswerError(f"openoctopus: task {job.get('id')} succeeded without a text output", backend=self.name)
        return text
