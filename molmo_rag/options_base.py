"""The base of every options model: typed, described, and failing with our own error.

A pydantic ``ValidationError`` raised while building options becomes one
:class:`~molmo_rag.errors.UsageError` naming the field and what it accepts, so bad options
never leak pydantic's multi-line report (or the value, which may be a secret).

**Cache keys from declared fields**: an option that changes what is sent to the model (the
pixels, frames or clips, the prompt) or what is kept of its answer is declared with
:func:`cache_key_field`; :func:`cache_key_values` reads those of any options instance, and
the result cache keys every answer with them. Values equal to the field's default are left
out, so the key of an all-defaults run stays as it was before a field was marked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticUndefined

from .errors import usage_error_from

__all__ = ["Options", "cache_key_field", "cache_key_fields", "cache_key_values"]

CACHE_KEY = "cache_key"
"""The ``json_schema_extra`` flag :func:`cache_key_field` sets on a field."""


def cache_key_field(default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """A pydantic ``Field`` marked as changing what is sent or what is stored of the
    answer: its value (when not the default) is part of every result-cache key."""
    extra = {**(kwargs.pop("json_schema_extra", None) or {}), CACHE_KEY: True}
    return Field(default, json_schema_extra=extra, **kwargs)


def cache_key_fields(model: type[BaseModel] | BaseModel) -> frozenset[str]:
    """Names of the fields of an options model declared with :func:`cache_key_field`."""
    cls = model if isinstance(model, type) else type(model)
    return frozenset(
        name
        for name, info in cls.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(CACHE_KEY)
    )


def cache_key_values(options: Any, prefix: str = "") -> dict[str, Any]:
    """The marked fields of ``options`` that differ from their default, JSON-ready, each
    name behind ``prefix``: the part of a cache key these options make ({} for None or
    anything that is not an options model)."""
    if not isinstance(options, BaseModel):
        return {}
    marked = cache_key_fields(options)
    if not marked:
        return {}
    dumped = options.model_dump(mode="json", include=set(marked), exclude_defaults=True)
    return {f"{prefix}{name}": value for name, value in dumped.items()}


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
