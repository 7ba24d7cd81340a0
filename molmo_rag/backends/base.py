"""The backend contract and the machinery every backend shares.

A backend implements one narrow method:

* :class:`BatchedBackend` (local models): ``generate_batch(requests) -> list[Answer]``,
  called in a worker thread with at most ``batch_size`` requests (and optionally
  ``prepare(request)``, per-request decoding run ahead while the model works);
* :class:`~molmo_rag.backends.rest.RestBackend` (hosted APIs): ``async call(request,
  client) -> Answer`` for one request (a submit-and-poll API fills in the hooks of
  :class:`~molmo_rag.backends.jobs.SubmitAndPoll`); concurrency, retries and polling live
  in its HTTP client (:class:`~molmo_rag.backends.http.RestClient`).

Everything else lives here once: a :class:`Session` per run that answers one request at a
time (so the streaming engine can keep a sliding window in flight), capability checks with
errors that name the backends that can, turning answers into :class:`Result` (parsing,
shifting video points into video time), one failure per request instead of a failed batch.

The facts about a backend are declared on its class, and read from there by the planner,
the cost estimate and the CLI (none of them checks a backend's name): ``capabilities``
(what it runs on which input), ``price`` (:class:`~molmo_rag.cost.Price`), ``env`` (the
environment variables it reads, :class:`BackendEnv`), ``concurrency_option`` (the option
that sets how many requests run at once) and ``default_model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import asyncio
import contextvars
import importlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from ..cost import FREE, Price
from ..errors import MolmoRagError, UnsupportedTaskError, UsageError
from ..media.items import MediaItem
from ..options_base import Options, cache_key_field
from ..results import Result
from ..syncio import run_sync
from ..tasks import Ask, Count, ModelInput, Scene, Task, VideoTask
from ..vocabulary import BACKENDS
from .answers import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_MAX_ANSWER_POINTS, checked_error, checked_result

if TYPE_CHECKING:  # pragma: no cover
    from ..cache import JobJournal

__all__ = [
    "Request",
    "Answer",
    "Result",
    "Backend",
    "BatchedBackend",
    "BatcherStats",
    "Session",
    "BackendOptions",
    "BackendEnv",
    "MODEL_ENV",
    "BACKENDS",
    "backend_class",
    "get_backend",
    "create_backend",
    "capable_backends",
    "equivalents",
    "model_of",
    "run_sync",
]


@dataclass(frozen=True)
class Request:
    item: MediaItem
    task: Task
    journal: JobJournal | None = field(default=None, compare=False, repr=False)
    """Where a hosted backend records the job it submitted for this request, so a later run
    finishes that job instead of paying for a new one: the streaming engine passes its
    cache's journal for the request's cache key (:meth:`ResultCache.journal`); None: none."""


@dataclass
class Answer:
    """What a backend returns for one request, before parsing."""

    text: str
    cost_usd: float = 0.0
    model: str | None = None
    meta: dict = field(default_factory=dict)


def shift_points(fields: dict, offset: float | None) -> dict:
    """Move the ``t`` of parsed points from clip time into video time."""
    if not offset or "points" not in fields:
        return fields
    moved = [
        {**p, "t": round(p["t"] + offset, 3)} if p.get("t") is not None else p for p in fields["points"]
    ]
    return {**fields, "points": moved}


class BackendOptions(Options):
    """Options every backend takes; subclasses add their own, each field described."""

    what: ClassVar[str] = "backend option"

    model: str | None = Field(None, description="Model id (or local path) the backend runs.")
    max_answer_chars: int = cache_key_field(
        DEFAULT_MAX_ANSWER_CHARS,
        ge=1,
        description="Longest answer text kept (characters); a longer answer is cut here and its result says "
        "truncated: ['text']. 64 Ki, far above any Molmo2 answer.",
    )
    max_answer_points: int = cache_key_field(
        DEFAULT_MAX_ANSWER_POINTS,
        ge=1,
        description="Most points kept from one answer; more are cut here (the stated count is kept) and the "
        "result says truncated: ['points'].",
    )


Call = Callable[[Request], Awaitable["Answer | BaseException"]]
"""Answers one request: the Answer, or the exception that request ended with."""


class Session:
    """A backend opened for one run: :meth:`answer` takes one request at a time and returns
    when *that* request is done, so a caller can keep a window of requests in flight and
    start the next one the moment any finishes (see :mod:`molmo_rag.engine`)."""

    def __init__(self, backend: "Backend", call: Call):
        self.backend = backend
        self._call = call

    async def answer(self, request: Request) -> "Result | MolmoRagError":
        try:
            self.backend.check(request)
        except MolmoRagError as exc:
            return exc
        return self.backend._to_result(request, await self._call(request))


MODEL_ENV = "MOLMO_RAG_MODEL"
"""The model of the backends whose model is a Molmo2 checkpoint name (``local``, ``openai``)."""


@dataclass(frozen=True)
class BackendEnv:
    """The environment variables a backend reads (None: it reads none for that)."""

    api_key: str | None = None
    """Its API key, when none is passed."""
    base_url: str | None = None
    """Its API base URL, when none is passed."""
    model: str | None = None
    """The model, when none is passed to :func:`create_backend` (``MOLMO_RAG_MODEL`` for the
    backends whose model is a Molmo2 checkpoint; a hosted endpoint names its model itself)."""


def equivalents(task: Task, media: ModelInput) -> list[Task]:
    """The task, then the tasks that give the same fields on this input, best first."""
    if media == "video":
        if isinstance(task, Scene):
            return [task, VideoTask(task="scene_description")]
        if isinstance(task, Count):
            return [task, VideoTask(task="counting", text=task.target)]
        if isinstance(task, Ask):
            return [task, VideoTask(task="general", text=task.question)]
    return [task]


class Backend(ABC):
    """Base class: capability checks, result building, failure collection."""

    name: ClassVar[str] = "base"
    capabilities: ClassVar[dict[ModelInput, frozenset[str]]] = {}
    """Task names this backend runs, per model input ("image" covers slides)."""
    default_model: ClassVar[str] = "allenai/Molmo2-4B"
    """The model when none is given nor read from ``env.model``."""
    price: ClassVar[Price] = FREE
    """What one call costs (read by :meth:`estimate_cost` and :func:`molmo_rag.cost.estimate`)."""
    env: ClassVar[BackendEnv] = BackendEnv()
    """The environment variables this backend reads."""
    concurrency_option: ClassVar[str | None] = None
    """The option that sets how many requests run at once (``batch_size`` for a local model,
    ``concurrency`` for a hosted API): what ``concurrency`` of :func:`create_backend` and the
    CLI's ``--concurrency`` set. None: the backend takes no such option."""

    model: str

    def __new__(cls, *args: Any, **kwargs: Any) -> "Backend":
        self = super().__new__(cls)
        self._made_with = (args, dict(kwargs))  # what a copy in another process is made from
        return self

    def __reduce__(self) -> tuple:
        """A backend pickles as its class and the arguments it was made with, and unpickles
        into the receiving process's shared backend of that configuration
        (:mod:`molmo_rag.backends.shared`): never its clients, threads or model weights."""
        from .shared import configuration_key, rebuilt

        args, kwargs = getattr(self, "_made_with", ((), {}))
        configuration_key(type(self), args, kwargs)  # fails here, clearly, when they cannot travel
        return (rebuilt, (type(self), args, kwargs))

    def made_with(self) -> dict[str, Any]:
        """The keyword arguments this backend was made with (secrets included: do not log)."""
        return dict(getattr(self, "_made_with", ((), {}))[1])

    # -- facts -----------------------------------------------------------------------------
    @classmethod
    def resolve_model(cls, model: str | None = None) -> str:
        """The model this backend runs: ``model`` if given, else the variable ``env.model``
        names (when set and not empty), else :attr:`default_model`."""
        import os

        return model or (os.environ.get(cls.env.model) if cls.env.model else None) or cls.default_model

    # -- capabilities --------------------------------------------------------------------
    @classmethod
    def supports(cls, task: Task, media: ModelInput) -> bool:
        return media in task.inputs and task.name in cls.capabilities.get(media, frozenset())

    @classmethod
    def check_plan(cls, tasks: Sequence[Task], kinds: Sequence[ModelInput] | None = None, *, adapt: bool = True) -> None:
        """Refuse, before anything is read, built or sent, a task this backend can run on none
        of ``kinds`` (default: every input the task takes): one
        :class:`~molmo_rag.errors.UnsupportedTaskError` naming the backends that can. Works
        on the class, so no key is needed. ``adapt``: a task counts as runnable when an
        equivalent is (a count on video through ``VideoTask``), as the planner's plans do."""
        for task in tasks:
            inputs = [m for m in task.inputs if kinds is None or m in kinds]
            if not any(cls.supports(alt, m) for m in inputs for alt in (equivalents(task, m) if adapt else [task])):
                capable = sorted({b for m in inputs for b in capable_backends(task, m)})
                raise UnsupportedTaskError(task.name, cls.name, capable)

    def check(self, request: Request) -> None:
        media = request.item.model_input
        if not self.supports(request.task, media):
            raise UnsupportedTaskError(
                f"{request.task.name} on {media}", self.name, capable_backends(request.task, media)
            )

    # -- the hook subclasses implement (through BatchedBackend / RestBackend) -------------
    @abstractmethod
    def _open(self) -> AbstractAsyncContextManager[Call]:
        """Open the backend for one run (a model batcher, an HTTP client) and yield the
        call that answers one request."""

    @property
    def window(self) -> int:
        """How many requests to keep in flight to keep this backend busy."""
        return 1

    # -- public API ----------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """Open the backend for a run; ``await session.answer(request)`` per request."""
        async with self._open() as call:
            yield Session(self, call)

    async def arun(
        self,
        requests: Sequence[Request],
        on_result: Callable[[Request, Result | MolmoRagError], None] | None = None,
    ) -> list[Result | MolmoRagError]:
        """Run requests, at most :attr:`window` at once; each slot holds a Result or the
        MolmoRagError for that request. ``on_result`` is called as each one arrives."""
        slots = asyncio.Semaphore(max(1, self.window))
        async with self.session() as session:

            async def one(request: Request) -> Result | MolmoRagError:
                async with slots:
                    outcome = await session.answer(request)
                if on_result:
                    on_result(request, outcome)
                return outcome

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def run(self, requests: Sequence[Request]) -> list[Result | MolmoRagError]:
        """Synchronous :meth:`arun` (also from inside a running event loop)."""
        return run_sync(self.arun(requests))

    def _to_result(self, request: Request, answer: Answer | BaseException) -> Result | MolmoRagError:
        """The boundary every answer crosses before anything keeps it: validated, cleaned,
        redacted and capped (see :mod:`molmo_rag.backends.answers`)."""
        if not isinstance(answer, BaseException):
            answer = checked_result(self, request, answer)
            if isinstance(answer, Result):
                return answer
        return checked_error(self, request, answer)

    def estimate_cost(self, request: Request) -> float:
        """What one request would cost (USD), without calling anything: its :attr:`price`.
        Raises :class:`~molmo_rag.errors.MediaTooLargeError` for a video longer than one
        call accepts."""
        return self.price.of(request.item)

    def load(self) -> None:
        """Prepare what is expensive (a model in memory) now, so a bad configuration fails
        before any media is read; otherwise it happens on first use."""

    def close(self) -> None:
        """Release clients, threads or model memory."""


