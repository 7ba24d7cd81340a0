"""The error tree of molmo-rag.

Every error raised on purpose derives from :class:`MolmoRagError`::

    MolmoRagError
    ├── InputError                  bad input for one source (the rest of a batch goes on)
    │   ├── SourceNotFoundError     a path that does not exist, a URL that answers 404
    │   ├── UnreachableSourceError  a URL that cannot be fetched (DNS, refused, timeout)
    │   ├── UnsupportedMediaError   not an image, deck or video we can read
    │   ├── CorruptMediaError       truncated, damaged or encrypted media, data that cannot fill its header
    │   ├── EmptyMediaError         well-formed media with nothing in it to read (a deck without slides)
    │   └── MediaTooLargeError      over a size cap, a decompression bomb, a too-long video
    ├── UnsupportedTaskError        the backend cannot run this task (names those that can)
    ├── ConfigurationError          a missing key, an index in use, a collection of another embedder
    │   ├── UsageError              an argument or option value that is not accepted
    │   └── CacheWriteError         the result cache cannot store (a full disk, a read-only folder)
    ├── MissingDependencyError      an optional dependency is not installed (names the extra)
    ├── IndexUnavailableError       the index cannot be used: a Qdrant server unreachable or
    │                               refusing, an embedded folder read-only, full or locked
    └── BackendError                the backend or its transport failed
        ├── AuthenticationError     the key was refused (401/403)
        ├── RateLimitError          429 even after honouring Retry-After
        ├── ResponseFormatError     a body that does not follow the protocol
        │   └── MalformedAnswerError    an answer that came (and was paid for) but cannot be
        │                               used: text of the wrong type, a count no scene
        │                               holds, a body over the size cap
        ├── BackendTimeout          the job did not finish in time
        ├── JobFailedError          a hosted job reached a failed state (``resubmit``: may a new one succeed)
        ├── JobNotFoundError        the server does not know a job (any more): it is submitted anew
        └── InsufficientBalanceError    the account cannot pay for jobs (always ``fatal``)

Every error has ``fatal`` (False unless set): True when every other request of the run would
fail the same way (a refused key, an empty balance, a local model that cannot load), so the
engine stops sending, settles what is in flight and raises this one error.

Two exceptions stay outside this module on purpose: ``points.ImplausibleCount`` (a
``ValueError`` internal to answer parsing, always turned into a :class:`MalformedAnswerError`
before it leaves) and ``engine._NotSent`` (the failure of a request the engine did not send
after a fatal error; it never reaches a caller on its own).

Messages never contain API keys: backends pass what they raise through :func:`redact`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


class MolmoRagError(Exception):
    """Root of every error molmo-rag raises on purpose."""

    fatal: bool = False
    """True when the run cannot go on: every other request would fail alike (a refused key,
    an empty balance, a model that cannot load). A backend sets it on the instance it
    raises; the engine reads it to stop sending and end the run with this error."""

    def __reduce__(self) -> tuple:
        # Rebuilt without the initializer, whose arguments (``source=``, ``backend=``) the
        # default pickling would drop: a failure sent back from a worker process (Ray, a
        # pool) keeps its type, message and every attribute.
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(kind: type, args: tuple, attributes: dict) -> "MolmoRagError":
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(attributes)
    return error


class InputError(MolmoRagError):
    """One source cannot be used; other sources in the same batch are unaffected."""

    def __init__(self, message: str, *, source: str | None = None):
        super().__init__(message)
        self.source = source


class SourceNotFoundError(InputError):
    pass


class UnreachableSourceError(InputError):
    pass


class UnsupportedMediaError(InputError):
    pass


class CorruptMediaError(InputError):
    pass


class EmptyMediaError(InputError):
    """A well-formed file with nothing in it to read (a deck without slides): not damaged,
    so not :class:`CorruptMediaError`."""


class MediaTooLargeError(InputError):
    pass


class UnsupportedTaskError(MolmoRagError):
    """Raised when a backend is asked for a task it cannot run."""

    def __init__(self, task: str, backend: str, capable: Iterable[str] = ()):
        self.task = task
        self.backend = backend
        self.capable = sorted(capable)
        hint = f"; backends that can: {', '.join(self.capable)}" if self.capable else ""
        super().__init__(f"backend {backend!r} cannot run task {task!r}{hint}")


class ConfigurationError(MolmoRagError):
    """A setting that cannot work (a missing key, an index in use, a collection made with
    another embedder). ``option`` names the parameter concerned, when one is, so a front end
    can name its own flag for it (messages never name CLI flags)."""

    def __init__(self, message: str, *, option: str | None = None):
        super().__init__(message)
        self.option = option


class UsageError(ConfigurationError):
    """A value the caller passed is not accepted (an unknown backend, a bad filter, an empty
    query); the message says what is accepted. The CLI exits 2 on it."""


def usage_error_from(exc: "Exception", what: str) -> UsageError:
    """One readable :class:`UsageError` for a pydantic ``ValidationError`` raised while
    building ``what`` (e.g. "reader options"): field and message of the first problem,
    how many more there are; the raw input value is left out (it may be a secret)."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return UsageError(f"bad {what}: {exc}")
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f" {field}" if field else ""
    return UsageError(f"bad {what}{where}: {message}{more}", option=field.split(".")[0] or None)


