"""``python -m molmo_rag.testing.loopback {wavespeed|openoctopus|openai} [--port N]
[--latency S] [--latency-sigma X] [--api-key KEY] [--output-mode MODE] [--faults
NAME=RATE,...] [--fault-param NAME.KEY=VALUE] [--seed N]``: serve one protocol on 127.0.0.1
until interrupted, and print the environment variables that point molmo-rag at it; on
exit, the requests received and the faults applied. ``--list-faults`` lists the faults.

Example: ``python -m molmo_rag.testing.loopback wavespeed --faults
upstream_failed=0.1,content_policy=0.04,submit_503=0.15,rate_limit=0.1 --seed 1``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import SERVERS
from ._server import RATED_FAULTS, parse_rates

_OUTPUT_MODES = {"wavespeed": ("text", "url"), "openoctopus": ("asset_text", "asset_url", "raw")}


def _param_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_fault_params(values: list[str]) -> dict[str, dict]:
    """``["rate_limit.retry_after=2"]`` -> ``{"rate_limit": {"retry_after": 2}}``."""
    params: dict[str, dict] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot or not name or not field:
            raise ValueError(f"--fault-param {value!r}: expected NAME.KEY=VALUE")
        params.setdefault(name, {})[field] = _param_value(raw)
    return params


def list_faults() -> str:
    width = max(map(len, RATED_FAULTS))
    lines = ["fault" + " " * (width - 5) + "  routes        what"]
    for name, spec in RATED_FAULTS.items():
        lines.append(f"{name:<{width}}  {','.join(spec.routes):<12}  {spec.doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m molmo_rag.testing.loopback", description=__doc__)
    parser.add_argument("protocol", choices=sorted(SERVERS), nargs="?")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds every job takes (the median with --latency-sigma)")
    parser.add_argument("--latency-sigma", type=float, default=0.0, help="lognormal spread of job latencies (0: fixed)")
    parser.add_argument("--api-key", default="loopback-key", help="key clients must send")
    parser.add_argument("--output-mode", help="wavespeed: text | url; openoctopus: asset_text | asset_url | raw")
    parser.add_argument("--faults", default="", help="faults at set rates: NAME=RATE,... (see --list-faults)")
    parser.add_argument("--fault-param", action="append", default=[], metavar="NAME.KEY=VALUE", help="a fault parameter, e.g. rate_limit.retry_after=2")
    parser.add_argument("--seed", type=int, default=None, help="seed of the latency and fault draws (reproducible runs)")
    parser.add_argument("--list-faults", action="store_true", help="list the faults --faults takes and exit")
    args = parser.parse_args(argv)
    if args.list_faults:
        print(list_faults())
        return
    if args.protocol is None:
        parser.error("the protocol is required (wavespeed, openoctopus or openai)")
    kwargs: dict = {"api_key": args.api_key, "latency": args.latency, "latency_sigma": args.latency_sigma, "port": args.port, "seed": args.seed}
    if args.output_mode:
        if args.output_mode not in _OUTPUT_MODES.get(args.protocol, ()):
            parser.error(f"--output-mode {args.output_mode!r} is not one of {', '.join(_OUTPUT_MODES.get(args.protocol, ())) or 'nothing'} for {args.protocol}")
        kwargs["output_mode"] = args.output_mode
    try:
        server = SERVERS[args.protocol](**kwargs)
        server.faults(parse_rates(args.faults), seed=args.seed, params=parse_fault_params(args.fault_param))
    except ValueError as exc:
        parser.error(str(exc))
    with server:
        prefix = args.protocol.upper()
        print(f"export {prefix}_BASE_URL={server.base_url}")
        print(f"export {prefix}_API_KEY={args.api_key}")
        if server.fault_rates:
            print("faults: " + ", ".join(f"{k}={v:g}" for k, v in server.fault_rates.items()) + f" (seed {server.fault_seed})")
        print("serving; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        stats = server.stats
        print(f"requests {stats.requests} {dict(stats.by_route)}; jobs {stats.jobs_created}; faults {dict(stats.faults_applied)}", file=sys.stderr)


if __name__ == "__main__":
    main()
