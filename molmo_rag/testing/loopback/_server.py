"""The machinery the loopback servers share: a threaded HTTP/1.1 server on 127.0.0.1,
routing, API-key checks, switchable faults (counted with :meth:`LoopbackServer.inject`, or
at set rates with :meth:`LoopbackServer.faults`), simulated jobs (fixed or heavy-tailed
lognormal latency, reproducible by seed) and request counters, with a record of every job
(created, finished, latency, fault, media) for benchmarks that compare a client with the
ideal schedule or count the jobs each item cost."""

from __future__ import annotations

from abc import ABC, abstractmethod

import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = [
    "LoopbackServer",
    "Reply",
    "Incoming",
    "Job",
    "JobRecord",
    "ServerStats",
    "FAULT_KINDS",
    "RatedFault",
    "RATED_FAULTS",
    "parse_rates",
]

FAULT_KINDS = frozenset(
    {"rate_limit", "server_error", "drop", "malformed", "slow", "reply", "reset", "trickle", "fail_job", "slow_job", "never_finish", "answer"}
)
"""Request faults: ``rate_limit`` (429 + Retry-After), ``server_error`` (an error answer,
``status`` 503 by default, in the protocol's error shape), ``drop`` (the request is
processed, then the connection closes mid-response), ``malformed`` (processed, then a
truncated JSON body), ``slow`` (the answer is delayed), ``reply`` (instead of being
processed, answered with ``status``, ``body``, ``headers``, ``content_type``: an HTML error
page, a body of the wrong shape), ``reset`` (a TCP reset and no answer: ``when=
"before_read"``, the default, before the request body is read, so nothing was done;
``"after_read"``: after it was processed, so a job may exist), ``trickle`` (the answer is
sent in ``chunks`` pieces spread over ``seconds``). Job faults, taken when a job is
created: ``fail_job`` (the job ends failed), ``slow_job`` (the job takes longer),
``never_finish`` (the job stays ``created``/``queued`` for ever), ``answer`` (the job,
the next one whose inputs contain ``match`` when that is given, succeeds with an answer
a real service might send but should not: ``text``, any JSON value, replaces the model's
answer text where the protocol puts it (``42`` or ``{}`` for the wrong type), ``repeat``
times over (a flood, e.g. a 5 MB caption), with ``{authorization}`` replaced by the
Authorization header the submission came with (a service echoing the key); ``fields`` are
merged into the answer object: the chat completion, the WaveSpeed prediction, the
OpenOctopus task (e.g. ``{"model": {}}``))."""

_JOB_FAULTS = frozenset({"fail_job", "slow_job", "never_finish", "answer"})


@dataclass(frozen=True)
class RatedFault:
    """One fault :meth:`LoopbackServer.faults` can switch on at a rate: the request fault
    (or job fault) ``kind`` it applies, on which ``routes`` (``submit``, ``poll``,
    ``output``, or ``job`` for job faults; each server maps these to its own routes), and
    whether it is ``sticky``: decided by the input (a hash of the seed and the media or
    request body), so the same input gets it every time, in every run, as a content
    filter would; other faults are drawn afresh for every request or job."""

    kind: str
    routes: tuple[str, ...]
    doc: str
    sticky: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


RATED_FAULTS: dict[str, RatedFault] = {
    "submit_503": RatedFault("server_error", ("submit",), "a submission refused with 503 (retryable; no job created)", params={"status": 503}),
    "submit_502": RatedFault("server_error", ("submit",), "a submission answered 502 (a retryable code; no job created, which the client cannot know)", params={"status": 502}),
    "poll_503": RatedFault("server_error", ("poll",), "a poll answered 503", params={"status": 503}),
    "poll_502": RatedFault("server_error", ("poll",), "a poll answered 502 with a retryable code", params={"status": 502}),
    "rate_limit": RatedFault("rate_limit", ("submit", "poll"), "429 with Retry-After (param retry_after, default 1 s); no job created", params={"retry_after": 1}),
    "invalid_input": RatedFault("server_error", ("submit",), "a submission refused with 400 invalid input (non-retryable; sticky per request body)", sticky=True, params={"status": 400}),
    "submit_content_policy": RatedFault("server_error", ("submit",), "a submission refused with 400 content_policy_violation (sticky per request body)", sticky=True, params={"status": 400}),
    "reset_before_read": RatedFault("reset", ("submit", "poll"), "a TCP reset before the server read the request (nothing done)", params={"when": "before_read"}),
    "reset_after_read": RatedFault("reset", ("submit",), "a TCP reset after the submission was processed: the job exists, the client never learns its id", params={"when": "after_read"}),
    "malformed": RatedFault("malformed", ("poll",), "a poll answered with truncated JSON"),
    "malformed_submit": RatedFault("malformed", ("submit",), "a submission processed (the job exists), answered with truncated JSON"),
    "slow_body": RatedFault("trickle", ("poll",), "a poll answer that trickles (params seconds, default 0.5, and chunks, default 8)", params={"seconds": 0.5, "chunks": 8}),
    "output_404": RatedFault("server_error", ("output",), "an output/result URL answered 404 (WaveSpeed output_mode='url', OpenOctopus asset_url)", params={"status": 404}),
    "upstream_failed": RatedFault("fail_job", ("job",), "a job that fails with a transient upstream error (WaveSpeed 'upstream_failed: provider error, please retry')"),
    "content_policy": RatedFault("fail_job", ("job",), "a job that fails with content_policy_violation (sticky per media)", sticky=True),
    "never_finish": RatedFault("never_finish", ("job",), "a job that never finishes"),
}
"""The faults :meth:`LoopbackServer.faults` takes, by name (``python -m
molmo_rag.testing.loopback --list-faults`` prints this table)."""


