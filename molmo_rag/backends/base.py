"""The backend contract and the machinery every backend shares.

A backend implements one narrow method:

* :class:`BatchedBackend` (local models): ``generate_batch(requests) -> list[Answer]``,
  called in a worker thread with at most ``batch_size`` requests;
* :class:`~molmo_rag.backends.rest.RestBackend` (hosted APIs): ``async call(request,
  engine) -> Answer`` for one request; concurrency, retries and polling live in the engine.

Everything else lives here once: capability checks with errors that name the backends that
can, turning answers into :class:`Result` (parsing, shifting video points into video
time), collecting failures per request instead of failing the batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from ..errors import BackendError, ConfigurationError, MolmoRagError, UnsupportedTaskError, UsageError
from ..media.items import MediaItem
from ..options_base import Options
from ..tasks import ModelInput, Task

__all__ = [
    "Request",
    "Answer",
    "Result",
    "Backend",
    "BatchedBackend",
    "BackendOptions",
    "BACKENDS",
    "backend_class",
    "get_backend",
    "create_backend",
    "capable_backends",
    "run_sync",
]


@dataclass(frozen=True)
class Request:
    item: MediaItem
    task: Task


@dataclass
class Answer:
    """What a backend returns for one request, before parsing."""

    text: str
    cost_usd: float = 0.0
    model: str | None = None
    meta: dict = field(default_factory=dict)


AnswerCallback = Callable[[int, "Answer | BaseException"], None]


@dataclass
class Result:
    """One parsed answer for one media item and one task."""

    item: MediaItem
    task: Task
    text: str
    fields: dict
    backend: str
    model: str
    cost_usd: float = 0.0
    cached: bool = False

    def to_json(self) -> dict:
        """The JSON object of ``DESIGN.md``: source, kind, backend, model, task fields."""
        out: dict[str, Any] = {
            "source": self.item.source,
            "kind": self.item.kind,
            "backend": self.backend,
            "model": self.model,
            "media_id": self.item.media_id,
        }
        for key in ("slide", "title", "start", "end"):
            value = getattr(self.item, key)
            if value is not None:
                out[key] = value
        out.update(self.fields)
        out["cost_usd"] = round(self.cost_usd, 6)
        return out


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


class Backend(ABC):
    """Base class: capability checks, result building, failure collection."""

    name: ClassVar[str] = "base"
    capabilities: ClassVar[dict[ModelInput, frozenset[str]]] = {}
    """Task names this backend runs, per model input ("image" covers slides)."""
    default_model: ClassVar[str] = "allenai/Molmo2-4B"

    model: str

    # -- capabilities --------------------------------------------------------------------
    @classmethod
    def supports(cls, task: Task, media: ModelInput) -> bool:
        return media in task.inputs and task.name in cls.capabilities.get(media, frozenset())

    def check(self, request: Request) -> None:
        media = request.item.model_input
        if not self.supports(request.task, media):
            raise UnsupportedTaskError(
                f"{request.task.name} on {media}", self.name, capable_backends(request.task, media)
            )

    # -- the one method subclasses implement (through BatchedBackend / RestBackend) ------
    @abstractmethod
    async def _execute(
        self, requests: Sequence[Request], on_answer: AnswerCallback | None = None
    ) -> list[Answer | BaseException]:
        """One Answer or exception per request, in order; ``on_answer(index, answer)`` is
        called as each one arrives, so callers can keep results before the rest finish."""

    # -- public API ----------------------------------------------------------------------
    async def arun(
        self,
        requests: Sequence[Request],
        on_result: Callable[[Request, Result | MolmoRagError], None] | None = None,
    ) -> list[Result | MolmoRagError]:
        """Run requests; each slot holds a Result or the MolmoRagError for that request."""
        out: list[Result | MolmoRagError | None] = [None] * len(requests)
        runnable: list[int] = []
        for i, request in enumerate(requests):
            try:
                self.check(request)
                runnable.append(i)
            except MolmoRagError as exc:
                out[i] = exc
                if on_result:
                    on_result(request, exc)
        if runnable:

            def deliver(j: int, answer: Answer | BaseException) -> None:
                i = runnable[j]
                if out[i] is None:
                    out[i] = self._to_result(requests[i], answer)
                    if on_result:
                        on_result(requests[i], out[i])

            answers = await self._execute([requests[i] for i in runnable], deliver)
            for j, answer in enumerate(answers):
                deliver(j, answer)
        return out  # type: ignore[return-value]

    def run(self, requests: Sequence[Request]) -> list[Result | MolmoRagError]:
        """Synchronous :meth:`arun` for non-async callers."""
        return run_sync(self.arun(requests))

    def _to_result(self, request: Request, answer: Answer | BaseException) -> Result | MolmoRagError:
        if isinstance(answer, MolmoRagError):
            return answer
        if isinstance(answer, BaseException):
            err = BackendError(f"{type(answer).__name__}: {answer}", backend=self.name)
            err.__cause__ = answer
            return err
        fields = request.task.parse(answer.text)
        if request.item.model_input == "video":
            fields = shift_points(fields, request.item.start)
        return Result(
            item=request.item,
            task=request.task,
            text=answer.text,
            fields=fields,
            backend=self.name,
            model=answer.model or self.model,
            cost_usd=answer.cost_usd,
        )

    def estimate_cost(self, request: Request) -> float:
        """What one request would cost (USD), without calling anything."""
        return 0.0

    def load(self) -> None:
        """Prepare what is expensive (a model in memory) now, so a bad configuration fails
        before any media is read; otherwise it happens on first use."""

    def close(self) -> None:
        """Release clients, threads or model memory."""


class BatchedBackend(Backend):
    """For local models: requests run in batches of ``batch_size`` in a worker thread."""

    batch_size: int = 4

    @abstractmethod
    def generate_batch(self, requests: Sequence[Request]) -> list[Answer]:
        """One Answer per request, in order (called in a worker thread)."""

    def batches(self, requests: Sequence[Request]) -> list[list[int]]:
        """Indices grouped into batches; override to keep incompatible inputs apart."""
        idx = list(range(len(requests)))
        return [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]

    async def _execute(
        self, requests: Sequence[Request], on_answer: AnswerCallback | None = None
    ) -> list[Answer | BaseException]:
        out: list[Answer | BaseException | None] = [None] * len(requests)
        for batch in self.batches(requests):
            try:
                answers = await asyncio.to_thread(self.generate_batch, [requests[i] for i in batch])
                for i, answer in zip(batch, answers):
                    out[i] = answer
            except MolmoRagError as exc:
                if len(batch) == 1:
                    out[batch[0]] = exc
                    continue
                # One bad item must not sink the batch: retry its members one by one.
                for i in batch:
                    try:
                        out[i] = (await asyncio.to_thread(self.generate_batch, [requests[i]]))[0]
                    except MolmoRagError as single:
                        out[i] = single
            if on_answer:
                for i in batch:
                    on_answer(i, out[i])  # type: ignore[arg-type]
        return out  # type: ignore[return-value]


def run_sync(coro):
    """Run a coroutine from sync code, also when an event loop is already running
    (Jupyter): then it runs in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


