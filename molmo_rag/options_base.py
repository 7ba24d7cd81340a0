"""The base of every options model: typed, described, and failing with our own error.

A pydantic ``ValidationError`` raised while building options becomes one
:class:`~molmo_rag.errors.UsageError` naming the field and what it accepts, so bad options
never leak pydantic's multi-line report (or the value, which may be a secret).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import usage_error_from

__all__ = ["Options"]


class Options(BaseModel):
    """Options as data: unknown fields are refused; bad values raise UsageError."""

    model_config = ConfigDict(extra="forbid")
    what: ClassVar[str] = "options"
    """How error messages name this model, e.g. "reader options"."""

    @classmethod
    def _what(cls) -> str:
        return cls.what

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise usage_error_from(exc, self._what()) from None
