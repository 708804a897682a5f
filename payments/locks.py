"""The only functions that lock payment-side rows. Lock order everywhere: payment, then its
orders by primary key, then refunds — one order avoids deadlocks.

Every lock is ``FOR NO KEY UPDATE`` of the row itself: no service changes a key column, and
unlike ``FOR UPDATE`` it does not conflict with the ``FOR KEY SHARE`` that PostgreSQL's
foreign-key checks take at COMMIT (a stored callback references its payment and refund), so a
callback's commit never waits in a cycle with a state change."""

from __future__ import annotations

from collections.abc import Iterable

from orders.models import Order
from payments.models import Payment


def payment_lock(payment_id: int) -> Payment:
    return (
        Payment.objects.select_for_update(of=("self",), no_key=True)
        .select_related("channel_account")
        .get(pk=payment_id)
    )


def orders_lock(order_ids: Iterable[int]) -> list[Order]:
    return list(
        Order.objects.select_for_update(of=("self",), no_key=True)
        .select_related("merchant")
        .filter(pk__in=list(order_ids))
        .order_by("pk")
    )
