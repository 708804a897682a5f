"""A payment-code trade revoked after the money moved: the channel itself gave the money back, so
paycore records that as a refund (reason REVOCATION) of the whole payment, already succeeded.
Nothing is sent to the channel. The books then match the bill, which shows the trade and its
revocation as two rows."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from payments.models import Payment
from refunds.locks import refund_lock
from refunds.models import Refund, RefundAllocation, RefundAttempt, RefundEvent
from refunds.services.apply import orders_follow_refund, paid_order_ids
from refunds.services.request import OWN_NUMBER_PREFIX
from refunds.states import refund_move


def revocation_refund_no(payment: Payment) -> str:
    return f"{OWN_NUMBER_PREFIX}V{payment.payment_no}"


def payment_record_revocation(*, payment_id: int) -> Refund | None:
    """Record the revocation refund of a REVOKED payment that had been paid (once: the refund
    number comes from the payment)."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.REVOKED or payment.paid_at is None:
        return None
    existing = Refund.objects.filter(refund_no=revocation_refund_no(payment)).first()
    if existing is not None:
        return existing
    with transaction.atomic(durable=True):
        payment = payment_lock(payment_id)
        maps = list(payment.maps.order_by("order_id"))
        refund = Refund.objects.create(
            refund_no=revocation_refund_no(payment),
            payment=payment,
            amount=payment.amount,
            currency=payment.currency,
            reason=Refund.Reason.REVOCATION,
            note="revoked at the channel",
        )
        RefundAllocation.objects.bulk_create(
            RefundAllocation(refund=refund, payment_map=m, amount=m.amount) for m in maps
        )
        RefundAttempt.objects.create(
            refund=refund,
            number=1,
            request_no=refund.refund_no,
            status=RefundAttempt.Status.SUCCEEDED,
            finished_at=timezone.now(),
        )
        RefundEvent.objects.create(
            refund=refund,
            from_status="",
            to_status=Refund.Status.PENDING,
            source=EventSource.CHANNEL_QUERY,
            evidence={"revoked_payment": payment.payment_no},
        )
        orders = orders_lock(paid_order_ids(refund.pk))
        refund = refund_lock(refund.pk)
        refund_move(refund, Refund.Status.SUCCEEDED, source=EventSource.CHANNEL_QUERY, evidence={"revocation": True})
        refund.succeeded_at = timezone.now()
        refund.save(update_fields=["status", "succeeded_at", "updated_at"])
        orders_follow_refund(refund, orders, source=EventSource.CHANNEL_QUERY)
        outbox_add(
            topic="refund.succeeded",
            key=refund.refund_no,
            payload={"payment_no": payment.payment_no, "amount": refund.amount, "reason": "REVOCATION"},
        )
    return refund
