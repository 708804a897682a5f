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
from paycore.errors import AmountMismatch, Conflict
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import orders_lock, payment_lock
from payments.models import Payment, PaymentOrderMap
from payments.states import OPEN_STATES, payment_move

log = logging.getLogger(__name__)
S = Payment.Status

# Channel status -> the payment status it leads to, and the states that may move there.
_TARGET: dict[TradeStatus, tuple[str, frozenset[str]]] = {
    TradeStatus.CLOSED: (S.CLOSED, OPEN_STATES),
    TradeStatus.FAILED: (S.FAILED, OPEN_STATES),
    TradeStatus.REVOKED: (S.REVOKED, frozenset({S.USER_PAYING, S.CREATED})),
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
    payment = payment_lock(payment_id)
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
    return payment


def _succeed(payment: Payment, trade: TradeState, *, source: str, evidence: dict[str, Any], actor: str) -> None:
    if trade.paid_amount is not None and trade.paid_amount != payment.amount:
        log.error("amount mismatch on %s: channel %s, ours %s", payment.payment_no, trade.paid_amount, payment.amount)
        raise AmountMismatch(
            "the channel reports a different amount; nothing was applied",
            extra={"payment_no": payment.payment_no, "amount": payment.amount, "channel_amount": trade.paid_amount},
        )
    if trade.currency and trade.currency != payment.currency:
        raise AmountMismatch(
            "the channel reports a different currency; nothing was applied",
            extra={"payment_no": payment.payment_no, "currency": payment.currency, "channel_currency": trade.currency},
        )
    if payment.channel_trade_no and trade.channel_trade_no and payment.channel_trade_no != trade.channel_trade_no:
        # PayPal: the order id is known from prepay; the capture id is evidence, not a new number.
        evidence = {**evidence, "channel_trade_no_reported": trade.channel_trade_no}
    payment_move(payment, S.SUCCEEDED, source=source, evidence=evidence, actor=actor)
    payment.channel_trade_no = payment.channel_trade_no or trade.channel_trade_no
    payment.paid_at = trade.paid_at or timezone.now()
    payment.save(update_fields=["status", "channel_trade_no", "paid_at", "updated_at"])
    duplicates = _orders_paid_by(payment, source=source, actor=actor)
    outbox_add(
        topic="payment.succeeded",
        key=payment.payment_no,
        payload={"amount": payment.amount, "currency": payment.currency, "duplicate_orders": duplicates},
    )


def _orders_paid_by(payment: Payment, *, source: str, actor: str) -> list[str]:
    """Mark the payment's orders paid. First success wins: an order still waiting switches its
    current map to this payment (the payment it was waiting on is closed after commit, so it
    cannot take the money a second time); an order already paid by another payment makes this
    map a duplicate, left for the repeat sweep to refund. Returns the duplicate order numbers."""
    maps = {m.order_id: m for m in PaymentOrderMap.objects.filter(payment=payment)}
    duplicates: list[str] = []
    displaced: set[int] = set()
    for order in orders_lock(maps):
        this = maps[order.pk]
        if order.status in (Order.Status.PENDING_PAYMENT, Order.Status.CLOSED):
            if not this.is_current:
                displaced.update(
                    PaymentOrderMap.objects.filter(order=order, is_current=True).values_list("payment_id", flat=True)
                )
                PaymentOrderMap.objects.filter(order=order, is_current=True).update(is_current=False)
                PaymentOrderMap.objects.filter(pk=this.pk).update(is_current=True)
            order_move(
                order, Order.Status.PAID, source=source, evidence={"payment_no": payment.payment_no}, actor=actor
            )
            order.paid_at = payment.paid_at
            order.save(update_fields=["status", "paid_at", "updated_at"])
        elif not this.is_current:
            duplicates.append(order.order_no)
    if displaced:
        from payments.tasks import payment_close_superseded as payment_close_superseded_task

        transaction.on_commit(
            lambda: [payment_close_superseded_task.delay(pid) for pid in sorted(displaced)], robust=True
        )
    return duplicates
