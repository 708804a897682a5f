"""Rotating a merchant's webhook secret with an overlap window: until it ends, every webhook is
signed under both the new and the old secret, so the merchant can switch its receiver over at
any moment of the window without refusing a single event."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from orders.models import Merchant
from outbox.models import WebhookSecretOverlap

DEFAULT_OVERLAP = timedelta(hours=24)


@transaction.atomic(durable=True)
def webhook_secret_rotate(
    *, merchant_id: int, actor: str, new_secret: str | None = None, overlap: timedelta = DEFAULT_OVERLAP
) -> str:
    """Give the merchant a new secret (returned once: it is stored encrypted) and keep the old one
    signing until ``overlap`` has passed. Rotating again within a window drops the oldest."""
    merchant = Merchant.objects.select_for_update(no_key=True).get(pk=merchant_id)
    secret = new_secret or f"whsec_{secrets.token_urlsafe(32)}"
    if merchant.webhook_secret:
        WebhookSecretOverlap.objects.update_or_create(
            merchant=merchant,
            defaults={
                "previous_secret": merchant.webhook_secret,
                "valid_until": timezone.now() + overlap,
                "rotated_by": actor[:150],
            },
        )
    merchant.webhook_secret = secret
    merchant.save(update_fields=["webhook_secret", "updated_at"])
    return secret
