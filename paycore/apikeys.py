"""API keys: ``pc_<prefix>_<secret>``. The prefix finds the row; only SHA-256 of the whole key is
stored (the key has 256 bits of entropy, so a fast hash is enough). Shown once at creation.

Every API request authenticates, so the lookup is on the hot path of every endpoint. A process
keeps the clients it has verified for ``API_KEY_CACHE_SECONDS`` (keyed by the key's hash, so a
wrong secret never hits the cache), and records ``last_used_at`` at most once per
``API_KEY_TOUCH_SECONDS``: a GET then costs no query for its key at all, and no write. Saving or
deleting a client drops it from this process's cache at once; other processes see a
deactivation within ``API_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
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


_CACHE_LIMIT = 1024
_cache: dict[str, tuple[float, ApiClient]] = {}  # key hash -> (good until, monotonic; client)
_cache_lock = threading.Lock()


def api_client_for_key(key: str) -> ApiClient | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "pc":
        return None
    digest = _hash(key)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and cached[0] > now:
        client = cached[1]
    else:
        found = ApiClient.objects.filter(key_prefix=parts[1], is_active=True).select_related("merchant").first()
        if found is None or not hmac.compare_digest(found.key_hash, digest):
            return None
        client = found
        ttl = settings.API_KEY_CACHE_SECONDS
        if ttl > 0:
            with _cache_lock:
                if len(_cache) >= _CACHE_LIMIT:
                    _cache.clear()  # a crude bound: a few thousand live keys is already far beyond use
                _cache[digest] = (now + ttl, client)
    _touch(client)
    return client


def _touch(client: ApiClient) -> None:
    """``last_used_at`` to the minute, not to the request: one UPDATE per client and process a
    minute instead of a write (and a row lock every request of that key queues on) per request."""
    now = timezone.now()
    if client.last_used_at is not None and now - client.last_used_at < timedelta(
        seconds=settings.API_KEY_TOUCH_SECONDS
    ):
        return
    client.last_used_at = now
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)


@receiver(post_save, sender=ApiClient)
@receiver(post_delete, sender=ApiClient)
def _forget(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
    with _cache_lock:
        for digest in [d for d, (_, c) in _cache.items() if c.pk == instance.pk]:
            del _cache[digest]
