"""Why a folder that molmo-rag keeps state in (the embedded index, the result cache) cannot
be made or written, in words that name the culprit: a file where a folder should be, a
read-only file system, no permission. Asked before the folder is opened, so the error says
what the thing is instead of what SQLite or ``mkdir`` said ("File exists", "unable to open
database file")."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["blocking_file", "read_only_fs", "unwritable"]


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return None


def blocking_file(path: Path) -> str | None:
    """What stands where the folder ``path`` (or one of its parents) must be, e.g.
    ``"/x/notes.txt is a file, not a folder"``; None when nothing does."""
    found = _nearest_existing(path)
    if found is None or found.is_dir():
        return None
    if found.is_symlink() and not found.exists():
        return f"{found} is a broken symbolic link, not a folder"
    return f"{found} is a file, not a folder"


def read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def unwritable(path: Path) -> str | None:
    """Why files cannot be made in the folder ``path`` (or, while it does not exist, in the
    nearest parent that does, where it would be made); None when they can."""
    found = _nearest_existing(path)
    if found is None or not found.is_dir():
        return None  # blocking_file says why
    if os.access(found, os.W_OK | os.X_OK):
        return None
    return "the file system is read-only" if read_only_fs(found) else "permission denied (the folder is not writable)"
