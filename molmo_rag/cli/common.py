"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ..vocabulary import BACKENDS, Detail
from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - registering the commands imports none of these
    from ..cache import ResultCache
    from ..media.options import ReaderOptions
    from ..run import Run, RunOptions

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
    bool | None, typer.Option("--no-cache", help="Do not read cached results (fresh results are still stored).")
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Result cache folder (env MOLMO_RAG_CACHE_DIR; default the user cache dir).", show_default=False),
]
RetryFailedOpt = Annotated[
    bool | None,
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
        help="How videos are cut: 'scenes' (at shot boundaries) or 'fixed' windows (unset: the readers' default).",
        show_default=False,
    ),
]
SegmentSecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--segment-seconds",
        min=1.0,
        max=120.0,
        help="Window length for --segment fixed; the longest segment for scenes (unset: the readers' defaults).",
        show_default=False,
    ),
]
DetailOpt = Annotated[
    Detail | None,
    typer.Option("--detail", "-d", help="Caption detail: low | medium | high (unset: the library's default).", show_default=False),
]
CountOpt = Annotated[
    list[str] | None,
    typer.Option("--count", help="Things to count on every item, comma-separated or repeated (e.g. person,car).", show_default=False),
]
AskOpt = Annotated[
    list[str] | None, typer.Option("--ask", help="A question to answer about every item (repeatable).", show_default=False)
]


def split_commas(values: list[str] | None) -> list[str]:
    """``--count a,b --count c`` -> ``["a", "b", "c"]``."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def reader_options(segment: str | None, segment_seconds: float | None) -> "ReaderOptions | None":
    """ReaderOptions for the video flags, or None for the readers' defaults."""
    if segment is None and segment_seconds is None:
        return None
    from ..media.options import ReaderOptions

    if segment not in (None, "scenes", "fixed"):
        raise UsageError(f"choose 'scenes' or 'fixed', not {segment!r}", option="segment")
    defaults = ReaderOptions()
    options: dict[str, Any] = {"segment_mode": segment} if segment else {}
    if segment_seconds is not None:
        if (segment or defaults.segment_mode) == "fixed":
            options["segment_seconds"] = segment_seconds
        else:
            options["max_segment_seconds"] = segment_seconds
            options["min_segment_seconds"] = min(defaults.min_segment_seconds, segment_seconds / 2)
    return ReaderOptions(**options)


def options_from_flags(
    *,
    backend: str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    cache: "ResultCache | Path | bool | None" = None,
    no_cache: bool | None = None,
    retry_failed: bool | None = None,
    segment: str | None = None,
    segment_seconds: float | None = None,
    count: list[str] | None = None,
    ask: list[str] | None = None,
    detail: Detail | None = None,
    **fields: Any,
) -> "RunOptions":
    """The :class:`~molmo_rag.run.RunOptions` the shared run flags say (``--count`` split
    at commas, the video flags as reader options), with ``fields`` (other RunOptions fields)
    on top. Only what was given is set: every default is RunOptions' own. A bad flag fails
    here, before a backend is made or a key read."""
    from ..run import RunOptions

    given: dict[str, Any] = {
        name: value
        for name, value in {
            "backend": backend, "model": model, "concurrency": concurrency, "cache": cache, "detail": detail,
            "reader_options": reader_options(segment, segment_seconds),
            "no_cache": no_cache, "retry_failed": retry_failed,
            "count": split_commas(count) or None, "ask": list(ask or []) or None,
        }.items()
        if value is not None
    }
    return RunOptions(**given, **fields)


_RUN_FLAGS: dict[str, Any] = {
    "detail": DetailOpt, "count": CountOpt, "ask": AskOpt,
    "backend": BackendOpt, "model": ModelOpt, "concurrency": ConcurrencyOpt,
    "segment": SegmentOpt, "segment_seconds": SegmentSecondsOpt,
    "no_cache": NoCacheOpt, "cache": CacheDirOpt, "retry_failed": RetryFailedOpt,
}
"""Each run flag by its keyword of :func:`options_from_flags` (``cache`` is ``--cache-dir``)."""
BACKEND_FLAGS = ("backend", "model", "concurrency")
VIDEO_FLAGS = ("segment", "segment_seconds")
TASK_FLAGS = (*BACKEND_FLAGS, *VIDEO_FLAGS, "no_cache", "cache", "retry_failed")
"""The flags of every command that runs tasks: backend, video reading, result cache."""


def run_flags(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the run flags ``names`` (keys of ``_RUN_FLAGS``, in --help order) where
    its ``options`` parameter stands, and call it with the one RunOptions they say
    (:func:`options_from_flags`) as ``options``."""
    unknown = set(names) - _RUN_FLAGS.keys()
    if unknown:
        raise ValueError(f"no run flag {', '.join(sorted(unknown))}")
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_RUN_FLAGS[name]) for name in names]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command).parameters
        if "options" not in own:
            raise TypeError(f"{command.__name__} takes no `options` parameter for its run flags")
        params: list[inspect.Parameter] = []
        for param in own.values():
            if param.name == "options":
                params += flags
                continue
            annotation = param.annotation
            if isinstance(annotation, str):  # typer needs the Annotated objects, not `from __future__` strings
                annotation = eval(annotation, command.__globals__)  # noqa: S307 - what inspect's eval_str does
            # keyword-only: typer passes every value by name, and flags with defaults may precede arguments
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))

        @functools.wraps(command)
        def with_options(**values: Any) -> None:
            given = {name: values.pop(name) for name in names}
            return command(**values, options=options_from_flags(**given))

        with_options.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        with_options.__annotations__ = {param.name: param.annotation for param in params}
        return with_options

    return decorate


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


def exit_interrupted(kept: str, options: "RunOptions") -> NoReturn:
    """End a Ctrl-C'd run of ``options`` (its clean-up already ran): one line saying what it
    kept and how to resume, then exit 130."""
    import gc

    again = "run it again without --no-cache" if options.no_cache else "run the same command again"
    print(f"molmo-rag: interrupted: {kept}; {again} to resume: only what is missing is sent", file=sys.stderr, flush=True)
    # The process ends now: spare it the final garbage collections over everything torch
    # and transformers made (seconds on a busy machine), as nothing is left to finalize.
    gc.freeze()
    raise typer.Exit(130)


def kept_in_cache(run: "Run", since: float) -> str:
    """What a Ctrl-C'd run left in its result cache, as the tail of its last line (", N
    result(s) in the cache, J job(s) still running ..."), or "" without a cache or when it
    cannot be read."""
    from ..cache import ResultCache

    if run.cache is None:
        return ""
    backend = run.backend.name
    try:
        with ResultCache(run.cache.directory, write=False) as cache:
            results, jobs = cache.stored_since(since), len(cache.pending_jobs(backend))
    except Exception:  # noqa: BLE001 - a count is a nicety on the way out
        return ""
    kept = f", {results} result(s) in the cache"
    if jobs:
        kept += f", {jobs} job(s) still running at {backend} in the journal (the next run polls them)"
    return kept
