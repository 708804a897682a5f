"""The only functions that lock payment-side rows. Lock order everywhere: payment, then its
orders by primary key, then refunds — one order avoids deadlocks.

Every lock is ``FOR NO KEY UPDATE`` of the row itself: no service changes a key column, and
unlike ``FOR UPDATE`` it does not conflict with the ``FOR KEY SHARE`` that PostgreSQL's
foreign-key checks take at COMMIT (a stored callback references its payment and refund), so a
callback's commit never waits in a cycle with a state change."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from orders.models import Order
from paycore.prepared import PreparedQuery
from payments.models import Payment


def payment_lock(payment_id: int) -> Payment:
    found = _payment_locked(pk=payment_id)
    if not found:
        raise Payment.DoesNotExist(f"no payment {payment_id}")
    return found[0]


def orders_lock(order_ids: Iterable[int]) -> list[Order]:
    ids = sorted(set(order_ids))
    return _orders_locked(pks=ids) if ids else []


# Every state change takes these locks: compiled once per process (and per number of orders).
@PreparedQuery
def _payment_locked(*, pk: int) -> QuerySet[Payment]:
    return Payment.objects.select_for_update(of=("self",), no_key=True).select_related("channel_account").filter(pk=pk)


@PreparedQuery
def _orders_locked(*, pks: list[int]) -> QuerySet[Order]:
    return (
        Order.objects.select_for_update(of=("self",), no_key=True)
        .select_related("merchant")
        .filter(pk__in=pks)
        .order_by("pk")
    )
