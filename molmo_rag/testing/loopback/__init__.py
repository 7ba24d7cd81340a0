"""HTTP servers on 127.0.0.1 that speak the hosted protocols molmo-rag uses, for tests,
benchmarks and trying the tool offline.

Each runs in a background thread (``start()``/``stop()`` or ``with``), exposes
``base_url`` (what to give the matching backend) and ``stats`` (requests received, per
route, most requests in flight at once, jobs created), has a fixed job ``latency`` and
faults switched on with ``inject(kind, route=..., times=..., **params)``: ``rate_limit``,
``server_error``, ``drop``, ``malformed``, ``slow``, ``fail_job``, ``slow_job``. A request
without the server's ``api_key`` gets the protocol's 401.

Answers come from a stand-in model that reads the media (size, hash) and the task, and
answers in Molmo2's conventions (points markup for counts), so each item gets its own
answer. Run one from a shell: ``python -m molmo_rag.testing.loopback wavespeed --port 8765``.
"""

from ._server import FAULT_KINDS, LoopbackServer, ServerStats
from .openai import OpenAIServer
from .openoctopus import OpenOctopusServer
from .wavespeed import WaveSpeedServer

__all__ = ["FAULT_KINDS", "LoopbackServer", "ServerStats", "WaveSpeedServer", "OpenOctopusServer", "OpenAIServer", "SERVERS"]

SERVERS = {"wavespeed": WaveSpeedServer, "openoctopus": OpenOctopusServer, "openai": OpenAIServer}
"""Backend name -> the loopback server speaking its protocol."""
