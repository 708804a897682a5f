"""Write an outbox row inside the caller's transaction; a dispatcher delivers it later."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from paycore.models import OutboxEvent


def outbox_add(*, topic: str, key: str, payload: dict[str, Any] | None = None) -> OutboxEvent:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_add must run inside the transaction of the state change")
    return OutboxEvent.objects.create(topic=topic, key=key, payload=payload or {})
