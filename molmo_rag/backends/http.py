"""The HTTP client every hosted REST backend shares: :class:`RestClient`, one per run.

* one ``httpx.AsyncClient`` per run; at most ``concurrency`` HTTP requests in flight (a job
  waiting on the server holds no request slot, so slow jobs do not starve submissions);
* retries with jittered exponential back-off through tenacity: 5xx, 429 (``Retry-After``
  honoured), connection errors, timeouts and unreadable bodies of idempotent requests;
* **a POST is never re-sent when the server may already have accepted it**: after a read
  timeout, a connection dropped after sending, or an answer we cannot read, the item fails
  with ``code="submission_unconfirmed"`` (``retryable``: a later run may try it, at the risk
  of a second job) instead of creating a duplicate (paid) job in this run. A POST is re-sent
  only when nothing was sent (connect errors) or when the answer says the job was not
  accepted (429, 503, and whatever the backend's ``should_retry`` allows);
* **a job that failed** is submitted anew (:meth:`RestClient.run_job`), at most
  ``max_resubmits`` times with back-off, only when the backend reads its failure as
  transient (:class:`JobFailedError` ``resubmit``);
* **a cancel (Ctrl-C) does not lose a job**: a submission in flight when the run is cancelled
  is let finish for at most ``submit_grace`` seconds (:data:`SUBMIT_GRACE`), so the caller
  journals its job id, then the cancel goes on; polls, back-offs and waits for a slot are
  cancelled at once;
* **account errors end the run**: a refused key (401/403) or an empty balance (402,
  ``insufficient_balance``, :class:`InsufficientBalanceError`) from the backend's own origin
  is marked ``fatal``; nothing more is sent that would fail the same way (after a refused
  key nothing at all; after a balance error no new submission, while jobs already running
  are still polled);
* bodies streamed in up to ``max_response_bytes`` (never held whole);
* polling that starts near the documented interval, grows, is capped, and learns how long
  this run's jobs take so later jobs are polled when they are likely done;
* vendor errors translated at one boundary (the backend's ``error_for``) into
  :mod:`molmo_rag.errors` (original kept as ``__cause__``), API keys redacted from every
  message; the key is sent only to the backend's own origin, never to output or upload
  URLs elsewhere.

What a backend sends and how it reads a job is not here: :mod:`.rest` (the backend base)
and :mod:`.jobs` (the submit-and-poll template).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import logging
import random
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
)

from ..errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    InsufficientBalanceError,
    JobFailedError,
    MalformedAnswerError,
    ResponseFormatError,
)
from ..media.items import MediaItem

if TYPE_CHECKING:
    from .rest import RestBackend, RestOptions

__all__ = [
    "RestClient",
    "ClientStats",
    "SUBMIT_GRACE",
    "is_balance_error",
    "data_uri",
    "is_http_url",
    "error_code_and_message",
    "error_text",
    "parse_retry_after",
    "media_payload",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

SUBMIT_GRACE = 3.0
"""Default of ``RestOptions.submit_grace``: the longest a cancelled run (Ctrl-C) waits for the
answer to a job submission already sent, so the job it created is journaled, not paid twice."""

_BALANCE = re.compile(
    r"(?i)insufficient[ _-]*(?:wallet[ _-]*)?(?:balance|credits?|funds|quota)|"
    r"(?:balance|credits?)\s+(?:is\s+|are\s+)?(?:insufficient|too\s+low|exhausted|depleted)|"
    r"not\s+enough\s+(?:balance|credits?|funds)|out\s+of\s+credits|payment[ _]required|top[ -]?up"
)
_BALANCE_CODES = frozenset({"insufficient_balance", "insufficient_credits", "insufficient_funds", "payment_required", "402"})


def is_balance_error(status: int | None, code: str | None, message: str | None) -> bool:
    """Whether an error says the account cannot pay (HTTP 402, a balance code, or words
    like "insufficient balance" / "insufficient credits")."""
    if status == 402 or (code or "").lower() in _BALANCE_CODES:
        return True
    return bool(message) and bool(_BALANCE.search(message))


_ERROR_BODY_BYTES = 64 * 1024
"""How much of an error answer's body is read: enough for any error message."""

