"""HTTP servers on 127.0.0.1 that speak the hosted protocols molmo-rag uses, for tests,
benchmarks and trying the tool offline.

Each runs in a background thread (``start()``/``stop()`` or ``with``), exposes
``base_url`` (what to give the matching backend) and ``stats`` (requests received, per
route, most requests in flight at once, jobs created), has a fixed job ``latency`` and
faults switched on with ``inject(kind, route=..., times=..., **params)`` (the next
``times`` matching requests or jobs): ``rate_limit``, ``server_error``, ``drop``,
``malformed``, ``slow``, ``reply``, ``reset``, ``trickle``, ``fail_job``, ``slow_job``,
``never_finish``; and faults at set rates, seeded and reproducible, with
``faults(rates={"upstream_failed": 0.1, "submit_503": 0.15, ...}, seed=1)`` (or the
``fault_rates``/``fault_seed`` constructor options; names in :data:`RATED_FAULTS`). A
request without the server's ``api_key`` gets the protocol's 401.

Answers come from a stand-in model that reads the media (size, hash) and the task, and
answers in Molmo2's conventions (points markup for counts), so each item gets its own
answer. Run one from a shell: ``python -m molmo_rag.testing.loopback wavespeed --port 8765``
(``--faults upstream_failed=0.1,submit_503=0.15 --seed 1`` for faults at rates;
``--list-faults`` lists them).
"""

from ._server import FAULT_KINDS, RATED_FAULTS, LoopbackServer, RatedFault, ServerStats, parse_rates
from .openai import OpenAIServer
from .openoctopus import OpenOctopusServer
from .wavespeed import WaveSpeedServer

__all__ = ["FAULT_KINDS", "RATED_FAULTS", "RatedFault", "parse_rates", "LoopbackServer", "ServerStats", "WaveSpeedServer", "OpenOctopusServer", "OpenAIServer", "SERVERS"]

SERVERS = {"wavespeed": WaveSpeedServer, "openoctopus": OpenOctopusServer, "openai": OpenAIServer}
"""Backend name -> the loopback server speaking its protocol."""
