"""The base of hosted REST backends, :class:`RestBackend`, and their options.

A REST backend implements one hook, ``async call(request, client) -> Answer``, for one
request, and may refine how an HTTP error answer is read (:meth:`RestBackend.error_for`,
:meth:`RestBackend.should_retry`) and the auth headers. An API that submits a job and is
polled for it fills in :class:`~molmo_rag.backends.jobs.SubmitAndPoll` instead (journaled
jobs, resume, failures classified). The HTTP machinery (client, retries, Retry-After,
streamed bodies, the submission grace on cancel, polling, account errors) is
:class:`~molmo_rag.backends.http.RestClient`, one per run, re-exported here.

This module keeps the key as ``SecretStr``, refuses one that cannot be sent
(:func:`check_key`), registers it for redaction, and sends it only to the backend's own
origin; at most ``max_jobs`` jobs are submitted and not finished at once; each item has one
deadline (``timeout``), and any error of an item comes back as a typed error, never raised
out of the run.
"""

from __future__ import annotations

from abc import abstractmethod

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr

from ..errors import (
    AuthenticationError,
    check_key,
    BackendError,
    BackendTimeout,
    ConfigurationError,
    InsufficientBalanceError,
    JobFailedError,
    JobNotFoundError,
    MolmoRagError,
    RateLimitError,
    redact,
    register_secret,
    UsageError,
)
from .base import Answer, Backend, BackendOptions, Call, Request
from . import http as _http
from .http import *  # noqa: F403 - the HTTP client's names stay importable from here, as before the split
from .http import SUBMIT_GRACE, ClientStats, RestClient, _tls_context, error_code_and_message, error_text, is_balance_error, is_http_url, parse_retry_after

__all__ = ["RestOptions", "RestBackend", "JobFailedError", "JobNotFoundError", "InsufficientBalanceError", "check_key", *_http.__all__]

log = logging.getLogger(__name__)


class RestOptions(BackendOptions):
    """Options every hosted REST backend takes (subclasses change defaults and add fields)."""

    api_key: SecretStr | None = Field(None, description="API key; default: the backend's environment variable.")
    base_url: str | None = Field(None, description="API base URL; default: the backend's environment variable or its public URL.")
    concurrency: int = Field(16, ge=1, description="Most HTTP requests in flight at once.")
    max_jobs: int = Field(64, ge=1, description="Most jobs submitted and not yet finished at once.")
    timeout: float = Field(600.0, gt=0, description="Overall limit for one item, submission to answer (s).")
    request_timeout: float = Field(60.0, gt=0, description="Read/write limit for one HTTP request (s).")
    connect_timeout: float = Field(10.0, gt=0, description="Limit for opening a connection (s).")
    max_retries: int = Field(4, ge=0, description="Retries of one HTTP request on transient failures.")
    retry_wait: float = Field(0.5, ge=0, description="First back-off before a retry (s); doubles, with jitter.")
    retry_wait_max: float = Field(20.0, ge=0, description="Longest back-off between retries (s).")
    max_retry_after: float = Field(120.0, ge=0, description="Longest Retry-After honoured (s); longer fails with RateLimitError.")
    poll_interval: float = Field(1.0, gt=0, description="First wait before polling a job (s).")
    poll_age_fraction: float = Field(
        0.1,
        gt=0,
        le=1.0,
        description="After the first poll, the wait before the next is this fraction of the job's age (within "
        "poll_min_interval and poll_max_interval): a finished job is seen about half this fraction of its run "
        "time late, whether it takes one second or a minute.",
    )
    poll_min_interval: float = Field(0.05, gt=0, description="Shortest wait between polls (s).")
    poll_max_interval: float = Field(5.0, gt=0, description="Longest wait between polls (s).")
    poll_timeout: float = Field(600.0, gt=0, description="Longest time a job is polled (s).")
    adaptive_polling: bool = Field(
        True, description="Time the first poll from how long this run's jobs took (their 10th percentile)."
    )
    max_resubmits: int = Field(2, ge=0, description="New submissions after a job failed in a way the protocol says is retryable.")
    submit_grace: float = Field(
        SUBMIT_GRACE,
        ge=0,
        le=30.0,
        description="On a cancel (Ctrl-C) while a job's submission is in flight, how long its POST may still take "
        "(s): a job the server accepted is then journaled (the next run polls it, nothing is paid twice) before the "
        "cancel goes on; 0 cancels at once. Only submissions wait; polls and back-offs are cancelled at once.",
    )
    max_response_bytes: int = Field(
        16 * 1024**2,
        ge=1024,
        description="Largest answer body read from the service (bytes, after decompression); a bigger one is not "
        "read (streamed, never held whole) and its item fails with MalformedAnswerError (answer_too_large).",
    )