_OUTPUT_NOT_YET = frozenset({404, 410})
"""Statuses of a job's output file that a later fetch may not get (see RestClient.get_text)."""


class _Transient(Exception):
    """Internal: one failed attempt that may be tried again; carries the translated error."""

    def __init__(self, error: BackendError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


# -- pure helpers ----------------------------------------------------------------------------


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and not any(c.isspace() for c in value.strip())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_code_and_message(body: Any) -> tuple[str | None, str | None]:
    """The vendor's error code and message from the error shapes the three APIs use:
    ``{"error": {"code", "message", "type"}}`` (OpenOctopus, OpenAI), ``{"error": "..."}``,
    ``{"code": 401, "message": "..."}`` (WaveSpeed)."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return (str(code) if code is not None else None), _str_or_none(error.get("message"))
    code = body.get("code")
    message = _str_or_none(body.get("message")) or _str_or_none(error) or _str_or_none(body.get("error_message"))
    return (str(code) if code is not None else None), message


_TAGS = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def error_text(text: str | None, limit: int = 200) -> str:
    """A short readable summary of an error body that is not the vendor's JSON: an HTML
    error page (a proxy's 502) becomes its title or its text, not raw markup."""
    text = (text or "").strip()
    if text[:1] == "<" and re.search(r"(?i)<(?:!doctype|html|body|head|title|h1)\b", text[:500]):
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAGS.sub(" ", text)
    return " ".join(text.split())[:limit] or "no details"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


async def media_payload(item: MediaItem) -> tuple[bytes, str]:
    """The bytes a REST backend sends for an item (encoded image or video clip), encoded
    in a worker thread so many items can be prepared without blocking the event loop."""
    if item.model_input == "video":
        return await asyncio.to_thread(item.clip)
    return await asyncio.to_thread(item.image_bytes)


# -- the client ------------------------------------------------------------------------------


@dataclass
class ClientStats:
    """What one run sent: requests by method, retries, polls, re-submissions."""

    requests: int = 0
    posts: int = 0
    retries: int = 0
    polls: int = 0
    resubmits: int = 0
    resumed: int = 0
    """Jobs of an earlier run (from the journal) polled instead of submitted again."""
    forgotten: int = 0
    """Journaled jobs the server no longer knew (submitted anew)."""
    by_method: dict[str, int] = field(default_factory=dict)


class RestClient:
    """The HTTP client of one run of one backend: concurrency, retries, polling, error
    translation, over ``http`` (an ``httpx.AsyncClient``)."""

    def __init__(self, backend: "RestBackend", http: httpx.AsyncClient):
        self.backend = backend
        self.options: RestOptions = backend.options
        self.http = http
        self.stats = ClientStats()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._origin = _origin(backend.base_url)
        self._run_times: dict[str, deque[float]] = {}
        self._refused: AuthenticationError | None = None
        """The key was refused (401/403): nothing more goes to the backend's origin."""
        self._no_funds: BackendError | None = None
        """The balance is empty: no more POSTs (new jobs) to the backend's origin."""

    @property
    def stopped(self) -> BackendError | None:
        """The account error that stopped this run from submitting, if any."""
        return self._refused or self._no_funds

    def account_error(self, error: BackendError) -> None:
        """Note an error that says the account cannot go on (``fatal``): a refused key stops
        every request to the backend's origin, an empty balance every new submission."""
        error.fatal = True
        if isinstance(error, AuthenticationError):
            self._refused = self._refused or error
        else:
            self._no_funds = self._no_funds or error

    # -- requests ------------------------------------------------------------------------
    async def post_json(
        self,
        url: str,
        body: Any,
        *,
        timeout: float | None = None,
        resend_safe: bool = False,
        parse: Callable[[Any], T] | None = None,
    ) -> Any:
        """POST a JSON body; returns the decoded JSON answer (read by ``parse`` inside the
        exchange when given, so an error envelope in the body is translated, redacted and
        noted like an HTTP error). Never re-sent once the server may have accepted it (see
        the module docstring), unless ``resend_safe`` says this POST creates nothing that
        costs or duplicates (e.g. an upload ticket). A POST that is not ``resend_safe`` is
        let finish when the run is cancelled (for ``submit_grace`` seconds): its answer is
        returned and the cancel comes back at the caller's next ``await``, so the caller
        journals the job id it holds (:meth:`RestBackend.journal_submitted`) before awaiting
        anything else."""
        if parse is None:
            return await self.request("POST", url, json=body, timeout=timeout, resend_safe=resend_safe)
        return await self.request(
            "POST", url, json=body, timeout=timeout, resend_safe=resend_safe, parse=lambda r: parse(self._parse_json(r))
        )

    async def get_json(self, url: str, parse: Callable[[Any], T] | None = None) -> Any:
        """GET a JSON document (idempotent: retried on every transient failure). ``parse``
        reads the protocol's shape from the decoded JSON inside the attempt, so an answer of
        the wrong shape (a ResponseFormatError, or a retryable BackendError) is fetched again."""
        if parse is None:
            return await self.request("GET", url)
        return await self.request("GET", url, parse=lambda r: parse(self._parse_json(r)))

    async def get_text(self, url: str, what: str | None = None) -> str:
        """GET a text document, e.g. an output file a job wrote; ``what`` names it in errors.
        A 404 or 410 is retried like a 5xx (the output of a job that just finished may not
        be on its CDN yet), and if it persists the error is ``retryable``: the job stays in
        the journal, so a later run polls it and fetches the output again without paying
        for a new job."""
        try:
            return await self.request("GET", url, parse=lambda r: r.text, what=what, retry_statuses=_OUTPUT_NOT_YET)
        except BackendError as exc:
            if exc.status in _OUTPUT_NOT_YET:
                exc.retryable = True
            raise

    async def upload(self, url: str, content: bytes, *, headers: dict[str, str] | None = None, method: str = "PUT") -> None:
        """Send bytes to an upload URL (a presigned PUT: idempotent, so retried)."""
        await self.request(method, url, content=content, headers=headers, parse=lambda r: None)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        parse: Callable[[httpx.Response], T] | None = None,
        timeout: float | None = None,
        resend_safe: bool | None = None,
        what: str | None = None,
        retry_statuses: frozenset[int] = frozenset(),
    ) -> Any:
        """One HTTP exchange with retries; ``resend_safe`` defaults to ``method != POST``;
        ``what`` (e.g. "the output of job X") starts the message of an HTTP error;
        ``retry_statuses``: error statuses retried too (an idempotent request's)."""
        parse = parse or self._parse_json
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(method, url, json, content, headers, parse, timeout, resend_safe, what, retry_statuses)
        except _Transient as exc:
            # retried as transient until the attempts ran out: a later try may still succeed
            # (e.g. a poll answered with broken JSON every time; its job stays journaled)
            exc.error.retryable = True
            if exc.__cause__ is exc.error:  # the attempt raised the translated error itself
                raise exc.error from exc.error.__cause__
            raise exc.error from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, method, url, json, content, headers, parse, timeout, resend_safe, what=None, retry_statuses=frozenset()):
        method = method.upper()
        safe_to_resend = method != "POST" if resend_safe is None else resend_safe
        own_origin = _origin(url) == self._origin
        send_headers = {**self._auth_headers(url), **(headers or {})}
        request_timeout = None
        if timeout is not None:
            request_timeout = httpx.Timeout(timeout, connect=self.options.connect_timeout)
        async with self._slots:
            if own_origin and self._refused is not None:
                # The key was refused earlier in this run: every other request would be too.
                refused = self._refused
                error = AuthenticationError(
                    f"{refused} (not sent: the key was already refused in this run)",
                    backend=refused.backend,
                    code=refused.code,
                    status=refused.status,
                )
                error.fatal = True
                raise error
            if own_origin and method == "POST" and self._no_funds is not None:
                # The balance ran out earlier in this run: a new job would be refused too.
                empty = self._no_funds
                raise InsufficientBalanceError(
                    f"{empty} (not sent: the balance was already insufficient in this run)",
                    backend=empty.backend,
                    code=empty.code,
                    status=empty.status,
                )
            self.stats.requests += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            if method == "POST":
                self.stats.posts += 1
            try:
                kwargs: dict[str, Any] = {"headers": send_headers, "json": json, "content": content}
                if request_timeout is not None:
                    kwargs["timeout"] = request_timeout
                if method == "POST" and not safe_to_resend:
                    response = await self._submission(method, url, kwargs)
                else:
                    response = await self._exchange(method, url, kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing reached the server: safe to send again, POST included.
                raise _Transient(self._transport_error(exc, method, url, sent=False)) from exc
            except httpx.TransportError as exc:
                error = self._transport_error(exc, method, url, sent=True, idempotent=safe_to_resend)
                if safe_to_resend:
                    raise _Transient(error) from exc
                raise error from exc
        body = _json_or_none(response)
        if response.status_code >= 400:
            error = self.backend.error_for(response.status_code, body, response.text, response.headers)
            if what:
                detail = str(error).removeprefix(f"{self.backend.name}: ")
                error.args = (f"{self.backend.name}: {what}: {detail}",)
            if own_origin:
                self._note_account(error)
            if self.backend.should_retry(method, response.status_code, body, idempotent=safe_to_resend) or (
                safe_to_resend and response.status_code in retry_statuses
            ):
                raise _Transient(error, parse_retry_after(response.headers.get("retry-after")))
            raise error
        try:
            return parse(response)
        except BackendError as exc:
            # the one boundary for errors read from a body too (e.g. WaveSpeed's error
            # envelope inside an HTTP 200, whose message may quote the key)
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (self.redact(exc.args[0]), *exc.args[1:])
            if own_origin:
                self._note_account(exc)
            if isinstance(exc, MalformedAnswerError):
                raise  # an answer that came and cannot be used: asking again gets the same
            if safe_to_resend and (isinstance(exc, ResponseFormatError) or exc.retryable):
                raise _Transient(exc) from exc
            if isinstance(exc, ResponseFormatError) and 200 <= response.status_code < 300:
                # A POST the server answered with success, in a body we cannot read: the job
                # may exist, as after a dropped connection (not sent again in this run).
                raise ResponseFormatError(
                    f"{exc}; the server may already have accepted the job, so it is not sent again in this "
                    "run (no duplicate job). Re-running the item may create a second job that is paid for too.",
                    backend=exc.backend,
                    code="submission_unconfirmed",
                    status=exc.status,
                    retryable=True,
                ) from exc
            raise

    async def _submission(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        """:meth:`_exchange` for a POST that may create a (paid) job, shielded from a cancel
        (Ctrl-C, the item's timeout) for at most ``submit_grace`` seconds: the server may
        already have accepted it, and a job whose id never reaches the journal is paid for
        again by the next run. When the answer comes within the grace it is returned and the
        cancel is delivered again at the caller's next ``await``; a caller journals the job
        id before that (``journal_submitted`` is synchronous), then polling is cancelled at
        once. No answer within the grace, a failed exchange, or a second cancel: the POST is
        abandoned and the cancel goes on at once."""
        exchange = asyncio.ensure_future(self._exchange(method, url, kwargs))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError as cancel:
            grace = self.options.submit_grace
            try:
                if grace > 0 and not exchange.done():
                    await asyncio.wait({exchange}, timeout=grace)  # a second cancel ends the wait
            finally:
                if not exchange.done():
                    exchange.cancel()
                    exchange.add_done_callback(_retrieved)
                    log.warning(
                        "%s: cancelled while a submission was in flight, abandoned without its answer (none "
                        "within submit_grace, %g s, or cancelled again); if the server accepted it, a re-run "
                        "pays for that item again",
                        self.backend.name,
                        grace,
                    )
            if not exchange.done() or exchange.cancelled() or exchange.exception() is not None:
                raise  # no answer: no job id to keep
            log.debug("%s: cancelled during a submission; its answer came, so its job is journaled first", self.backend.name)
            me = asyncio.current_task()
            if me is not None:  # the cancel stays one request (asyncio.timeout counts them)
                me.uncancel()
                me.cancel(cancel.args[0] if cancel.args else None)
            return exchange.result()

    async def _exchange(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        """One HTTP request and its answer, whose body is streamed in up to
        ``max_response_bytes`` (after decompression): a bigger body is never held whole; it
        fails with MalformedAnswerError (``answer_too_large``) and is not asked for again.
        Of an error answer only the first 64 KiB are read (enough for its message)."""
        response = await self.http.send(self.http.build_request(method, url, **kwargs), stream=True)
        error = response.status_code >= 400  # its body only says why: read the start of a big one
        limit = min(self.options.max_response_bytes, _ERROR_BODY_BYTES) if error else self.options.max_response_bytes
        try:
            declared = response.headers.get("content-length", "")
            size, chunks = (int(declared) if declared.isdigit() and not error else 0), []
            if size <= limit:
                size = 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk[: max(0, limit - size)])
                    size += len(chunk)
                    if size > limit:
                        break
        finally:
            await response.aclose()
        if size > limit and not error:
            raise MalformedAnswerError(
                f"{self.backend.name}: the answer to {method} {urlsplit(url).path} is over max_response_bytes "
                f"({limit:,} bytes) and was not read; raise max_response_bytes if this service's answers are that large",
                backend=self.backend.name,
                code="answer_too_large",
            )
        # the body as read (decompressed), so the encoding headers no longer apply to it
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(
            response.status_code, headers=headers, content=b"".join(chunks), request=response.request, extensions=response.extensions
        )

    def _note_account(self, error: BackendError) -> None:
        if (isinstance(error, AuthenticationError) and error.status in (401, 403)) or isinstance(error, InsufficientBalanceError):
            self.account_error(error)

    def _parse_json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            snippet = self.redact(response.text[:120])
            raise ResponseFormatError(
                f"{self.backend.name}: answer from {urlsplit(str(response.url)).path} is not JSON: {snippet!r}",
                backend=self.backend.name,
                status=response.status_code,
            ) from exc

    def _auth_headers(self, url: str) -> dict[str, str]:
        # The key goes only to the backend's own origin: output files and presigned upload
        # URLs may live on other hosts.
        if _origin(url) != self._origin:
            return {}
        return self.backend.auth_headers()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.options.retry_wait_max, self.options.retry_wait * 2 ** (state.attempt_number - 1))
        backoff = random.uniform(backoff / 2, backoff)
        retry_after = exc.retry_after if isinstance(exc, _Transient) else None
        if retry_after is not None:
            if retry_after > self.options.max_retry_after:
                # Waiting that long is the caller's decision: stop retrying and report it.
                exc.error.args = (
                    f"{exc.error} (Retry-After {retry_after:.0f} s is longer than max_retry_after "
                    f"{self.options.max_retry_after:g} s)",
                )
                raise exc.error
            return retry_after if retry_after > 0 else backoff
        return backoff

    def _log_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("%s: retrying after: %s", self.backend.name, self.redact(str(exc)))

    def _transport_error(self, exc: Exception, method: str, url: str, *, sent: bool, idempotent: bool = True) -> BackendError:
        path = urlsplit(url).path
        what = type(exc).__name__
        if sent and not idempotent:
            return BackendError(
                f"{self.backend.name}: no answer to POST {path} ({what}); the server may already have "
                "accepted the job, so it is not sent again in this run (no duplicate job). Re-running "
                "the item may create a second job that is paid for too.",
                backend=self.backend.name,
                code="submission_unconfirmed",
                retryable=True,
            )
        error_cls = BackendTimeout if isinstance(exc, httpx.TimeoutException) else BackendError
        return error_cls(
            f"{self.backend.name}: {method} {path} failed ({what}: {self.redact(str(exc)) or 'no details'})",
            backend=self.backend.name,
            code="timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error",
            retryable=True,
        )

    def redact(self, text: str) -> str:
        return self.backend.redact(text)

    # -- polling and jobs ----------------------------------------------------------------
    async def poll(
        self,
        fetch: Callable[[], Awaitable[T]],
        is_done: Callable[[T], bool],
        *,
        interval: float | None = None,
        timeout: float | None = None,
        max_interval: float | None = None,
        key: str | None = None,
        job: str = "",
        run_time: Callable[[T], float | None] | None = None,
    ) -> T:
        """Call ``fetch`` until ``is_done`` holds. ``run_time(answer)``: how long the job ran
        by the server's own account (seconds), when its answers say.

        The first wait is half of ``interval`` (the documented interval; polls then come no
        more often than every quarter of it) or, once jobs of the same ``key`` finished in
        this run, the 10th percentile of how long they ran, so most jobs
        get their first poll before they are done and few are polled in vain. Each later
        wait is ``poll_age_fraction`` of the job's age (within ``poll_min_interval`` and
        ``max_interval``): polls thin out geometrically, and a job is seen done a small,
        fixed fraction of its run time late, short or long. Jitter spreads the polls."""
        opts = self.options
        interval = interval or opts.poll_interval
        max_interval = max(interval, max_interval or opts.poll_max_interval)
        timeout = timeout or opts.poll_timeout
        started = time.monotonic()
        seen = self._run_times.get(key) if key is not None else None
        learned = bool(opts.adaptive_polling and seen)
        if learned:
            ordered = sorted(seen)
            first = max(opts.poll_min_interval, min(max_interval * 4, ordered[len(ordered) // 10]))
            floor = opts.poll_min_interval
        else:  # nothing known of this run's jobs yet: half the documented interval, then no
            first = interval / 2  # more often than every quarter of it
            floor = max(opts.poll_min_interval, interval / 4)
        previous_poll = started

        def next_wait(state: RetryCallState) -> float:
            age = time.monotonic() - started
            return min(max_interval, max(floor, opts.poll_age_fraction * age)) * random.uniform(0.9, 1.1)

        async def on_timeout(state: RetryCallState) -> T:
            raise BackendTimeout(  # retryable: the job stays journaled, a later run polls it again
                f"{self.backend.name}: job {job or '?'} not finished after {timeout:g} s of polling",
                backend=self.backend.name,
                code="timeout",
                retryable=True,
            )

        async def counted_fetch() -> T:
            nonlocal previous_poll
            self.stats.polls += 1
            answer = await fetch()
            if not is_done(answer):
                previous_poll = time.monotonic()
            return answer

        await asyncio.sleep(min(first * random.uniform(0.9, 1.0), timeout))
        retrying = AsyncRetrying(
            retry=retry_if_result(lambda state: not is_done(state)),
            wait=next_wait,
            stop=stop_before_delay(max(0.0, timeout - (time.monotonic() - started))),
            retry_error_callback=on_timeout,
        )
        result = await retrying(counted_fetch)
        if key is not None:
            # What the server says the job took, else the midpoint of when it must have ended
            # (between the last poll that saw it running, or the submission, and this one):
            # never the time it was seen done, which would feed the poll lag back into the
            # next first poll and keep it late.
            ran = run_time(result) if run_time is not None else None
            if ran is None:
                ran = (previous_poll + time.monotonic()) / 2 - started
            self._run_times.setdefault(key, deque(maxlen=64)).append(max(0.0, ran))
        return result

    async def run_job(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a whole job (submit + poll); submit again, up to ``max_resubmits`` times,
        with back-off, only when it failed with a :class:`JobFailedError` whose ``resubmit``
        is true. A failure that says the balance is empty stops this run's submissions."""

        def resubmit(state: RetryCallState) -> bool:
            exc = state.outcome.exception()
            if isinstance(exc, BackendError) and exc.fatal:
                self.account_error(exc)
                return False
            return isinstance(exc, JobFailedError) and exc.resubmit and self.stopped is None

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.max_resubmits + 1),
            wait=lambda s: self.resubmit_wait(s.attempt_number),
            retry=resubmit,
            before_sleep=self._count_resubmit,
            reraise=True,
        )
        return await retrying(attempt)

    def resubmit_wait(self, attempt_number: int) -> float:
        """The back-off before submitting a failed job anew (jittered, doubling)."""
        return random.uniform(0.5, 1.0) * min(self.options.retry_wait_max, self.options.retry_wait * 2 ** (attempt_number - 1))

    def _count_resubmit(self, state: RetryCallState) -> None:
        self.stats.resubmits += 1
        log.info("%s: job failed, submitting again: %s", self.backend.name, self.redact(str(state.outcome.exception())))


def _retrieved(task: asyncio.Future) -> None:
    """Done callback of an abandoned exchange: its outcome is read, so nothing is logged."""
    if not task.cancelled():
        task.exception()


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~0.2 s; do it once per process, not once per run.
    return httpx.create_ssl_context()
