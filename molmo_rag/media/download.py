"""Fetching an http(s) URL: one deadline for the whole exchange, a size cap counted on the
bytes as they are decoded, and the rule for when the URL itself may be handed on.

* ``max_download_seconds`` bounds everything from connecting to the last byte: httpx's
  timeouts are per read, so a server sending its headers (or body) a byte at a time would
  never meet them. The exchange runs on an event loop under ``asyncio.timeout``, which
  cancels a read wherever it waits and closes the connection.
* Media are compressed already, so the request asks for ``identity``; a server that sends
  gzip or deflate anyway is decoded here, 64 KiB of output at a time, each piece counted
  against ``max_download_bytes``: a gzip bomb stops at the cap with flat memory (httpx's
  decoder inflates each read whole: 64 MiB from one 64 KiB read of a bomb).
* Bodies up to ``download_in_memory_bytes`` stay in memory; bigger ones are spooled to a
  temporary file deleted with their :class:`~.blob.Blob`.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
import weakref
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from ..errors import (
    CorruptMediaError,
    InputError,
    MediaTooLargeError,
    SourceNotFoundError,
    UnreachableSourceError,
    UnsupportedMediaError,
)
from .blob import Blob
from .netaddr import is_public_url
from .options import ReaderOptions

__all__ = ["fetch_url", "strip_credentials", "check_size"]

_PIECE = 64 * 1024
"""Most bytes one decoding step makes."""
_GZIP, _ZLIB, _RAW_DEFLATE = zlib.MAX_WBITS | 32, zlib.MAX_WBITS, -zlib.MAX_WBITS  # (gzip or zlib header)


def check_size(size: int, options: ReaderOptions, source: str) -> None:
    if size > options.max_download_bytes:
        raise MediaTooLargeError(
            f"{source} is larger than max_download_bytes ({options.max_download_bytes} bytes)",
            source=source,
        )


_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", re.DOTALL)


def strip_credentials(url: str) -> str:
    """The URL without ``user:password@`` (works on malformed URLs too)."""
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    scheme, authority, tail = match.groups()
    return f"{scheme}{authority.rpartition('@')[2]}{tail}"


def fetch_url(url: str, options: ReaderOptions | None = None) -> Blob:
    """Fetch ``url`` under the size cap and the download deadline; small files stay in memory."""
    import httpx

    from ..syncio import run_sync

    options = options or ReaderOptions()
    shown = strip_credentials(url)
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnreachableSourceError(f"{shown} is not a valid URL: {exc}", source=shown) from exc
    return run_sync(_fetch(url, shown, options))


class _Body:
    """The bytes of a download as they arrive: in memory, then in a temporary file past
    ``download_in_memory_bytes``; sizes checked as they grow."""

    def __init__(self, shown: str, options: ReaderOptions):
        self.shown, self.options = shown, options
        self.sent = 0  # bytes on the wire
        self.size = 0  # bytes decoded
        self.encoding = ""
        self.headers_done = False
        self._buf: io.BytesIO | None = io.BytesIO()
        self._spool: IO[bytes] | None = None

    def count_sent(self, piece: bytes) -> bytes:
        self.sent += len(piece)
        check_size(self.sent, self.options, self.shown)
        return piece

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.options.max_download_bytes and self.encoding:
            raise MediaTooLargeError(
                f"{self.shown} inflates past max_download_bytes ({self.options.max_download_bytes} bytes): it was "
                f"sent with Content-Encoding: {self.encoding}, {self.sent} bytes so far (a compression bomb, or a "
                "file over the cap)",
                source=self.shown,
            )
        check_size(self.size, self.options, self.shown)
        if self._spool is None and self.size > self.options.download_in_memory_bytes:
            self._spool = tempfile.NamedTemporaryFile(prefix="molmo-rag-", delete=False)
            self._spool.write(self._buf.getvalue())
            self._buf = None
        (self._spool if self._spool is not None else self._buf).write(piece)

    def progress(self) -> str:
        return f"{self.size} bytes so far" if self.headers_done else "its headers not yet complete"

    def discard(self) -> None:
        if self._spool is not None:
            self._spool.close()
            _unlink_quietly(self._spool.name)
            self._spool = None

    def blob(self, remote_url: str | None, mime: str | None) -> Blob:
        if self._spool is None:
            return Blob(source=self.shown, data=self._buf.getvalue(), remote_url=remote_url, mime=mime)
        self._spool.close()
        blob = Blob(source=self.shown, path=Path(self._spool.name), remote_url=remote_url, mime=mime)
        weakref.finalize(blob, _unlink_quietly, self._spool.name)
        return blob


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def _fetch(url: str, shown: str, options: ReaderOptions) -> Blob:
    import httpx

    body = _Body(shown, options)
    limit = options.max_download_seconds
    try:
        async with asyncio.timeout(limit) as deadline:  # None: no limit
            final_url, mime = await _exchange(url, body, options)
    except TimeoutError:
        body.discard()
        if not deadline.expired():
            raise
        raise UnreachableSourceError(
            f"{shown} was still sending after {limit:g} s ({body.progress()}; max_download_seconds)", source=shown
        ) from None
    except InputError:
        body.discard()
        raise
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        body.discard()
        raise UnreachableSourceError(f"cannot fetch {shown}: {type(exc).__name__}: {exc}", source=shown) from exc
    except BaseException:
        body.discard()
        raise
    remote = url if _may_be_passed_on(url, final_url, options) else None
    return body.blob(remote, mime)


async def _exchange(url: str, body: _Body, options: ReaderOptions) -> tuple[str, str | None]:
    """GET ``url`` into ``body``; the final URL (after redirects) and the declared type."""
    import httpx

    shown = body.shown
    async with httpx.AsyncClient(timeout=httpx.Timeout(options.url_timeout), follow_redirects=True) as client:
        async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
            body.headers_done = True
            if response.status_code in (404, 410):
                raise SourceNotFoundError(f"{shown} answered HTTP {response.status_code}", source=shown)
            if response.status_code >= 400:
                raise UnreachableSourceError(f"{shown} answered HTTP {response.status_code}", source=shown)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit():
                check_size(int(declared), options, shown)
            mime = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
            if mime and mime.startswith(("text/html", "application/json")):
                raise UnsupportedMediaError(f"{shown} is {mime}, not media", source=shown)
            encodings = _encodings(response.headers.get("content-encoding", ""), shown)
            body.encoding = ", ".join(encodings)
            pieces: AsyncIterator[bytes] = (body.count_sent(p) async for p in response.aiter_raw())
            for encoding in reversed(encodings):  # the last one applied comes off first
                pieces = _inflate(pieces, encoding, shown)
            async for piece in pieces:
                body.write(piece)
            return str(response.url), mime


def _encodings(header: str, shown: str) -> list[str]:
    """The content codings of a response, in the order they were applied; ones that cannot
    be decoded here are refused by name."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise UnsupportedMediaError(
                f"{shown} was sent with Content-Encoding: {coding}, which is not decoded here (it was asked "
                "for without compression: media files are compressed already)",
                source=shown,
            )
    return codings


