"""The machinery the loopback servers share: a threaded HTTP/1.1 server on 127.0.0.1,
routing, API-key checks, switchable faults, simulated jobs (fixed or heavy-tailed
lognormal latency, reproducible by seed) and request counters, with a record of every job
(created, finished, latency) for benchmarks that compare a client with the ideal schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod

import json
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = ["LoopbackServer", "Reply", "Incoming", "Job", "JobRecord", "ServerStats", "FAULT_KINDS"]

FAULT_KINDS = frozenset({"rate_limit", "server_error", "drop", "malformed", "slow", "reply", "fail_job", "slow_job"})
"""Request faults: ``rate_limit`` (429 + Retry-After), ``server_error`` (5xx), ``drop`` (the
request is processed, then the connection closes mid-response), ``malformed`` (processed,
then a truncated JSON body), ``slow`` (the answer is delayed), ``reply`` (instead of being
processed, answered with ``status``, ``body``, ``headers``, ``content_type``: an HTML error
page, a body of the wrong shape). Job faults, taken when a job is created: ``fail_job`` (the
job ends failed), ``slow_job`` (the job takes longer)."""

_JOB_FAULTS = frozenset({"fail_job", "slow_job"})


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A dict/list (sent as JSON), str or bytes."""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


@dataclass
class Incoming:
    method: str
    path: str
    headers: Any
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass
class Job:
    """A simulated asynchronous job: it finishes ``latency`` seconds after creation."""

    id: str
    kind: str
    inputs: dict
    text: str
    latency: float
    created: float = field(default_factory=time.monotonic)
    fail: dict | None = None
    """When set, the job ends failed with this error (protocol-specific fields)."""
    delivered: float | None = None
    """``time.monotonic()`` when a client was first told the job had finished (a poll or a
    sync answer that carried its end), None until then (and on servers that answer inline)."""

    @property
    def done_at(self) -> float:
        """``time.monotonic()`` at which the job finishes (created + latency)."""
        return self.created + self.latency

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.created

    @property
    def done(self) -> bool:
        return self.elapsed >= self.latency

    @property
    def early(self) -> bool:
        """In the first fifth of its run (reported as created/queued)."""
        return self.elapsed < self.latency / 5

    def wait(self) -> None:
        remaining = self.latency - self.elapsed
        if remaining > 0:
            time.sleep(remaining)


@dataclass
class _Fault:
    kind: str
    route: str
    times: int
    params: dict


class JobRecord:
    """What :attr:`ServerStats.jobs` keeps of one job: ``created``, ``done_at`` (created +
    latency), its own ``latency`` and ``delivered`` (see :attr:`Job.delivered`), read live
    from the job (a test that shortens a job's latency changes its record too). Unpacks as
    ``created, done_at, latency = record``. Times are ``time.monotonic()`` of this process."""

    __slots__ = ("_job",)

    def __init__(self, job: Job):
        self._job = job

    id = property(lambda self: self._job.id)
    kind = property(lambda self: self._job.kind)
    created = property(lambda self: self._job.created)
    latency = property(lambda self: self._job.latency)
    done_at = property(lambda self: self._job.done_at)
    delivered = property(lambda self: self._job.delivered)

    def __iter__(self):
        return iter((self.created, self.done_at, self.latency))

    def __repr__(self) -> str:
        return f"JobRecord(created={self.created:.3f}, done_at={self.done_at:.3f}, latency={self.latency:.3f})"


@dataclass
class ServerStats:
    """Counters of what the server received, and a record of every job created (in the
    order they were created) since the server started or :meth:`LoopbackServer.reset_stats`."""

    requests: int = 0
    by_route: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    jobs_created: int = 0
    unauthorized: int = 0
    faults_applied: Counter = field(default_factory=Counter)
    jobs: list[JobRecord] = field(default_factory=list)


Handler = Callable[[Incoming, re.Match], Reply]


