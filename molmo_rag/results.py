"""What a run hands back for each (item, task): a :class:`Result`, or a :class:`Failure`
that says which source (and task) could not be done, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MolmoRagError

if TYPE_CHECKING:  # pragma: no cover
    from .media.items import MediaItem
    from .tasks import Task

__all__ = ["Result", "Failure"]


@dataclass
class Result:
    """One parsed answer for one media item and one task."""

    item: "MediaItem"
    task: "Task"
    text: str
    fields: dict
    backend: str
    model: str
    cost_usd: float = 0.0
    cached: bool = False

    def to_json(self) -> dict:
        """The JSON object of the CLI: source, kind, backend, model, task fields, cost."""
        out: dict[str, Any] = {
            "source": self.item.source,
            "kind": self.item.kind,
            "backend": self.backend,
            "model": self.model,
            "media_id": self.item.media_id,
        }
        for key in ("slide", "title", "start", "end"):
            value = getattr(self.item, key)
            if value is not None:
                out[key] = value
        out.update(self.fields)
        out["cost_usd"] = round(self.cost_usd, 6)
        return out


@dataclass
class Failure:
    """A source, or one task on one item, that could not be done, and why. ``task`` is None
    when the source itself could not be read."""

    source: str
    error: MolmoRagError
    media_id: str | None = None
    task: "Task | None" = None
    item: "MediaItem | None" = None
    backend: str | None = None
    model: str | None = None
    cached: bool = False
    """A permanent failure remembered from an earlier run: reported again, not sent again."""

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (a transient service error)."""
        return bool(getattr(self.error, "retryable", False))

    def to_json(self) -> dict:
        out: dict[str, Any] = {"source": self.source}
        if self.item is not None:
            out["kind"] = self.item.kind
        for key in ("backend", "model"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.item is not None:
            for key in ("slide", "start", "end"):
                if getattr(self.item, key) is not None:
                    out[key] = getattr(self.item, key)
        if self.media_id:
            out["media_id"] = self.media_id
        if self.task is not None:
            out["task"] = self.task.name
            for key in ("target", "question", "text"):  # what tells two tasks of one name apart
                value = getattr(self.task, key, None)
                if value:
                    out[key] = value
        out["error"] = str(self.error)
        out["error_type"] = type(self.error).__name__
        for key in ("code", "status"):  # the vendor's error code and HTTP status, when known
            value = getattr(self.error, key, None)
            if value is not None:
                out[f"error_{key}"] = value
        if hasattr(self.error, "retryable"):  # a service error: may trying again later succeed?
            out["retryable"] = self.retryable
        cost = getattr(self.error, "cost_usd", None)
        if cost:  # an answer that came, was paid for and could not be used
            out["cost_usd"] = round(cost, 6)
        if self.cached:
            out["cached"] = True
        return out