def parse_rates(text: str) -> dict[str, float]:
    """``"upstream_failed=0.1,rate_limit=0.05"`` -> ``{"upstream_failed": 0.1, "rate_limit": 0.05}``."""
    rates: dict[str, float] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault {part!r}: expected NAME=RATE")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"fault {name.strip()!r}: rate {value!r} is not a number") from None
    return rates


def _unit(*parts: Any) -> float:
    """A number in [0, 1) that depends only on ``parts`` (sticky fault draws)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
    fault: str | None = None
    """The fault this job got (a name of :data:`RATED_FAULTS`, or an injected kind)."""
    media: Any = None
    """What the server read of the job's media (a ``MediaInfo``), when the protocol says."""
    served: int = 0
    """Times its output file was served (``output_mode`` with URLs): the client got the answer."""
    lost: str | None = None
    """The request fault that kept the answer to this job's submission from the client
    (``reset_after_read``, ``malformed_submit``, ``drop``, ...): a job it never learnt of."""
    stop: threading.Event | None = field(default=None, repr=False)
    """Set when the server stops: wakes answers waiting on a job (sync mode, chat)."""
    delivered: float | None = None
    """``time.monotonic()`` when a client was first told the job had finished (a poll or a
    sync answer that carried its end), None until then (and on servers that answer inline)."""
    answer: dict | None = None
    """An ``answer`` fault: ``text`` (any JSON value) in place of :attr:`text` and ``fields``
    merged into the answer object (see :data:`FAULT_KINDS`)."""

    @property
    def answer_text(self) -> Any:
        """What the server sends as the answer text: the model's, or the fault's."""
        return self.answer["text"] if self.answer and "text" in self.answer else self.text

    def answer_fields(self, out: dict) -> dict:
        """``out`` (an answer object of the protocol) with the fault's ``fields`` merged in."""
        return {**out, **self.answer.get("fields", {})} if self.answer else out

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

    @property
    def status(self) -> str:
        """``running``, ``failed`` or ``completed`` (a job that never finishes stays running)."""
        return "running" if not self.done else "failed" if self.fail else "completed"

    def wait(self) -> None:
        """Wait until the job is done, or the server stops (a job that never finishes)."""
        remaining = self.latency - self.elapsed
        if remaining <= 0:
            return
        if self.stop is not None:
            self.stop.wait(None if math.isinf(remaining) else remaining)
        elif not math.isinf(remaining):
            time.sleep(remaining)


@dataclass
class _Fault:
    kind: str
    route: str
    times: int
    params: dict
    name: str | None = None
    """The rated fault's name (None: an injected one)."""


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
    fault = property(lambda self: self._job.fault)
    media = property(lambda self: self._job.media)
    status = property(lambda self: self._job.status)
    lost = property(lambda self: self._job.lost)
    served = property(lambda self: self._job.served)

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
    """Faults applied, by injected kind or rated fault name."""
    fault_routes: Counter = field(default_factory=Counter)
    """Rated faults applied, by ``(name, route)``."""
    fault_draws: Counter = field(default_factory=Counter)
    """Requests (and jobs: ``job``) that drew for rated faults, by abstract route: with
    :attr:`faults_applied` the rates actually seen."""
    jobs: list[JobRecord] = field(default_factory=list)
    fault_log: list[tuple[str, str, str]] = field(default_factory=list)
    """Every rated request fault applied: ``(name, route, path)`` (job faults are on the jobs)."""


