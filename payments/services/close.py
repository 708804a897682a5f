"""Closing payments and orders: at the channel first, then locally, so that a paid trade is never
recorded as closed by mistake; and what the close sweep does with whatever has expired."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.base import ChannelRejected, NotSupported, TradeStatus
from channels.services import adapter_for, channel_call
from orders.models import Order
from orders.states import order_move
from paycore.errors import ChannelRejectedError, ChannelUnavailableError, OrderPaid, PaymentConfirming
from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from payments.models import Payment, PaymentOrderMap
from payments.services.attention import payment_flag_for_ops
from payments.services.paycode import paycode_revoke
from payments.services.sync import payment_apply_trade
from payments.states import OPEN_STATES, PAYMENT_TRANSITIONS, UNSETTLED_STATES, payment_move

log = logging.getLogger(__name__)
S = Payment.Status

# What a query says about a trade that may be closed: anything but money or a payer mid-way.
_CLOSABLE = frozenset({TradeStatus.NOT_PAID, TradeStatus.NOT_FOUND, TradeStatus.CLOSED, TradeStatus.FAILED})


def payment_close(*, payment_id: int, reason: str, source: str = EventSource.API, actor: str = "") -> Payment:
    """Close an unpaid payment at the channel, then here. If the channel says it was paid
    meanwhile, it is recorded as SUCCEEDED instead and returned as such.

    A close the channel cannot confirm (it has no such operation, or says the trade does not
    exist yet, as Alipay does for a cashier never opened) still closes the payment here, and the
    payment is watched until its channel-side expiry has passed: its order string or prepay may
    still be paid until then, and such money must be found and refunded."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status == S.CLOSED:
        return payment
    if payment.method == Payment.Method.PAYCODE and payment.status == S.USER_PAYING:
        # The payer may still confirm at the counter: only a revocation ends that for sure.
        return paycode_revoke(payment_id=payment_id, reason=reason, source=source, actor=actor)
    PAYMENT_TRANSITIONS.check(payment.status, S.CLOSED, payment_no=payment.payment_no)
    adapter = adapter_for(payment.channel_account)
    confirmed = True
    with channel_call("close"):
        try:
            adapter.close(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
        except NotSupported:
            confirmed = False  # the channel lets unpaid trades expire by themselves
        except ChannelRejected:
            # Possibly paid meanwhile: believe the query, not the refusal.
            trade = adapter.query(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
            if trade.status == TradeStatus.PAID:
                return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.CHANNEL_QUERY)
            if trade.status in (TradeStatus.NOT_PAID, TradeStatus.USER_PAYING):
                raise  # still open at the channel: closing locally would hide a payable trade
            confirmed = trade.status in (TradeStatus.CLOSED, TradeStatus.FAILED, TradeStatus.REVOKED)
    watch_until = None if confirmed else _watch_until(payment)
    return _close_locally(payment_id, reason=reason, source=source, actor=actor, watch_until=watch_until)


def payment_close_superseded(*, payment_id: int) -> Payment | None:
    """Close a payment whose orders moved to a newer payment, unless it became current again
    (it was paid) or left the open states meanwhile. Channel trouble is logged; the close sweep
    retries expired payments."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in OPEN_STATES or payment.maps.filter(is_current=True).exists():
        return None
    try:
        return payment_close(payment_id=payment_id, reason="superseded", source=EventSource.SCHEDULER)
    except (ChannelUnavailableError, ChannelRejectedError) as exc:
        log.warning("closing superseded payment %s failed: %s", payment.payment_no, type(exc).__name__)
        return None


def payment_close_expired(*, payment_id: int) -> Payment:
    """The close sweep's work on one expired payment: ask the channel first (paid -> SUCCEEDED),
    else close it there and here. While the channel cannot be reached the sweep retries with
    back-off; past the settle grace the payment goes to ops rather than staying open forever."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status not in OPEN_STATES or payment.expires_at > timezone.now():
        return payment
    try:
        with channel_call("query"):
            trade = adapter_for(payment.channel_account).query(
                payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no
            )
        if trade.status not in _CLOSABLE:
            # Paid, or a payer still mid-way (payment code): apply what the channel says.
            return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.SCHEDULER)
        return payment_close(payment_id=payment_id, reason="expired", source=EventSource.SCHEDULER)
    except (ChannelUnavailableError, ChannelRejectedError) as exc:
        if timezone.now() < payment.expires_at + timedelta(seconds=settings.PAYMENT_SETTLE_GRACE_SECONDS):
            raise  # the sweep records it on the row and tries again later
        return payment_flag_for_ops(
            payment_id=payment_id,
            problem="expired and could not be closed at the channel",
            evidence={"error": exc.code, **exc.extra},
            source=EventSource.SCHEDULER,
        )


