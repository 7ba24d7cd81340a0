"""Synchronous front doors over the async core that also work *inside* a running event
loop (a Jupyter cell, an async web handler), where ``asyncio.run`` refuses to start.

* :func:`run_sync` runs one coroutine to completion;
* :func:`iterate_sync` turns an async generator into a plain iterator.

With no loop running they use a loop in the calling thread; inside a running loop they
hand the work to one event loop in a helper thread, and block the caller until each step
is done (the caller asked for a blocking call; the notebook's own loop is not touched).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["run_sync", "iterate_sync", "in_running_loop"]

T = TypeVar("T")


def in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _LoopThread:
    """An event loop running in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="molmo-rag-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

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
        return asyncio.run(coro)
    runner = _LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.close()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async generator from sync code, one item per step; closing (or dropping)
    the returned iterator closes the async generator, so its clean-up runs."""
    if in_running_loop():
        runner = _LoopThread()
        step, finish = runner.run, runner.close
    else:
        loop = asyncio.new_event_loop()

        def step(coro: Coroutine[Any, Any, T]) -> T:
            return loop.run_until_complete(coro)

        def finish() -> None:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    try:
        while True:
            try:
                value = step(agen.__anext__())
            except StopAsyncIteration:
                return
            yield value
    finally:
        try:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                step(aclose())
        finally:
            finish()
