"""The only functions that lock payment-side rows. Lock order everywhere: payment, then its
orders by primary key, then refunds — one order avoids deadlocks."""

from __future__ import annotations

from collections.abc import Iterable

from orders.models import Order
from payments.models import InboundNotification, Payment


def payment_lock(payment_id: int) -> Payment:
    return Payment.objects.select_for_update(of=("self",)).select_related("channel_account").get(pk=payment_id)


def orders_lock(order_ids: Iterable[int]) -> list[Order]:
    return list(Order.objects.select_for_update(of=("self",)).select_related("merchant")
                .filter(pk__in=list(order_ids)).order_by("pk"))


def notification_lock(notification_id: int) -> InboundNotification:
    return InboundNotification.objects.select_for_update().get(pk=notification_id)
