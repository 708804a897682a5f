"""Plain functions that build state through the real services, so that no test starts from a
state production could never reach."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import F

from channels.models import ChannelAccount
from orders.models import Merchant, Order
from orders.services import ItemInput, merchant_create, order_create, order_new
from payments.models import Payment
from payments.services import payment_create, payment_start

_seq = itertools.count(1)


def make_merchant(*, code: str | None = None, notify_url: str = "") -> Merchant:
    """A merchant; without a notify URL its events are recorded but not sent (the webhook tests
    give theirs a sandbox receiver), so other tests make no outbound calls to merchants."""
    n = next(_seq)
    return merchant_create(
        code=code or f"m{n}", name=f"Merchant {n}", notify_url=notify_url, webhook_secret="whsec_test_only"
    )


def make_order(
    *,
    merchant: Merchant | None = None,
    amount: int = 1000,
    currency: str = "CNY",
    customer_ref: str = "cust-1",
    expires_at: datetime | None = None,
    **extra: Any,
) -> Order:
    merchant = merchant or make_merchant()
    order, _ = order_create(
        order_new(
            merchant=merchant,
            merchant_order_no=f"MO{next(_seq)}",
            customer_ref=customer_ref,
            description="Coffee",
            currency=currency,
            items=[ItemInput(name="Coffee", unit_price=amount, quantity=1)],
            expires_at=expires_at,
            **extra,
        )
    )
    return order


def make_payment(
    *,
    account: ChannelAccount,
    orders: list[Order] | None = None,
    method: str = "app",
    customer_ref: str = "cust-1",
    start: bool = True,
    **extra: Any,
) -> Payment:
    orders = orders or [make_order(customer_ref=customer_ref)]
    payment, _ = payment_create(
        order_ids=[o.pk for o in orders], customer_ref=customer_ref, channel=account.channel, method=method, **extra
    )
    if start:
        payment = payment_start(payment_id=payment.pk)
    payment.refresh_from_db()
    return payment


def order_body(merchant: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "merchant": merchant.code,
        "merchant_order_no": "MO-1",
        "customer_ref": "cust-1",
        "description": "Coffee",
        "currency": "CNY",
        "items": [
            {"name": "Latte", "unit_price": 1500, "quantity": 2},
            {"name": "Cake", "unit_price": 990, "quantity": 1},
        ],
        **overrides,
    }


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll the database for an effect of asynchronous delivery (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def make_paid_payment(
    *, account: ChannelAccount, gateway: Any, orders: list[Order] | None = None, **extra: Any
) -> Payment:
    """A payment the payer paid at the sandbox and paycore confirmed by query."""
    from payments.services import payment_sync_from_channel

    payment = make_payment(account=account, orders=orders, **extra)
    pay_at_sandbox(gateway, payment)
    return payment_sync_from_channel(payment_id=payment.pk)


def pay_at_sandbox(gateway: Any, payment: Payment, **params: Any) -> None:
    """The payer pays, as each channel's payer would (Alipay needs the signed order string)."""
    if payment.channel == "alipay":
        params.setdefault("order_string", payment.prepay_data["order_string"])
    gateway.pay(payment.channel, payment.payment_no, **params)


def let_time_pass(*rows: Any, seconds: float = 3600) -> None:
    """Move the clocks of rows back, as if ``seconds`` had passed: expiries and due times that
    lay ahead now lie behind. (The sandbox keeps its own clock; paycore's decisions read these.)"""
    from datetime import timedelta

    for row in rows:
        fields = {
            name: F(name) - timedelta(seconds=seconds)
            for name in ("expires_at", "next_check_at", "watch_until", "charge_deadline", "created_at")
            if hasattr(row, name)
        }
        type(row).objects.filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