class MissingDependencyError(MolmoRagError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package = package
        self.extra = extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is needed{what}: install it with  pip install 'molmo-rag[{extra}]'"
        )


class IndexUnavailableError(MolmoRagError):
    """The index cannot be used: a Qdrant server (``--qdrant-url``) that cannot be reached,
    is not a Qdrant server or refused a request (``status``: the HTTP status when it
    answered), or an embedded index folder that is read-only, full or unreadable."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class BackendError(MolmoRagError):
    """The backend or its transport failed.

    ``code`` is the vendor's error code when it sent one, ``status`` the HTTP status,
    ``retryable`` whether trying again may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
    ):
        super().__init__(message)
        self.backend = backend
        self.code = code
        self.status = status
        self.retryable = retryable


class AuthenticationError(BackendError):
    pass


class RateLimitError(BackendError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, retryable=True, **kw)
        self.retry_after = retry_after


class ResponseFormatError(BackendError):
    pass


class MalformedAnswerError(ResponseFormatError):
    """An answer arrived, and was paid for, but cannot be used for its task (its text is not
    text, it states a count no scene holds, its body is over ``max_response_bytes``).
    Permanent (asking again gets the same answer and pays again): ``retryable`` is False and
    ``code`` says why (``malformed_answer``, ``answer_too_large``); ``cost_usd`` is what the
    answer cost, so it is counted."""

    def __init__(self, message: str, *, code: str = "malformed_answer", cost_usd: float = 0.0, **kw):
        kw.pop("retryable", None)
        super().__init__(message, code=code, retryable=False, **kw)
        self.cost_usd = cost_usd


class BackendTimeout(BackendError, TimeoutError):
    pass


class JobFailedError(BackendError):
    """A job reached a failed state. ``resubmit`` is true when the protocol says the job is
    over and a new submission may succeed (e.g. OpenOctopus codes marked retryable, or a
    WaveSpeed failure that reads as transient); ``job_id`` names the job; ``fatal`` when the
    cause is the account (an empty balance), so the run should end."""

    def __init__(self, message: str, *, resubmit: bool = False, job_id: str | None = None, fatal: bool = False, **kw):
        super().__init__(message, retryable=resubmit, **kw)
        self.resubmit = resubmit
        self.job_id = job_id
        self.fatal = fatal


class JobNotFoundError(BackendError):
    """The server does not know a job (any more): a pending job from an earlier run that
    expired or was never kept; the request is then submitted anew."""