@dataclass
class BatcherStats:
    """How busy the model was in the last session: seconds generating vs open."""

    batches: int = 0
    requests: int = 0
    busy_s: float = 0.0
    open_s: float = 0.0

    @property
    def busy_share(self) -> float:
        return self.busy_s / self.open_s if self.open_s else 0.0


class BatchedBackend(Backend):
    """For local models. The one method to implement is :meth:`generate_batch` (called in a
    worker thread with at most ``batch_size`` requests); :meth:`prepare` may do the
    per-request work that needs no model (decoding pixels) ahead of time, in other threads,
    while the model generates the previous batch. Each batch is formed from whatever
    requests are prepared when the model frees up (images with images, videos with videos)."""

    concurrency_option: ClassVar[str | None] = "batch_size"
    batch_size: int = 4
    prepare_threads: int = 2
    """Requests prepared at once, ahead of the model."""

    @abstractmethod
    def generate_batch(self, requests: Sequence[Request]) -> list[Answer]:
        """One Answer per request, in order (called in a worker thread)."""

    def prepare(self, request: Request) -> Any:
        """Work for one request that needs no model (e.g. decode its pixels), run ahead in
        a worker thread; what it returns is handed to :meth:`generate_prepared`."""
        return None

    def generate_prepared(self, requests: Sequence[Request], prepared: Sequence[Any]) -> list[Answer]:
        """Generate one batch from prepared requests; default: :meth:`generate_batch`."""
        return self.generate_batch(requests)

    @property
    def window(self) -> int:
        # one batch generating, the next one being prepared
        return 2 * max(1, self.batch_size)

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Call]:
        batcher = _Batcher(self)
        self.last_stats = batcher.stats
        try:
            yield batcher.submit
        finally:
            await batcher.close()


