"""What the loader, the blob parser and the transformer share: the options of a molmo-rag
run, the call into the core's document seam, the mapping of a ``MediaDocument`` to a
LangChain ``Document``, and the failure policy (log, raise, or a callback: never dropped)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.documents import Document

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Backend, EnrichOptions, Failure, MediaDocument, ReaderOptions, ResultCache, Task

logger = logging.getLogger("langchain_molmo")

OnFailure = Literal["log", "raise"] | Callable[["Failure"], None]
"""What to do with a source that could not be read or a task that failed: ``"log"`` (a
warning on the ``langchain_molmo`` logger with the cause), ``"raise"`` (raise the core's
typed error, e.g. ``molmo_rag.CorruptMediaError``), or a callable given the
:class:`molmo_rag.Failure`."""

Sources = Any
"""Paths, folders, globs, URLs (one or a list), or anything ``molmo_rag.read`` takes."""


def describe_failure(failure: Failure) -> str:
    """One line: where, which task, the error type and message, and its cause."""
    error = failure.error
    where = failure.source
    if failure.item is not None:
        if failure.item.slide is not None:
            where += f" slide {failure.item.slide}"
        elif failure.item.start is not None and failure.item.end is not None:
            where += f" {failure.item.start:.1f}-{failure.item.end:.1f}s"
    task = f" ({failure.task.name})" if failure.task is not None else ""
    line = f"molmo-rag failed on {where}{task}: {type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in str(error):
        line += f" (caused by {type(cause).__name__}: {cause})"
    return line


def to_document(document: MediaDocument) -> Document:
    """A LangChain Document of one photo, slide or video segment: the record text, the
    payload keys as metadata, and the Qdrant point id the CLI writes."""
    return Document(page_content=document.text, metadata=dict(document.metadata), id=document.id)


class MolmoRun:
    """Options of a molmo-rag run (what ``molmo_rag.aiter_documents`` takes) and the
    failure policy. A backend given by name is created once and reused by every call
    (a local model loads once), then released by :meth:`close`."""

    def __init__(
        self,
        *,
        backend: Backend | str | None = None,
        model: str | None = None,
        concurrency: int | None = None,
        tasks: EnrichOptions | Sequence[Task] | None = None,
        count: Sequence[str] = (),
        ask: Sequence[str] = (),
        detail: Literal["low", "medium", "high"] = "medium",
        default_tasks: bool | None = None,
        cache: ResultCache | str | os.PathLike[str] | bool | None = None,
        no_cache: bool = False,
        reader_options: ReaderOptions | None = None,
        window: int | None = None,
        thumbnail_size: int = 128,
        on_failure: OnFailure = "log",
    ) -> None:
        if not (on_failure in ("log", "raise") or callable(on_failure)):
            raise ValueError(f"on_failure must be 'log', 'raise' or a callable, not {on_failure!r}")
        if isinstance(count, str):
            count = [count]
        if isinstance(ask, str):
            ask = [ask]
        self.backend = backend
        self.model = model
        self.concurrency = concurrency
        self.tasks = tasks
        self.count = list(count)
        self.ask = list(ask)
        self.detail = detail
        self.default_tasks = default_tasks
        self.cache = cache
        self.no_cache = no_cache
        self.reader_options = reader_options
        self.window = window
        self.thumbnail_size = thumbnail_size
        self.on_failure = on_failure
        self.failures: list[Failure] = []
        """Every failure of the latest call (also reported as ``on_failure`` says)."""
        self._owned_backend: Backend | None = None
        self._lock = threading.Lock()

    # -- the core's seam ---------------------------------------------------------------------
    def _backend(self, shared: bool) -> Backend | str | None:
        """The backend for one call: the one given, or, for objects making many calls
        (parser, transformer), one created on first use and kept."""
        from molmo_rag import Backend

        if isinstance(self.backend, Backend) or not shared:
            return self.backend
        with self._lock:
            if self._owned_backend is None:
                from molmo_rag import create_backend

                self._owned_backend = create_backend(self.backend, self.model, self.concurrency)
            return self._owned_backend

    def options(self, *, shared: bool = False, ordered: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``molmo_rag.aiter_documents``."""
        return {
            "backend": self._backend(shared),
            "model": self.model,
            "concurrency": self.concurrency,
            "tasks": self.tasks,
            "count": self.count,
            "ask": self.ask,
            "detail": self.detail,
            "default_tasks": self.default_tasks,
            "cache": self.cache,
            "no_cache": self.no_cache,
            "reader_options": self.reader_options,
            "ordered": ordered,
            "window": self.window,
            "thumbnail_size": self.thumbnail_size,
            "on_warning": self._warn,
        }

    def iter_outcomes(
        self, sources: Sources, *, shared: bool = False, ordered: bool = False
    ) -> Iterator[MediaDocument | Failure]:
        from molmo_rag import iter_documents

        self.failures = []
        return iter_documents(sources, **self.options(shared=shared, ordered=ordered))

    def aiter_outcomes(
        self, sources: Sources, *, shared: bool = False, ordered: bool = False
    ) -> AsyncIterator[MediaDocument | Failure]:
        from molmo_rag import aiter_documents

        self.failures = []
        return aiter_documents(sources, **self.options(shared=shared, ordered=ordered))

    # -- failures ------------------------------------------------------------------------
    @staticmethod
    def _warn(message: str) -> None:
        logger.warning("molmo-rag: %s", message)

    def report(self, failure: Failure) -> None:
        """Apply the failure policy to one failure (a source, or one task of an item)."""
        self.failures.append(failure)
        if self.on_failure == "raise":
            raise failure.error
        if self.on_failure == "log":
            logger.warning(describe_failure(failure))
        else:
            self.on_failure(failure)  # type: ignore[operator]

    def documents(self, outcomes: Iterable[MediaDocument | Failure]) -> Iterator[Document]:
        """LangChain documents from outcomes; failures reported."""
        from molmo_rag import Failure

        try:
            for outcome in outcomes:
                if isinstance(outcome, Failure):
                    self.report(outcome)
                    continue
                for failure in outcome.failures:  # tasks of this item that failed; the rest is in it
                    self.report(failure)
                yield to_document(outcome)
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:  # stop the run now (on raise, or a consumer that stopped early)
                close()

    async def adocuments(self, outcomes: AsyncIterator[MediaDocument | Failure]) -> AsyncIterator[Document]:
        from molmo_rag import Failure

        try:
            async for outcome in outcomes:
                if isinstance(outcome, Failure):
                    self.report(outcome)
                    continue
                for failure in outcome.failures:
                    self.report(failure)
                yield to_document(outcome)
        finally:
            aclose = getattr(outcomes, "aclose", None)
            if aclose is not None:
                await aclose()

    def close(self) -> None:
        """Release a backend this object created (a local model's memory, HTTP clients)."""
        with self._lock:
            backend, self._owned_backend = self._owned_backend, None
        if backend is not None:
            backend.close()


def relabelled(entries: Iterable[Any], label: str) -> Iterator[Any]:
    """The core reader's items (and typed errors) of an in-memory source, named ``label``
    (what a LangChain blob calls its source) instead of ``<bytes>``, so ids and metadata
    point at it. The same assignment the core's engine makes for absolute paths."""
    for entry in entries:
        if hasattr(entry, "source"):
            entry.source = label
        yield entry