class InsufficientBalanceError(BackendError):
    """The account cannot pay for jobs (402, ``insufficient_balance``, "insufficient
    credits"): nothing more is submitted in this run, and the run ends (``fatal``)."""

    fatal = True

    def __init__(self, message: str, **kw):
        kw.setdefault("code", "insufficient_balance")
        super().__init__(message, **kw)


class CacheWriteError(ConfigurationError):
    """The cache could not store a result (a full disk, a read-only folder): the result is
    still used, but a re-run will ask for it again."""


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # Any scheme: "Authorization: Basic <credentials>" must not keep the credentials.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?!bearer\s)(?:[A-Za-z]+\s+)?)[^\s\"'&,}]+"),
    re.compile(
        r"(?i)((?:api[_-]?key|token|password|passwd|secret|(?<=[?&])key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
    # URL credentials: scheme://user:password@host
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@]+(?=@)"),
]

_LIVE_SECRETS: set[str] = set()
"""API keys in use in this process, in every spelling they could take on the way out:
scrubbed from every log record and every answer (see register_secret)."""
_SCRUBBER: list = []


@functools.lru_cache(maxsize=64)  # every answer is redacted of the backend's own key: spell it once
def _spellings(secret: str) -> frozenset[str]:
    """A secret as it is, URL-quoted, hex, and base64-encoded (standard and URL-safe) at
    each of the three byte offsets it can sit at inside a longer encoded text (a service
    echoing ``Authorization: Bearer KEY`` in base64 encodes the key shifted by the
    prefix): a service echoing a request may send any of them back."""
    import base64
    from urllib.parse import quote

    raw = secret.encode("utf-8", "surrogateescape")
    spellings = {secret, quote(raw, safe=""), raw.hex(), raw.hex().upper()}
    for offset in range(3):
        # only the base64 characters made of the key's bits alone: the same whatever
        # bytes come before or after it
        first, last = -(-8 * offset // 6), 8 * (offset + len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + raw + b"\0\0").decode("ascii")[first:last]
            if len(core) >= 6:
                spellings.add(core)
    return frozenset(spellings)


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove the given secrets and the keys registered with :func:`register_secret` (and
    their URL-quoted and base64 spellings) from text, and nothing else: for answers, where
    words such as "token: 5" are content, not credentials."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            for spelling in _spellings(secret):
                text = text.replace(spelling, "***")
    for spelling in _LIVE_SECRETS:
        text = text.replace(spelling, "***")
    return text


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove the given secrets, the keys registered with :func:`register_secret`, and
    anything shaped like a bearer token, a key or URL credentials, from text."""
    text = redact_secrets(text, secrets)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def register_secret(value: str | None) -> None:
    """Keep ``value`` (an API key this process uses) out of every log record, whichever
    library logs it: httpx logs request URLs at INFO (a key in a query string), httpcore
    response headers at DEBUG (a server echoing the Authorization header). Installs, once,
    a log-record factory that scrubs secrets from messages and tracebacks before any
    handler sees them; records are made only for enabled levels, so it costs nothing while
    logging is off."""
    import logging

    if value and len(value) >= 4:
        _LIVE_SECRETS.update(_spellings(value))
    if _SCRUBBER:
        return
    make_record = logging.getLogRecordFactory()

    def scrubbed(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it itself
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    _SCRUBBER.append(scrubbed)
    logging.setLogRecordFactory(scrubbed)


_KEY = re.compile(r"[\x21-\x7e]+")
"""What an API key is made of: printable ASCII, no spaces (every vendor's keys are)."""


def check_key(key: str | None, where: str, option: str | None = None) -> None:
    """Refuse a key that holds a control character (a newline would carry what follows it
    into a header of its own and into every error line), a space or a non-ASCII
    character: a :class:`UsageError` naming ``where`` the key came from, never the key."""
    if key is not None and not _KEY.fullmatch(key):
        raise UsageError(
            f"{where} holds a character an API key cannot have (a newline, a tab, a space, another control "
            "character or a non-ASCII one); set it to the key alone",
            option=option,
        )