BACKENDS: dict[str, str] = {
    "local": "molmo_rag.backends.local:LocalBackend",
    "wavespeed": "molmo_rag.backends.wavespeed:WaveSpeedBackend",
    "openoctopus": "molmo_rag.backends.openoctopus:OpenOctopusBackend",
    "openai": "molmo_rag.backends.openai:OpenAIBackend",
}


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


MODEL_ENV_BACKENDS = frozenset({"local", "openai"})
"""Backends whose model is a Molmo2 checkpoint name, so MOLMO_RAG_MODEL applies to them
(the hosted endpoints name their model in the URL path instead)."""


def create_backend(
    backend: str | None = None, model: str | None = None, concurrency: int | None = None, **options: Any
) -> Backend:
    """A backend from user-facing choices and the environment: ``MOLMO_RAG_BACKEND``
    (default ``local``) and ``MOLMO_RAG_MODEL``; ``concurrency`` is the batch size of the
    local backend and the requests in flight of the REST ones."""
    import os

    name = backend or os.environ.get("MOLMO_RAG_BACKEND") or "local"
    backend_class(name)  # fail early, and clearly, on an unknown name
    if model is None and name in MODEL_ENV_BACKENDS:
        model = os.environ.get("MOLMO_RAG_MODEL") or None
    if model:
        options["model"] = model
    if concurrency:
        options["batch_size" if name == "local" else "concurrency"] = concurrency
    return get_backend(name, **options)


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
