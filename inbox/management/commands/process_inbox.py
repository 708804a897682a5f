"""Run the inbox sweep by hand: apply verified notifications not yet applied."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from inbox.services import notifications_retry_unapplied


class Command(BaseCommand):
    help = "Apply verified channel notifications that are still unapplied (the inbox sweep)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=100)
        parser.add_argument("--older-than", type=int, default=30, help="seconds since receipt")

    def handle(self, *args: Any, limit: int, older_than: int, **options: Any) -> None:
        tried = notifications_retry_unapplied(limit=limit, older_than_seconds=older_than)
        self.stdout.write(f"{tried} notification(s) processed")
