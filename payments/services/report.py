"""The app's report of what its payment SDK said: a hint, never proof of payment."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from paycore.models import EventSource
from payments.locks import payment_lock
from payments.models import Payment
from payments.states import payment_move


def payment_client_report(*, payment_id: int, result: str, detail: dict[str, Any] | None = None) -> Payment:
    """Record the SDK result. ``success`` moves PENDING -> CLIENT_REPORTED (never SUCCEEDED);
    any report schedules an active query, which is what may confirm the payment."""
    with transaction.atomic(durable=True):
        payment = payment_lock(payment_id)
        if result == "success" and payment.status == Payment.Status.PENDING:
            payment_move(
                payment,
                Payment.Status.CLIENT_REPORTED,
                source=EventSource.CLIENT_SYNC,
                evidence={"result": result, "detail": detail or {}},
            )
            payment.save(update_fields=["status", "updated_at"])
        if payment.status != Payment.Status.SUCCEEDED:
            from payments.tasks import payment_sync as payment_sync_task

            transaction.on_commit(lambda: payment_sync_task.delay(payment_id), robust=True)
    return payment