async def _inflate(pieces: AsyncIterator[bytes], encoding: str, shown: str) -> AsyncIterator[bytes]:
    """Take one gzip or deflate coding off, at most ``_PIECE`` bytes of output a step (the
    members of a multi-member gzip one after the other)."""
    decoder = None
    head = b""
    async for data in pieces:
        if decoder is None:  # deflate's first two bytes say whether it is zlib-wrapped
            head += data
            if len(head) < 2:
                continue
            data, head = head, b""
            decoder = zlib.decompressobj(_deflate_wbits(data) if encoding == "deflate" else _GZIP)
        try:
            while True:
                out = decoder.decompress(data, _PIECE)
                if out:
                    yield out
                data = decoder.unconsumed_tail
                if decoder.eof and encoding != "deflate" and decoder.unused_data:
                    data = decoder.unused_data + data
                    decoder = zlib.decompressobj(_GZIP)
                if not data and len(out) < _PIECE:  # a full piece may leave output inside zlib
                    break
        except zlib.error as exc:
            raise CorruptMediaError(
                f"{shown} was sent with Content-Encoding: {encoding}, and its bytes do not decode ({exc})",
                source=shown,
            ) from exc


def _deflate_wbits(head: bytes) -> int:
    """``deflate`` is meant to be zlib-wrapped (RFC 9110); some servers send raw deflate."""
    zlib_header = head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0
    return _ZLIB if zlib_header else _RAW_DEFLATE


def _may_be_passed_on(url: str, final_url: str, options: ReaderOptions) -> bool:
    """Whether backends may hand ``url`` itself to a hosted API instead of the bytes fetched here.

    Not with a user name or password in it (they would travel with it), and not when it (or
    where it redirected) is on this machine or a private network, which a hosted service
    cannot reach, unless ``options.pass_private_urls``."""
    if strip_credentials(url) != url:
        return False
    if options.pass_private_urls:
        return True
    return is_public_url(url) and (final_url == url or is_public_url(final_url))
