"""The ``molmo-rag`` command.

Errors of the :class:`~molmo_rag.errors.MolmoRagError` tree become one clear line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys

from .app import app

__all__ = ["app", "main"]


def _register_commands() -> None:
    # Imported for their side effect: each module adds its commands to ``app``.
    import importlib

    for module in ("analyze_cmd", "index_cmd"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is missing
            if exc.name != f"{__name__}.{module}":
                raise


def main(argv: list[str] | None = None) -> int:
    from ..errors import MolmoRagError

    _register_commands()
    try:
        app(args=argv, prog_name="molmo-rag")
    except MolmoRagError as exc:
        print(f"molmo-rag: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # typer's standalone mode always exits
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
