"""An OpenOctopus API on 127.0.0.1 for its Molmo2 image captioner (see docs/hosted-apis.md).

Routes [route names]: ``POST /v1/images/recognitions`` [submit] -> ``{id, status:
"queued", model}``; ``GET /v1/tasks/{id}`` [poll] -> the task (``queued`` for the first
fifth of the latency, ``processing``, then ``succeeded`` / ``failed``); ``GET
/files/{id}.txt`` [output] when ``output_mode="asset_url"``. Errors use the gateway shape
``{"error": {"code", "message"}}`` with the HTTP status of the OpenOctopus error table in docs/hosted-apis.md; a missing key
answers ``unauthorized``, a wrong one ``invalid_api_key``.

``output_mode``: ``asset_text`` (``assets: [{"type": "text", "text": ...}]``),
``asset_url`` (``assets: [{"type": "text", "url": ..., "mimeType": "text/plain"}]``),
``raw`` (no assets; ``raw.outputs: [text]``). Faults ``server_error`` and ``fail_job``
take ``code`` (a code of the table); rated faults use the table's codes (``submit_503``:
``service_unavailable``, ``submit_502``: ``provider_submit_failed``, ``invalid_input``:
``invalid_request``, ``content_policy``: a task failed with ``content_policy_violation``, ...).
"""

from __future__ import annotations

from typing import Literal

from ...backends.openoctopus import ERROR_TABLE, MODEL
from ._model import answer, inspect_media
from ._server import Incoming, Job, LoopbackServer, Reply

__all__ = ["OpenOctopusServer"]


class OpenOctopusServer(LoopbackServer):
    kind = "openoctopus"

    def __init__(self, *, output_mode: Literal["asset_text", "asset_url", "raw"] = "asset_text", **kw):
        self.output_mode = output_mode
        super().__init__(**kw)

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/images/recognitions", "submit", self._submit)
        self.route("GET", r"/v1/tasks/(?P<id>[0-9a-f]+)", "poll", self._task)
        self.route("GET", r"/files/(?P<id>[0-9a-f]+)\.txt", "output", self._file, auth=False)

    def _error(self, code: str, message: str | None = None, status: int | None = None) -> Reply:
        spec = ERROR_TABLE[code]
        return Reply(status or spec.http, {"error": {"code": code, "message": message or spec.message}})

    def unauthorized(self, provided):
        return self._error("unauthorized" if provided is None else "invalid_api_key")

    def error_reply(self, status, params):
        if status == 429:
            return Reply(429, {"error": {"code": "rate_limited", "message": "Too many requests."}})
        code = params.get("code") or ("internal_error" if status == 500 else "service_unavailable")
        return self._error(code, params.get("message"), status=status if "status" in params else None)

    _FAULT_PARAMS = {
        "submit_503": {"code": "service_unavailable"},
        "poll_503": {"code": "service_unavailable"},
        "submit_502": {"code": "provider_submit_failed"},
        "poll_502": {"code": "provider_poll_failed"},
        "invalid_input": {"code": "invalid_request", "message": "input.image could not be decoded."},
        "submit_content_policy": {"code": "content_policy_violation"},
        "output_404": {"code": "file_not_found"},
        "upstream_failed": {"code": "upstream_failed"},
        "content_policy": {"code": "content_policy_violation"},
    }

    def fault_params(self, name):
        return dict(self._FAULT_PARAMS.get(name, {}))

    def _submit(self, req: Incoming, match) -> Reply:
        body = req.json()
        if not isinstance(body, dict):
            return self._error("invalid_request")
        if body.get("model") != MODEL:
            return self._error("model_not_available")
        prompt, inputs = body.get("prompt"), body.get("input") or {}
        if not isinstance(prompt, str) or not prompt.strip() or not isinstance(inputs, dict):
            return self._error("invalid_request", "prompt (string) is required.")
        image = inputs.get("image")
        if not isinstance(image, str) or not image:
            return self._error("invalid_request", "input.image is required.")
        if inputs.get("detail_level", "medium") not in ("low", "medium", "high"):
            return self._error("invalid_request", "input.detail_level must be low, medium or high.")
        info = inspect_media(self.media_bytes(image), "image")
        text = answer(info, task="prompt", text=prompt)
        job = self.new_job("recognition", body, text, media=info)
        return Reply(200, {"id": job.id, "status": "queued", "model": MODEL})

    def _task_json(self, job: Job) -> dict:
        out: dict = {"id": job.id, "model": MODEL, "capability": "image_recognition"}
        queued = not job.done and job.early
        out["queue"] = {
            "enabled": True,
            "position": 1 if queued else 0,
            "size": sum(1 for j in self.jobs.values() if not j.done and j.early),
            "concurrency": 8,
            "upstreamQueueSupported": True,
            "upstreamCancelSupported": False,
        }
        if not job.done:
            out["status"] = "queued" if queued else "processing"
            return out
        if job.fail:
            code = job.fail.get("code", "upstream_failed")
            message = job.fail.get("message") or ERROR_TABLE[code].message
            out.update(status="failed", error={"code": code, "message": message}, error_message=message)
            return out
        if self.output_mode == "asset_url":
            assets = [{"type": "text", "url": f"{self.root_url}/files/{job.id}.txt", "mimeType": "text/plain"}]
        elif self.output_mode == "raw":
            assets = []
        else:
            assets = [{"type": "text", "text": job.answer_text, "mimeType": "text/plain"}]
        out["status"] = "succeeded"
        out["output_payload"] = {
            "format": "openoctopus.image.output.v1",
            "assets": assets,
            "raw": {"id": job.id, "model": "wavespeed-ai/molmo2/image-captioner", "outputs": [job.answer_text], "status": "completed"},
        }
        return job.answer_fields(out)

    def _task(self, req: Incoming, match) -> Reply:
        job = self.jobs.get(match.group("id"))
        if job is None:
            return self._error("task_not_found")
        return Reply(200, self._task_json(job))

    def _file(self, req: Incoming, match) -> Reply:
        job = self.jobs.get(match.group("id"))
        if job is None or not job.done:
            return self._error("file_not_found")
        job.served += 1
        return Reply(200, job.answer_text)
