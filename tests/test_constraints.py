"""The database itself enforces the invariants, whoever writes the row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels.models import ChannelAccount
from orders.models import Order, OrderItem
from payments.models import Payment, PaymentEvent, PaymentOrderMap
from refunds.models import Refund
from tests.factories import make_merchant, make_order

pytestmark = pytest.mark.django_db


def _account() -> ChannelAccount:
    return ChannelAccount.objects.create(channel="wechat", name="c", base_url="https://wx.example")


def _payment(account: ChannelAccount, **overrides: object) -> Payment:
    fields = {
        "payment_no": "P20260101000000AAAAAAAAAAAA",
        "channel": "wechat",
        "method": "app",
        "channel_account": account,
        "customer_ref": "c",
        "amount": 100,
        "currency": "CNY",
        "expires_at": timezone.now() + timedelta(minutes=5),
        **overrides,
    }
    return Payment.objects.create(**fields)


def assert_violates(fn: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()  # type: ignore[operator]


def test_an_order_has_at_most_one_current_map() -> None:
    account = _account()
    order = make_order()
    first = _payment(account)
    second = _payment(account, payment_no="P20260101000000BBBBBBBBBBBB")
    PaymentOrderMap.objects.create(payment=first, order=order, amount=order.amount, is_current=True)
    assert_violates(lambda: PaymentOrderMap.objects.create(payment=second, order=order, amount=order.amount))
    PaymentOrderMap.objects.create(payment=second, order=order, amount=order.amount, is_current=False)
    assert PaymentOrderMap.objects.filter(order=order, is_current=True).count() == 1


def test_payment_numbers_and_channel_trade_numbers_are_unique() -> None:
    account = _account()
    _payment(account, channel_trade_no="4200000001")
    assert_violates(lambda: _payment(account))
    assert_violates(lambda: _payment(account, payment_no="P20260101000000DDDDDDDDDDDD", channel_trade_no="4200000001"))
    _payment(account, payment_no="P20260101000000EEEEEEEEEEEE", channel_trade_no=None)
    _payment(account, payment_no="P20260101000000FFFFFFFFFFFF", channel_trade_no=None)
    assert Payment.objects.filter(channel_trade_no__isnull=True).count() == 2


@pytest.mark.parametrize("amount", [0, -1])
def test_amounts_must_be_positive(amount: int) -> None:
    account = _account()
    merchant = make_merchant()
    assert_violates(lambda: _payment(account, amount=amount))
    assert_violates(
        lambda: Order.objects.create(
            order_no="O1",
            merchant=merchant,
            merchant_order_no="x",
            customer_ref="c",
            description="d",
            amount=amount,
            currency="CNY",
            expires_at=timezone.now(),
        )
    )


def test_merchant_order_numbers_are_unique_per_merchant() -> None:
    order = make_order()
    assert_violates(
        lambda: Order.objects.create(
            order_no="O2",
            merchant=order.merchant,
            merchant_order_no=order.merchant_order_no,
            customer_ref="c",
            description="d",
            amount=1,
            currency="CNY",
            expires_at=timezone.now(),
        )
    )
    other = make_merchant()
    Order.objects.create(
        order_no="O3",
        merchant=other,
        merchant_order_no=order.merchant_order_no,
        customer_ref="c",
        description="d",
        amount=1,
        currency="CNY",
        expires_at=timezone.now(),
    )


def test_order_items_need_a_positive_quantity_and_no_negative_price() -> None:
    order = make_order()
    assert_violates(lambda: OrderItem.objects.create(order=order, name="x", unit_price=1, quantity=0))
    assert_violates(lambda: OrderItem.objects.create(order=order, name="x", unit_price=-1, quantity=1))


def test_a_succeeded_payment_needs_a_paid_time_and_a_known_status() -> None:
    account = _account()
    assert_violates(lambda: _payment(account, status="SUCCEEDED"))
    assert_violates(lambda: _payment(account, status="WHATEVER"))


def test_refund_numbers_are_unique_and_amounts_positive() -> None:
    account = _account()
    payment = _payment(account)
    Refund.objects.create(refund_no="r-1", payment=payment, amount=10, currency="CNY")
    assert_violates(lambda: Refund.objects.create(refund_no="r-1", payment=payment, amount=10, currency="CNY"))
    assert_violates(lambda: Refund.objects.create(refund_no="r-2", payment=payment, amount=0, currency="CNY"))


def test_payment_events_are_append_only() -> None:
    payment = _payment(_account())
    event = PaymentEvent.objects.create(payment=payment, from_status="CREATED", to_status="PENDING", source="api")
    event.to_status = "SUCCEEDED"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
