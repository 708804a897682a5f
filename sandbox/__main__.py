"""``python -m sandbox --port 8100 --time-factor 1``: run the sandbox gateway in the foreground."""

from __future__ import annotations

import argparse
import sys

from sandbox.server import SandboxGateway


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
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gateway = SandboxGateway(host=args.host, port=args.port, time_factor=args.time_factor, verbose=args.verbose)
    gateway.bind()  # so the URL can be printed before serving
    print(
        f"sandbox gateway on {gateway.base_url} (time factor {args.time_factor:g}); page: {gateway.base_url}/_sandbox/",
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
