"""Learning a payment's state from its channel and applying it under the payment lock."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from channels.base import TradeState, TradeStatus
from channels.services import adapter_for, channel_call
from orders.models import Order
from orders.states import order_move
from paycore.errors import Conflict
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from payments.models import MapOutcome, Payment, PaymentOrderMap
from payments.states import GIVEN_UP_STATES, OPEN_STATES, UNSETTLED_STATES, payment_move

log = logging.getLogger(__name__)
S = Payment.Status
_PAID_ORDER_STATES = frozenset({Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED, Order.Status.REFUNDED})

# Channel status -> the payment status it leads to, and the states that may move there.
_TARGET: dict[TradeStatus, tuple[str, frozenset[str]]] = {
    TradeStatus.CLOSED: (S.CLOSED, UNSETTLED_STATES),
    TradeStatus.FAILED: (S.FAILED, UNSETTLED_STATES),
    TradeStatus.REVOKED: (S.REVOKED, frozenset({S.USER_PAYING, S.CREATED, S.NEEDS_ATTENTION})),
    TradeStatus.USER_PAYING: (S.USER_PAYING, frozenset({S.CREATED})),
}


def payment_sync_from_channel(
    *, payment_id: int, source: str = EventSource.CHANNEL_QUERY, evidence: dict[str, Any] | None = None
) -> Payment:
    """Query the channel (no lock held) and apply what it says. An open payment is settled (the
    channel may need paycore to finish it, e.g. PayPal's capture); any other is only queried."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    adapter = adapter_for(payment.channel_account)
    read = adapter.settle if payment.status in OPEN_STATES else adapter.query
    with channel_call("query"):
        trade = read(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
    return payment_apply_trade(payment_id=payment_id, trade=trade, source=source, evidence=evidence)


@transaction.atomic(durable=True)
def payment_apply_trade(
    *, payment_id: int, trade: TradeState, source: str, evidence: dict[str, Any] | None = None, actor: str = ""
) -> Payment:
    """Apply a verified channel state. Repeats and stale states change nothing."""
    return apply_trade_locked(payment_lock(payment_id), trade, source=source, evidence=evidence, actor=actor)


def apply_trade_locked(
    payment: Payment, trade: TradeState, *, source: str, evidence: dict[str, Any] | None = None, actor: str = ""
) -> Payment:
    """``payment_apply_trade`` for a caller that already holds the payment's lock in its own
    transaction (e.g. recording a revocation that returned money)."""
    if trade.payment_no != payment.payment_no:
        raise Conflict(
            "the channel answered about another payment",
            extra={"payment_no": payment.payment_no, "channel_payment_no": trade.payment_no},
        )
    proof = {"trade": jsonable(trade), **(evidence or {})}
    if trade.status == TradeStatus.PAID:
        if payment.status != S.SUCCEEDED:
            _succeed(payment, trade, source=source, evidence=proof, actor=actor)
        return payment
    target = _TARGET.get(trade.status)
    if target and payment.status in target[1] and payment.status != target[0]:
        payment_move(payment, target[0], source=source, evidence=proof, actor=actor)
        if trade.channel_trade_no and not payment.channel_trade_no:
            payment.channel_trade_no = trade.channel_trade_no
        payment.save(update_fields=["status", "channel_trade_no", "updated_at"])
        if payment.status in (S.CLOSED, S.REVOKED):
            outbox_add(topic=f"payment.{payment.status.lower()}", key=payment.payment_no)
    return payment


def _succeed(payment: Payment, trade: TradeState, *, source: str, evidence: dict[str, Any], actor: str) -> None:
    mismatch = _mismatch(payment, trade)
    if mismatch:
        # Money moved, but not the money paycore asked for: a person must decide (accept, refund).
        log.error("payment %s: the channel reports %s; flagged for ops", payment.payment_no, mismatch)
        if payment.status != S.NEEDS_ATTENTION:
            payment_move(
                payment, S.NEEDS_ATTENTION, source=source, evidence={**evidence, "problem": mismatch}, actor=actor
            )
            payment.save(update_fields=["status", "updated_at"])
        return
    if payment.channel_trade_no and trade.channel_trade_no and payment.channel_trade_no != trade.channel_trade_no:
        # PayPal: the order id is known from prepay; the capture id is evidence, not a new number.
        evidence = {**evidence, "channel_trade_no_reported": trade.channel_trade_no}
    was = payment.status
    payment_move(payment, S.SUCCEEDED, source=source, evidence=evidence, actor=actor)
    payment.channel_trade_no = payment.channel_trade_no or trade.channel_trade_no
    payment.paid_at = trade.paid_at or timezone.now()
    unwanted = _orders_paid_by(payment, given_up=was in GIVEN_UP_STATES, source=source, actor=actor)
    # A share that paid no order is refunded by the repeat sweep, which looks at once.
    payment.next_check_at = timezone.now() if unwanted else None
    payment.watch_until = None
    payment.save(update_fields=["status", "channel_trade_no", "paid_at", "next_check_at", "watch_until", "updated_at"])
    outbox_add(
        topic="payment.succeeded",
        key=payment.payment_no,
        payload={"amount": payment.amount, "currency": payment.currency, "unwanted_orders": unwanted},
    )


def _mismatch(payment: Payment, trade: TradeState) -> str:
    if trade.paid_amount is not None and trade.paid_amount != payment.amount:
        return f"amount {trade.paid_amount} instead of {payment.amount}"
    if trade.currency and trade.currency != payment.currency:
        return f"currency {trade.currency} instead of {payment.currency}"
    return ""


def _orders_paid_by(payment: Payment, *, given_up: bool, source: str, actor: str) -> list[str]:
    """Record what this success means for each of the payment's orders, under the order locks.

    An order already paid by another payment makes this share a DUPLICATE. A payment paycore had
    closed or failed, or an order it had closed, makes it LATE: paycore told everyone it gave up,
    so the money is recorded and then refunded, never used. Otherwise the order is paid by it
    (first success wins: the order's current map moves to this payment, and the payment it was
    waiting on is closed after commit so it cannot take the money a second time).
    Returns the order numbers of the unwanted shares."""
    maps = {m.order_id: m for m in PaymentOrderMap.objects.filter(payment=payment)}
    unwanted: list[str] = []
    displaced: set[int] = set()
    for order in orders_lock(maps):
        this = maps[order.pk]
        if order.status in _PAID_ORDER_STATES:
            this.outcome = MapOutcome.DUPLICATE
        elif given_up or order.status == Order.Status.CLOSED:
            this.outcome = MapOutcome.LATE
        else:
            this.outcome = MapOutcome.PAID
            if not this.is_current:
                current = PaymentOrderMap.objects.filter(order=order, is_current=True)
                displaced.update(current.values_list("payment_id", flat=True))
                current.update(is_current=False)
                this.is_current = True
            order_move(
                order, Order.Status.PAID, source=source, evidence={"payment_no": payment.payment_no}, actor=actor
            )
            order.paid_at = payment.paid_at
            order.save(update_fields=["status", "paid_at", "updated_at"])
        this.save(update_fields=["outcome", "is_current"])
        if this.outcome != MapOutcome.PAID:
            unwanted.append(order.order_no)
    if displaced:
        from payments.tasks import payment_close_superseded as payment_close_superseded_task

        transaction.on_commit(
            lambda: [payment_close_superseded_task.delay(pid) for pid in sorted(displaced)], robust=True
        )
    return unwanted
