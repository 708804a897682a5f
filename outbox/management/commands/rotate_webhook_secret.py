"""``manage.py rotate_webhook_secret MERCHANT [--overlap-hours 24]``: a new webhook secret for a
merchant, printed once; the old one keeps signing (besides the new) for the overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.models import Merchant
from outbox.services import webhook_secret_rotate


class Command(BaseCommand):
    help = "Rotate a merchant's webhook secret with an overlap window; prints the new secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("merchant", help="the merchant's code")
        parser.add_argument("--overlap-hours", type=float, default=24.0)
        parser.add_argument("--actor", default="cli")

    def handle(self, *args: Any, merchant: str, overlap_hours: float, actor: str, **options: Any) -> None:
        row = Merchant.objects.filter(code=merchant).first()
        if row is None:
            raise CommandError(f"no merchant {merchant!r}")
        secret = webhook_secret_rotate(merchant_id=row.pk, actor=actor, overlap=timedelta(hours=overlap_hours))
        self.stdout.write(secret)
