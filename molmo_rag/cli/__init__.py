"""The ``molmo-rag`` command.

Errors of the :class:`~molmo_rag.errors.MolmoRagError` tree become one clear line on
stderr, never a traceback: exit status 2 for a usage error (a value the command does not
accept: the line names the flag or argument and what it takes), 1 for everything else.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .app import app

__all__ = ["app", "main"]

# Keys the commands read from the environment; they and URL credentials are scrubbed from
# every log record while a command runs (see _scrubbed_logs).
_KEY_VARIABLES = ("WAVESPEED_API_KEY", "OPENOCTOPUS_API_KEY", "OPENAI_API_KEY", "QDRANT_API_KEY")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@]+@")


def _scrub(text: str) -> str:
    from ..errors import redact

    return _URL_CREDENTIALS.sub(r"\1***@", redact(text, [os.environ.get(name) for name in _KEY_VARIABLES]))


@contextmanager
def _scrubbed_logs() -> Iterator[None]:
    """While a command runs, scrub secrets from every log record, whichever library logs it,
    before any handler sees it: httpx logs each request's URL at INFO (a key in a base URL's
    query, a media URL's ``user:password@``), httpcore the response headers at DEBUG (a
    server that echoes the Authorization header). Records are only made for enabled levels,
    so this costs nothing while logging is off."""
    make_record = logging.getLogRecordFactory()

    def scrubbed(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it itself
            return record
        clean = _scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(scrubbed)
    try:
        yield
    finally:
        if logging.getLogRecordFactory() is scrubbed:
            logging.setLogRecordFactory(make_record)


def _register_commands() -> None:
    # Imported for their side effect: each module adds its commands to ``app``.
    import importlib

    for module in ("analyze_cmd", "index_cmd"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is missing
            if exc.name != f"{__name__}.{module}":
                raise


_ARGUMENTS = {"query": "QUERY", "question": "QUESTION", "target": "WHAT", "sources": "SOURCE"}


def _flag(option: str | None) -> str:
    """The command-line spelling of a library parameter: ``segment`` -> ``--segment``."""
    if not option:
        return ""
    return _ARGUMENTS.get(option) or "--" + option.replace("_", "-")


def main(argv: list[str] | None = None) -> int:
    from ..errors import MolmoRagError, UsageError

    _register_commands()
    try:
        with _scrubbed_logs():
            app(args=argv, prog_name="molmo-rag")
    except UsageError as exc:
        flag = _flag(exc.option)
        print(f"molmo-rag: error: {flag + ': ' if flag else ''}{exc}", file=sys.stderr)
        return 2
    except MolmoRagError as exc:
        flag = _flag(getattr(exc, "option", None))
        print(f"molmo-rag: error: {flag + ': ' if flag else ''}{exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # typer's standalone mode always exits
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
