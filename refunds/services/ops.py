"""New attempts at a refund the channel refused, and the decisions ops take on the ones the
automation gave up on. Every decision records the acting user."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from refunds.locks import refund_lock
from refunds.models import Refund, RefundAttempt
from refunds.services.apply import orders_follow_refund, paid_order_ids
from refunds.services.request import SUBMIT_SAFETY_NET, attempt_request_no, refundable_by_map
from refunds.states import refund_move

R = Refund.Status


@transaction.atomic(durable=True)
def refund_retry(*, refund_id: int, source: str = EventSource.SCHEDULER, actor: str = "") -> Refund:
    """Start the next attempt of a FAILED refund (or one ops send back from NEEDS_ATTENTION)
    under a new request number, then let the submit task or sweep send it.

    A FAILED refund gave its room back, so the room is checked again under the payment lock:
    if other refunds took it meanwhile, this one stays FAILED for good. Past the retry budget
    the refund goes to ops (NEEDS_ATTENTION) instead; ops' own retries are not budgeted."""
    refund = _locked(refund_id)
    if refund.status not in (R.FAILED, R.NEEDS_ATTENTION):
        return refund
    if refund.status == R.FAILED and not _room_for(refund):
        refund.fail_code, refund.next_check_at = "no_room_left", None
        refund.save(update_fields=["fail_code", "next_check_at", "updated_at"])
        return refund
    attempts = refund.attempts.count()
    if refund.status == R.FAILED and attempts >= settings.REFUND_MAX_ATTEMPTS:
        refund_move(
            refund, R.NEEDS_ATTENTION, source=source, evidence={"reason": "retry budget spent", "attempts": attempts}
        )
        refund.next_check_at = None
        refund.save(update_fields=["status", "next_check_at", "updated_at"])
        outbox_add(topic="refund.needs_attention", key=refund.refund_no, payload={"attempts": attempts})
        return refund
    number = attempts + 1
    RefundAttempt.objects.create(refund=refund, number=number, request_no=attempt_request_no(refund, number))
    refund_move(refund, R.PENDING, source=source, evidence={"attempt": number}, actor=actor)
    refund.fail_code = ""
    refund.next_check_at = timezone.now() + SUBMIT_SAFETY_NET
    refund.save(update_fields=["status", "fail_code", "next_check_at", "updated_at"])
    from refunds.tasks import refund_submit as refund_submit_task

    transaction.on_commit(lambda: refund_submit_task.delay(refund_id), robust=True)
    return refund


def refund_resolve(*, refund_id: int, refunded: bool, note: str, actor: str) -> Refund:
    """Ops settle a NEEDS_ATTENTION refund by hand: refunded outside paycore (SUCCEEDED, and the
    orders follow), or abandoned (FAILED for good, its room given back)."""
    with transaction.atomic(durable=True):
        payment = payment_lock(Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id))
        orders = orders_lock(paid_order_ids(refund_id)) if refunded else []
        refund = refund_lock(refund_id)
        if refund.status != R.NEEDS_ATTENTION:
            return refund
        to = R.SUCCEEDED if refunded else R.FAILED
        refund_move(refund, to, source=EventSource.OPS, evidence={"note": note}, actor=actor)
        refund.next_check_at = None
        if refunded:
            refund.succeeded_at = timezone.now()
        else:
            refund.fail_code = "resolved_by_ops"
        refund.save(update_fields=["status", "succeeded_at", "fail_code", "next_check_at", "updated_at"])
        if refunded:
            orders_follow_refund(refund, orders, source=EventSource.OPS)
            outbox_add(
                topic="refund.succeeded",
                key=refund.refund_no,
                payload={"payment_no": payment.payment_no, "amount": refund.amount, "resolved_by": actor},
            )
    return refund


def _locked(refund_id: int) -> Refund:
    payment_lock(Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id))
    return refund_lock(refund_id)


def _room_for(refund: Refund) -> bool:
    room = refundable_by_map(refund.payment, exclude_refund_id=refund.pk)
    return all(room.get(a.payment_map_id, 0) >= a.amount for a in refund.allocations.all())
