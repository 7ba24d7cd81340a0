"""The ``molmo-rag`` command.

Errors of the :class:`~molmo_rag.errors.MolmoRagError` tree become one clear line on
stderr, never a traceback: exit status 2 for a usage error (a value the command does not
accept: the line names the flag or argument and what it takes), 1 for everything else.
"""

from __future__ import annotations

import os
import sys

from .app import app

__all__ = ["app", "main"]

# Keys the commands read from the environment: kept out of every log record (and URL
# credentials with them) while a command runs, whichever library logs (errors.register_secret).
_KEY_VARIABLES = ("WAVESPEED_API_KEY", "OPENOCTOPUS_API_KEY", "OPENAI_API_KEY", "QDRANT_API_KEY", "QDRANT_TO_API_KEY")


def _register_commands() -> None:
    # Imported for their side effect: each module adds its commands to ``app``.
    import importlib

    for module in ("analyze_cmd", "index_cmd", "migrate_cmd"):
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
    from .common import for_terminal

    _register_commands()
    try:
        from ..errors import register_secret

        for name in _KEY_VARIABLES:
            register_secret(os.environ.get(name))
        app(args=argv, prog_name="molmo-rag")
    except UsageError as exc:
        flag = _flag(exc.option)
        print(f"molmo-rag: error: {flag + ': ' if flag else ''}{for_terminal(exc)}", file=sys.stderr)
        return 2
    except MolmoRagError as exc:
        flag = _flag(getattr(exc, "option", None))
        print(f"molmo-rag: error: {flag + ': ' if flag else ''}{for_terminal(exc)}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # typer's standalone mode always exits
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
