"""Refunds: requesting one under the payment lock, submitting it to the channel, and applying
the channel's answer. The full refund rules (retry budget, duplicate-payment refunds) come with
the refunds issue; what is here already guarantees that refunds never exceed the payment and
that one refund_no never refunds twice."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from channels.base import RefundRequest, RefundState, RefundStatus
from channels.services import adapter_for, channel_call, channel_notify_url
from orders.models import Order
from orders.states import order_move
from paycore.errors import ChannelRejectedError, PaymentNotRefundable, RefundExceedsPayment, RefundNoReused
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from payments.models import Payment, PaymentOrderMap
from refunds.locks import refund_lock
from refunds.models import Refund, RefundEvent
from refunds.states import COUNTED_STATES, REFUND_TRANSITIONS, refund_move

R = Refund.Status


def refund_request(
    *,
    payment_id: int,
    refund_no: str,
    amount: int,
    reason: str = Refund.Reason.CUSTOMER_REQUEST,
    note: str = "",
    source: str = EventSource.API,
    actor: str = "",
) -> tuple[Refund, bool]:
    """Create a refund; the same refund_no for the same payment and amount returns the original."""
    try:
        refund, created = _refund_create(
            payment_id=payment_id,
            refund_no=refund_no,
            amount=amount,
            reason=reason,
            note=note,
            source=source,
            actor=actor,
        )
    except IntegrityError:  # the same refund_no raced in for another payment
        refund, created = _existing(refund_no, payment_id=payment_id, amount=amount), False
    if created:
        from refunds.tasks import refund_submit as refund_submit_task

        transaction.on_commit(lambda: refund_submit_task.delay(refund.pk), robust=True)
    return refund, created


@transaction.atomic(durable=True)
def _refund_create(
    *, payment_id: int, refund_no: str, amount: int, reason: str, note: str, source: str, actor: str
) -> tuple[Refund, bool]:
    payment = payment_lock(payment_id)
    if Refund.objects.filter(refund_no=refund_no).exists():
        return _existing(refund_no, payment_id=payment_id, amount=amount), False
    if payment.status != Payment.Status.SUCCEEDED:
        raise PaymentNotRefundable(
            f"a {payment.status} payment cannot be refunded",
            extra={"payment_no": payment.payment_no, "status": payment.status},
        )
    counted = (
        Refund.objects.filter(payment=payment, status__in=COUNTED_STATES).aggregate(total=Sum("amount"))["total"] or 0
    )
    if counted + amount > payment.amount:
        raise RefundExceedsPayment(
            "the refunds would exceed the payment",
            extra={"payment_no": payment.payment_no, "refundable": payment.amount - counted},
        )
    refund = Refund.objects.create(
        refund_no=refund_no, payment=payment, amount=amount, currency=payment.currency, reason=reason, note=note
    )
    RefundEvent.objects.create(
        refund=refund,
        from_status="",
        to_status=R.PENDING,
        source=source,
        evidence={"amount": amount, "reason": reason},
        actor=actor,
    )
    return refund, True


def _existing(refund_no: str, *, payment_id: int, amount: int) -> Refund:
    refund = Refund.objects.get(refund_no=refund_no)
    if refund.payment_id != payment_id or refund.amount != amount:
        raise RefundNoReused("this refund_no was used for another refund", extra={"refund_no": refund_no})
    return refund


def refund_submit(*, refund_id: int) -> Refund:
    """Send the refund to the channel (no lock held; the channel dedupes by refund_no)."""
    refund = Refund.objects.select_related("payment__channel_account").get(pk=refund_id)
    if refund.status not in (R.PENDING, R.FAILED):
        return refund
    payment = refund.payment
    request = RefundRequest(
        refund_no=refund.refund_no,
        payment_no=payment.payment_no,
        channel_trade_no=payment.channel_trade_no,
        amount=refund.amount,
        total_amount=payment.amount,
        currency=refund.currency,
        reason=refund.note or refund.reason,
        notify_url=channel_notify_url(payment.channel_account),
    )
    try:
        with channel_call("refund"):
            state = adapter_for(payment.channel_account).refund(request)
    except ChannelRejectedError as exc:
        state = RefundState(
            refund_no=refund.refund_no,
            status=RefundStatus.FAILED,
            channel_refund_no=None,
            amount=refund.amount,
            fail_code=str(exc.extra.get("channel_code", "")),
        )
    return refund_apply_state(refund_id=refund_id, state=state, source=EventSource.API, submitted=True)


def refund_sync_from_channel(*, refund_id: int, source: str = EventSource.CHANNEL_QUERY) -> Refund:
    refund = Refund.objects.select_related("payment__channel_account").get(pk=refund_id)
    payment = refund.payment
    with channel_call("refund query"):
        state = adapter_for(payment.channel_account).query_refund(
            refund_no=refund.refund_no,
            payment_no=payment.payment_no,
            channel_trade_no=payment.channel_trade_no,
            channel_refund_no=refund.channel_refund_no,
        )
    return refund_apply_state(refund_id=refund_id, state=state, source=source)


@transaction.atomic(durable=True)
def refund_apply_state(*, refund_id: int, state: RefundState, source: str, submitted: bool = False) -> Refund:
    target = _REFUND_TARGET.get(state.status)
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    payment = payment_lock(payment_id)
    # Lock order: payment, then its orders (only a success touches them), then the refund.
    orders = orders_lock(_current_order_ids(payment)) if target == R.SUCCEEDED else []
    refund = refund_lock(refund_id)
    if submitted:
        refund.attempts += 1
    refund.channel_refund_no = refund.channel_refund_no or state.channel_refund_no
    moved = target is not None and target != refund.status and REFUND_TRANSITIONS.allows(refund.status, target)
    if target is not None and moved:
        refund_move(refund, target, source=source, evidence={"refund": jsonable(state)})
        if target == R.SUCCEEDED:
            refund.succeeded_at = state.succeeded_at or timezone.now()
        if target == R.FAILED:
            refund.fail_code = (state.fail_code or "")[:64]
    refund.save()
    if moved and target == R.SUCCEEDED:
        _orders_refunded(payment, orders, refund=refund, source=source)  # counts this refund: it is saved above
        outbox_add(
            topic="refund.succeeded",
            key=refund.refund_no,
            payload={"payment_no": payment.payment_no, "amount": refund.amount},
        )
    return refund


_REFUND_TARGET = {
    RefundStatus.PROCESSING: R.PROCESSING,
    RefundStatus.ABNORMAL: R.PROCESSING,
    RefundStatus.SUCCEEDED: R.SUCCEEDED,
    RefundStatus.FAILED: R.FAILED,
}


def _current_order_ids(payment: Payment) -> list[int]:
    return list(PaymentOrderMap.objects.filter(payment=payment, is_current=True).values_list("order_id", flat=True))


def _orders_refunded(payment: Payment, orders: list[Order], *, refund: Refund, source: str) -> None:
    """Orders paid by this payment follow its refunds; a duplicate payment's refunds touch no order."""
    refunded = Refund.objects.filter(payment=payment, status=R.SUCCEEDED).aggregate(t=Sum("amount"))["t"] or 0
    target = Order.Status.REFUNDED if refunded >= payment.amount else Order.Status.PARTIALLY_REFUNDED
    for order in orders:
        if order.status != target and order.status in (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED):
            order_move(order, target, source=source, evidence={"refund_no": refund.refund_no})
            order.save(update_fields=["status", "updated_at"])
