"""System checks that refuse unsafe production settings."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from paycore.crypto import EncryptionKeyError, KeyRing


@register("security", deploy=False)
def check_secrets(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        problems.append(
            Error(
                "SECRET_KEY is the development default while DEBUG is off",
                hint="set SECRET_KEY in the environment",
                id="paycore.E001",
            )
        )
    try:
        KeyRing.parse(settings.FIELD_ENCRYPTION_KEYS)
    except EncryptionKeyError as exc:
        problems.append(Error(f"FIELD_ENCRYPTION_KEYS is invalid: {exc}", id="paycore.E002"))
    if not settings.DEBUG and settings.FIELD_ENCRYPTION_KEYS == settings.DEV_FIELD_ENCRYPTION_KEYS:
        problems.append(
            Error(
                "FIELD_ENCRYPTION_KEYS is the development default while DEBUG is off",
                hint="generate one with: manage.py generate_field_key",
                id="paycore.E003",
            )
        )
    return problems


@register("database")
def check_persistent_connections(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Outside DEBUG every request would otherwise open a new database connection, which costs
    more than the work of a callback or a payment lookup."""
    # CONN_MAX_AGE None keeps connections for good; only 0 closes one after every request.
    if settings.DEBUG or settings.DATABASES["default"].get("CONN_MAX_AGE", 0) != 0:
        return []
    return [
        Warning(
            "persistent database connections are off (CONN_MAX_AGE is 0) while DEBUG is off",
            hint="set DATABASE_CONN_MAX_AGE (seconds, e.g. 600) or put a connection pooler in front",
            id="paycore.W002",
        )
    ]


def is_https_or_loopback(url: str) -> bool:
    """HTTPS, or plain HTTP to this machine only (the sandbox gateway in development)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@register("security")
def check_public_base_url(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Channels post payment notifications to this URL: outside DEBUG it must be HTTPS."""
    if settings.DEBUG or is_https_or_loopback(settings.PAYCORE_PUBLIC_BASE_URL):
        return []
    return [
        Error(
            f"PAYCORE_PUBLIC_BASE_URL {settings.PAYCORE_PUBLIC_BASE_URL!r} is not HTTPS while DEBUG is off",
            hint="channels must reach paycore's callbacks over HTTPS",
            id="paycore.E004",
        )
    ]
