"""API keys: ``pc_<prefix>_<secret>``. The prefix finds the row; only SHA-256 of the whole key is
stored (the key has 256 bits of entropy, so a fast hash is enough). Shown once at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from django.utils import timezone

from paycore.models import ApiClient, Scope


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_client_create(
    *,
    name: str,
    scopes: Iterable[str] | None = None,
    merchant_id: int | None = None,
) -> tuple[ApiClient, str]:
    """Create a client; returns it with the plaintext key, which is never stored."""
    scopes = sorted(set(scopes if scopes is not None else Scope.values))
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    prefix = secrets.token_hex(6)
    key = f"pc_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        name=name, merchant_id=merchant_id, key_prefix=prefix, key_hash=_hash(key), scopes=scopes
    )
    return client, key


def api_client_for_key(key: str) -> ApiClient | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "pc":
        return None
    client = ApiClient.objects.filter(key_prefix=parts[1], is_active=True).select_related("merchant").first()
    if client is None or not hmac.compare_digest(client.key_hash, _hash(key)):
        return None
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=timezone.now())
    return client
