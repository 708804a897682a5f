"""Provision channel accounts on the sandbox gateway (for `scripts/run.sh` and the test suite).

The sandbox generates both sides' keys for a new account and returns the merchant side as a
configure_channel document; paycore stores it like any real account. The account row is created
first because the channel needs paycore's callback URL, which contains the account id.
"""

from __future__ import annotations

from django.db import transaction

from channels.models import ChannelAccount
from channels.services import channel_account_configure, channel_notify_url
from sandbox.client import SandboxClient


def sandbox_account_provision(*, channel: str, name: str, sandbox_url: str, **extra: object) -> ChannelAccount:
    with transaction.atomic():
        placeholder, _ = ChannelAccount.objects.update_or_create(
            name=name, defaults={"channel": channel, "base_url": sandbox_url, "is_enabled": False}
        )
    spec = SandboxClient(sandbox_url).create_account(channel, notify_url=channel_notify_url(placeholder), **extra)
    spec["name"] = name
    account, _ = channel_account_configure(spec, enabled=True)
    return account
