"""Create an API client and print its key once. The key is stored only as a hash."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from paycore.apikeys import api_client_create
from paycore.models import Scope


class Command(BaseCommand):
    help = "Create an API client; prints the key once (it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--merchant", help="restrict the client to this merchant code")
        parser.add_argument(
            "--scopes", default=",".join(Scope.values), help=f"comma-separated, from: {', '.join(Scope.values)}"
        )

    def handle(self, *args: Any, name: str, merchant: str | None, scopes: str, **options: Any) -> None:
        merchant_id = None
        if merchant:
            # Merchants belong to the orders app, above this kernel: found through the registry.
            found = apps.get_model("orders", "Merchant").objects.filter(code=merchant).first()
            if found is None:
                raise CommandError(f"no merchant {merchant!r}")
            merchant_id = found.pk
        try:
            client, key = api_client_create(
                name=name, merchant_id=merchant_id, scopes=[s.strip() for s in scopes.split(",") if s.strip()]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"client: {client.name}\nscopes: {', '.join(client.scopes)}\napi key (shown once): {key}")
