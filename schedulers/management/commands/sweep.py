"""``manage.py sweep NAME [--once]``: run a sweep by hand, exactly as the beat runs it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from paycore.sweeps import sweep_drain, sweep_run
from schedulers.registry import SWEEPS


class Command(BaseCommand):
    help = "Run a sweep by name until nothing is due (or one batch with --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=sorted(SWEEPS))
        parser.add_argument("--once", action="store_true", help="one batch of each sweep, then stop")

    def handle(self, *args: Any, name: str, once: bool, **options: Any) -> None:
        for sweep in SWEEPS[name]:
            reports = [sweep_run(sweep)] if once else sweep_drain(sweep)
            for report in reports:
                self.stdout.write(report.line())
