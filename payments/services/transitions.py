"""Moving a locked payment through its state machine, always with an event row."""

from __future__ import annotations

from typing import Any

from payments.models import Payment, PaymentEvent
from payments.states import PAYMENT_TRANSITIONS


def payment_move(
    payment: Payment, to: str, *, source: str, evidence: dict[str, Any] | None = None, actor: str = ""
) -> None:
    """Check the move, write the event; the caller saves the payment in the same transaction."""
    PAYMENT_TRANSITIONS.check(payment.status, to, payment_no=payment.payment_no)
    PaymentEvent.objects.create(
        payment=payment, from_status=payment.status, to_status=to, source=source, evidence=evidence or {}, actor=actor
    )
    payment.status = to
    payment.version += 1
