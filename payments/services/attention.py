"""Payments the automation cannot settle go to a person (NEEDS_ATTENTION), and come back."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from paycore.jsonable import jsonable
from paycore.models import EventSource
from payments.locks import payment_lock
from payments.models import Payment
from payments.states import OPEN_STATES, payment_move

log = logging.getLogger(__name__)
S = Payment.Status


@transaction.atomic(durable=True)
def payment_flag_for_ops(
    *, payment_id: int, problem: str, evidence: dict[str, Any] | None = None, source: str, actor: str = ""
) -> Payment:
    """Stop the automatic handling of a payment the sweeps cannot settle and put it in front of a
    person (NEEDS_ATTENTION), with the reason in its event."""
    payment = payment_lock(payment_id)
    if payment.status in OPEN_STATES:
        payment_move(
            payment,
            S.NEEDS_ATTENTION,
            source=source,
            evidence={"problem": problem, **jsonable(evidence or {})},
            actor=actor,
        )
        payment.next_check_at = None
        payment.save(update_fields=["status", "next_check_at", "updated_at"])
        log.warning("payment %s needs attention: %s", payment.payment_no, problem)
    return payment


@transaction.atomic(durable=True)
def payment_return_to_sweeps(*, payment_id: int, actor: str, note: str = "") -> Payment:
    """Ops hand a NEEDS_ATTENTION payment back to the automatic checks."""
    payment = payment_lock(payment_id)
    if payment.status == S.NEEDS_ATTENTION:
        payment_move(payment, S.PENDING, source=EventSource.OPS, evidence={"note": note}, actor=actor)
        payment.next_check_at = timezone.now()
        payment.save(update_fields=["status", "next_check_at", "updated_at"])
    return payment
