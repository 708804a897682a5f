"""System checks that refuse unsafe production settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from paycore.crypto import EncryptionKeyError, KeyRing


@register("security", deploy=False)
def check_secrets(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        problems.append(Error("SECRET_KEY is the development default while DEBUG is off",
                              hint="set SECRET_KEY in the environment", id="paycore.E001"))
    try:
        KeyRing.parse(settings.FIELD_ENCRYPTION_KEYS)
    except EncryptionKeyError as exc:
        problems.append(Error(f"FIELD_ENCRYPTION_KEYS is invalid: {exc}", id="paycore.E002"))
    if not settings.DEBUG and settings.FIELD_ENCRYPTION_KEYS == settings.DEV_FIELD_ENCRYPTION_KEYS:
        problems.append(Error("FIELD_ENCRYPTION_KEYS is the development default while DEBUG is off",
                              hint="generate one with: manage.py generate_field_key", id="paycore.E003"))
    return problems


@register("paycore")
def check_sandbox_accounts(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Warn when an enabled channel account points at the sandbox gateway outside DEBUG."""
    if settings.DEBUG:
        return []
    from django.db import DatabaseError

    from channels.models import ChannelAccount

    try:
        sandboxed = [a.name for a in ChannelAccount.objects.filter(is_enabled=True) if a.points_at_sandbox]
    except DatabaseError:
        return []
    return [Warning(f"channel account {name!r} points at the sandbox gateway", id="paycore.W001")
            for name in sandboxed]
