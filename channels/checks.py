"""System checks of the channels app."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register
from django.db import DatabaseError

from channels.models import ChannelAccount


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
