"""Sending a refund's current attempt to its channel, asking about it, and applying what the
channel says under the locks (payment, then orders, then the refund)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from channels.base import RefundRequest, RefundState, RefundStatus
from channels.services import adapter_for, channel_call, channel_notify_url
from orders.models import Order
from orders.states import order_move
from paycore.errors import ChannelRejectedError
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.outbox import outbox_add
from paycore.sweeps import backoff
from payments.locks import orders_lock, payment_lock
from payments.models import PaymentOrderMap
from refunds.locks import refund_lock
from refunds.models import Refund, RefundAllocation, RefundAttempt
from refunds.states import REFUND_TRANSITIONS, refund_move

log = logging.getLogger(__name__)
R = Refund.Status
A = RefundAttempt.Status

# Channel refund status -> (refund status, attempt status).
_TARGET: dict[RefundStatus, tuple[str, str]] = {
    RefundStatus.PROCESSING: (R.PROCESSING, A.SUBMITTED),
    RefundStatus.ABNORMAL: (R.NEEDS_ATTENTION, A.SUBMITTED),  # e.g. the payer's card is frozen
    RefundStatus.SUCCEEDED: (R.SUCCEEDED, A.SUCCEEDED),
    RefundStatus.FAILED: (R.FAILED, A.FAILED),
}


def refund_submit(*, refund_id: int, source: str = EventSource.API) -> Refund:
    """Send the current attempt to the channel (no lock held; the channel dedupes by the
    attempt's request number, so a repeat is harmless). Unknown outcomes raise
    ``ChannelUnavailableError`` and leave the refund PENDING for the caller to retry."""
    refund = Refund.objects.select_related("payment__channel_account").get(pk=refund_id)
    if refund.status != R.PENDING:
        return refund
    attempt = refund.attempts.order_by("-number").first()
    assert attempt is not None  # every refund is created with its first attempt
    payment = refund.payment
    request = RefundRequest(
        refund_no=attempt.request_no,
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
            refund_no=attempt.request_no,
            status=RefundStatus.FAILED,
            channel_refund_no=None,
            amount=refund.amount,
            fail_code=str(exc.extra.get("channel_code", "")),
        )
    return refund_apply_state(refund_id=refund_id, state=state, source=source)


def refund_sync_from_channel(*, refund_id: int, source: str = EventSource.CHANNEL_QUERY) -> Refund:
    """Ask the channel about the refund's current attempt and apply the answer."""
    refund = Refund.objects.select_related("payment__channel_account").get(pk=refund_id)
    attempt = refund.attempts.order_by("-number").first()
    assert attempt is not None
    payment = refund.payment
    with channel_call("refund query"):
        state = adapter_for(payment.channel_account).query_refund(
            refund_no=attempt.request_no,
            payment_no=payment.payment_no,
            channel_trade_no=payment.channel_trade_no,
            channel_refund_no=attempt.channel_refund_no or None,
        )
    return refund_apply_state(refund_id=refund_id, state=state, source=source)


@transaction.atomic(durable=True)
def refund_apply_state(*, refund_id: int, state: RefundState, source: str) -> Refund:
    """Apply a verified channel answer about one attempt. Repeats and stale answers change
    nothing; an answer about an earlier attempt updates that attempt only."""
    target = _TARGET.get(state.status)
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    payment = payment_lock(payment_id)
    # Lock order: payment, then its orders (only a success touches them), then the refund.
    orders = orders_lock(paid_order_ids(refund_id)) if target and target[0] == R.SUCCEEDED else []
    refund = refund_lock(refund_id)
    attempt = refund.attempts.filter(request_no=state.refund_no).first()
    latest = refund.attempts.order_by("-number").first()
    if target is None or attempt is None:
        return refund  # NOT_FOUND, or not about any attempt of ours: nothing to apply
    _record_attempt(attempt, state, target[1])
    if attempt != latest and target[0] != R.SUCCEEDED:
        return refund  # a late word about a superseded attempt
    to = target[0]
    if to == refund.status or not REFUND_TRANSITIONS.allows(refund.status, to):
        return refund
    refund_move(refund, to, source=source, evidence={"refund": jsonable(state), "attempt": attempt.number})
    fields = ["status", "updated_at"]
    if to == R.SUCCEEDED:
        refund.succeeded_at = state.succeeded_at or timezone.now()
        refund.channel_refund_no = state.channel_refund_no or attempt.channel_refund_no or None
        refund.next_check_at = None
        fields += ["succeeded_at", "channel_refund_no", "next_check_at"]
    elif to == R.FAILED:
        refund.fail_code = (state.fail_code or "")[:64]
        refund.next_check_at = timezone.now() + backoff(attempt.number)  # the retry, by the refund sweep
        fields += ["fail_code", "next_check_at"]
    elif to == R.NEEDS_ATTENTION:
        refund.next_check_at = None
        fields += ["next_check_at"]
    refund.save(update_fields=fields)
    if to == R.SUCCEEDED:
        orders_follow_refund(refund, orders, source=source)
        outbox_add(
            topic="refund.succeeded",
            key=refund.refund_no,
            payload={"payment_no": payment.payment_no, "amount": refund.amount, "currency": refund.currency},
        )
    if to == R.NEEDS_ATTENTION:
        outbox_add(topic="refund.needs_attention", key=refund.refund_no, payload={"payment_no": payment.payment_no})
    return refund


def _record_attempt(attempt: RefundAttempt, state: RefundState, status: str) -> None:
    changed: dict[str, Any] = {}
    if state.channel_refund_no and not attempt.channel_refund_no:
        changed["channel_refund_no"] = state.channel_refund_no[:64]
    if attempt.status == A.SUBMITTED and status != A.SUBMITTED:
        changed.update(status=status, finished_at=timezone.now(), fail_code=(state.fail_code or "")[:64])
    if changed:
        RefundAttempt.objects.filter(pk=attempt.pk).update(**changed)
        for name, value in changed.items():
            setattr(attempt, name, value)


def paid_order_ids(refund_id: int) -> list[int]:
    """The orders whose status follows this refund: those its shares paid. A duplicate or late
    share paid no order, so refunding it changes no order."""
    return list(
        RefundAllocation.objects.filter(refund_id=refund_id, payment_map__outcome=PaymentOrderMap.Outcome.PAID)
        .values_list("payment_map__order_id", flat=True)
        .order_by("payment_map__order_id")
    )


def orders_follow_refund(refund: Refund, orders: list[Order], *, source: str) -> None:
    """Each order paid by this refund's payment follows what was refunded of its own share."""
    if not orders:
        return
    maps = {
        m.order_id: m
        for m in PaymentOrderMap.objects.filter(payment_id=refund.payment_id, order__in=orders, outcome="PAID")
    }
    refunded = dict(
        RefundAllocation.objects.filter(payment_map__in=maps.values(), refund__status=R.SUCCEEDED)
        .values("payment_map__order_id")
        .annotate(total=Sum("amount"))
        .values_list("payment_map__order_id", "total")
    )
    for order in orders:
        share = maps.get(order.pk)
        if share is None:
            continue
        target = Order.Status.REFUNDED if refunded.get(order.pk, 0) >= share.amount else Order.Status.PARTIALLY_REFUNDED
        if order.status != target and order.status in (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED):
            order_move(order, target, source=source, evidence={"refund_no": refund.refund_no})
            order.save(update_fields=["status", "updated_at"])
