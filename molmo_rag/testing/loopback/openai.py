"""An OpenAI-compatible chat-completions server on 127.0.0.1, shaped like vLLM serving Molmo2.

Routes [route names]: ``POST /v1/chat/completions`` [chat] (one user message with an
``image_url`` or ``video_url`` part and a ``text`` part; the answer waits ``latency``
seconds, like generation), ``GET /v1/models`` [models]. ``base_url`` ends in ``/v1``, as the
backend expects. ``api_key=None`` (vLLM's default) accepts any or no key. Errors use
``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import time
import uuid

from ._model import answer, inspect_media
from ._server import Incoming, LoopbackServer, Reply

__all__ = ["OpenAIServer"]


class OpenAIServer(LoopbackServer):
    kind = "openai"

    def __init__(self, *, model: str = "allenai/Molmo2-4B", **kw):
        self.model = model
        super().__init__(**kw)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    route_map = {"submit": ("chat",)}
    """Rated faults: ``submit_*``, ``rate_limit``, resets and sticky faults hit the chat
    route; job faults hit the generation (a failed one answers 500, ``content_policy`` 400)."""

    def fault_params(self, name):
        if name == "content_policy":
            return {"status": 400, "message": "content_policy_violation: the input was flagged by the safety filter"}
        if name == "upstream_failed":
            return {"message": "upstream_failed: provider error, please retry"}
        return {}

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/chat/completions", "chat", self._chat)
        self.route("GET", r"/v1/models", "models", self._models)

    def _error(self, status: int, message: str, type_: str = "BadRequestError", code: str | None = None) -> Reply:
        return Reply(status, {"error": {"message": message, "type": type_, "param": None, "code": code or status}})

    def unauthorized(self, provided):
        return self._error(401, "Incorrect API key provided.", "AuthenticationError", "invalid_api_key")

    def error_reply(self, status, params):
        return self._error(status, params.get("message", "injected server error"), "InternalServerError")

    def _models(self, req: Incoming, match) -> Reply:
        return Reply(200, {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "loopback"}]})

    def _chat(self, req: Incoming, match) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._error(400, "messages is required")
        if body.get("model") != self.model:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError", "model_not_found")
        content = body["messages"][-1].get("content") if isinstance(body["messages"][-1], dict) else None
        if not isinstance(content, list):
            return self._error(400, "the user message must have content parts")
        media = [p for p in content if isinstance(p, dict) and p.get("type") in ("image_url", "video_url")]
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(media) != 1 or not texts:
            return self._error(400, "expected one image_url or video_url part and a text part")
        part = media[0]
        kind = "video" if part["type"] == "video_url" else "image"
        url = (part.get(part["type"]) or {}).get("url")
        if not isinstance(url, str) or not url:
            return self._error(400, f"{part['type']}.url is required")
        info = inspect_media(self.media_bytes(url), kind)
        text = answer(info, task="prompt", text=" ".join(texts))
        job = self.new_job("chat", body, text, media=info)  # counts the generation; the answer comes inline
        job.wait()
        if not job.done:  # a job that never finishes, and the server is stopping
            return self._error(503, "server shutting down", "ServiceUnavailableError")
        if job.fail:
            status = int(job.fail.get("status", 500))
            return self._error(status, job.fail.get("message", "generation failed"), "InternalServerError" if status >= 500 else "BadRequestError")
        words = text.split(" ")
        max_tokens = int(body.get("max_tokens") or 10_000)
        finish = "stop"
        if len(words) > max_tokens:
            text, finish = " ".join(words[:max_tokens]), "length"
        if job.answer and "text" in job.answer:  # an answer fault: sent as it is, max_tokens or not
            text = job.answer_text
        prompt_tokens = 100 + info.nbytes // 1000
        completion_tokens = min(len(words), max_tokens)
        return Reply(
            200,
            job.answer_fields(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": self.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
                }
            ),
        )
