"""Joining or starting the Ray cluster a run uses.

``local`` starts a Ray instance on this machine for the run (stopped when it ends);
``auto`` joins the cluster this machine belongs to, ``ray://host:10001`` one through Ray
Client, ``host:6379`` one by its GCS address; None reads ``RAY_ADDRESS`` and, when it is
unset, starts a local instance. A driver that is already connected keeps its connection.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError

__all__ = ["connect", "ray_module"]


def ray_module() -> Any:
    """``ray``, or an error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part we use
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray", "scale-out on a Ray cluster") from exc
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Connect this process to a Ray cluster; True when this call started Ray (the caller
    then stops it with ``ray.shutdown()`` when the run ends)."""
    ray = ray_module()
    if ray.is_initialized():
        _quiet_progress()
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    options: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
    if address == "local":
        options["include_dashboard"] = False
        # the instance is this run's own: that Ray made it a token is not the run's output
        import logging

        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigurationError(f"cannot join the Ray cluster at {address!r}: {exc}", option="ray") from exc
    _quiet_progress()
    return True


def _quiet_logs() -> None:
    """Ray Data's INFO lines (an execution started, finished) are not the run's output."""
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # it would say, once a run, that the bars we turned off are off (ours is the driver's)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _quiet_progress() -> None:
    """Ray Data's own per-operator bars would fight ours on stderr: the driver shows one."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    _quiet_logs()
