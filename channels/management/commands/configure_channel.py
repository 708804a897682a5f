"""Load a channel account from a JSON file (ids, credentials, options, base URL).

    {"channel": "wechat", "name": "wechat-main", "base_url": "https://api.mch.weixin.qq.com",
     "ids": {...}, "credentials": {...}, "options": {...}, "callback_ip_allowlist": []}

Credentials are encrypted at rest and never printed. An existing account of that name is updated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels.services import channel_account_configure


class Command(BaseCommand):
    help = "Create or update a channel account from a JSON file ('-' for stdin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--name", help="override the account name in the file")
        parser.add_argument("--disabled", action="store_true", help="store the account disabled")

    def handle(self, *args: Any, path: str, name: str | None, disabled: bool, **options: Any) -> None:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        try:
            spec = json.loads(raw)
        except ValueError as exc:
            raise CommandError(f"not valid JSON: {exc}") from None
        if name:
            spec["name"] = name
        try:
            account, created = channel_account_configure(spec, enabled=not disabled)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        verb = "created" if created else "updated"
        self.stdout.write(
            f"{verb} {account.channel} account {account.name!r} (id {account.pk}) -> {account.base_url}; "
            f"credentials held: {', '.join(sorted(account.credentials)) or 'none'}"
        )
