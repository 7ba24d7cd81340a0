"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

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
    typer.Option(
        "--concurrency", "-c", min=1, show_default=False,
        help="Requests at once: sets the backend's concurrency option (batch size of a local model, requests in flight of a hosted API).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Do not read cached results (fresh results are still stored).")
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Result cache folder (env MOLMO_RAG_CACHE_DIR; default the user cache dir).", show_default=False),
]
RetryFailedOpt = Annotated[
    bool,
    typer.Option(
        "--retry-failed",
        help="Send again the requests an earlier run failed for good (content policy, invalid input); "
        "by default their failure is reported from the cache and nothing is sent.",
    ),
]
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
    """The backend ``--backend`` names, else ``MOLMO_RAG_BACKEND``, else ``local``."""
    from ..backends.base import backend_name

    return backend_name(backend)


def resolve_backend_class(backend: str | None) -> "type[Backend]":
    """The class of that backend: its declared facts (capabilities, price), no key read."""
    from ..backends.base import backend_class

    return backend_class(resolve_backend_name(backend))


def make_backend(backend: str | None, model: str | None, concurrency: int | None = None, **extra: Any) -> "Backend":
    """The backend the options name, with the environment's defaults; ``--concurrency``
    sets the option the backend declares for it (``Backend.concurrency_option``)."""
    from ..backends.base import create_backend

    return create_backend(backend, model, concurrency, **extra)


def emit_json(obj: dict) -> None:
    """One JSON line, exact: text as it is (JSON escapes control characters itself)."""
    line = json.dumps(obj, ensure_ascii=False, default=str)
    try:
        sys.stdout.write(line + "\n")
    except UnicodeEncodeError:  # a lone surrogate, or a stdout narrower than UTF-8: \u escapes are JSON too
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


_UNSAFE_ON_A_TERMINAL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""Control characters (C0, DEL, C1: ESC starts every escape sequence, OSC titles included;
CR, BS and BEL), bidi marks, embeddings, overrides and isolates, line and paragraph
separators, and lone surrogates."""
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (os.fsdecode's surrogateescape)
        code -= 0xDC00
    return _SHORT_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def for_terminal(text: object) -> str:
    """``text`` safe to print in a human line: what would move the cursor, clear the screen,
    set a window title, overwrite the line or reorder it (see ``_UNSAFE_ON_A_TERMINAL``) is
    written as a Python escape (``\\x1b``, ``\\r``, ``\\u202e``), a file name that is not
    UTF-8 as ``\\xff``; everything else (any script, emoji) unchanged. ``--json`` stays exact."""
    return _UNSAFE_ON_A_TERMINAL.sub(_escape, str(text))


def where_label(obj: dict) -> str:
    """'file', 'file slide 3' or 'file 0.0-30.0s' for humans (terminal-safe)."""
    label = str(obj.get("source", ""))
    if obj.get("slide") is not None:
        label += f" slide {obj['slide']}"
    if obj.get("start") is not None and obj.get("end") is not None:
        label += f" {obj['start']:.1f}-{obj['end']:.1f}s"
    return for_terminal(label)


def calls_line(backend: str, fresh: int, cached: int, failed_sent: int, failed_cached: int) -> str:
    """Every request of a run, counted once: answered by the backend, from the cache,
    failed at the backend, failed in an earlier run (remembered, not sent again)."""
    line = f"{fresh} result(s) from {backend}, {cached} from cache"
    if failed_sent:
        line += f", {failed_sent} failed at {backend}"
    if failed_cached:
        line += f", {failed_cached} failed in an earlier run (not sent again; --retry-failed sends them)"
    return line


def exit_interrupted(kept: str, *, no_cache: bool = False) -> NoReturn:
    """End a Ctrl-C'd run (its clean-up already ran): one line saying what it kept and how
    to resume, then exit 130."""
    import gc

    again = "run it again without --no-cache" if no_cache else "run the same command again"
    print(f"molmo-rag: interrupted: {kept}; {again} to resume: only what is missing is sent", file=sys.stderr, flush=True)
    # The process ends now: spare it the final garbage collections over everything torch
    # and transformers made (seconds on a busy machine), as nothing is left to finalize.
    gc.freeze()
    raise typer.Exit(130)


def kept_in_cache(cache_dir: Path | None, since: float, backend: str) -> str:
    """What a Ctrl-C'd run left in the result cache, as the tail of its last line (", N
    result(s) in the cache, J job(s) still running ..."), or "" when the cache cannot be read."""
    from ..cache import ResultCache

    try:
        with ResultCache(cache_dir, write=False) as cache:
            results, jobs = cache.stored_since(since), len(cache.pending_jobs(backend))
    except Exception:  # noqa: BLE001 - a count is a nicety on the way out
        return ""
    kept = f", {results} result(s) in the cache"
    if jobs:
        kept += f", {jobs} job(s) still running at {backend} in the journal (the next run polls them)"
    return kept