GENERATION_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("generation_stop", default=None)
"""Set while a batch generates (the thread of ``generate_prepared`` sees it): an event that
is set when the session closes early (Ctrl-C, a consumer that stopped), so a backend that
can stop mid-batch (the local one, at its next token) does, instead of making the run wait
for a batch nobody will read."""


class _Batcher:
    """Forms batches from prepared requests and runs them one at a time in a worker thread."""

    def __init__(self, backend: BatchedBackend):
        self.backend = backend
        self.stats = BatcherStats()
        self._stop = threading.Event()
        self._ready: dict[str, deque] = {"image": deque(), "video": deque()}
        self._wake = asyncio.Event()
        self._preparing = asyncio.Semaphore(max(1, backend.prepare_threads))
        self._pending = 0  # requests submitted and not yet prepared
        self._opened = time.perf_counter()
        self._loop = asyncio.create_task(self._run())

    async def submit(self, request: Request) -> Answer | BaseException:
        self._pending += 1
        try:
            async with self._preparing:
                prepared = await asyncio.to_thread(self.backend.prepare, request)
        except MolmoRagError as exc:  # e.g. a file that fails to decode: this request only
            return exc
        finally:
            self._pending -= 1
            self._wake.set()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._ready[request.item.model_input].append((request, prepared, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        size = max(1, self.backend.batch_size)
        GENERATION_STOP.set(self._stop)  # this task's context, copied into its worker threads
        while True:
            await self._wake.wait()
            self._wake.clear()
            while any(self._ready.values()):
                queue = max(self._ready.values(), key=len)
                if len(queue) < size and self._pending:
                    break  # requests still decoding would join this batch: wait for them
                batch = [queue.popleft() for _ in range(min(len(queue), size))]
                await self._generate(batch)

    async def _generate(self, batch: list) -> None:
        requests = [r for r, _, _ in batch]
        prepared = [p for _, p, _ in batch]
        started = time.perf_counter()
        try:
            answers: list[Any] = await asyncio.to_thread(self.backend.generate_prepared, requests, prepared)
        except MolmoRagError as exc:
            if len(batch) == 1 or exc.fatal:  # e.g. a model that cannot load: all alike
                answers = [exc] * len(batch)
            else:  # one bad item must not sink the batch: its members one by one
                answers = []
                for request, one in zip(requests, prepared):
                    try:
                        answers += await asyncio.to_thread(self.backend.generate_prepared, [request], [one])
                    except MolmoRagError as single:
                        answers.append(single)
        except Exception as exc:  # a bug: every request of the batch reports it
            answers = [exc] * len(batch)
        self.stats.busy_s += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.requests += len(batch)
        for (_, _, future), answer in zip(batch, answers):
            if not future.done():
                future.set_result(answer)

    async def close(self) -> None:
        self._stop.set()  # a batch still generating stops: its callers are gone
        self._loop.cancel()
        try:
            await self._loop
        except asyncio.CancelledError:
            pass
        for queue in self._ready.values():
            for _, _, future in queue:
                future.cancel()
        self.stats.open_s = time.perf_counter() - self._opened




def backend_class(name: str) -> type[Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}", option="backend") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_backend(name: str, **options: Any) -> Backend:
    """Create a backend by name; options are that backend's typed options."""
    return backend_class(name)(**options)


def backend_name(backend: str | None = None) -> str:
    """The backend a user chose: ``backend``, else ``MOLMO_RAG_BACKEND``, else ``local``;
    an unknown name is a :class:`~molmo_rag.errors.UsageError` listing the known ones."""
    import os

    name = backend or os.environ.get("MOLMO_RAG_BACKEND") or "local"
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}", option="backend")
    return name


def create_backend(
    backend: str | None = None, model: str | None = None, concurrency: int | None = None, **options: Any
) -> Backend:
    """A backend from user-facing choices and the environment: the name (:func:`backend_name`),
    the model (:meth:`Backend.resolve_model`: ``model``, else the backend's ``env.model``
    variable, else its default); ``concurrency`` sets the backend's declared
    ``concurrency_option`` (the batch size of a local model, the requests in flight of a
    hosted API)."""
    cls = backend_class(backend_name(backend))
    if (resolved := cls.resolve_model(model)) != cls.default_model:  # the default is the backend's own
        options["model"] = resolved
    if concurrency:
        if cls.concurrency_option is None:
            raise UsageError(f"backend {cls.name!r} takes no concurrency option", option="concurrency")
        options[cls.concurrency_option] = concurrency
    return cls(**options)


def model_of(backend: Backend) -> str:
    """The model a backend instance runs (its ``model``, else its class's default)."""
    return getattr(backend, "model", None) or backend.default_model


def capable_backends(task: Task, media: ModelInput) -> list[str]:
    capable = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
        except ImportError:  # a backend module that cannot import cannot run anything
            continue
        if cls.supports(task, media):
            capable.append(name)
    return capable
