"""The payments app's sweeps (see paycore.sweeps for the mechanics).

- close: expired payments are asked about (paid -> SUCCEEDED), else closed at the channel and
  here; expired orders none of whose payments can still turn into money are closed.
- success: payments whose outcome paycore has not heard are asked about on a back-off
  schedule until they expire; payments closed without the channel's confirmation are watched
  until their channel-side expiry has passed.
Payment-code payments (USER_PAYING) follow their own, faster protocol and are left alone here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from orders.models import Order
from paycore.sweeps import Done, Sweep
from payments.models import Payment
from payments.services import order_close_if_abandoned, payment_check, payment_close_expired, payment_next_check

S = Payment.Status
_CLOSABLE = [S.CREATED, S.PENDING, S.CLIENT_REPORTED]


def _close_payment(pk: int) -> Done:
    payment = payment_close_expired(payment_id=pk)
    if payment.status in _CLOSABLE:  # the channel says a payer is mid-way: look again shortly
        return Done("still_open", timezone.now() + timedelta(minutes=1))
    return Done(payment.status.lower(), payment_next_check(payment))


def _close_order(pk: int) -> Done:
    order = order_close_if_abandoned(order_id=pk)
    if order.status == Order.Status.PENDING_PAYMENT:
        return Done("waiting_for_payments", timezone.now() + timedelta(minutes=1))
    return Done(order.status.lower())


def _check_payment(pk: int) -> Done:
    payment = payment_check(payment_id=pk)
    return Done(payment.status.lower(), payment_next_check(payment))


def _expired_payments(now: datetime) -> Q:
    return Q(status__in=_CLOSABLE, expires_at__lte=now)


def _expired_orders(now: datetime) -> Q:
    return Q(status=Order.Status.PENDING_PAYMENT, expires_at__lte=now)


def _unheard_payments(now: datetime) -> Q:
    open_ones = Q(status__in=[S.PENDING, S.CLIENT_REPORTED], expires_at__gt=now)
    watched = Q(status__in=[S.CLOSED, S.FAILED], watch_until__isnull=False)
    return open_ones | watched


CLOSE_PAYMENTS = Sweep(name="close", model=Payment, due=_expired_payments, work=_close_payment, null_is_due=True)
CLOSE_ORDERS = Sweep(name="close-orders", model=Order, due=_expired_orders, work=_close_order, null_is_due=True)
SUCCESS = Sweep(name="success", model=Payment, due=_unheard_payments, work=_check_payment)
