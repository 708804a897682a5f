"""``python manage.py sandbox_gateway --port 8100 [--time-factor N]``.

A thin wrapper over ``python -m sandbox``; the sandbox package itself never imports Django.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # the sandbox needs neither the database nor paycore's checks
    help = "Run the sandbox gateway (the simulated WeChat/Alipay/PayPal/points platforms) in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--time-factor", type=float, default=1.0)
        parser.add_argument("--verbose-requests", action="store_true", help="log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        from sandbox.__main__ import main

        argv = ["--host", options["host"], "--port", str(options["port"]), "--time-factor", str(options["time_factor"])]
        if options["verbose_requests"]:
            argv.append("--verbose")
        main(argv)
