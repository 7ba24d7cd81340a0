"""What the loader, the blob parser, the transformer and the compressor share: molmo-rag's
run options (``molmo_rag.RunOptions``, or a ready ``molmo_rag.Run``), the one run made from
them and reused by every call, the mapping of a ``MediaDocument`` to a LangChain
``Document``, and the failure policy (log, raise, or a callback: never dropped)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

from langchain_core.documents import Document

if TYPE_CHECKING:  # pragma: no cover
    from molmo_rag import Failure, MediaDocument, Run, RunOptions

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


def run_spec(
    run: RunOptions | Run | None,
    choices: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> RunOptions | Run | None:
    """What an object runs with, checked now: a ``Run`` as given (choices on top of it are
    refused: it is built), else ``run`` with ``choices`` on top, validated as one
    ``RunOptions`` (an unknown keyword is a ``molmo_rag.UsageError`` naming it).
    ``defaults``: this object's own choices where the caller made none (not the core's)."""
    from molmo_rag import Run, RunOptions, UsageError

    if isinstance(run, Run):
        return Run.of(run, dict(choices))[0]  # the core's refusal of choices on a built run
    if run is not None and not isinstance(run, RunOptions):
        raise UsageError(f"run must be a molmo_rag.RunOptions or a molmo_rag.Run, not {type(run).__name__}", option="run")
    if not choices and not defaults:
        return run
    given = {} if run is None else {name: getattr(run, name) for name in run.model_fields_set}
    return RunOptions(**{**(defaults or {}), **given, **choices})


def options_of(spec: RunOptions | Run | None) -> RunOptions:
    """The run options of what :func:`run_spec` gave."""
    from molmo_rag import Run, RunOptions

    if isinstance(spec, Run):
        return spec.options
    return spec if spec is not None else RunOptions()


SHARED = {"share_backend": True}
"""What every object of this package runs with unless told otherwise: the process's one
backend of its configuration (``molmo_rag.RunOptions.share_backend``), so loaders made per
file, parsers in worker processes and retrievers share one model."""


class MolmoRun:
    """One molmo-rag run shared by every call of a LangChain object, and its failure policy.

    Given a ``molmo_rag.Run``, it is used and left open (whoever made it closes it). Given
    ``RunOptions`` (or their fields as ``choices``), one ``Run`` is made on first use and
    reused by every later call (one result cache; the backend is the process's shared one
    of that configuration unless ``share_backend=False``), then released by :meth:`close`
    (or when this object is garbage collected).

    It pickles as its options and failure policy (a given ``Run`` as that run's options):
    a copy in another process makes its own run there, with that process's shared backend."""

    def __init__(
        self,
        run: RunOptions | Run | None = None,
        choices: Mapping[str, Any] | None = None,
        *,
        on_failure: OnFailure = "log",
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        from molmo_rag import Run

        if not (on_failure in ("log", "raise") or callable(on_failure)):
            raise ValueError(f"on_failure must be 'log', 'raise' or a callable, not {on_failure!r}")
        spec = run_spec(run, choices or {}, {**SHARED, **(defaults or {})})
        self._given: Run | None = spec if isinstance(spec, Run) else None
        self.options: RunOptions = options_of(spec)
        """The options of every call (those of the given ``Run``, when one was given)."""
        self.on_failure = on_failure
        self.failures: list[Failure] = []
        """Every failure since this object was made, in the order reported (also reported
        as ``on_failure`` says); ``failures.clear()`` to start again."""
        self._made: Run | None = None
        self._release: weakref.finalize | None = None
        self._lock = threading.Lock()

    @property
    def given(self) -> Run | None:
        """The ``Run`` this object was given (used and left open), or None."""
        return self._given

    @property
    def run(self) -> Run:
        """The live run: the one given, or the one made from the options on first use (the
        plan is checked against the backend then, before anything is read)."""
        if self._given is not None:
            return self._given
        with self._lock:
            if self._made is None:
                from molmo_rag import Run

                self._made = Run(self.options, on_warning=self._warn)
                self._release = weakref.finalize(self, self._made.close)
            return self._made

    def __getstate__(self) -> dict:
        return {"options": self.options, "on_failure": self.on_failure}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"], on_failure=state["on_failure"])

    # -- the core's seam ---------------------------------------------------------------------
    def iter_outcomes(self, sources: Sources) -> Iterator[MediaDocument | Failure]:
        from molmo_rag import iter_documents

        return iter_documents(sources, self.run)

    def aiter_outcomes(self, sources: Sources) -> AsyncIterator[MediaDocument | Failure]:
        from molmo_rag import aiter_documents

        return aiter_documents(sources, self.run)

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
        """Release the run this object made (a local model's memory, HTTP clients, the
        result cache); a ``Run`` that was given is left open. The next call makes a new one."""
        with self._lock:
            release, self._made, self._release = self._release, None, None
        if release is not None:
            release()


def relabelled(entries: Iterable[Any], label: str) -> Iterator[Any]:
    """The core reader's items (and typed errors) of an in-memory source, named ``label``
    (what a LangChain blob calls its source) instead of ``<bytes>``, so ids and metadata
    point at it. The same assignment the core's engine makes for absolute paths."""
    for entry in entries:
        if hasattr(entry, "source"):
            entry.source = label
        yield entry


class MadeAgainWhenCopied:
    """For this package's pydantic classes: a pickled copy carries the fields (options,
    paths, settings) and makes its private state (an open index, a grounder, locks) again
    where it lands; a ``molmo_rag.Run`` in a field travels as its options."""

    def __getstate__(self) -> dict:
        from molmo_rag import Run

        state = super().__getstate__()  # type: ignore[misc]
        fields = {k: (v.options if isinstance(v, Run) else v) for k, v in state["__dict__"].items()}
        return {**state, "__dict__": fields, "__pydantic_private__": None}

    def __setstate__(self, state: dict) -> None:
        from pydantic._internal._model_construction import init_private_attributes

        super().__setstate__(state)  # type: ignore[misc]
        init_private_attributes(self, None)


class HoldsRun:
    """What the loader, the blob parser and the transformer share: one :class:`MolmoRun`
    (``self._run``), its options and failures, and closing it (also as a context manager)."""

    _run: MolmoRun

    @property
    def options(self) -> RunOptions:
        """The run options of every call."""
        return self._run.options

    @property
    def failures(self) -> list[Failure]:
        """Sources that could not be read and tasks that failed, every one since this object
        was made (cumulative across calls, as in the LlamaIndex package; a pickled copy
        starts empty); ``failures.clear()`` to start again."""
        return self._run.failures

    def close(self) -> None:
        """Release the run this object made (model memory, HTTP clients, the result cache);
        a Run handed in is left open."""
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
