"""A WaveSpeed API on 127.0.0.1 for the Molmo2 endpoints (see docs/hosted-apis.md).

Routes (``route`` names for faults and counters in brackets):

* ``POST /api/v3/wavespeed-ai/molmo2/{image-captioner|video-captioner|video-understanding}``
  [submit]: validates the inputs, creates a prediction; ``enable_sync_mode`` waits and
  answers with the finished prediction;
* ``GET /api/v3/predictions/{id}/result`` [poll];
* ``POST /api/v3/media/uploads`` [upload]: an upload ticket like the SDK expects;
  ``PUT /uploads/{token}`` [put] stores bytes; ``GET /media/{token}`` [media] serves them;
* ``GET /outputs/{id}.txt`` [output]: the text when ``output_mode="url"``.

Envelope: ``{code, message, data: {id, model, outputs, urls, has_nsfw_contents, status,
created_at, error, timings}}``; status ``created`` (first fifth of the latency),
``processing``, then ``completed`` or ``failed``.

Rated faults (:meth:`~._server.LoopbackServer.faults`) speak WaveSpeed: error answers
``{code: status, message}`` whose message starts with the vendor code where there is one
(``invalid_input: ...``, ``content_policy_violation: ...``); failed predictions carry
``error: "upstream_failed: provider error, please retry"`` or ``"content_policy_violation:
..."``; ``output_404`` needs ``output_mode="url"``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from ._model import answer, inspect_media
from ._server import Incoming, Job, LoopbackServer, Reply

__all__ = ["WaveSpeedServer"]

_ENDPOINTS = {"image-captioner": "image", "video-captioner": "video", "video-understanding": "video"}
_DETAILS = {"low", "medium", "high"}
_VIDEO_TASKS = {"general", "summary", "analysis", "counting", "scene_description"}


class WaveSpeedServer(LoopbackServer):
    """``output_mode``: ``"text"`` puts the text in ``outputs[0]``; ``"url"`` puts a URL to
    it there (served by this server). ``fail_job`` faults take ``error`` (the message)."""

    kind = "wavespeed"

    def __init__(self, *, output_mode: Literal["text", "url"] = "text", **kw):
        self.output_mode = output_mode
        super().__init__(**kw)

    def setup_routes(self) -> None:
        self.route("POST", r"/api/v3/wavespeed-ai/molmo2/(?P<endpoint>[a-z-]+)", "submit", self._submit)
        self.route("GET", r"/api/v3/predictions/(?P<id>[0-9a-f]+)/result", "poll", self._result)
        self.route("POST", r"/api/v3/media/uploads", "upload", self._ticket)
        self.route("PUT", r"/uploads/(?P<token>[0-9a-f]+)", "put", self._put, auth=False)
        self.route("GET", r"/media/(?P<token>[0-9a-f]+)", "media", self._media, auth=False)
        self.route("GET", r"/outputs/(?P<id>[0-9a-f]+)\.txt", "output", self._output, auth=False)

    # -- protocol shapes -----------------------------------------------------------------
    @staticmethod
    def _envelope(data, code: int = 200, message: str = "success") -> dict:
        return {"code": code, "message": message, "data": data}

    def unauthorized(self, provided):
        return Reply(401, {"code": 401, "message": "Unauthorized: invalid or missing API key", "data": None})

    def error_reply(self, status, params):
        return Reply(status, {"code": status, "message": params.get("message", "internal server error"), "data": None})

    _FAULT_PARAMS = {
        "submit_503": {"message": "service temporarily unavailable, please retry"},
        "poll_503": {"message": "service temporarily unavailable, please retry"},
        "submit_502": {"message": "bad gateway: upstream connect error, please retry"},
        "poll_502": {"message": "bad gateway: upstream connect error, please retry"},
        "invalid_input": {"message": "invalid_input: the image could not be decoded"},
        "submit_content_policy": {"message": "content_policy_violation: the input was flagged by the safety filter"},
        "output_404": {"message": "object not found"},
        "upstream_failed": {"error": "upstream_failed: provider error, please retry"},
        "content_policy": {"error": "content_policy_violation: the input was flagged by the safety filter"},
    }

    def fault_params(self, name):
        return dict(self._FAULT_PARAMS.get(name, {}))

    def _bad(self, message: str) -> Reply:
        return Reply(400, {"code": 400, "message": message, "data": None})

    def _prediction(self, job: Job) -> dict:
        done = job.done  # read once: the answer and the delivery record agree
        if not done:
            status, outputs, error = ("created" if job.early else "processing"), [], ""
        elif job.fail:
            status, outputs, error = "failed", [], job.fail.get("error", "HTTP 500: upstream inference failed")
        else:
            status, error = "completed", ""
            outputs = [f"{self.root_url}/outputs/{job.id}.txt" if self.output_mode == "url" else job.answer_text]
        if done:
            self.mark_delivered(job)  # stats.jobs: when the client learnt the job's end
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        prediction = {
            "id": job.id,
            "model": f"wavespeed-ai/molmo2/{job.kind}",
            "outputs": outputs,
            "urls": {"get": f"{self.root_url}/api/v3/predictions/{job.id}/result"},
            "has_nsfw_contents": [False] * len(outputs),
            "status": status,
            "created_at": created,
            "error": error,
            "timings": {"inference": int(job.latency * 1000)} if done else {},
        }
        return job.answer_fields(prediction) if status == "completed" else prediction

    # -- handlers ------------------------------------------------------------------------
    def _submit(self, req: Incoming, match) -> Reply:
        endpoint = match.group("endpoint")
        if endpoint not in _ENDPOINTS:
            return Reply(404, {"code": 404, "message": f"model wavespeed-ai/molmo2/{endpoint} not found", "data": None})
        body = req.json()
        if not isinstance(body, dict):
            return self._bad("request body must be a JSON object")
        field = _ENDPOINTS[endpoint]
        ref = body.get(field)
        if not isinstance(ref, str) or not ref:
            return self._bad(f"{field} is required")
        detail = body.get("detail_level", "medium")
        if endpoint != "video-understanding" and detail not in _DETAILS:
            return self._bad("detail_level must be one of low, medium, high")
        task = body.get("task", "general")
        if endpoint == "video-understanding" and task not in _VIDEO_TASKS:
            return self._bad(f"task must be one of {', '.join(sorted(_VIDEO_TASKS))}")
        info = inspect_media(self.media_bytes(ref), field)
        if endpoint == "video-understanding":
            text = answer(info, task=task, text=body.get("text"))
        else:
            text = answer(info, task="caption", detail=detail)
        job = self.new_job(endpoint, body, text, media=info)
        if body.get("enable_sync_mode") in (True, "true"):
            job.wait()
        return Reply(200, self._envelope(self._prediction(job)))

    def _result(self, req: Incoming, match) -> Reply:
        job = self.jobs.get(match.group("id"))
        if job is None:
            return Reply(404, {"code": 404, "message": "prediction not found", "data": None})
        return Reply(200, self._envelope(self._prediction(job)))

    def _ticket(self, req: Incoming, match) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not body.get("filename"):
            return self._bad("filename is required")
        token = self.store_blob(b"", body.get("content_type") or "application/octet-stream")
        return Reply(
            200,
            self._envelope(
                {
                    "upload": {
                        "method": "PUT",
                        "url": f"{self.root_url}/uploads/{token}",
                        "headers": {"Content-Type": body.get("content_type") or "application/octet-stream"},
                    },
                    "download_url": f"{self.root_url}/media/{token}",
                }
            ),
        )

    def _put(self, req: Incoming, match) -> Reply:
        token = match.group("token")
        if token not in self.blobs:
            return Reply(403, "unknown upload URL")
        self.blobs[token] = (req.body, req.headers.get("Content-Type") or "application/octet-stream")
        return Reply(200, b"")

    def _media(self, req: Incoming, match) -> Reply:
        blob = self.blobs.get(match.group("token"))
        if blob is None:
            return Reply(404, "not found")
        return Reply(200, blob[0], content_type=blob[1])

    def _output(self, req: Incoming, match) -> Reply:
        job = self.jobs.get(match.group("id"))
        if job is None or not job.done:
            return Reply(404, "not found")
        job.served += 1
        return Reply(200, job.answer_text)
