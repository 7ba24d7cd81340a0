"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..vocabulary import BACKENDS
from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend

BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        help=f"Backend: {'|'.join(BACKENDS)} (env MOLMO_RAG_BACKEND; default local).",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model id or local path (env MOLMO_RAG_MODEL).", show_default=False),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--concurrency", "-c", min=1, help="Requests in flight (REST) or batch size (local).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")]
SegmentOpt = Annotated[
    str | None,
    typer.Option(
        "--segment",
        help="How videos are cut: 'scenes' (at shot boundaries, the default) or 'fixed' windows.",
        show_default=False,
    ),
]
SegmentSecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--segment-seconds",
        min=1.0,
        max=120.0,
        help="Window length for --segment fixed; the longest segment for scenes (default 30 / 60).",
        show_default=False,
    ),
]


def reader_options(segment: str | None, segment_seconds: float | None):
    """ReaderOptions for the video flags, or None for the readers' defaults."""
    if segment is None and segment_seconds is None:
        return None
    from ..media.options import ReaderOptions

    if segment not in (None, "scenes", "fixed"):
        raise UsageError(f"choose 'scenes' or 'fixed', not {segment!r}", option="segment")
    options: dict[str, Any] = {"segment_mode": segment or "scenes"}
    if segment_seconds is not None:
        if options["segment_mode"] == "fixed":
            options["segment_seconds"] = segment_seconds
        else:
            defaults = ReaderOptions()
            options["max_segment_seconds"] = segment_seconds
            options["min_segment_seconds"] = min(defaults.min_segment_seconds, segment_seconds / 2)
    return ReaderOptions(**options)


def resolve_backend_name(backend: str | None) -> str:
    name = backend or os.environ.get("MOLMO_RAG_BACKEND") or "local"
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}", option="backend")
    return name


def make_backend(backend: str | None, model: str | None, concurrency: int | None = None, **extra: Any) -> "Backend":
    """The backend the options name, with the environment's defaults."""
    from ..backends.base import create_backend

    return create_backend(resolve_backend_name(backend), model, concurrency, **extra)


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def where_label(obj: dict) -> str:
    """'file', 'file slide 3' or 'file 0.0-30.0s' for humans."""
    label = str(obj.get("source", ""))
    if obj.get("slide") is not None:
        label += f" slide {obj['slide']}"
    if obj.get("start") is not None and obj.get("end") is not None:
        label += f" {obj['start']:.1f}-{obj['end']:.1f}s"
    return label
