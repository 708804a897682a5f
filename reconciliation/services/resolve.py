"""Ops' decisions on a discrepancy, each recorded with who took it and what came of it.

The money-moving decisions go through the owning services: the channel's truth is applied by
querying it (``payment_sync_from_channel`` / ``refund_sync_from_channel``: a success paycore
missed is recorded, and the repeat sweep refunds it if no order wants it); a refund goes through
``refund_request``. Resolving or ignoring needs a note.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from paycore.errors import Conflict, InvalidRequest
from paycore.models import EventSource
from payments.models import Payment
from payments.services import payment_sync_from_channel
from reconciliation.models import Discrepancy, DiscrepancyAction
from reconciliation.services.match import PAID_STATES
from refunds.models import Refund
from refunds.services import refund_request, refund_sync_from_channel

# Refund numbers paycore makes for itself start with "PC-" (refunds.services.request).
REFUND_NO_PREFIX = "PC-RC"


def _record(discrepancy_id: int, action: str, *, actor: str, note: str, outcome: str, close: str = "") -> Discrepancy:
    with transaction.atomic(durable=True):
        item = Discrepancy.objects.select_for_update().get(pk=discrepancy_id)
        DiscrepancyAction.objects.create(discrepancy=item, action=action, actor=actor, note=note, outcome=outcome)
        if close:
            item.status, item.resolved_by, item.resolved_at = close, actor, timezone.now()
            item.resolution_note = "; ".join(part for part in (note, outcome) if part)[:2000]
            item.save(update_fields=["status", "resolved_by", "resolved_at", "resolution_note", "updated_at"])
        return item


def _agrees(item: Discrepancy, payment: Payment | None, refund: Refund | None) -> bool:
    """Whether paycore's row now agrees with what the channel's bill showed."""
    if item.kind == Discrepancy.Kind.STATUS_MISMATCH and item.line_kind == "REVOCATION":
        return payment is not None and payment.status == Payment.Status.REVOKED
    if refund is not None:
        return refund.status != Refund.Status.FAILED and item.channel_amount in (None, refund.amount)
    if payment is not None and item.kind in (Discrepancy.Kind.STATUS_MISMATCH, Discrepancy.Kind.MISSING_LOCALLY):
        return payment.status in PAID_STATES
    return False


def discrepancy_apply_channel_truth(*, discrepancy_id: int, actor: str, note: str = "") -> Discrepancy:
    """Query the channel about the payment or refund and apply its answer through the owning
    service. Resolved when paycore then agrees with the bill; otherwise it stays open with the
    outcome recorded (the next run looks again)."""
    item = Discrepancy.objects.get(pk=discrepancy_id)
    evidence = {"actor": actor, "reconciliation_discrepancy": item.pk}
    payment = refund = None
    if item.refund_id is not None and item.line_kind != "REVOCATION":
        refund = refund_sync_from_channel(refund_id=item.refund_id, source=EventSource.OPS)
        outcome = f"refund {refund.refund_no} is {refund.status} after querying the channel"
    elif item.payment_id is not None:
        payment = payment_sync_from_channel(payment_id=item.payment_id, source=EventSource.OPS, evidence=evidence)
        outcome = f"payment {payment.payment_no} is {payment.status} after querying the channel"
    else:
        raise Conflict(
            "paycore has no payment or refund to apply the channel's answer to: "
            "refund it at the channel by hand, then mark this resolved",
            extra={"discrepancy": item.pk, "payment_no": item.payment_no},
        )
    close = Discrepancy.Status.RESOLVED if _agrees(item, payment, refund) else ""
    return _record(item.pk, "apply_channel_truth", actor=actor, note=note, outcome=outcome, close=close)


def discrepancy_refund(*, discrepancy_id: int, actor: str, note: str = "", amount: int | None = None) -> Discrepancy:
    """Refund the payment the discrepancy is about (``amount`` defaults to what the channel's
    bill showed, else the payment's amount), under a number derived from the discrepancy so
    that asking twice never refunds twice. The discrepancy stays open until a run confirms."""
    item = Discrepancy.objects.get(pk=discrepancy_id)
    if item.payment_id is None:
        raise Conflict("paycore has no payment to refund for this discrepancy", extra={"discrepancy": item.pk})
    payment = Payment.objects.get(pk=item.payment_id)
    refund, created = refund_request(
        payment_id=payment.pk,
        refund_no=f"{REFUND_NO_PREFIX}{item.pk}",
        amount=amount or item.channel_amount or payment.amount,
        reason=Refund.Reason.CUSTOMER_REQUEST,
        note=f"reconciliation discrepancy {item.pk}"[:80],
        source=EventSource.OPS,
        actor=actor,
    )
    outcome = f"refund {refund.refund_no} {'requested' if created else 'already requested'} ({refund.status})"
    return _record(item.pk, "refund", actor=actor, note=note, outcome=outcome)


def _close(discrepancy_id: int, status: str, action: str, *, actor: str, note: str) -> Discrepancy:
    if not note.strip():
        raise InvalidRequest.field("note", "say why (the note is recorded with the decision)", code="required")
    item = Discrepancy.objects.get(pk=discrepancy_id)
    if item.status != Discrepancy.Status.OPEN:
        raise Conflict(f"the discrepancy is already {item.status}", extra={"discrepancy": item.pk})
    return _record(discrepancy_id, action, actor=actor, note=note.strip(), outcome="", close=status)


def discrepancy_resolve(*, discrepancy_id: int, actor: str, note: str) -> Discrepancy:
    return _close(discrepancy_id, Discrepancy.Status.RESOLVED, "resolve", actor=actor, note=note)


def discrepancy_ignore(*, discrepancy_id: int, actor: str, note: str) -> Discrepancy:
    return _close(discrepancy_id, Discrepancy.Status.IGNORED, "ignore", actor=actor, note=note)
