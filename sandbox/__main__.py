"""``python -m sandbox --port 8100 --time-factor 1``: run the sandbox gateway in the foreground."""

from __future__ import annotations

import argparse
import sys

from sandbox.server import SandboxGateway
from sandbox.tls import DEFAULT_TLS_HOSTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="listen port (default 8100; 0 = any free port)")
    parser.add_argument(
        "--time-factor",
        type=float,
        default=1.0,
        help="divide notification retry schedules and payer delays by this (default 1)",
    )
    parser.add_argument(
        "--tls-port",
        type=int,
        default=0,
        help="port of the mutual-TLS listener serving WeChat /secapi/ (default 0 = any free port; -1 = none)",
    )
    parser.add_argument(
        "--tls-host",
        action="append",
        default=[],
        help="extra host name the TLS server certificate covers, e.g. a compose service name (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gateway = SandboxGateway(
        host=args.host,
        port=args.port,
        time_factor=args.time_factor,
        verbose=args.verbose,
        tls_port=None if args.tls_port < 0 else args.tls_port,
        tls_hosts=(*DEFAULT_TLS_HOSTS, *args.tls_host),
    )
    gateway.bind()  # so the URLs can be printed before serving
    print(
        f"sandbox gateway on {gateway.base_url} (time factor {args.time_factor:g}); page: {gateway.base_url}/_sandbox/;"
        f" mutual TLS (WeChat /secapi/): {gateway.tls_base_url or 'off'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
