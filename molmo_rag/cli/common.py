"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from ..backends.base import BACKENDS, Backend, create_backend
from ..errors import ConfigurationError

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


def resolve_backend_name(backend: str | None) -> str:
    name = backend or os.environ.get("MOLMO_RAG_BACKEND") or "local"
    if name not in BACKENDS:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return name


def make_backend(backend: str | None, model: str | None, concurrency: int | None = None, **extra: Any) -> Backend:
    """The backend the options name, with the environment's defaults."""
    return create_backend(resolve_backend_name(backend), model, concurrency, **extra)


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def error_json(source: str, exc: BaseException, media_id: str | None = None) -> dict:
    out = {"source": source, "error": str(exc), "error_type": type(exc).__name__}
    if media_id:
        out["media_id"] = media_id
    return out


def where_label(obj: dict) -> str:
    """'file', 'file slide 3' or 'file 0.0-30.0s' for humans."""
    label = str(obj.get("source", ""))
    if obj.get("slide") is not None:
        label += f" slide {obj['slide']}"
    if obj.get("start") is not None and obj.get("end") is not None:
        label += f" {obj['start']:.1f}-{obj['end']:.1f}s"
    return label
