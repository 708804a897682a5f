"""The payments app's sweeps (see paycore.sweeps for the mechanics).

- close: expired payments are asked about (paid -> SUCCEEDED), else closed at the channel and
  here; expired orders none of whose payments can still turn into money are closed.
- success: payments whose outcome paycore has not heard are asked about on a back-off
  schedule until they expire; payments closed without the channel's confirmation are watched
  until their channel-side expiry has passed.
- paycode: payment-code payments waiting for the payer (or for an unknown answer to clear) are
  polled every few seconds until their charge deadline, then revoked; a revocation that keeps
  failing goes to ops. They follow this faster protocol instead of the success and close sweeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from orders.models import Order
from paycore.sweeps import Done, Sweep
from payments.models import Payment
from payments.services import (
    order_close_if_abandoned,
    paycode_advance,
    payment_check,
    payment_close_expired,
    payment_next_check,
)

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


def _follow_paycode(pk: int) -> Done:
    payment = paycode_advance(payment_id=pk)
    if payment.status == S.USER_PAYING:
        return Done("still_paying", payment.next_check_at)
    return Done(payment.status.lower(), payment.next_check_at)


def _paying_at_the_counter(now: datetime) -> Q:
    return Q(method=Payment.Method.PAYCODE, status=S.USER_PAYING)


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
PAYCODE = Sweep(
    name="paycode",
    model=Payment,
    due=_paying_at_the_counter,
    work=_follow_paycode,
    lease=timedelta(seconds=60),
    failure_schedule=(timedelta(seconds=3), timedelta(seconds=5), timedelta(seconds=10)),
)