Handler = Callable[[Incoming, re.Match], Reply]


class LoopbackServer(ABC):
    """Base of the protocol servers. Use as a context manager, or ``start()``/``stop()``.

    ``api_key``: the key clients must send as ``Authorization: Bearer ...`` (None: no check).
    ``latency``: how long every job takes (s); with ``latency_sigma`` > 0 it is the *median*
    of a lognormal instead, and each job draws its own latency (``exp(N(ln latency,
    sigma))``: sigma 0.8 gives a heavy tail, about 6x the median at the 99th percentile),
    from a generator seeded with ``seed`` (None: unseeded), so the n-th job created gets the
    same latency in every run with the same seed. Faults are switched on with :meth:`inject`
    (the next N matching requests) or at set rates with :meth:`faults` (``fault_rates`` and
    ``fault_seed`` here do the same at creation).
    """

    route_map: Mapping[str, tuple[str, ...]] = {"submit": ("submit",), "poll": ("poll",), "output": ("output",)}
    """Abstract routes of :data:`RATED_FAULTS` -> this server's route names."""

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
        fault_rates: Mapping[str, float] | None = None,
        fault_seed: int | None = None,
        fault_params: Mapping[str, Mapping[str, Any]] | None = None,
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
        self._stopped = threading.Event()
        self._local = threading.local()  # the fault of the request a handler thread serves
        self._rates: dict[str, float] = {}
        self._rate_params: dict[str, dict[str, Any]] = {}
        self._fault_seed: int = 0
        self._fault_rngs: dict[str, random.Random] = {}
        self.setup_routes()
        self._abstract = {name: abstract for abstract, names in self.route_map.items() for name in names}
        self.faults(fault_rates, seed=fault_seed, params=fault_params)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "LoopbackServer":
        if self._httpd is not None:
            return self
        self._stopped.clear()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle on, the body of every
            # answer on a kept-alive connection waited for the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True

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
        self._stopped.set()  # wakes answers waiting on jobs that never finish
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
        """Drop the injected faults (rated ones stay: ``faults(None)`` switches those off)."""
        with self._lock:
            self._faults.clear()

    def faults(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        seed: int | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> "LoopbackServer":
        """Switch faults on at set rates: ``rates`` maps names of :data:`RATED_FAULTS` to
        probabilities, e.g. ``{"upstream_failed": 0.1, "submit_503": 0.15, "rate_limit":
        0.1}``; None or ``{}`` switches them off. Replaces the previous rates.

        Each request on a route (and each job created) takes at most one rated fault: one
        draw per request, split among the faults of that route by their rates, so a fault
        at rate r hits a fraction r of the requests on its routes (the rates of one route
        may add up to 1 at most). Draws come from a generator per route seeded with
        ``seed`` (default: the server's ``seed``, else 0), so the n-th request on a route
        gets the same fault in every run with the same seed; which item that request
        belongs to depends on the order requests arrive. Sticky faults (content policy,
        invalid input) are decided by the input itself and the seed, whatever the order, in
        every run; the other faults of their route apply to the rest of the requests.
        Faults queued with :meth:`inject` go first. ``params``: per fault name, parameters
        that override the defaults (e.g. ``{"rate_limit": {"retry_after": 2}}``)."""
        rates = dict(rates or {})
        params = {k: dict(v) for k, v in (params or {}).items()}
        for name, rate in rates.items():
            if name not in RATED_FAULTS:
                raise ValueError(f"unknown fault {name!r}; one of {', '.join(sorted(RATED_FAULTS))}")
            if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"fault {name!r}: rate must be between 0 and 1, not {rate!r}")
        for name in params:
            if name not in RATED_FAULTS:
                raise ValueError(f"unknown fault {name!r} in params")
        for abstract in {r for f in RATED_FAULTS.values() for r in f.routes}:
            for sticky in (False, True):
                total = sum(rates.get(n, 0.0) for n, f in RATED_FAULTS.items() if abstract in f.routes and f.sticky is sticky)
                if total > 1.0 + 1e-9:
                    kind = "sticky" if sticky else "drawn"
                    raise ValueError(f"the {kind} fault rates on route {abstract!r} add up to {total:g} (at most 1)")
        if seed is None:
            seed = self.seed if self.seed is not None else 0
        with self._lock:
            self._rates = {name: float(rate) for name, rate in rates.items() if rate > 0}
            self._rate_params = params
            self._fault_seed = seed
            self._fault_rngs = {}
        return self

    @property
    def fault_rates(self) -> dict[str, float]:
        """The rated faults switched on (name -> rate)."""
        return dict(self._rates)

    @property
    def fault_seed(self) -> int:
        """The seed of the rated fault draws."""
        return self._fault_seed

    def draw_fault(self, route: str, *, sticky: bool = False, key: Any = None) -> str | None:
        """The rated fault (a name) that one request or job on ``route`` (``submit``,
        ``poll``, ``output``, ``job``) takes, or None: a drawn fault (consumes one draw of
        that route's stream) or, with ``sticky=True``, the sticky fault ``key`` (an input's
        hash) gets. The server calls it for every request and job (a call on its own
        counts in ``stats.fault_draws``, not in ``stats.faults_applied``)."""
        names = [n for n, f in RATED_FAULTS.items() if n in self._rates and route in f.routes and f.sticky is sticky]
        if not sticky:
            with self._lock:
                rng = self._fault_rngs.get(route)
                if rng is None:
                    rng = self._fault_rngs[route] = random.Random(f"{self._fault_seed}/{route}")
                u = rng.random()  # drawn even when no fault is on, so every stream stays in step
                self.stats.fault_draws[route] += 1
        elif not names:
            return None
        else:
            u = _unit(self._fault_seed, route, key)
        edge = 0.0
        for name in names:
            edge += self._rates[name]
            if u < edge:
                return name
        return None

    def _rated_fault(self, name: str, route: str, path: str | None = None) -> _Fault:
        spec = RATED_FAULTS[name]
        params = {**spec.params, **self.fault_params(name), **self._rate_params.get(name, {})}
        with self._lock:
            self.stats.faults_applied[name] += 1
            self.stats.fault_routes[(name, route)] += 1
            if path is not None:
                self.stats.fault_log.append((name, route, path))
        return _Fault(spec.kind, route, 1, params, name)

    def fault_params(self, name: str) -> dict[str, Any]:
        """This protocol's parameters for a rated fault (its error code or message)."""
        return {}

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

    def take_job_fault(self, route: str, key: Any = None) -> tuple[float, dict | None]:
        """(latency, failure params or None) for a job being created on ``route``; ``key``
        identifies its input for sticky rated faults."""
        latency, fail, _ = self._job_fault(route, key)
        return latency, fail

    def _answer_fault(self, route: str, inputs: Any) -> dict | None:
        """The ``answer`` fault a job created now takes (the first whose ``match``, when it
        has one, is a substring of the job's inputs as JSON): its text (repeated, the key
        it was sent with filled in) and fields."""
        seen = json.dumps(inputs, default=str)
        with self._lock:
            fault = next(
                (
                    f for f in self._faults
                    if f.kind == "answer" and f.route in ("any", route) and f.times != 0
                    and f.params.get("match", "") in seen
                ),
                None,
            )
            if fault is None:
                return None
            if fault.times > 0:
                fault.times -= 1
            self.stats.faults_applied["answer"] += 1
        params = dict(fault.params)
        if "text" in params:
            text = params["text"]
            if isinstance(text, str):
                text = text.replace("{authorization}", getattr(self._local, "authorization", None) or "")
                text *= int(params.get("repeat", 1))
            params["text"] = text
        return params

    def _job_fault(self, route: str, key: Any = None) -> tuple[float, dict | None, str | None]:
        latency, fail, name = self.draw_latency(), None, None
        slow = self._take({"slow_job"}, route)
        if slow:
            latency, name = float(slow.params.get("latency", max(1.0, 10 * self.latency))), "slow_job"
        never = self._take({"never_finish"}, route)
        if never:
            latency, name = math.inf, "never_finish"
        failed = self._take({"fail_job"}, route)
        if failed:
            fail, name = dict(failed.params), "fail_job"
        drawn = self.draw_fault("job", sticky=False)  # drawn for every job: the stream stays in step
        rated = self.draw_fault("job", sticky=True, key=key) if key is not None else None
        rated = rated or drawn
        if name is None and rated is not None:
            fault = self._rated_fault(rated, "job")
            name = rated
            if fault.kind == "never_finish":
                latency = math.inf
            elif fault.kind == "fail_job":
                fail = dict(fault.params)
        return latency, fail, name

    def new_job(self, kind: str, inputs: dict, text: str, route: str = "submit", media: Any = None) -> Job:
        """Create a job; ``media`` (a ``MediaInfo``) is what the server read of its input,
        the key of sticky job faults (else the inputs themselves)."""
        key = getattr(media, "sha256", None) or hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        latency, fail, fault = self._job_fault(route, key)
        answer = self._answer_fault(route, inputs)
        job = Job(
            id=uuid.uuid4().hex, kind=kind, inputs=inputs, text=text, latency=latency, fail=fail,
            fault=fault or ("answer" if answer else None), media=media, stop=self._stopped,
            lost=getattr(self._local, "lost", None), answer=answer,
        )
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
    def _match(self, method: str, path: str) -> tuple[str, Handler, bool, re.Match] | None:
        for m, pattern, name, handler, auth in self._routes:
            match = pattern.match(path)
            if m == method and match:
                return name, handler, auth, match
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            self._serve(h, path)
        finally:
            with self._lock:
                self.stats.in_flight -= 1

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _serve(self, h: BaseHTTPRequestHandler, path: str) -> None:
        found = self._match(h.command, path)
        if found is None:
            self._read_body(h)
            return self._send(h, Reply(404, {"error": {"message": f"no route {h.command} {path}"}}))
        name, handler, auth, match = found
        with self._lock:
            self.stats.by_route[name] += 1
        if auth and self.api_key is not None:
            header = h.headers.get("Authorization") or ""
            provided = header[7:] if header.startswith("Bearer ") else None
            if provided != self.api_key:
                with self._lock:
                    self.stats.unauthorized += 1
                self._read_body(h)
                return self._send(h, self.unauthorized(provided))
        # one fault per request: an injected one first, else a rated one (drawn before the
        # body is read, so a reset can come before the server read anything)
        abstract = self._abstract.get(name)
        drawn = self.draw_fault(abstract, sticky=False) if abstract else None
        fault = self._take(FAULT_KINDS - _JOB_FAULTS, name)
        if fault is None and drawn is not None:
            fault = self._rated_fault(drawn, name, path)
        if fault and fault.kind == "reset" and fault.params.get("when", "before_read") == "before_read":
            return self._reset(h)  # the body is left unread: nothing was done
        req = Incoming(h.command, path, h.headers, self._read_body(h))
        if fault is None and abstract:
            sticky = self.draw_fault(abstract, sticky=True, key=hashlib.sha256(req.body).hexdigest())
            if sticky is not None:
                fault = self._rated_fault(sticky, name, path)
        if fault and fault.kind == "slow":
            time.sleep(float(fault.params.get("delay", 1.0)))
        if fault and fault.kind == "rate_limit":
            return self._send(h, self.rate_limited(fault.params.get("retry_after", 0.05)))
        if fault and fault.kind == "server_error":
            return self._send(h, self.error_reply(int(fault.params.get("status", 503)), fault.params))
        if fault and fault.kind == "reply":
            p = fault.params
            return self._send(h, Reply(int(p.get("status", 200)), p.get("body"), dict(p.get("headers") or {}), p.get("content_type")))
        # a job this request creates is one the client will not hear of
        self._local.lost = (fault.name or fault.kind) if fault and fault.kind in ("reset", "drop", "malformed") else None
        self._local.authorization = h.headers.get("Authorization")  # for answer faults that echo it
        try:
            reply = handler(req, match)
        finally:
            self._local.lost = self._local.authorization = None
        if fault and fault.kind == "reset":
            return self._reset(h)  # after_read: the work is done (a job may now exist), no answer
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
        if fault and fault.kind == "trickle":
            return self._send(h, reply, trickle=(float(fault.params.get("seconds", 0.5)), int(fault.params.get("chunks", 8))))
        return self._send(h, reply)

    def _reset(self, h: BaseHTTPRequestHandler) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), answering nothing."""
        h.close_connection = True
        try:
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()  # the descriptor closes (RST) once the handler's files close
        except OSError:
            pass

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply, trickle: tuple[float, int] | None = None) -> None:
        data, ctype = reply.encode()
        h.send_response(reply.status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for key, value in reply.headers.items():
            h.send_header(key, value)
        h.end_headers()
        if trickle is None or len(data) < 2:
            h.wfile.write(data)
            return
        seconds, chunks = trickle
        chunks = max(1, min(chunks, len(data)))
        step = -(-len(data) // chunks)
        for i in range(0, len(data), step):
            h.wfile.write(data[i : i + step])
            h.wfile.flush()
            if i + step < len(data) and self._stopped.wait(seconds / chunks):
                break

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
