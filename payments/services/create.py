"""Creating a payment for one or more orders of one customer."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from channels.services import channel_account_pick
from orders.models import Merchant, Order
from orders.services import order_is_payable
from paycore.errors import (
    CurrencyMismatch,
    CustomerMismatch,
    InvalidRequest,
    MerchantSuspended,
    OrderNotPayable,
    PaymentConfirming,
)
from paycore.ids import new_payment_no
from paycore.prepared import PreparedQuery
from paycore.sweeps import backoff
from paycore.writes import insert_all
from payments.locks import orders_lock
from payments.models import Payment, PaymentOrderMap
from payments.services.start import describe, payment_prepay, payment_start

# What the channel needs from the payer for a method, checked before any row is written.
_METHOD_NEEDS: dict[str, tuple[str, str]] = {
    Payment.Method.JSAPI: ("payer_id", "the payer's openid under the app id"),
    Payment.Method.POINTS: ("payer_id", "the payer's points binding id"),
    Payment.Method.H5: ("client_ip", "the payer's IP address"),
}
_REUSABLE = {Payment.Status.CREATED, Payment.Status.PENDING}
_SUPERSEDABLE = {Payment.Status.CREATED, Payment.Status.PENDING}
_CONFIRMING = {Payment.Status.CLIENT_REPORTED, Payment.Status.USER_PAYING, Payment.Status.NEEDS_ATTENTION}
# A payment handed back for reuse must leave the payer time to pay it.
_REUSE_MARGIN = timedelta(minutes=1)


def payment_create(
    *,
    order_ids: list[int],
    customer_ref: str,
    channel: str,
    method: str,
    payer_id: str = "",
    client_ip: str | None = None,
    return_url: str = "",
    store_id: str = "",
    device_id: str = "",
    operator_id: str = "",
) -> tuple[Payment, bool]:
    """Create (or reuse) the payment for these orders; returns ``(payment, created)``.

    The orders are locked, so concurrent requests for the same order serialise here: the first
    creates the payment, the rest find it as the orders' current payment and get it back. A new
    payment on another channel or method supersedes the orders' older open payment, which is
    closed (locally and at the channel) right after this transaction commits.
    """
    payment, created, _ = _create(
        order_ids=order_ids,
        customer_ref=customer_ref,
        channel=channel,
        method=method,
        payer_id=payer_id,
        client_ip=client_ip,
        return_url=return_url,
        store_id=store_id,
        device_id=device_id,
        operator_id=operator_id,
    )
    return payment, created


@transaction.atomic(durable=True)
def _create(
    *,
    order_ids: list[int],
    customer_ref: str,
    channel: str,
    method: str,
    payer_id: str,
    client_ip: str | None,
    return_url: str,
    store_id: str,
    device_id: str,
    operator_id: str,
) -> tuple[Payment, bool, list[Order]]:
    """``payment_create``, also returning the locked orders (by primary key)."""
    if not order_ids:
        raise InvalidRequest.field("order_nos", "at least one order is required")
    if (needs := _METHOD_NEEDS.get(method)) is not None:
        field, what = needs
        if not {"payer_id": payer_id, "client_ip": client_ip}[field]:
            raise InvalidRequest.field(field, f"{method} payments need {what}", code="required")
    orders = orders_lock(set(order_ids))
    _check_payable(orders, customer_ref=customer_ref)
    currency = orders[0].currency
    current = {m.order_id: m for m in _current_maps(order_ids=[o.pk for o in orders])}
    existing = _reusable_payment(orders, current, channel=channel, method=method)
    if existing is not None:
        return existing, False, orders
    confirming = sorted({m.payment.payment_no for m in current.values() if m.payment.status in _CONFIRMING})
    if confirming:
        raise PaymentConfirming(
            "an earlier payment of these orders is being confirmed with the channel", extra={"payment_nos": confirming}
        )
    account = channel_account_pick(channel=channel, method=method, currency=currency)
    now = timezone.now()
    # Short-lived at the channel (the order string or prepay expires with it), so a payment the
    # customer abandons stops being payable soon, whatever the orders' own lifetime.
    expires_at = min(min(o.expires_at for o in orders), now + timedelta(seconds=settings.PAYMENT_TTL_SECONDS))
    payment = Payment(
        payment_no=new_payment_no(),
        channel=channel,
        method=method,
        channel_account=account,
        customer_ref=customer_ref,
        amount=sum(o.amount for o in orders),
        currency=currency,
        expires_at=expires_at,
        next_check_at=now + backoff(1),
        store_id=store_id,
        device_id=device_id,
        operator_id=operator_id,
        payer_id=payer_id,
        client_ip=client_ip,
        return_url=return_url,
    )
    insert_all([payment])
    superseded = {m.payment_id for m in current.values() if m.payment.status in _SUPERSEDABLE}
    if current:
        PaymentOrderMap.objects.filter(pk__in=[m.pk for m in current.values()]).update(is_current=False)
    insert_all([PaymentOrderMap(payment=payment, order=o, amount=o.amount, is_current=True) for o in orders])
    if superseded:
        from payments.tasks import payment_close_superseded as payment_close_superseded_task

        transaction.on_commit(
            lambda: [payment_close_superseded_task.delay(pid) for pid in sorted(superseded)], robust=True
        )
    return payment, True, orders


@PreparedQuery  # every new payment reads its orders' current maps: compiled once per process
def _current_maps(*, order_ids: list[int]) -> QuerySet[PaymentOrderMap]:
    return PaymentOrderMap.objects.select_related("payment").filter(order_id__in=order_ids, is_current=True)


def _check_payable(orders: list[Order], *, customer_ref: str) -> None:
    now = timezone.now()
    for order in orders:
        if order.customer_ref != customer_ref:
            raise CustomerMismatch("the order belongs to another customer", extra={"order_no": order.order_no})
        if order.merchant.status != Merchant.Status.ACTIVE:
            raise MerchantSuspended("the order's merchant is suspended", extra={"order_no": order.order_no})
        if not order_is_payable(order, now=now):
            reason = "expired" if order.status == Order.Status.PENDING_PAYMENT else order.status.lower()
            raise OrderNotPayable(f"the order is {reason}", extra={"order_no": order.order_no, "reason": reason})
    if len({order.currency for order in orders}) > 1:
        raise CurrencyMismatch(
            "the orders are in different currencies", extra={"currencies": sorted({o.currency for o in orders})}
        )


def _reusable_payment(
    orders: list[Order], current: dict[int, PaymentOrderMap], *, channel: str, method: str
) -> Payment | None:
    """The orders' open payment on the same channel and method, if it covers exactly them."""
    payments = {m.payment_id: m.payment for m in current.values()}
    if len(current) != len(orders) or len(payments) != 1:
        return None
    payment = next(iter(payments.values()))
    if payment.channel != channel or payment.method != method or payment.status not in _REUSABLE:
        return None
    if payment.expires_at <= timezone.now() + _REUSE_MARGIN:
        return None
    covered = set(PaymentOrderMap.objects.filter(payment=payment).values_list("order_id", flat=True))
    return payment if covered == {o.pk for o in orders} else None


def payment_place(
    *,
    order_ids: list[int],
    customer_ref: str,
    channel: str,
    method: str,
    payer_id: str = "",
    client_ip: str | None = None,
    return_url: str = "",
) -> tuple[Payment, bool]:
    """What the API's "create payment" means: create (or reuse) the payment, then place it at
    the channel. A channel outage leaves it CREATED; asking again retries the placement."""
    payment, created, orders = _create(
        order_ids=order_ids,
        customer_ref=customer_ref,
        channel=channel,
        method=method,
        payer_id=payer_id,
        client_ip=client_ip,
        return_url=return_url,
        store_id="",
        device_id="",
        operator_id="",
    )
    if not created:
        return payment_start(payment_id=payment.pk), False
    return payment_prepay(payment, description=describe(payment, [o.description for o in orders])), True
