"""Set up a demo on a development machine: a merchant, an admin user, a fresh API key, and one
channel account per channel on the local sandbox gateway. Refuses to run with DEBUG off."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels.registry import CHANNEL_CODES
from orders.models import Merchant
from paycore.apikeys import api_client_create
from paycore.models import ApiClient
from sandbox.provisioning.services import sandbox_account_provision


class Command(BaseCommand):
    help = "Create the demo merchant, admin user, API key and sandbox channel accounts (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sandbox-url", default=None)

    def handle(self, *args: Any, sandbox_url: str | None, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo is for development only (DEBUG is off)")
        sandbox_url = (sandbox_url or settings.PAYCORE_SANDBOX_URL).rstrip("/")
        merchant, _ = Merchant.objects.get_or_create(code="demo", defaults={"name": "Demo Merchant"})
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "paycore-demo")
        user_model = get_user_model()
        admin = user_model.objects.filter(username="admin").first() or user_model(username="admin")
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        ApiClient.objects.filter(name="demo-backend").delete()
        _, key = api_client_create(name="demo-backend")
        accounts = []
        for channel in CHANNEL_CODES:
            account = sandbox_account_provision(channel=channel, name=f"sandbox-{channel}", sandbox_url=sandbox_url)
            accounts.append(f"{account.name} (id {account.pk})")
        self.stdout.write(
            f"merchant: {merchant.code}\nadmin user: admin / {password}\n"
            f"api key: {key}\nchannel accounts: {', '.join(accounts)}"
        )
