"""``python -m molmo_rag.testing.loopback {wavespeed|openoctopus|openai} [--port N] [--latency S]
[--api-key KEY]``: serve one protocol on 127.0.0.1 until interrupted, and print the
environment variables that point molmo-rag at it."""

from __future__ import annotations

import argparse
import time

from . import SERVERS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m molmo_rag.testing.loopback", description=__doc__)
    parser.add_argument("protocol", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds every job takes")
    parser.add_argument("--api-key", default="loopback-key", help="key clients must send")
    args = parser.parse_args(argv)
    server = SERVERS[args.protocol](api_key=args.api_key, latency=args.latency, port=args.port)
    with server:
        prefix = args.protocol.upper()
        print(f"export {prefix}_BASE_URL={server.base_url}")
        print(f"export {prefix}_API_KEY={args.api_key}")
        print("serving; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
