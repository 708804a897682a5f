"""System checks of the channels app."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import DatabaseError

from channels.models import ChannelAccount
from paycore.checks import is_https_or_loopback


@register("paycore")
def check_sandbox_accounts(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Warn when an enabled channel account points at the sandbox gateway outside DEBUG."""
    if settings.DEBUG:
        return []
    try:
        sandboxed = [a.name for a in ChannelAccount.objects.filter(is_enabled=True) if a.points_at_sandbox]
    except DatabaseError:
        return []
    return [Warning(f"channel account {name!r} points at the sandbox gateway", id="paycore.W001") for name in sandboxed]


@register("security")
def check_channel_urls_are_https(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Outside DEBUG every enabled account talks to its channel over HTTPS (plain HTTP only to a
    gateway on this machine, such as the sandbox)."""
    if settings.DEBUG:
        return []
    try:
        accounts = list(ChannelAccount.objects.filter(is_enabled=True))
    except DatabaseError:
        return []
    problems = []
    for account in accounts:
        for url in (account.base_url, account.options.get("secapi_base_url") or ""):
            if url and not is_https_or_loopback(url):
                problems.append(
                    Error(f"channel account {account.name!r} uses {url!r}, which is not HTTPS", id="paycore.E005")
                )
    return problems
