"""Print a new FIELD_ENCRYPTION_KEYS entry (32 random bytes)."""

import base64
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Print a new key ring entry 'kid:key'; prepend it to FIELD_ENCRYPTION_KEYS to rotate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kid", nargs="?", default=f"k{secrets.randbelow(10**6):06d}")

    def handle(self, *args: Any, kid: str, **options: Any) -> None:
        self.stdout.write(f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
