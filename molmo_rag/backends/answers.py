"""The boundary every answer crosses before anything keeps it (:meth:`Backend._to_result`).

Answers come from outside (a hosted service's JSON, a model's tokens), so before a result
is cached, indexed, printed or logged:

* **its text is text**: anything else (a number, an object, null) is a
  :class:`~molmo_rag.errors.MalformedAnswerError` for that one task (typed, not retryable,
  carrying what the answer cost), never a ``TypeError`` that ends the run;
* **it is clean**: NUL and other control characters (but tab and newline) and lone
  surrogates are removed (they cannot be stored as UTF-8, nor printed);
* **it holds no secret**: every registered key (:func:`molmo_rag.errors.register_secret`)
  and the backend's own are replaced by ``***`` in the text, the model name and every
  string of the parsed fields; error messages and codes are redacted too, and made one line;
* **it is bounded**: the text is cut at ``max_answer_chars`` and the points at
  ``max_answer_points`` (options of :class:`~molmo_rag.backends.base.BackendOptions`), and
  the result says so in its ``truncated`` field (``["text"]``, ``["points"]``);
* **it parses**: a parser that finds the answer unusable (a count of 5,000 digits) fails
  that task with a MalformedAnswerError; the item's other tasks are unaffected.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, MalformedAnswerError, MolmoRagError, redact, redact_secrets
from ..results import Result

if TYPE_CHECKING:  # pragma: no cover
    from .base import Answer, Backend, Request

__all__ = [
    "DEFAULT_MAX_ANSWER_CHARS", "DEFAULT_MAX_ANSWER_POINTS", "clean_text", "one_line", "kind_of", "checked_result", "checked_error",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_ANSWER_CHARS = 65_536
"""64 Ki characters: about 16,000 tokens, far above any Molmo2 answer (768 new tokens at most)."""
DEFAULT_MAX_ANSWER_POINTS = 4_096
"""Far above a real count or track (a crowd of a few hundred, tracks over 64 frames)."""
MAX_ERROR_CHARS = 2_000
"""An error message longer than this (a service that sent its whole request back) is cut."""
_MAX_MODEL_CHARS = 200

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
"""NUL and the other C0 controls but tab and newline, DEL, and lone surrogates (a valid
surrogate pair is one code point in a Python str, so whatever matches here is alone)."""
_BREAKS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]+")


def clean_text(text: str) -> str:
    """``text`` without control characters (tab and newline kept) and lone surrogates."""
    return _UNPRINTABLE.sub("", text)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line (control characters and lone surrogates become a space), at
    most ``limit`` characters."""
    text = _BREAKS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _limits(backend: Backend) -> tuple[int, int]:
    options = getattr(backend, "options", None)
    return (
        getattr(options, "max_answer_chars", DEFAULT_MAX_ANSWER_CHARS),
        getattr(options, "max_answer_points", DEFAULT_MAX_ANSWER_POINTS),
    )


def _own_key(backend: Backend) -> list[str | None]:
    key = getattr(backend, "_key", None)
    return [key()] if callable(key) else []


def _scrub(value: Any, secrets: list[str | None]) -> Any:
    """Every string inside ``value`` (dicts, lists) cleaned and redacted."""
    if isinstance(value, str):
        return redact_secrets(clean_text(value), secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets) for v in value]
    return value


_JSON_KINDS = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list", tuple: "a list"}


def kind_of(value: Any) -> str:
    """What a decoded JSON value is, in words ("a number", "an object", "null")."""
    if value is None:
        return "null"
    return _JSON_KINDS.get(type(value), f"a {type(value).__name__}")


def _cost(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0 else 0.0


def _what(request: Request) -> str:
    return f"the {request.task.name} answer for {request.item.source}"


def checked_result(backend: Backend, request: Request, answer: Answer) -> Result | MalformedAnswerError:
    """The Result of one answer, cleaned, redacted and capped, or the MalformedAnswerError
    that says why the answer cannot be used (see the module docstring)."""
    from .base import shift_points

    cost = _cost(answer.cost_usd)
    if not isinstance(answer.text, str):
        return _filled(
            MalformedAnswerError(f"{_what(request)} is {kind_of(answer.text)}, not text; asking again would pay for the same answer"),
            backend, request, cost,
        )
    max_chars, max_points = _limits(backend)
    secrets = _own_key(backend)
    # cleaned and redacted whole, then cut: a cut must not leave the start of a key behind
    text = redact_secrets(clean_text(answer.text), secrets)
    truncated = []
    if len(text) > max_chars:
        text = text[:max_chars]
        truncated.append("text")
    try:
        fields = request.task.parse(text)
    except MalformedAnswerError as exc:
        return _filled(exc, backend, request, cost)
    except Exception as exc:  # noqa: BLE001 - a parser that trips on an odd answer fails this task only
        log.warning("%s: %s could not be parsed: %s: %s", backend.name, _what(request), type(exc).__name__, one_line(str(exc), 200))
        return _filled(
            MalformedAnswerError(f"{_what(request)} could not be read ({type(exc).__name__})"), backend, request, cost
        )
    points = fields.get("points")
    if isinstance(points, list) and len(points) > max_points:
        fields["points"] = points[:max_points]
        truncated.append("points")
    if request.item.model_input == "video":
        fields = shift_points(fields, request.item.start)
    fields = _scrub(fields, secrets)
    if truncated:
        fields["truncated"] = truncated
        log.warning("%s: %s was cut (%s over its limit)", backend.name, _what(request), " and ".join(truncated))
    model = answer.model if isinstance(answer.model, str) and answer.model.strip() else None
    if model is not None:
        model = one_line(redact_secrets(model, secrets), _MAX_MODEL_CHARS)
    return Result(
        item=request.item,
        task=request.task,
        text=text,
        fields=fields,
        backend=backend.name,
        model=model or backend.model,
        cost_usd=cost,
    )


def checked_error(backend: Backend, request: Request, error: BaseException) -> MolmoRagError:
    """The error one request ended with, as one of ours: its message and code redacted and
    on one line; a MalformedAnswerError names the backend and carries the request's cost."""
    if not isinstance(error, MolmoRagError):
        wrapped = BackendError(f"{type(error).__name__}: {error}", backend=backend.name)
        wrapped.__cause__ = error
        error = wrapped
    secrets = _own_key(backend)
    error.args = tuple(one_line(redact(a, secrets)) if isinstance(a, str) else a for a in error.args)
    code = getattr(error, "code", None)
    if code is not None:
        error.code = one_line(redact(str(code), secrets), 100)
    if isinstance(error, MalformedAnswerError):
        _filled(error, backend, request, error.cost_usd)
    return error


def _filled(error: MalformedAnswerError, backend: Backend, request: Request, cost: float) -> MalformedAnswerError:
    """The error named after the backend, with the answer's cost (else the price of the
    request: a hosted job that answered was paid for)."""
    error.backend = error.backend or backend.name
    if error.args and isinstance(error.args[0], str) and not error.args[0].startswith(f"{backend.name}:"):
        error.args = (f"{backend.name}: {error.args[0]}", *error.args[1:])
    if not cost:
        try:
            cost = _cost(backend.estimate_cost(request))
        except Exception:  # noqa: BLE001 - no price (e.g. a video over the length limit): 0
            cost = 0.0
    error.cost_usd = cost
    return error
