"""One backend per process per configuration.

Framework code makes many small objects (a loader per file, a parser per worker, a reader
copied into each process of a pool), and each would otherwise make its own backend: a local
model loaded again, a hosted API's concurrency multiplied. Here a backend is kept per
configuration (its class and the arguments it was made with) for the life of the process,
and every run that asks for the same configuration gets the same instance.

A :class:`~molmo_rag.backends.base.Backend` pickles as that configuration (never its
clients, threads or model weights) and unpickles into this process's shared instance, so a
copy sent to a worker process is rebuilt there, once. What cannot be sent (a backend made
with an object that does not pickle, such as a custom HTTP client) fails to pickle with an
error that says so, instead of a copy silently running another model.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import pickle
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .base import Backend

__all__ = ["close_shared_backends", "shared_backend", "shared_backends"]

logger = logging.getLogger("molmo_rag")

_lock = threading.Lock()
_backends: dict[str, "Backend"] = {}


def configuration_key(kind: type | str, args: tuple, kwargs: dict[str, Any]) -> str:
    """A digest of a configuration (secrets included, so two keys never share a backend,
    but only as a hash: never kept in the clear)."""
    name = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
    try:
        blob = pickle.dumps((name, args, sorted(kwargs.items())), protocol=4)
    except Exception as exc:
        from ..errors import UsageError

        raise UsageError(
            f"backend {name} was made with an argument that cannot be copied to another process or shared "
            f"({type(exc).__name__}: {exc}); give it plain options (a name, URLs, numbers) instead"
        ) from exc
    return hashlib.sha256(blob).hexdigest()


def shared_backend(key: str, make: Callable[[], "Backend"]) -> "Backend":
    """The process's backend for ``key``, made by ``make`` the first time."""
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = make()
            _backends[key] = backend
        return backend


def shared_backends() -> list["Backend"]:
    """The shared backends alive in this process."""
    with _lock:
        return list(_backends.values())


def close_shared_backends() -> None:
    """Close every shared backend (model memory, clients); the next run makes new ones.
    Called when the process exits."""
    with _lock:
        backends = list(_backends.values())
        _backends.clear()
    for backend in backends:
        try:
            backend.close()
        except Exception as exc:  # pragma: no cover - closing at exit must not raise
            logger.debug("closing a shared backend failed: %s", exc)


def rebuilt(kind: type, args: tuple, kwargs: dict[str, Any]) -> "Backend":
    """What an unpickled backend becomes: this process's shared one of that configuration."""
    return shared_backend(configuration_key(kind, args, kwargs), lambda: kind(*args, **kwargs))


atexit.register(close_shared_backends)
