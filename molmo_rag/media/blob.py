"""The bytes of one source (a file on disk or bytes in memory) and where they came from."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Blob"]

_CHUNK = 1 << 20


@dataclass(eq=False)
class Blob:
    """The bytes of one source: a file on disk or bytes in memory, and where they came from."""

    source: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    remote_url: str | None = None
    mime: str | None = None
    """The content type the server or data URI declared, if any."""
    _sha256: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.path is not None and self.remote_url is None:
            return self.path.name
        tail = urllib.parse.urlparse(self.remote_url).path if self.remote_url else self.source
        return tail.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1].lower()

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")

    def head(self, n: int = 4096) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:
            return f.read(n)

    def read_bytes(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes, streamed in chunks and remembered."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            if self.data is not None:
                digest.update(self.data)
            else:
                with open(self.path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def av_input(self) -> Any:
        """What ``av.open`` takes for these bytes."""
        return io.BytesIO(self.data) if self.data is not None else str(self.path)
