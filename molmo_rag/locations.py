"""Where molmo-rag stores things: one cache root for all of it.

The result cache (``results.sqlite3``), the slide renders (``slides/``) and the pictures
saved for documents (``frames/``) all live under one folder: ``--cache-dir`` (the result
cache's directory, which the engine hands on to the readers as ``ReaderOptions.cache_dir``),
else ``MOLMO_RAG_CACHE_DIR``, else the platform's user cache folder (``platformdirs``;
``$XDG_CACHE_HOME/molmo-rag`` or ``~/.cache/molmo-rag`` on Linux). Imports nothing of ours.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir() -> Path:
    """``MOLMO_RAG_CACHE_DIR``, else the platform's user cache dir for molmo-rag."""
    env = os.environ.get("MOLMO_RAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("molmo-rag"))
    except ImportError:  # pragma: no cover - platformdirs is almost always there
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "molmo-rag"
