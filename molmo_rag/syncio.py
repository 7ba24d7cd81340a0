"""Synchronous front doors over the async core that also work *inside* a running event
loop (a Jupyter cell, an async web handler), where ``asyncio.run`` refuses to start.

* :func:`run_sync` runs one coroutine to completion;
* :func:`iterate_sync` turns an async generator into a plain iterator;
* :func:`run_twin` and :func:`iterate_twin` make the typed sync twin of an async door
  (the same signature, checked by type checkers, shown by ``help()``).

``run_sync`` with no loop running is ``asyncio.run``; inside a running loop it hands the
coroutine to an event loop in a helper thread and blocks the caller until it is done (the
caller asked for a blocking call; the notebook's own loop is not touched).

``iterate_sync`` always drives the generator on an event loop in a helper thread, so the
work behind it (requests in flight, reading ahead) goes on while the caller handles an
item, not only while it waits for the next one.

Interrupts (Ctrl-C) and errors reach the caller as they are, after the async side was
cancelled and its clean-up ran: no request is left running behind a KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

__all__ = ["run_sync", "iterate_sync", "in_running_loop", "run_twin", "iterate_twin"]

T = TypeVar("T")
P = ParamSpec("P")


def in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _LoopThread:
    """An event loop running in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="molmo-rag-loop", daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the loop and block until it is done. If the wait is
        interrupted (KeyboardInterrupt) the task is cancelled and its clean-up awaited
        before the interrupt goes on, so nothing keeps running on the loop behind it."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def start() -> None:
            if box.get("abandoned"):
                return
            task = self.loop.create_task(_await(awaitable))
            task.add_done_callback(lambda _: done.set())
            box["task"] = task

        def cancel() -> None:
            # callbacks run in order: if start was queued, the task exists by now
            task = box.get("task")
            if task is not None:
                task.cancel()
                return
            box["abandoned"] = True  # interrupted before start was queued: nothing runs
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            done.set()

        try:
            self.loop.call_soon_threadsafe(start)  # an interrupt can land in here too
            done.wait()
        except BaseException:
            self.loop.call_soon_threadsafe(cancel)
            done.wait()
            raise
        return box["task"].result()

    def close(self) -> None:
        async def finish() -> None:
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        try:
            self.run(finish())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code and return its result."""
    if not in_running_loop():
        return asyncio.run(coro)  # Ctrl-C cancels the coroutine, then raises KeyboardInterrupt
    runner = _LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.close()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async generator from sync code, one item per step, the generator running
    on a loop in a helper thread meanwhile; closing (or dropping) the returned iterator
    closes the async generator, so its clean-up runs."""
    runner = _LoopThread()
    try:
        while True:
            try:
                value = runner.run(agen.__anext__())
            except StopAsyncIteration:
                return
            yield value
    finally:
        try:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                runner.run(aclose())
        finally:
            runner.close()


def _twin_doc(name: str, doc: str | None) -> str:
    return f":func:`{name}` for sync code; works inside a running event loop too.\n\n{doc or ''}"


def run_twin(door: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync twin of an async door: same parameters, the result instead of a coroutine."""

    @functools.wraps(door)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(door(*args, **kwargs))

    _name(twin, door, "T")
    return twin


def _name(twin: Any, door: Any, returns: str) -> None:
    twin.__name__ = twin.__qualname__ = door.__name__.removeprefix("a")
    twin.__doc__ = _twin_doc(door.__name__, door.__doc__)
    signature = inspect.signature(door)
    annotation = str(signature.return_annotation)
    if returns == "Iterator":
        annotation = annotation.replace("AsyncIterator", "Iterator", 1)
    del twin.__wrapped__  # help() shows the twin's own signature, not the coroutine's
    twin.__signature__ = signature.replace(return_annotation=annotation)
    twin.__annotations__ = {**door.__annotations__, "return": annotation}  # a copy: wraps shared the door's dict


def iterate_twin(door: Callable[P, AsyncIterator[T]]) -> Callable[P, Iterator[T]]:
    """The sync twin of an async generator door: same parameters, a plain iterator."""

    @functools.wraps(door)
    def twin(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return iterate_sync(door(*args, **kwargs))

    _name(twin, door, "Iterator")
    return twin
