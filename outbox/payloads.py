"""What each merchant is told about a payment or a refund: one draft per merchant concerned,
carrying only that merchant's orders and their amounts.

Registered with the kernel's ``outbox_add`` (outbox.apps), so the services that write an event
name only the topic and the row's number; the row is read here, inside the same transaction,
after the change was saved. Never in a payload: secrets, the payer's identity (payer id, client
IP, the app's customer reference), or another merchant's orders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from channels.models import ChannelAccount
from paycore.outbox import EventDraft
from payments.models import Payment, PaymentOrderMap
from refunds.models import Refund, RefundAllocation


def payment_fan_out(topic: str, key: str, subject: Any, given: dict[str, Any]) -> Iterator[EventDraft]:
    payment = (
        subject
        if isinstance(subject, Payment)
        else Payment.objects.select_related("channel_account").get(payment_no=key)
    )
    maps = PaymentOrderMap.objects.filter(payment=payment).select_related("order").order_by("order_id")
    shares: dict[int, list[PaymentOrderMap]] = defaultdict(list)
    for share in maps:
        shares[share.order.merchant_id].append(share)
    common = {
        "payment_no": payment.payment_no,
        "status": payment.status,
        "channel": payment.channel,
        "method": payment.method,
        "channel_account": _account(payment.channel_account),
        "channel_trade_no": payment.channel_trade_no,
        "currency": payment.currency,
        "paid_at": _iso(payment.paid_at),
    }
    if payment.method == Payment.Method.PAYCODE:  # where the code was scanned, when the counter said
        common.update({k: v for k, v in (("store_id", payment.store_id), ("device_id", payment.device_id)) if v})
    if not shares:  # no merchant to tell; still in the stream for consumers
        yield EventDraft(merchant_id=None, payload=common, context=given)
        return
    for merchant_id, own in shares.items():
        orders = [
            {
                "order_no": m.order.order_no,
                "merchant_order_no": m.order.merchant_order_no,
                "amount": m.amount,
                # PAID: it paid the order; DUPLICATE / LATE: recorded and refunded (design.md)
                "outcome": m.outcome or None,
            }
            for m in own
        ]
        payload = {**common, "amount": sum(m.amount for m in own), "orders": orders}
        yield EventDraft(merchant_id=merchant_id, payload=payload, context=given)


def refund_fan_out(topic: str, key: str, subject: Any, given: dict[str, Any]) -> Iterator[EventDraft]:
    refund = (
        subject
        if isinstance(subject, Refund)
        else Refund.objects.select_related("payment__channel_account").get(refund_no=key)
    )
    payment = refund.payment
    allocations = (
        RefundAllocation.objects.filter(refund=refund)
        .select_related("payment_map__order")
        .order_by("payment_map__order_id")
    )
    parts: dict[int, list[RefundAllocation]] = defaultdict(list)
    for allocation in allocations:
        parts[allocation.payment_map.order.merchant_id].append(allocation)
    common = {
        "refund_no": refund.refund_no,
        "payment_no": payment.payment_no,
        "status": refund.status,
        "reason": refund.reason,
        "channel": payment.channel,
        "channel_account": _account(payment.channel_account),
        "channel_refund_no": refund.channel_refund_no,
        "currency": refund.currency,
        "succeeded_at": _iso(refund.succeeded_at),
    }
    if not parts:
        yield EventDraft(merchant_id=None, payload=common, context=given)
        return
    for merchant_id, own in parts.items():
        orders = [
            {
                "order_no": a.payment_map.order.order_no,
                "merchant_order_no": a.payment_map.order.merchant_order_no,
                "amount": a.amount,
            }
            for a in own
        ]
        payload = {**common, "amount": sum(a.amount for a in own), "orders": orders}
        yield EventDraft(merchant_id=merchant_id, payload=payload, context=given)


def _account(account: ChannelAccount) -> dict[str, Any]:
    """The account's name and public ids (app id, merchant id at the channel); never credentials."""
    return {"name": account.name, "ids": dict(account.ids)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