class RestBackend(Backend):
    """Base of hosted REST backends: subclasses implement :meth:`call` for one request."""

    Options: ClassVar[type[RestOptions]] = RestOptions
    concurrency_option: ClassVar[str | None] = "concurrency"
    default_base_url: ClassVar[str] = ""
    key_required: ClassVar[bool] = True

    def __init__(
        self,
        options: RestOptions | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ):
        """``options`` or keyword options (see the backend's ``Options``). ``http_client``:
        an ``httpx.AsyncClient`` of yours (proxies, limits, event hooks), used as is and
        left open; ``transport``: an httpx transport for the client built here (e.g.
        ``httpx.MockTransport`` in tests, or one with its own retries or proxy)."""
        import os

        if http_client is not None and transport is not None:
            raise UsageError("give an http_client or a transport, not both", option="transport")
        self._http_client = http_client
        self._transport = transport
        values = {**(options.model_dump(exclude_unset=True) if options else {}), **{k: v for k, v in kwargs.items() if v is not None}}
        key_env, url_env = self.env.api_key, self.env.base_url
        where, option = "api_key", "api_key"
        if values.get("api_key") is None and key_env and os.environ.get(key_env):
            values["api_key"] = os.environ[key_env]
            where, option = f"the environment variable {key_env}", None
        check_key(_secret(values.get("api_key")), f"{self.name}: {where}", option)
        if values.get("base_url") is None:
            values["base_url"] = (os.environ.get(url_env) if url_env else None) or self.default_base_url
        self.options = self.Options(**values)
        register_secret(self._key())  # kept out of every log record, whoever logs
        if self.key_required and not self._key():
            raise ConfigurationError(
                f"{self.name}: no API key: set {key_env} or pass api_key=..."
            )
        self.model = self.options.model or self.default_model
        self.base_url = self.options.base_url.rstrip("/")
        if not is_http_url(self.base_url) or not urlsplit(self.base_url).hostname:
            where = f" (from {url_env})" if url_env and os.environ.get(url_env) == self.options.base_url else ""
            raise ConfigurationError(self.redact(f"{self.name}: base URL {self.base_url!r}{where} is not an http(s) URL"))
        self.last_stats: ClientStats | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.options.concurrency})"

    # -- the hooks -----------------------------------------------------------------------
    @abstractmethod
    async def call(self, request: Request, client: RestClient) -> Answer:
        """Run one request through ``client`` and return its answer (an API whose requests
        create jobs: fill in :class:`~molmo_rag.backends.jobs.SubmitAndPoll` instead)."""

    # -- protocol details subclasses may refine ------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def should_retry(self, method: str, status: int, body: Any, *, idempotent: bool) -> bool:
        """Whether an HTTP error answer may be retried. Default: 429 and 503 always (the
        server says it did not handle the request), other 5xx only for idempotent requests
        (a POST's 500/502/504 may hide an accepted job)."""
        if status in (429, 503):
            return True
        return idempotent and (status >= 500 or status == 408)

    def error_for(self, status: int, body: Any, text: str, headers: Any = None) -> BackendError:
        """Translate an HTTP error answer into the error tree (the one boundary)."""
        code, message = error_code_and_message(body)
        if message is None:
            message = error_text(text)
        # "(code)" rather than "code:": a code like invalid_api_key followed by a colon reads
        # as a key=value secret to redact(); WaveSpeed's code repeats the status.
        label = f" ({code})" if code and code != str(status) else ""
        message = self.redact(f"{self.name}: HTTP {status}{label}: {message}")
        kw: dict[str, Any] = {"backend": self.name, "code": code, "status": status}
        if status in (401, 403):
            return AuthenticationError(message, **kw)
        if 400 <= status < 500 and status != 429 and is_balance_error(status, code, message):
            if code is None or code == str(status):
                kw["code"] = "insufficient_balance"
            return InsufficientBalanceError(message, **kw)
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
            return RateLimitError(message, retry_after=retry_after, **kw)
        return BackendError(message, retryable=status >= 500 or status == 408, **kw)

    def redact(self, text: str) -> str:
        return redact(text, [self._key()])

    def _key(self) -> str | None:
        return _secret(self.options.api_key)

    def http_client(self) -> httpx.AsyncClient:
        opts = self.options
        return httpx.AsyncClient(
            transport=self._transport,
            verify=_tls_context(),
            timeout=httpx.Timeout(opts.request_timeout, connect=opts.connect_timeout),
            limits=httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency),
            headers={"User-Agent": "molmo-rag"},
            follow_redirects=True,
        )

    # -- Backend._open -------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Jobs kept in flight: ``concurrency`` (hosted APIs cap the jobs an account runs
        at once), never more than ``max_jobs``."""
        return min(self.options.concurrency, self.options.max_jobs)

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Call]:
        jobs = asyncio.Semaphore(self.options.max_jobs)
        async with AsyncExitStack() as stack:
            if self._http_client is not None:
                http = self._http_client  # the caller's: used as is, closed by the caller
            else:
                http = await stack.enter_async_context(self.http_client())
            client = RestClient(self, http)
            self.last_stats = client.stats

            async def call(request: Request) -> Answer | BaseException:
                async with jobs:
                    return await self._call_guarded(request, client)

            yield call

    async def _call_guarded(self, request: Request, client: RestClient) -> Answer | BaseException:
        try:
            async with asyncio.timeout(self.options.timeout):
                return await self._answer(request, client)
        except MolmoRagError as exc:
            return exc
        except TimeoutError as exc:
            error = BackendTimeout(  # retryable: a job still running stays journaled for a later run
                f"{self.name}: item {request.item.source!r} not answered within {self.options.timeout:g} s",
                backend=self.name,
                code="timeout",
                retryable=True,
            )
            error.__cause__ = exc
            return error
        except Exception as exc:  # a bug or an unexpected library error: report, never leak
            error = BackendError(f"{self.name}: {type(exc).__name__}: {self.redact(str(exc))}", backend=self.name)
            error.__cause__ = exc
            return error

    async def _answer(self, request: Request, client: RestClient) -> Answer:
        """One request's answer: :meth:`call` (a job API's template adds its journal)."""
        return await self.call(request, client)


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None