class LoopbackServer(ABC):
    """Base of the protocol servers. Use as a context manager, or ``start()``/``stop()``.

    ``api_key``: the key clients must send as ``Authorization: Bearer ...`` (None: no check).
    ``latency``: how long every job takes (s); with ``latency_sigma`` > 0 it is the *median*
    of a lognormal instead, and each job draws its own latency (``exp(N(ln latency,
    sigma))``: sigma 0.8 gives a heavy tail, about 6x the median at the 99th percentile),
    from a generator seeded with ``seed`` (None: unseeded), so the n-th job created gets the
    same latency in every run with the same seed. Faults are switched on with :meth:`inject`.
    """

    kind = "loopback"

    def __init__(
        self,
        *,
        api_key: str | None = "loopback-key",
        latency: float = 0.0,
        latency_sigma: float = 0.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if latency < 0 or latency_sigma < 0:
            raise ValueError("latency and latency_sigma must be >= 0")
        self.api_key = api_key
        self.latency = latency
        self.latency_sigma = latency_sigma
        self.seed = seed
        self._rng = random.Random(seed)
        self.host, self.port = host, port
        self.stats = ServerStats()
        self.jobs: dict[str, Job] = {}
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern, str, Handler, bool]] = []
        self.setup_routes()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "LoopbackServer":
        if self._httpd is not None:
            return self
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                owner._dispatch(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, format, *args):  # quiet
                pass

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

        self._httpd = _Server((self.host, self.port), _Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=f"{self.kind}-loopback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The base URL to give the matching backend."""
        return self.root_url

    # -- faults --------------------------------------------------------------------------
    def inject(self, kind: str, *, route: str = "any", times: int = 1, **params: Any) -> "LoopbackServer":
        """Switch a fault on for the next ``times`` matching requests (or jobs), ``-1`` for
        always. ``route`` names a route of the server (e.g. ``submit``, ``poll``) or ``any``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(kind, route, times, params))
        return self

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = ServerStats()

    def reseed(self, seed: int | None = None) -> None:
        """Restart the latency draws (from ``seed``, default the one given at creation), so
        the next jobs get the same latencies as the first jobs of the run before."""
        with self._lock:
            self._rng = random.Random(self.seed if seed is None else seed)

    def draw_latency(self) -> float:
        """The latency of the next job: ``latency``, or a lognormal draw around it."""
        if self.latency_sigma <= 0 or self.latency <= 0:
            return self.latency
        with self._lock:
            return self._rng.lognormvariate(math.log(self.latency), self.latency_sigma)

    def _take(self, kinds: frozenset[str] | set[str], route: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.route in ("any", route) and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    self.stats.faults_applied[fault.kind] += 1
                    return fault
        return None

    def take_job_fault(self, route: str) -> tuple[float, dict | None]:
        """(latency, failure params or None) for a job being created on ``route``."""
        latency, fail = self.draw_latency(), None
        slow = self._take({"slow_job"}, route)
        if slow:
            latency = float(slow.params.get("latency", max(1.0, 10 * self.latency)))
        failed = self._take({"fail_job"}, route)
        if failed:
            fail = dict(failed.params)
        return latency, fail

    def new_job(self, kind: str, inputs: dict, text: str, route: str = "submit") -> Job:
        latency, fail = self.take_job_fault(route)
        job = Job(id=uuid.uuid4().hex, kind=kind, inputs=inputs, text=text, latency=latency, fail=fail)
        with self._lock:
            self.jobs[job.id] = job
            self.stats.jobs_created += 1
            self.stats.jobs.append(JobRecord(job))
        return job

    def mark_delivered(self, job: Job) -> None:
        """Note that a client is being told ``job`` finished (the first time counts)."""
        if job.delivered is None:
            job.delivered = time.monotonic()

    # -- what subclasses define ----------------------------------------------------------
    @abstractmethod
    def setup_routes(self) -> None:
        """Register this protocol's routes with :meth:`route`."""

    def route(self, method: str, pattern: str, name: str, handler: Handler, *, auth: bool = True) -> None:
        self._routes.append((method, re.compile(pattern + r"\Z"), name, handler, auth))

    def unauthorized(self, provided: str | None) -> Reply:  # pragma: no cover - overridden
        return Reply(401, {"error": "unauthorized"})

    def error_reply(self, status: int, params: dict) -> Reply:
        """The body of an injected ``server_error`` in this protocol's error shape."""
        return Reply(status, {"error": {"message": params.get("message", "injected failure")}})

    def rate_limited(self, retry_after: Any) -> Reply:
        reply = self.error_reply(429, {"message": "rate limited", "code": "rate_limited"})
        if retry_after is not None:
            reply.headers["Retry-After"] = str(retry_after)
        return reply

    # -- dispatch ------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            self._serve(h, Incoming(h.command, path, h.headers, body))
        finally:
            with self._lock:
                self.stats.in_flight -= 1

    def _serve(self, h: BaseHTTPRequestHandler, req: Incoming) -> None:
        for method, pattern, name, handler, auth in self._routes:
            match = pattern.match(req.path)
            if method == req.method and match:
                break
        else:
            return self._send(h, Reply(404, {"error": {"message": f"no route {req.method} {req.path}"}}))
        with self._lock:
            self.stats.by_route[name] += 1
        if auth and self.api_key is not None:
            header = req.headers.get("Authorization") or ""
            provided = header[7:] if header.startswith("Bearer ") else None
            if provided != self.api_key:
                with self._lock:
                    self.stats.unauthorized += 1
                return self._send(h, self.unauthorized(provided))
        fault = self._take(FAULT_KINDS - _JOB_FAULTS, name)
        if fault and fault.kind == "slow":
            time.sleep(float(fault.params.get("delay", 1.0)))
        if fault and fault.kind == "rate_limit":
            return self._send(h, self.rate_limited(fault.params.get("retry_after", 0.05)))
        if fault and fault.kind == "server_error":
            return self._send(h, self.error_reply(int(fault.params.get("status", 503)), fault.params))
        if fault and fault.kind == "reply":
            p = fault.params
            return self._send(h, Reply(int(p.get("status", 200)), p.get("body"), dict(p.get("headers") or {}), p.get("content_type")))
        reply = handler(req, match)
        if fault and fault.kind == "drop":
            # The work is done (a job may now exist); the client never gets the answer.
            data, ctype = reply.encode()
            h.wfile.write(
                f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(data) + 100}\r\n\r\n".encode()
                + data[: len(data) // 2]
            )
            h.wfile.flush()
            h.close_connection = True
            return None
        if fault and fault.kind == "malformed":
            data, _ = reply.encode()
            reply = Reply(reply.status, data[: max(1, len(data) // 2)], reply.headers, "application/json")
        return self._send(h, reply)

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        data, ctype = reply.encode()
        h.send_response(reply.status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for key, value in reply.headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    # -- shared media helpers ------------------------------------------------------------
    def store_blob(self, data: bytes, mime: str) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            self.blobs[token] = (data, mime)
        return token

    def media_bytes(self, ref: str) -> bytes:
        """The bytes behind a media reference: a data URI, a URL this server serves, or
        (offline: nothing else is fetched) the URL string itself."""
        from ._model import decode_data_uri

        if ref.startswith("data:"):
            return decode_data_uri(ref)
        match = re.search(r"/media/([0-9a-f]{32})$", ref)
        if match and ref.startswith(self.root_url) and match.group(1) in self.blobs:
            return self.blobs[match.group(1)][0]
        return ref.encode()