@transaction.atomic(durable=True)
def _close_locally(payment_id: int, *, reason: str, source: str, actor: str, watch_until: Any = None) -> Payment:
    payment = payment_lock(payment_id)
    if payment.status in UNSETTLED_STATES:
        payment_move(payment, S.CLOSED, source=source, evidence={"reason": reason}, actor=actor)
        payment.watch_until = watch_until
        payment.next_check_at = timezone.now() + timedelta(minutes=1) if watch_until else None
        payment.save(update_fields=["status", "watch_until", "next_check_at", "updated_at"])
        outbox_add(topic="payment.closed", key=payment.payment_no)
    return payment


def _watch_until(payment: Payment) -> Any:
    # Clocks differ between paycore and the channel: watch a while past the expiry we sent.
    return max(payment.expires_at, timezone.now()) + timedelta(seconds=settings.PAYMENT_SETTLE_GRACE_SECONDS)


# --- orders ---------------------------------------------------------------------------------
@transaction.atomic(durable=True)
def order_close_if_abandoned(*, order_id: int) -> Order:
    """Close an expired order once none of its payments can still turn into money. Payments are
    only read here (the close sweep closes them first); a success racing this waits for the order
    lock and then finds the order CLOSED, which makes its share LATE and refunded."""
    (order,) = orders_lock([order_id])
    if order.status != Order.Status.PENDING_PAYMENT or order.expires_at > timezone.now():
        return order
    if _has_unsettled_payment(order):
        return order
    order_move(order, Order.Status.CLOSED, source=EventSource.SCHEDULER, evidence={"reason": "expired"})
    order.save(update_fields=["status", "updated_at"])
    return order


def order_cancel(*, order_id: int, actor: str) -> Order:
    """The app backend gives an unpaid order up: its open payments are closed (at the channel
    first), then the order. If a payment turns out to be paid, the order is paid: 409."""
    open_payments = (
        PaymentOrderMap.objects.filter(order_id=order_id, payment__status__in=OPEN_STATES)
        .values_list("payment_id", flat=True)
        .order_by("payment_id")
    )
    for payment_id in list(open_payments):
        payment_close(payment_id=payment_id, reason="order cancelled", source=EventSource.API, actor=actor)
    with transaction.atomic(durable=True):
        (order,) = orders_lock([order_id])
        if order.status == Order.Status.CLOSED:
            return order
        if order.status != Order.Status.PENDING_PAYMENT:
            raise OrderPaid(
                "the order is paid; refund it instead", extra={"order_no": order.order_no, "status": order.status}
            )
        if _has_unsettled_payment(order):
            raise PaymentConfirming(
                "a payment of this order is still being settled with its channel; retry later",
                extra={"order_no": order.order_no},
            )
        order_move(order, Order.Status.CLOSED, source=EventSource.API, evidence={"reason": "cancelled"}, actor=actor)
        order.save(update_fields=["status", "updated_at"])
    return order


def _has_unsettled_payment(order: Order) -> bool:
    return PaymentOrderMap.objects.filter(order=order, payment__status__in=UNSETTLED_STATES).exists()
