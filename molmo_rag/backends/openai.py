"""Any OpenAI-compatible chat-completions server serving Molmo2 (e.g. ``vllm serve
allenai/Molmo2-4B``).

``POST {base}/chat/completions`` (base like ``http://host:8000/v1``) with one user message:
the media part first (``image_url`` or ``video_url``; the item's URL, or a data URI for
local media), then the text prompt; ``max_tokens`` from the task, temperature 0. Token
usage goes into ``Answer.meta``. The key is optional (vLLM often runs without one).

A chat completion is not a stored or billed job: nothing is created that a second request
would duplicate, and vLLM stops generating when the client disconnects. So, like the
official ``openai`` client, a request is sent again after an HTTP error answer (408, 429,
5xx), a dropped connection or an unreadable answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..cost import FREE, Price
from ..errors import MalformedAnswerError
from ..tasks import ModelInput
from .answers import kind_of
from .base import MODEL_ENV, Answer, BackendEnv, Request
from .rest import RestBackend, RestClient, data_uri, media_payload

__all__ = ["OpenAIBackend", "build_chat_body", "parse_chat_completion"]


def build_chat_body(model: str, media: ModelInput, url: str, prompt: str, max_tokens: int) -> dict:
    """The chat-completions request for one item (pure)."""
    part_type = "video_url" if media == "video" else "image_url"
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": part_type, part_type: {"url": url}},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def parse_chat_completion(body: Any) -> tuple[str, dict, str | None]:
    """(text, usage, model) from a chat-completions answer (pure). Content that is not
    text (a number, an object, null, parts whose text is not a string) is a
    :class:`MalformedAnswerError`; a ``model``, ``usage`` or ``finish_reason`` of the
    wrong type is left out."""
    try:
        choice = body["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        # a 200 answer the server completed, only not in the protocol's shape: asking again
        # gets the same, so it is a permanent failure for this task (remembered, not re-sent)
        raise MalformedAnswerError("openai: answer has no choices[0].message.content", backend="openai") from None
    if isinstance(content, list):  # some servers answer with content parts
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if not all(isinstance(part, str) for part in parts):
            kinds = sorted({kind_of(part) for part in parts if not isinstance(part, str)})
            raise MalformedAnswerError(f"openai: a content part's text is {' and '.join(kinds)}, not text", backend="openai")
        content = "".join(parts)
    if not isinstance(content, str):
        raise MalformedAnswerError(f"openai: the message content is {kind_of(content)}, not text", backend="openai")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    meta = {
        k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(usage.get(k), int) and not isinstance(usage[k], bool)
    }
    if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
        meta["finish_reason"] = choice["finish_reason"][:40]
    model = body.get("model")
    return content, meta, model if isinstance(model, str) else None


class OpenAIBackend(RestBackend):
    """Molmo2 behind an OpenAI-compatible server. Options: :class:`~.rest.RestOptions`."""

    name: ClassVar[str] = "openai"
    capabilities: ClassVar[dict] = {
        "image": frozenset({"caption", "ask", "count", "scene"}),
        "video": frozenset({"caption", "ask", "count", "scene", "video"}),
    }
    default_model: ClassVar[str] = "allenai/Molmo2-4B"
    price: ClassVar[Price] = FREE  # your own server
    env: ClassVar[BackendEnv] = BackendEnv(api_key="OPENAI_API_KEY", base_url="OPENAI_BASE_URL", model=MODEL_ENV)
    default_base_url: ClassVar[str] = "http://localhost:8000/v1"
    key_required: ClassVar[bool] = False

    def should_retry(self, method: str, status: int, body: Any, *, idempotent: bool) -> bool:
        return status == 429 or status >= 500 or status == 408

    async def call(self, request: Request, client: RestClient) -> Answer:
        item, task = request.item, request.task
        media = item.model_input
        if item.remote_url:
            url = item.remote_url
        else:
            data, mime = await media_payload(item)
            url = data_uri(data, mime)
        body = build_chat_body(self.model, media, url, task.prompt(media), task.max_new_tokens())
        answer = await client.post_json(f"{self.base_url}/chat/completions", body, timeout=self.options.timeout, resend_safe=True)
        text, usage, model = parse_chat_completion(answer)
        return Answer(text=text, cost_usd=0.0, model=model or self.model, meta=usage)
